"""Forwarding throughput against ingest throughput on the same machine (issue #8).

Four measurements per run, each on a fresh daemon and store, N records of
120 bytes from 4 connections (``bench.loadgen``), ``fsync = "batch"``:

* ``ingest``: no forwarding: records/s stored (the baseline);
* ``live``: forwarding to a real rsyslogd (``tests._collector``: imtcp,
  octet counting, omfile) while ingesting: records/s stored, and records/s
  at the collector (N / time until its file has every record);
* ``backlog``: the N records are stored while the collector is down; then
  it starts: records/s at the collector, first to last record (forwarding
  alone, reading the store back from disk);
* ``sink``: as ``live``, to a minimal Python TCP sink that only counts
  frames (``bench._sink``): the ceiling without rsyslog's own cost.

The issue's target: forwarding throughput at least 80 % of ingest
throughput (``live`` forwarded / ``ingest`` stored).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._daemon import BenchDaemon, cpu_seconds
from bench.loadgen import LoadGen, LoadSpec
from tests._collector import Rsyslog, free_port

UID = os.geteuid()
COUNT = 500_000


def _forward_toml(address: str) -> str:
    return f"""
[[forward]]
name = "bench"
address = "{address}"
commit_delay = "0.5s"
retry_max = "1s"
"""


class _LineCounter:
    """Counts the lines of a growing file without reading it twice."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.lines = 0
        self.first = 0.0

    def poll(self) -> int:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return 0
        if data:
            if not self.first:
                self.first = time.time()
            self.offset += len(data)
            self.lines += data.count(b"\n")
        return self.lines

    def wait(self, n: int, timeout: float = 600.0) -> float:
        deadline = time.monotonic() + timeout
        while self.poll() < n:
            if time.monotonic() > deadline:
                msg = f"{self.path}: {self.lines} of {n} lines"
                raise TimeoutError(msg)
            time.sleep(0.005)
        return time.time()


def _load(d: BenchDaemon, count: int) -> tuple[LoadGen, float]:
    """Send *count* records; return the generator and when the last was stored."""
    lg = LoadGen(LoadSpec(sock=d.socket, conns=4, count=count, size=120))
    lg.start()
    stored = d.wait_stored(UID, count + 1)  # + the daemon's `started` record
    results = lg.wait()
    sent = sum(int(r["sent"]) for r in results)  # type: ignore[call-overload]
    assert sent == count, results
    return lg, stored


def _per_million(seconds: float, count: int) -> float:
    return seconds / count * 1e6


def ingest_once(count: int) -> dict[str, float]:
    with BenchDaemon() as d:
        cpu = cpu_seconds(d.pid)
        lg, stored = _load(d, count)
        return {
            "ingest": count / (stored - lg.t_start),
            "ingest_cpu": _per_million(cpu_seconds(d.pid) - cpu, count),
        }


def live_once(count: int, root: Path) -> dict[str, float]:
    with Rsyslog(root / "rsyslog") as rs, BenchDaemon(extra=_forward_toml(rs.address)) as d:
        assert rs.proc is not None
        lines = _LineCounter(rs.out)
        cpu, rs_cpu = cpu_seconds(d.pid), cpu_seconds(rs.proc.pid)
        lg, stored = _load(d, count)
        done = lines.wait(count + 1)
        return {
            "live_stored": count / (stored - lg.t_start),
            "live_forwarded": count / (done - lg.t_start),
            "live_cpu": _per_million(cpu_seconds(d.pid) - cpu, count),
            "rsyslog_cpu": _per_million(cpu_seconds(rs.proc.pid) - rs_cpu, count),
        }


def backlog_once(count: int, root: Path) -> dict[str, float]:
    rs = Rsyslog(root / "rsyslog")
    with BenchDaemon(extra=_forward_toml(rs.address)) as d:
        _load(d, count)
        lines = _LineCounter(rs.out)
        cpu = cpu_seconds(d.pid)
        with rs:  # starts it
            done = lines.wait(count + 1)
        return {
            "backlog_forwarded": count / (done - lines.first),
            "backlog_cpu": _per_million(cpu_seconds(d.pid) - cpu, count),
        }


def sink_once(count: int) -> tuple[float, float]:
    port = free_port()
    sink = subprocess.Popen(
        [sys.executable, "-m", "bench._sink", str(port), str(count + 1)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert sink.stdout is not None
        assert sink.stdout.readline().strip() == "ready"
        with BenchDaemon(extra=_forward_toml(f"127.0.0.1:{port}")) as d:
            lg, stored = _load(d, count)
            result = sink.stdout.readline()
        import json

        last = float(json.loads(result)["last"])
        return count / (stored - lg.t_start), count / (last - lg.t_start)
    finally:
        sink.kill()
        sink.wait()


def _fmt2(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def _fmt(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}-{max(values):,.0f})"


def forward_scenario(runs: int = 3, count: int = COUNT) -> dict[str, Any]:
    """Forwarding vs ingest throughput; medians of *runs*."""
    rows: list[dict[str, float]] = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="trio-logd-fwd-bench-") as tmp:
            root = Path(tmp)
            row = ingest_once(count)
            row.update(live_once(count, root / "live"))
            row.update(backlog_once(count, root / "backlog"))
            row["sink_stored"], row["sink_forwarded"] = sink_once(count)
            rows.append(row)
    out: dict[str, Any] = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    ratios = {
        "backlog_to_ingest": [r["backlog_forwarded"] / r["ingest"] for r in rows],
        "live_to_live_ingest": [r["live_forwarded"] / r["live_stored"] for r in rows],
        "live_to_ingest": [r["live_forwarded"] / r["ingest"] for r in rows],
    }
    for key, values in ratios.items():
        out[f"ratio_{key}"] = statistics.median(values)
    out["runs"] = rows
    print(f"forward: {count:,} records of 120 B, 4 conns, fsync=batch; records/s, median (min-max)")
    print(f"  ingest only (stored)                   {_fmt([r['ingest'] for r in rows])}")
    print(
        f"  forwarded from a backlog (rsyslog)     {_fmt([r['backlog_forwarded'] for r in rows])}"
    )
    print(f"  ingest while forwarding live (stored)  {_fmt([r['live_stored'] for r in rows])}")
    print(f"  forwarded live to rsyslog              {_fmt([r['live_forwarded'] for r in rows])}")
    print(f"  forwarded live to a counting sink      {_fmt([r['sink_forwarded'] for r in rows])}")
    print("  CPU seconds per million records, median (min-max):")
    for key, label in (
        ("ingest_cpu", "daemon, ingest only"),
        ("live_cpu", "daemon, ingest + live forwarding"),
        ("backlog_cpu", "daemon, forwarding a backlog"),
        ("rsyslog_cpu", "rsyslogd, receiving live"),
    ):
        values = [r[key] for r in rows]
        print(f"    {label:34} {_fmt2(values)}")
    print("  ratios, each run's own, median (min-max):")
    for key, label in (
        ("backlog_to_ingest", "backlog forwarded / ingest only"),
        ("live_to_live_ingest", "live forwarded / live stored"),
        ("live_to_ingest", "live forwarded / ingest only"),
    ):
        values = ratios[key]
        low, high = min(values), max(values)
        print(f"    {label:34} {statistics.median(values):.0%} ({low:.0%}-{high:.0%})")
    return out


SCENARIOS = {"forward": forward_scenario}
