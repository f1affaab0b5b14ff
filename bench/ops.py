"""Operators' figures: what the 1 s sampler, `stats` and `metrics` cost with many uids (issue 7).

In process, no sockets: a daemon's objects are built, thousands of uids are
given counters, and the sampler tick, a ``stats`` snapshot and the
Prometheus rendering are timed. Uids without a passwd entry keep NSS out
of the measured part after the first (cached) resolution, which is timed
on its own.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import trio

from trio_logd.config import loads
from trio_logd.metrics import render_metrics
from trio_logd.server import build_daemon

FIRST_UID = 200_000  # no passwd entries here: NSS answers "none" fast


def _median_ms(fn: Callable[[], object], n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def _once(uids: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as root:
        daemon = build_daemon(loads(f'[daemon]\nlog_dir = "{root}/log"'))
        assert daemon.operators is not None
        collector = daemon.operators.collector
        for i in range(uids):
            st = daemon.pipeline.state(FIRST_UID + i)
            st.records, st.bytes = 1000 * i, 120_000 * i
        out: dict[str, float] = {}

        async def measure() -> None:
            t0 = time.perf_counter()
            await collector.resolve(range(FIRST_UID, FIRST_UID + uids))
            out["resolve_first_ms"] = (time.perf_counter() - t0) * 1000
            for step in range(60):  # a minute of history, counters moving
                for st in daemon.pipeline.states():
                    st.records += step
                collector.tick(now=time.monotonic() - 60 + step)
            out["tick_ms"] = _median_ms(collector.tick, 20)
            snaps = []
            for _ in range(10):
                t0 = time.perf_counter()
                snap = await collector.snapshot()
                snaps.append((time.perf_counter() - t0) * 1000)
            out["snapshot_ms"] = statistics.median(snaps)
            out["render_ms"] = _median_ms(lambda: render_metrics(snap), 10)
            out["metrics_kib"] = len(render_metrics(snap)) / 1024

        trio.run(measure)
        return out


def ops(runs: int = 3, uids: int = 2000) -> dict[str, Any]:
    """Cost of the sampler tick, a stats snapshot and the metrics text with 2000 uids."""
    rows = [_once(uids) for _ in range(runs)]
    out: dict[str, Any] = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    print(f"ops: {uids} uids, medians of {runs} runs")
    print(f"  sampler tick (every 1 s)      {out['tick_ms']:.2f} ms")
    print(f"  stats snapshot                {out['snapshot_ms']:.2f} ms")
    print(
        f"  metrics text                  {out['render_ms']:.2f} ms ({out['metrics_kib']:.0f} KiB)"
    )
    print(f"  first name/quota resolution   {out['resolve_first_ms']:.1f} ms (then cached)")
    out["runs"] = rows
    return out


SCENARIOS = {"ops": ops}
