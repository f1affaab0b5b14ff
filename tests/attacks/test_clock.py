"""Clock jumps: ``ts`` follows the wall clock (it may go back), ``seq`` and limits do not.

Defined outcome: ``ts`` is the receive time on the wall clock, so a clock
stepped back gives earlier ``ts``; ``seq`` still only increases (across a
restart too); the token buckets run on the monotonic clock, so a wall clock
jump neither mints nor takes tokens.

What is tested and how, without changing the system clock: in process, the
ingest's ``time.time`` is replaced and trio's mock clock drives the limits;
end to end, the daemon runs with a ``sitecustomize`` that adds an offset,
read from a file at every call, to ``time.time`` (every wall-clock read of
the daemon goes through it). Not tested: the kernel's own clock stepping
(``clock_settime``), which needs CAP_SYS_TIME and would disturb the host;
and a monotonic clock going back, which Linux does not do (the pure
``TokenBucket`` tests cover it anyway).
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import trio
import trio.testing

from tests._daemon import PYTHON
from tests.attacks._helpers import Bystander, assert_contiguous, wait_records
from tests.attacks.conftest import AttackRow, DaemonFactory
from tests.server._conn import UID, make_ctx, records, serving
from trio_logd.config import loads
from trio_logd.query.timespec import ts_to_epoch
from trio_logd.server import _ingest

DAY = 86400.0
T0 = 1_800_000_000.0  # 2027-01-15


async def test_wall_clock_jumps_in_process(
    autojump_clock: trio.testing.MockClock,
    attack_report: AttackRow,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Wall clock back a day, then on a year: ts follows it, seq stays contiguous, and the
    buckets (burst 5, 1/s) admit exactly what the monotonic clock allows."""
    wall = [T0]
    monkeypatch.setattr(_ingest, "time", SimpleNamespace(time=lambda: wall[0]))
    config = loads(
        '[limits.default]\nrate_messages = 1\nburst_messages = 5\non_rate = "drop"\n',
        base_dir="/",
    )
    ctx = make_ctx(config=config)
    async with serving(ctx) as conn:
        conn.client.send(b"<13>a\n<13>b\n<13>c\n")
        await trio.testing.wait_all_tasks_blocked()
        wall[0] = T0 - DAY
        conn.client.send(b"<13>d\n<13>e\n")
        await trio.testing.wait_all_tasks_blocked()
        wall[0] = T0 + 365 * DAY  # a year on: no tokens for that
        conn.client.send(b"<13>f\n<13>g\n<13>h\n<13>i\n<13>j\n")
        await trio.testing.wait_all_tasks_blocked()
        await trio.sleep(2.0)  # two monotonic seconds: two tokens
        conn.client.send(b"<13>k\n<13>l\n")
        await trio.testing.wait_all_tasks_blocked()
    recs = [r for r in records(ctx) if "event" not in r]
    dropped = ctx.suppression.dropped(UID).get("rate", 0)
    lost = 12 - len(recs) - dropped  # sent = stored + counted as dropped
    attack_report.report(
        "wall clock jumps (in process: back 1 day, on 1 year)",
        "ts follows the wall clock; seq contiguous; buckets on the monotonic clock",
        lost,
    )
    assert [(r["msg"], ts_to_epoch(r["ts"]) - T0) for r in recs] == [
        ("a", 0.0), ("b", 0.0), ("c", 0.0), ("d", -DAY), ("e", -DAY),
        ("k", 365 * DAY), ("l", 365 * DAY),
    ]  # fmt: skip
    assert [r["seq"] for r in recs] == list(range(1, 8))
    assert dropped == 5
    assert lost == 0


SITECUSTOMIZE = """\
# Test hook: time.time() plus the offset (seconds) in $TRIO_LOGD_TEST_CLOCK_OFFSET.
import os as _os
import time as _time

_file = _os.environ.get("TRIO_LOGD_TEST_CLOCK_OFFSET")
if _file:
    _real = _time.time

    def _faked():
        try:
            with open(_file) as f:
                return _real() + float(f.read() or 0)
        except (OSError, ValueError):
            return _real()

    _time.time = _faked
"""


def test_wall_clock_jumps_end_to_end(
    start_daemon: DaemonFactory, attack_report: AttackRow, root_dir: Path
) -> None:
    """A real daemon whose wall clock steps back a day, restarts, then steps on two days:
    seq goes on without a gap or a repeat; ts shows the jumps."""
    hook = root_dir / "clockhook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    offset = root_dir / "clock-offset"
    offset.write_text("0")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(hook), *sys.path]),
        "TRIO_LOGD_TEST_CLOCK_OFFSET": str(offset),
    }
    probe = [PYTHON, "-c", "import time, sitecustomize; print(sitecustomize._file)"]
    if subprocess.run(probe, env=env, capture_output=True, text=True).stdout.strip() != str(offset):
        pytest.skip("another sitecustomize shadows the test's clock hook")
    daemon = start_daemon(store_extra='max_file_age = "1d"', env=env)
    by = Bystander(daemon)
    by.send(10)
    by.wait_stored()  # stamped before the jump
    offset.write_text(str(-DAY))
    by.send(10)
    by.wait_stored()
    daemon.stop()
    daemon.start(env=env)  # seq must continue from the store, whatever ts says
    by.reconnect()
    by.send(10)
    by.wait_stored()
    offset.write_text(str(2 * DAY))  # past max_file_age: the file rotates by age
    by.send(10)
    lost = by.lost()
    recs = by.records()
    stamps = [ts_to_epoch(r["ts"]) for r in recs]
    jumps = [round((b - a) / DAY) for a, b in itertools.pairwise(stamps)]
    attack_report.report(
        "wall clock jumps (real daemon: back 1 day, restart, on 2 days)",
        "ts goes back and on; seq contiguous across the restart; age rotation follows",
        lost,
    )
    assert sorted(set(jumps)) == [-1, 0, 3]
    assert_contiguous(daemon.records(by.uid))
    assert lost == 0
    by.assert_intact()
    # the daemon's own records (started, stopped …) are numbered on too
    assert_contiguous(wait_records(daemon, os.geteuid(), 1, where=lambda r: True))
    rotated = [p.name for p in (daemon.log_dir / str(by.uid)).iterdir()]
    assert len(rotated) >= 2, rotated
