"""Fairness and memory under a flood (issue 3).

``fairness``: uid A floods from 2 connections at full speed for 10 s while
uid B sends 200 records/s, each carrying its send time (``TS=<ns>``). The
benchmark process tails B's file, polling every ~1 ms, and takes latency =
time the line is seen - TS (so it includes up to one poll interval). Three
variants: A within a generous limit, and A over a tight limit with
``on_rate = "drop"`` and with ``"block"``. Required: 100 % of B stored, B's
p50 <= 2 ms and p99 <= 10 ms, A held to its rate within 5 %: A's steady rate
is the count of A's stored records whose ``ts`` falls in the middle of the
flood (from 2 s after its start to 1 s before its end) over that window.

``memory``: 2 000 idle connections from 20 uids plus one full-speed flooder
for 60 s; VmRSS sampled every second. Required: peak RSS <= 100 MiB and no
growth in the second half.

Both need root (the senders setuid to other uids).
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from bench._daemon import BenchDaemon, cpu_seconds, peak_rss_mib, rss_mib
from bench.loadgen import LoadGen, LoadSpec
from trio_logd.control_client import request_one

__all__ = ["fairness", "memory"]

FLOOD_UID: Final = 2001
QUIET_UID: Final = 2002
DURATION: Final = 10.0
QUIET_RATE: Final = 200.0
#: the tight limit of the "drop" and "block" variants, records per second
TIGHT_RATE: Final = 10_000
POLL: Final = 0.001

VARIANTS: Final = {
    "generous": "",
    "drop": f"""
[limits.uid.{FLOOD_UID}]
rate_messages = {TIGHT_RATE}
burst_messages = {TIGHT_RATE}
on_rate = "drop"
""",
    "block": f"""
[limits.uid.{FLOOD_UID}]
rate_messages = {TIGHT_RATE}
burst_messages = {TIGHT_RATE}
on_rate = "block"
""",
}


class _Tail:
    """Follows one uid's current file; notes when each line is first seen."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None
        self.offset = 0
        self.rest = b""
        self.latencies_ms: list[float] = []
        #: the same latency split at the daemon's read (the record's ``ts``)
        self.to_read_ms: list[float] = []
        self.read_to_disk_ms: list[float] = []
        self.seen: set[bytes] = set()

    def poll(self) -> None:
        if self.fd is None:
            try:
                self.fd = os.open(self.path, os.O_RDONLY)
            except FileNotFoundError:
                return
        chunk = os.pread(self.fd, 1 << 20, self.offset)
        if not chunk:
            return
        now = time.time_ns()
        self.offset += len(chunk)
        data = self.rest + chunk
        lines = data.split(b"\n")
        self.rest = lines.pop()
        for line in lines:
            i = line.find(b" TS=")
            if i < 0:
                continue
            j = line.find(b"MK=")
            self.seen.add(line[j : j + 16])
            sent = int(line[i + 4 : i + 23])
            read = round(_epoch(line[7:34]) * 1e9)
            self.latencies_ms.append((now - sent) / 1e6)
            self.to_read_ms.append((read - sent) / 1e6)
            self.read_to_disk_ms.append((now - read) / 1e6)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)


def _epoch(ts: bytes) -> float:
    return (
        dt.datetime.strptime(ts.decode(), "%Y-%m-%dT%H:%M:%S.%fZ")
        .replace(tzinfo=dt.UTC)
        .timestamp()
    )


