"""Store benchmarks (issue 4): throughput with rotation + compression, latency during rotations.

``rotation_throughput``: the ``throughput`` load (4 connections x 250 000
records of 120 bytes) into a daemon that never rotates, then into one that
rotates every 1 MiB and compresses with zstd; the second must reach at least
90 % of the first. The run ends when every record is on disk (``stats``:
``stored`` caught up with ``last_seq``), not when compression catches up; the
rotated files still waiting for compression then are reported, and how long
compression took to catch up (its CPU is counted in "with it"). The same
again with 4M records: a flood long enough (~10 s) that compression, which
yields to a saturated writer for at most 5 s per file, runs during it.

``rotation_latency``: a flooder (root, 2 connections, 40 000 records/s in
batches of 200, as a busy service logs) makes the store rotate its 1 MiB
files about ten times a second (each compressed with zstd) while a quiet
sender (uid 65534, 500 records/s, each carrying its send time) is timed from
``send()`` until the record is in its uid's file: an inotify watch on the
quiet uid's directory reads the new lines as soon as they are written. The
same run without rotation gives the baseline. A flooder as fast as it can
saturates both cores of the benchmark machine, and then the latency measures
the CPU queue, not the store. Needs root (the quiet sender is another uid).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import select
import statistics
import threading
import time
from pathlib import Path
from typing import Any, Final

from bench._daemon import BenchDaemon, cpu_seconds, peak_rss_mib
from bench.loadgen import LoadGen, LoadSpec

UID = os.geteuid()
QUIET_UID: Final = 65534
MIB: Final = 1 << 20
ROTATING: Final = {"max_file_bytes": MIB, "store": 'compress = "zstd"'}
NOT_ROTATING: Final = {"max_file_bytes": 1 << 40, "store": 'compress = "zstd"'}
FLOOD_RATE: Final = 40_000

_IN_MODIFY: Final = 0x2
_IN_MOVED_TO: Final = 0x80
_IN_CREATE: Final = 0x100
_TS_RE: Final = re.compile(rb"TS=(\d{19})")


def _fmt(values: list[float], digits: int = 0) -> str:
    f = f"{{:,.{digits}f}}"
    med, lo, hi = (f.format(x) for x in (statistics.median(values), min(values), max(values)))
    return f"{med} ({lo}-{hi})"


def _wait_all_stored(d: BenchDaemon, uid: int, records: int, timeout: float = 300.0) -> float:
    """Poll until *uid* accepted *records* and every queued line is on disk; return when."""
    deadline = time.monotonic() + timeout
    while True:
        u = d.stats().get(uid)
        if u is not None and u["records"] >= records and u["stored"] >= u["last_seq"]:
            return time.time()
        if time.monotonic() > deadline:
            msg = f"uid {uid}: {u}"
            raise TimeoutError(msg)
        time.sleep(0.005)


def _rotated(d: BenchDaemon, uid: int, suffixes: tuple[str, ...] = (".jsonl",)) -> int:
    """How many rotated files of *uid* end in one of *suffixes* (default: uncompressed)."""
    names = os.listdir(d.log_dir / str(uid))
    return sum(1 for n in names if n.endswith(suffixes) and n != "current.jsonl")


def _throughput_once(daemon_kw: dict[str, Any], count: int = 1_000_000) -> dict[str, float]:
    with BenchDaemon(**daemon_kw) as d:
        lg = LoadGen(LoadSpec(sock=d.socket, conns=4, count=count, size=120))
        cpu0 = cpu_seconds(d.pid)
        lg.start()
        done = _wait_all_stored(d, UID, count)
        cpu1 = cpu_seconds(d.pid)
        results = lg.wait()
        assert sum(int(r["sent"]) for r in results) == count, results  # type: ignore[call-overload]
        elapsed = done - lg.t_start
        late = _rotated(d, UID)
        # then until compression has caught up: its CPU counts too
        deadline = time.monotonic() + 300
        while _rotated(d, UID) and time.monotonic() < deadline:
            time.sleep(0.05)
        caught_up = time.time() - done
        cpu2 = cpu_seconds(d.pid)
        return {
            "msgs_per_s": count / elapsed,
            "cpu_s_per_million": (cpu1 - cpu0) / count * 1e6,
            "cpu_all_s_per_million": (cpu2 - cpu0) / count * 1e6,
            "caught_up_s": caught_up,
            "peak_rss_mib": peak_rss_mib(d.pid),
            "rotated_files": _rotated(d, UID, (".jsonl", ".zst", ".gz")),
            "uncompressed_at_end": late,
        }


def _ratio_rows(count: int, runs: int) -> tuple[list[dict[str, float]], list[dict[str, float]]]:
    base: list[dict[str, float]] = []
    rot: list[dict[str, float]] = []
    for _ in range(runs):  # interleaved, so that both see the same machine load
        base.append(_throughput_once(NOT_ROTATING, count))
        rot.append(_throughput_once(ROTATING, count))
    return base, rot


def _print_ratio(label: str, base: list[dict[str, float]], rot: list[dict[str, float]]) -> float:
    ratios = [r["msgs_per_s"] / b["msgs_per_s"] for b, r in zip(base, rot, strict=True)]
    print(label)
    for name, rows in (("no rotation", base), ("1 MiB files", rot)):
        print(f"  {name:12s} msgs/s {_fmt([r['msgs_per_s'] for r in rows])}"
              f"   CPU s/1M {_fmt([r['cpu_s_per_million'] for r in rows], 2)}")  # fmt: skip
    files = _fmt([r["rotated_files"] for r in rot])
    late = _fmt([r["uncompressed_at_end"] for r in rot])
    print(f"  rotated files per run {files}, still uncompressed at the end {late}")
    caught = _fmt([r["caught_up_s"] for r in rot], 1)
    cpu_all = _fmt([r["cpu_all_s_per_million"] for r in rot], 2)
    print(f"  compression done {caught} s after the last record; CPU s/1M with it {cpu_all}")
    ratio = statistics.median(ratios)
    print(f"  rotating / not rotating: {ratio:.1%} (runs: "
          f"{', '.join(f'{x:.1%}' for x in ratios)})")  # fmt: skip
    return ratio


def rotation_throughput(runs: int = 3) -> dict[str, Any]:
    """Throughput with max_file_bytes = 1 MiB and zstd vs without rotation (>= 90 %).

    Twice: the ``throughput`` load (1M records, a burst of ~2.5 s: its files
    are compressed after it, see ``COMPRESS_DEFER_MAX``), and 4M records
    (~10 s: a flood long enough for compression to run while it lasts).
    """
    burst = _ratio_rows(1_000_000, runs)
    flood = _ratio_rows(4_000_000, runs)
    r1 = _print_ratio("rotation_throughput: 4 conns x 250k msgs, 120 B, fsync=batch, zstd", *burst)
    r4 = _print_ratio("rotation_throughput, sustained: 4 conns x 1M msgs (~10 s)", *flood)
    verdict = "ok" if min(r1, r4) >= 0.9 else "BELOW 90 %"
    print(f"  target: both at least 90 % [{verdict}]")
    return {
        "ratio": r1,
        "sustained_ratio": r4,
        "base": burst[0],
        "rotating": burst[1],
        "sustained_base": flood[0],
        "sustained_rotating": flood[1],
    }


class _Tail:
    """Follows a uid's current.jsonl through rotations (inotify); timestamps each new line."""

    def __init__(self, uid_dir: Path) -> None:
        self.dir = uid_dir
        self.latencies_ms: list[float] = []
        self.stop = threading.Event()
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        self._ifd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self._ifd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        mask = _IN_MODIFY | _IN_CREATE | _IN_MOVED_TO
        if libc.inotify_add_watch(self._ifd, str(uid_dir).encode(), mask) < 0:
            raise OSError(ctypes.get_errno(), "inotify_add_watch")
        self._cur = open(uid_dir / "current.jsonl", "rb")  # noqa: SIM115  # followed until closed
        self._cur.seek(0, os.SEEK_END)
        self._ino = os.fstat(self._cur.fileno()).st_ino
        self._buf = b""
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _drain(self) -> None:
        data = self._cur.read()
        if not data:
            return
        now = time.time_ns()
        self._buf += data
        *complete, self._buf = self._buf.split(b"\n")
        for line in complete:
            m = _TS_RE.search(line)
            if m is not None:
                self.latencies_ms.append((now - int(m[1])) / 1e6)

    def _run(self) -> None:
        while not self.stop.is_set():
            ready, _, _ = select.select([self._ifd], [], [], 0.1)
            if ready:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._ifd, 65536)
            self._drain()
            try:
                ino = os.stat(self.dir / "current.jsonl").st_ino
            except FileNotFoundError:
                continue
            if ino != self._ino:  # rotated: finish the old file, follow the new one
                self._drain()
                self._cur.close()
                self._cur = open(self.dir / "current.jsonl", "rb")  # noqa: SIM115
                self._ino = os.fstat(self._cur.fileno()).st_ino
                self._buf = b""
                self._drain()
        self._cur.close()
        os.close(self._ifd)


