"""Ingest throughput (issue 2), and the helpers other scenarios share."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

from bench._daemon import BenchDaemon, cpu_parts, peak_rss_mib
from bench.loadgen import LoadGen, LoadSpec

UID = __import__("os").geteuid()


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _fmt(values: list[float], unit: str = "", digits: int = 0) -> str:
    med = _median(values)
    lo, hi = min(values), max(values)
    f = f"{{:,.{digits}f}}"
    return f"{f.format(med)}{unit} ({f.format(lo)}-{f.format(hi)})"


def throughput_once(
    *,
    conns: int = 4,
    count: int = 1_000_000,
    size: int = 120,
    framing: str = "lf",
    daemon_kw: dict[str, Any] | None = None,
    dgram: bool = False,
) -> dict[str, float]:
    d = BenchDaemon(**(daemon_kw or {}))
    sock = d.socket
    if dgram:  # the datagram socket instead: one datagram per record
        sock = str(d.root / "run" / "dgram.sock")
        text = d.config.read_text().replace(
            "[daemon]\n", f'[daemon]\ndatagram_socket = "{sock}"\n', 1
        )
        d.config.write_text(text)
    with d:
        spec = LoadSpec(
            sock=sock, conns=conns, count=count, size=size, framing=framing, dgram=dgram
        )
        lg = LoadGen(spec)
        cpu0 = cpu_parts(d.pid)
        lg.start()
        done = d.wait_stored(UID, count + 1)  # + the daemon's `started` record
        cpu1 = cpu_parts(d.pid)
        results = lg.wait()
        sent = sum(int(r["sent"]) for r in results)  # type: ignore[call-overload]
        assert sent == count, results
        elapsed = done - lg.t_start
        per_million = {k: (cpu1[k] - cpu0[k]) / count * 1e6 for k in cpu0}
        whole = sum(per_million[k] for k in ("main", "threads", "helper"))
        return {
            "msgs_per_s": count / elapsed,
            "cpu_s_per_million": whole,
            # the same, split: trio's thread, the worker threads, the store helper;
            # and the kernel's part of it
            **{f"cpu_{k}_s_per_million": v for k, v in per_million.items()},
            "peak_rss_mib": peak_rss_mib(d.pid),
            "elapsed_s": elapsed,
        }


def throughput(runs: int = 3, **kw: Any) -> dict[str, Any]:
    """4 connections x 250 000 messages of 120 bytes, LF framing, to disk (issue 2)."""
    rows = [throughput_once(**kw) for _ in range(runs)]
    out: dict[str, Any] = {k: _median([r[k] for r in rows]) for k in rows[0]}
    print("throughput: 4 conns x 250k msgs, 120 B, LF, fsync=batch, everything on")
    print(f"  msgs/s            {_fmt([r['msgs_per_s'] for r in rows])}")
    print(f"  CPU s / 1M msgs   {_fmt([r['cpu_s_per_million'] for r in rows], digits=2)}")
    split = "/".join(
        f"{_median([r[f'cpu_{k}_s_per_million'] for r in rows]):.2f}"
        for k in ("main", "threads", "helper", "system")
    )
    print(f"  of which          {split} (trio thread/worker threads/store helper/kernel)")
    print(f"  peak RSS MiB      {_fmt([r['peak_rss_mib'] for r in rows], digits=1)}")
    out["runs"] = rows
    return out


SCENARIOS: dict[str, Callable[..., dict[str, Any]]] = {
    "throughput": throughput,
}