def _steady_rate(path: Path, start: float, end: float) -> float:
    """Records of the file whose ``ts`` is in [start, end], per second."""
    n = 0
    with open(path, "rb") as f:
        for line in f:
            if b'"event"' in line:
                continue
            t = _epoch(line[7:34])  # {"ts":"<27 characters>" (docs/architecture.md)
            if start <= t <= end:
                n += 1
    return n / (end - start)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def fairness_once(variant: str) -> dict[str, float]:
    """One run of one variant."""
    with BenchDaemon(extra=VARIANTS[variant]) as d:
        flood = LoadGen(
            LoadSpec(sock=d.socket, conns=2, count=None, duration=DURATION, uid=FLOOD_UID)
        )
        quiet = LoadGen(
            LoadSpec(
                sock=d.socket, conns=1, count=None, duration=DURATION, rate=QUIET_RATE,
                ts=True, uid=QUIET_UID,
            )
        )  # fmt: skip
        tail = _Tail(d.log_dir / str(QUIET_UID) / "current.jsonl")
        cpu0 = cpu_seconds(d.pid)
        flood.start()
        quiet.start()
        end = time.monotonic() + DURATION + 0.5
        while time.monotonic() < end:
            tail.poll()
            time.sleep(POLL)
        quiet_results = quiet.wait()
        flood_results = flood.wait()
        quiet_sent = sum(int(r["sent"]) for r in quiet_results)  # type: ignore[call-overload]
        flood_sent = sum(int(r["sent"]) for r in flood_results)  # type: ignore[call-overload]
        deadline = time.monotonic() + 30
        while len(tail.seen) < quiet_sent and time.monotonic() < deadline:
            tail.poll()
            time.sleep(POLL)
        tail.close()
        cpu1 = cpu_seconds(d.pid)
        stats = d.stats()
        flood_stats = stats.get(FLOOD_UID, {})
        t0 = min(float(r["t0"]) for r in flood_results)  # type: ignore[arg-type]
        t1 = max(float(r["t1"]) for r in flood_results)  # type: ignore[arg-type]
        out: dict[str, float] = {
            "quiet_sent": quiet_sent,
            "quiet_delivered_ratio": len(tail.seen) / quiet_sent,
            "quiet_p50_ms": _pct(tail.latencies_ms, 0.50),
            "quiet_p99_ms": _pct(tail.latencies_ms, 0.99),
            "quiet_max_ms": max(tail.latencies_ms),
            "quiet_to_read_p50_ms": _pct(tail.to_read_ms, 0.50),
            "quiet_to_read_p99_ms": _pct(tail.to_read_ms, 0.99),
            "quiet_read_to_disk_p50_ms": _pct(tail.read_to_disk_ms, 0.50),
            "quiet_read_to_disk_p99_ms": _pct(tail.read_to_disk_ms, 0.99),
            "flood_sent_per_s": flood_sent / (t1 - t0),
            "flood_stored_per_s": flood_stats.get("stored", 0) / (t1 - t0),
            "flood_dropped": sum(flood_stats.get("dropped", {}).values()),
            "daemon_cpu_s": cpu1 - cpu0,
            "peak_rss_mib": peak_rss_mib(d.pid),
        }
        if variant != "generous":
            rate = _steady_rate(d.log_dir / str(FLOOD_UID) / "current.jsonl", t0 + 2, t1 - 1)
            out["flood_steady_per_s"] = rate
            out["flood_rate_error"] = rate / TIGHT_RATE - 1
        return out


def _summary(rows: list[dict[str, float]]) -> dict[str, Any]:
    keys = rows[0].keys()
    return {k: statistics.median(r[k] for r in rows) for k in keys} | {"runs": rows}


def fairness(runs: int = 3) -> dict[str, Any]:
    """A floods (2 conns, 10 s) under three policies while B sends 200/s; B's latency."""
    result: dict[str, Any] = {}
    for variant in VARIANTS:
        rows = [fairness_once(variant) for _ in range(runs)]
        med = result[variant] = _summary(rows)

        def span(key: str, digits: int = 1, rows: list[dict[str, float]] = rows) -> str:
            vals = [r[key] for r in rows]
            f = f"{{:,.{digits}f}}"
            return (
                f"{f.format(statistics.median(vals))} ({f.format(min(vals))}-{f.format(max(vals))})"
            )

        print(f"fairness [{variant}]: flood uid {FLOOD_UID} 2 conns x {DURATION:.0f} s, "
              f"quiet uid {QUIET_UID} {QUIET_RATE:.0f}/s; median (min-max) of {runs}")  # fmt: skip
        print(f"  quiet delivered   {span('quiet_delivered_ratio', 4)}")
        print(f"  quiet p50 ms      {span('quiet_p50_ms', 2)}")
        print(f"  quiet p99 ms      {span('quiet_p99_ms', 2)}")
        print(f"  quiet max ms      {span('quiet_max_ms', 1)}")
        print(f"    send->read p50  {span('quiet_to_read_p50_ms', 2)}")
        print(f"    send->read p99  {span('quiet_to_read_p99_ms', 2)}")
        print(f"    read->disk p50  {span('quiet_read_to_disk_p50_ms', 2)}")
        print(f"    read->disk p99  {span('quiet_read_to_disk_p99_ms', 2)}")
        print(f"  flood sent/s      {span('flood_sent_per_s', 0)}")
        print(f"  flood stored/s    {span('flood_stored_per_s', 0)}")
        if "flood_steady_per_s" in med:
            print(f"  flood steady/s    {span('flood_steady_per_s', 0)} (limit {TIGHT_RATE})")
            print(f"  flood rate error  {span('flood_rate_error', 4)}")
        print(f"  daemon CPU s      {span('daemon_cpu_s', 1)}")
        print(f"  peak RSS MiB      {span('peak_rss_mib', 1)}")
    return result