def _paced_flood(sock: str, rate: float, duration: float, batch: int = 200) -> int:
    """Fork a sender of *rate* records/s (in batches, as a busy service logs); return its pid."""
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        import socket

        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(sock)
        pad = b"x" * 80
        t0 = time.monotonic()
        sent = 0
        while (now := time.monotonic()) < t0 + duration:
            due = t0 + sent / rate
            if due > now:
                time.sleep(due - now)
            s.sendall(b"".join(b"<14>flood %09d %s\n" % (sent + i, pad) for i in range(batch)))
            sent += batch
        s.close()
        code = 0
    finally:
        os._exit(code)


def _latency_once(
    daemon_kw: dict[str, Any], duration: float = 8.0, flood_rate: float = 0.0
) -> dict[str, float]:
    with BenchDaemon(**daemon_kw) as d:
        warm = LoadGen(LoadSpec(sock=d.socket, conns=1, count=1, uid=QUIET_UID))
        warm.start()
        warm.wait()
        uid_dir = d.log_dir / str(QUIET_UID)
        deadline = time.monotonic() + 10
        while not (uid_dir / "current.jsonl").exists():
            if time.monotonic() > deadline:
                raise TimeoutError(uid_dir)
            time.sleep(0.01)
        tail = _Tail(uid_dir)
        quiet = LoadGen(
            LoadSpec(
                sock=d.socket, conns=1, count=None, duration=duration - 1, rate=500.0,
                ts=True, uid=QUIET_UID,
            )
        )  # fmt: skip
        flood: LoadGen | None = None
        flooders: list[int] = []
        if flood_rate:
            flooders = [_paced_flood(d.socket, flood_rate / 2, duration) for _ in range(2)]
        else:  # as fast as they can
            flood = LoadGen(LoadSpec(sock=d.socket, conns=2, count=None, duration=duration))
            flood.start()
        time.sleep(0.5)  # let the flood build up (a benchmark, not a test)
        quiet.start()
        sent = sum(int(r["sent"]) for r in quiet.wait())  # type: ignore[call-overload]
        for pid in flooders:
            os.waitpid(pid, 0)
        if flood is not None:
            flood.wait()
        _wait_all_stored(d, QUIET_UID, sent + 1, timeout=60)
        deadline = time.monotonic() + 10
        while len(tail.latencies_ms) < sent and time.monotonic() < deadline:
            time.sleep(0.01)
        tail.stop.set()
        tail.thread.join()
        lat = sorted(tail.latencies_ms)
        files = os.listdir(d.log_dir / str(UID))
        return {
            "p50_ms": lat[len(lat) // 2],
            "p99_ms": lat[int(len(lat) * 0.99)],
            "max_ms": lat[-1],
            "samples": len(lat),
            "sent": sent,
            "flood_rotations": len(files) - 1,
        }


def _round_times(rounds: int = 2000) -> dict[str, float]:
    """In process: how long the writer's hop (append ~150 KiB) takes with and without a
    rotation in it, while a sync follows each hop (as the sync task does), the
    next rotation's files are made ahead (``prepare_spares``, as the writer task
    does) and rotated files are compressed in another thread."""
    import shutil
    import tempfile

    from trio_logd.record import format_ts
    from trio_logd.store.writer import StoreWriter

    root = tempfile.mkdtemp(prefix="trio-logd-bench-", dir=os.environ.get("BENCH_TMP"))
    w = StoreWriter(f"{root}/log", max_file_bytes=MIB, compress="zstd")
    w.open()
    stop = threading.Event()

    def compress() -> None:
        while not stop.is_set():
            if w.compress_next() is None:
                time.sleep(0.001)

    t = threading.Thread(target=compress)
    t.start()
    plain: list[float] = []
    rotating: list[float] = []
    seq = 0
    pad = b"x" * 100
    try:
        for _ in range(rounds):
            ts = format_ts(time.time()).encode()
            lines = []
            for _ in range(1000):
                seq += 1
                head = b'{"ts":"%s","seq":%d,"uid":0,"gid":0,"pid":1,' % (ts, seq)
                lines.append(head + b'"fac":"user","sev":"info","msg":"flood %s"}\n' % pad)
            t0 = time.perf_counter()
            w.append(0, lines, seq)
            dt = (time.perf_counter() - t0) * 1000
            w.sync()
            if w.spares_wanted:  # as the writer task does, beside the hops (not timed)
                w.prepare_spares()
            (rotating if w.take_rotations() else plain).append(dt)
    finally:
        stop.set()
        t.join()
        w.close()
        shutil.rmtree(root, ignore_errors=True)
    plain.sort()
    rotating.sort()
    return {
        "plain_p50_ms": plain[len(plain) // 2],
        "plain_p99_ms": plain[int(len(plain) * 0.99)],
        "rotating_p50_ms": rotating[len(rotating) // 2],
        "rotating_p99_ms": rotating[int(len(rotating) * 0.99)],
        "rotations": len(rotating),
    }


def rotation_latency(runs: int = 3) -> dict[str, Any]:
    """Quiet uid's send -> on-disk latency while a flooder rotates 1 MiB files (p99 <= 10 ms)."""
    if os.geteuid() != 0:
        print("rotation_latency: skipped (needs root: the quiet sender is another uid)")
        return {"skipped": True}
    base: list[dict[str, float]] = []
    rot: list[dict[str, float]] = []
    for _ in range(runs):
        base.append(_latency_once(NOT_ROTATING, flood_rate=FLOOD_RATE))
        rot.append(_latency_once(ROTATING, flood_rate=FLOOD_RATE))
    print(f"rotation_latency: quiet uid at 500 msgs/s beside a flooder at {FLOOD_RATE:,} msgs/s"
          ", 8 s, fsync=batch, zstd")  # fmt: skip
    for name, rows in (("no rotation", base), ("1 MiB files", rot)):
        print(f"  {name:12s} p50 {_fmt([r['p50_ms'] for r in rows], 2)} ms"
              f"   p99 {_fmt([r['p99_ms'] for r in rows], 2)} ms"
              f"   max {_fmt([r['max_ms'] for r in rows], 1)} ms"
              f"   flood files {_fmt([r['flood_rotations'] for r in rows])}")  # fmt: skip
    p99 = statistics.median([r["p99_ms"] for r in rot])
    verdict = "ok" if p99 <= 10 else "ABOVE 10 ms"
    print(f"  p99 during rotations: {p99:.2f} ms  [{verdict}]")
    stalls = [_round_times() for _ in range(runs)]
    print(
        "  writer hop (append 1000 records, ~150 KiB; a sync after each) in process, zstd beside:"
    )
    for kind in ("plain", "rotating"):
        print(f"    {kind:8s} p50 {_fmt([r[f'{kind}_p50_ms'] for r in stalls], 2)} ms"
              f"   p99 {_fmt([r[f'{kind}_p99_ms'] for r in stalls], 2)} ms")  # fmt: skip
    return {"p99_ms": p99, "base": base, "rotating": rot, "rounds": stalls}


SCENARIOS = {"rotation_throughput": rotation_throughput, "rotation_latency": rotation_latency}
