"""A SIGHUP storm under traffic, with the config rewritten in between.

Defined outcome: reloads are serialized (one at a time; signals that arrive
meanwhile may be merged, as POSIX signals are), connections stay open,
nothing is lost, the daemon keeps serving, and the reload counters add up:
at least one reload, no more than the signals sent, no failure.
"""

from __future__ import annotations

import os
import signal
import threading

import pytest

from tests._daemon import DaemonProcess, poll
from tests.attacks._helpers import Bystander, assert_contiguous, wait_records
from tests.attacks.conftest import AttackRow, DaemonFactory
from trio_logd.control_client import request_one

pytestmark = pytest.mark.usefixtures("as_root")

SIGNALS = 300
RECORDS = 3000


def _rewrite(daemon: DaemonProcess, rate: int) -> None:
    """Change a live key, atomically (a reload never reads half a file)."""
    text = daemon.config.read_text()
    before, _, after = text.partition("rate_messages = ")
    tmp = daemon.config.with_suffix(".tmp")
    tmp.write_text(f"{before}rate_messages = {rate}\n{after.partition(chr(10))[2]}")
    os.replace(tmp, daemon.config)


def _reloads(daemon: DaemonProcess) -> int:
    reloads: int = request_one(daemon.control, "stats")["daemon"]["reloads"]
    return reloads


def _wait_reloads_above(daemon: DaemonProcess, n: int) -> int:
    """Poll until the daemon has finished more than *n* reloads; return how many."""
    count: int = poll(lambda: (r := _reloads(daemon)) > n and r)
    return count


def test_sighup_storm(start_daemon: DaemonFactory, attack_report: AttackRow) -> None:
    """300 SIGHUPs while two uids log: nothing lost, still serving, counters sane."""
    daemon = start_daemon()
    by = Bystander(daemon)
    by.send(10)
    sending = threading.Thread(target=by.send, args=(RECORDS,))
    sending.start()
    mine = daemon.connect()
    done = 0
    for i in range(SIGNALS):
        os.kill(daemon.pid, signal.SIGHUP)
        mine.sendall(b"<13>app: root %d\n" % i)
        if i % 50 == 49:  # a changed file, and a reload that surely ran amid the traffic
            _rewrite(daemon, 1_000_000 + i)
            os.kill(daemon.pid, signal.SIGHUP)
            done = _wait_reloads_above(daemon, done)
    sending.join(timeout=60)
    assert not sending.is_alive()
    mine.close()
    by.send(10)
    stats = request_one(daemon.control, "stats")
    root = wait_records(daemon, 0, SIGNALS)
    lost = SIGNALS - len(root) + by.lost(timeout=30)
    reloads = stats["daemon"]["reloads"]
    attack_report.report(
        f"SIGHUP storm ({SIGNALS + SIGNALS // 50} signals, config rewritten, 2 uids logging)",
        f"{reloads} reloads (signals merge), 0 failures; connections kept; still serving",
        lost,
    )
    assert request_one(daemon.control, "status")["pid"] == daemon.pid
    assert SIGNALS // 50 <= reloads <= SIGNALS + SIGNALS // 50
    assert stats["daemon"]["reload_failures"] == 0
    assert [r["msg"] for r in root] == [f"root {i}" for i in range(SIGNALS)]
    assert_contiguous(daemon.records(0))
    assert lost == 0
    by.assert_intact()