# --------------------------------------------------------------------------- memory

IDLE_UIDS: Final = 20
IDLE_PER_UID: Final = 100
MEMORY_SECONDS: Final = 60.0


def _hold_idle(sock: str, uid: int, n: int, ready_w: int, stop_r: int) -> None:
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    conns = []
    for _ in range(n):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(sock)
        conns.append(s)
    os.write(ready_w, b"r")
    os.read(stop_r, 1)
    for s in conns:
        s.close()


def _status(d: BenchDaemon) -> dict[str, Any]:
    return request_one(d.control, "status", timeout=10)


def memory_once(seconds: float = MEMORY_SECONDS) -> dict[str, float]:
    """One run: idle connections + a flooder; RSS sampled every second."""
    with BenchDaemon(daemon="max_connections = 4096") as d:
        start_rss = rss_mib(d.pid)
        ready_r, ready_w = os.pipe()
        stop_r, stop_w = os.pipe()
        pids = []
        for i in range(IDLE_UIDS):
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    _hold_idle(d.socket, 3000 + i, IDLE_PER_UID, ready_w, stop_r)
                    code = 0
                finally:
                    os._exit(code)
            pids.append(pid)
        for _ in range(IDLE_UIDS):
            os.read(ready_r, 1)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if _status(d).get("connections", 0) >= IDLE_UIDS * IDLE_PER_UID:
                break
            time.sleep(0.05)
        idle_rss = rss_mib(d.pid)
        flood = LoadGen(
            LoadSpec(sock=d.socket, conns=1, count=None, duration=seconds, uid=FLOOD_UID)
        )
        flood.start()
        t0 = time.monotonic()
        samples: list[tuple[float, float]] = []
        while (t := time.monotonic() - t0) < seconds:
            samples.append((t, rss_mib(d.pid)))
            time.sleep(1.0)
        results = flood.wait()
        connections = _status(d).get("connections", 0)
        os.write(stop_w, b"s" * IDLE_UIDS)
        for pid in pids:
            os.waitpid(pid, 0)
        for fd in (ready_r, ready_w, stop_r, stop_w):
            os.close(fd)
        half = [rss for t, rss in samples if t >= seconds / 2]
        first = [rss for t, rss in samples if t < seconds / 2]
        xs = [t for t, _ in samples if t >= seconds / 2]
        slope = statistics.linear_regression(xs, half).slope * 60 if len(half) > 1 else 0.0
        sent = sum(int(r["sent"]) for r in results)  # type: ignore[call-overload]
        return {
            "idle_connections": float(connections),
            "rss_start_mib": start_rss,
            "rss_idle_mib": idle_rss,
            "kib_per_idle_connection": (idle_rss - start_rss) * 1024 / max(1, connections),
            "rss_first_half_max_mib": max(first),
            "rss_second_half_max_mib": max(half),
            "rss_second_half_slope_mib_per_min": slope,
            "peak_rss_mib": peak_rss_mib(d.pid),
            "flood_sent_per_s": sent / seconds,
        }


def memory(runs: int = 1) -> dict[str, Any]:
    """2 000 idle connections (20 uids) + one flooder for 60 s: peak RSS, growth."""
    rows = [memory_once() for _ in range(runs)]
    med = _summary(rows)
    print(f"memory: {IDLE_UIDS * IDLE_PER_UID} idle conns ({IDLE_UIDS} uids) + 1 flooder, "
          f"{MEMORY_SECONDS:.0f} s; median of {runs}")  # fmt: skip
    for key in (
        "idle_connections", "rss_start_mib", "rss_idle_mib", "kib_per_idle_connection",
        "rss_first_half_max_mib", "rss_second_half_max_mib", "rss_second_half_slope_mib_per_min",
        "peak_rss_mib", "flood_sent_per_s",
    ):  # fmt: skip
        print(f"  {key:<36} {med[key]:,.2f}")
    return med


SCENARIOS: Final[dict[str, Callable[..., dict[str, Any]]]] = {
    "fairness": fairness,
    "memory": memory,
}
