"""Tamper evidence (issue 9): what the hash chains cost the writer, and on disk.

In process, no daemon: ``StoreWriter.append`` of 400 000 record lines of
~260 bytes (the size the throughput scenario's records have on disk) in
rounds of 500 lines, ``fsync = "never"``, 16 MiB files, alternating between a
writer with chains and one whose chain is switched off (``Appender.open_chain``
replaced by a no-op). Then the disk: the chain files' bytes against the
records' bytes, uncompressed and zstd-compressed. ``logq --verify``'s speed
is measured on the same store.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trio_logd.record import format_ts
from trio_logd.store.verify import verify_store
from trio_logd.store.writer import Appender, StoreWriter, UidFile

LINES = 400_000
ROUND = 500


def _lines(n: int) -> list[bytes]:
    ts = format_ts(time.time()).encode()
    head = b'{"ts":"%s","seq":%d,"uid":1000,"gid":1000,"pid":4242,"exe":"/usr/bin/python3.11",'
    tail = (
        b'"comm":"python3","fac":"user","sev":"info","app":"loadgen",'
        b'"msg":"MK=T1.000.%09d xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}\n'
    )
    return [head % (ts, s) + tail % s for s in range(1, n + 1)]


def _no_chain(self: Appender, uf: UidFile, *, recover: bool) -> None:
    uf.chain = None


def _append_all(root: Path, lines: list[bytes], *, chains: bool, compress: str) -> float:
    """Seconds of CPU for appending *lines* in rounds (the writer's hop, inline)."""
    original = Appender.open_chain
    if not chains:
        Appender.open_chain = _no_chain  # type: ignore[method-assign]
    try:
        w = StoreWriter(str(root), fsync="never", max_file_bytes=16 << 20, compress=compress)
        w.open()
        t0 = time.process_time()
        for start in range(0, len(lines), ROUND):
            part = lines[start : start + ROUND]
            w.append(1000, part, start + len(part))
        w.flush_chains()
        spent = time.process_time() - t0
        while w.compress_next() is not None:
            pass
        w.close()
    finally:
        Appender.open_chain = original  # type: ignore[method-assign]
    return spent


def _sizes(d: Path) -> tuple[int, int]:
    chain = sum(p.stat().st_size for p in d.iterdir() if p.name.endswith(".chain"))
    records = sum(p.stat().st_size for p in d.iterdir() if not p.name.endswith(".chain"))
    return records, chain


def chain_cost(runs: int = 3) -> dict[str, Any]:
    """Writer CPU per record with and without chains; chain bytes on disk; verify's speed."""
    lines = _lines(LINES)
    with_chain: list[float] = []
    without: list[float] = []
    base = Path(tempfile.mkdtemp(prefix="trio-logd-bench-chain-", dir=os.environ.get("BENCH_TMP")))
    try:
        for i in range(runs):
            for chains, out in ((False, without), (True, with_chain)):
                root = base / f"{i}-{chains}"
                out.append(_append_all(root, lines, chains=chains, compress="none") / LINES * 1e6)
                if chains and i == 0:
                    plain = _sizes(root / "1000")
                shutil.rmtree(root)
        root = base / "zst"
        _append_all(root, lines, chains=True, compress="zstd")
        zst = _sizes(root / "1000")
        t0 = time.perf_counter()
        report = verify_store(root)
        verify_s = time.perf_counter() - t0
        assert not report.problems, report.problems
    finally:
        shutil.rmtree(base, ignore_errors=True)
    med_with, med_without = statistics.median(with_chain), statistics.median(without)
    print(f"chain_cost: StoreWriter.append, {LINES} lines of {len(lines[0])} B, rounds of {ROUND}")
    print(f"  without chains   {med_without:.3f} us/record  (runs: {_list(without)})")
    print(f"  with chains      {med_with:.3f} us/record  (runs: {_list(with_chain)})")
    print(f"  cost             {med_with - med_without:+.3f} us/record")
    print(f"  chain bytes      {plain[1] / plain[0]:.2%} of the records (uncompressed)")
    print(f"                   {zst[1] / zst[0]:.2%} of the records (zstd files)")
    print(f"  logq --verify    {LINES / verify_s:,.0f} records/s (zstd files, {verify_s:.2f} s)")
    return {
        "us_per_record_with": med_with,
        "us_per_record_without": med_without,
        "chain_share_plain": plain[1] / plain[0],
        "chain_share_zstd": zst[1] / zst[0],
        "verify_records_per_s": LINES / verify_s,
    }


def _list(values: list[float]) -> str:
    return ", ".join(f"{v:.3f}" for v in values)


SCENARIOS: dict[str, Callable[..., dict[str, Any]]] = {
    "chain_cost": chain_cost,
}
