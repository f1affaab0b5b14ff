"""Thousands of connections from one uid: caps, headroom, and fds left for the store.

Defined outcome: a uid over its ``max_connections`` has each further
connection accepted and closed at once (EOF), counted as a ``connections``
drop; other uids still connect and log; near the global cap only root and
``[access] admins`` get in (headroom). The daemon raises its soft
``RLIMIT_NOFILE`` to the hard limit at start, so the connections a uid holds
do not leave the store without descriptors: rotation goes on.
"""

from __future__ import annotations

import os
import resource
import select
import socket
from typing import Any

import pytest

from tests._daemon import DaemonProcess, poll
from tests.attacks._helpers import ATTACKER, BYSTANDER, Bystander, assert_contiguous, fork_as
from tests.attacks.conftest import AttackRow, DaemonFactory
from trio_logd.control_client import request_one
from trio_logd.store._layout import CURRENT

pytestmark = pytest.mark.usefixtures("as_root")

ATTEMPTS = 3000
HELD = 600  # the attacker's per-uid cap: above the daemon's starting soft limit
DAEMON_SOFT_LIMIT = 512


class Holder:
    """A child of *uid* that opens *n* connections and keeps those the daemon keeps."""

    def __init__(self, daemon: DaemonProcess, uid: int, n: int) -> None:
        r, w = os.pipe()
        hold_r, hold_w = os.pipe()

        def child() -> None:
            os.close(r)
            os.close(hold_w)
            _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # no privilege needed
            conns = []
            for _ in range(n):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(daemon.socket)
                conns.append(s)
            os.write(w, b"%d\n" % len(conns))
            os.read(hold_r, 1)  # until the parent closes its end

        self.pid = fork_as(uid, child)
        os.close(w)
        os.close(hold_r)
        self._hold = hold_w
        ready, _, _ = select.select([r], [], [], 60)
        assert ready, "holder did not connect in time"
        self.opened = int(os.read(r, 64))
        os.close(r)

    def release(self) -> None:
        """Close every connection (the child exits)."""
        os.close(self._hold)
        _, status = os.waitpid(self.pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0


def uid_stats(daemon: DaemonProcess, uid: int) -> dict[str, Any]:
    reply = request_one(daemon.control, "stats")
    return next((u for u in reply["uids"] if u["uid"] == uid), {})


def _low_soft_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (DAEMON_SOFT_LIMIT, hard))


def test_thousands_of_connections_from_one_uid(
    start_daemon: DaemonFactory, attack_report: AttackRow
) -> None:
    """3000 connections of one uid: 600 held, 2400 refused; others connect; rotation works."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < HELD + 512:
        pytest.skip(f"hard RLIMIT_NOFILE {hard} is too low to show the raise")
    daemon = start_daemon(
        store_extra='max_file_bytes = 4096\ncompress = "none"',
        extra=f"[limits.uid.{ATTACKER}]\nmax_connections = {HELD}",
        preexec_fn=_low_soft_limit,  # the daemon must raise it to the hard limit itself
    )
    by = Bystander(daemon)
    by.send(10)
    holder = Holder(daemon, ATTACKER, ATTEMPTS)
    try:
        held = poll(
            lambda: (
                (s := uid_stats(daemon, ATTACKER))
                and s["dropped"].get("connections") == ATTEMPTS - HELD
                and s
            ),
            timeout=30,
        )
        by.reconnect()  # another uid still gets in
        by.send(300)  # ~60 KiB of records: over a dozen rotations while the 600 are held
        lost = by.lost()
        status = request_one(daemon.control, "status")
    finally:
        holder.release()
    rotated = [n for n in os.listdir(daemon.log_dir / str(BYSTANDER)) if n != CURRENT]
    attack_report.report(
        f"{ATTEMPTS} connections from one uid (its cap {HELD}, daemon soft fd limit "
        f"{DAEMON_SOFT_LIMIT})",
        f"{HELD} held, {ATTEMPTS - HELD} closed at once; others connect; "
        f"{len(rotated)} rotations meanwhile",
        lost,
    )
    assert holder.opened == ATTEMPTS
    assert held["connections"] == HELD
    assert status["fd_limit"] == hard
    assert len(rotated) >= 10
    assert lost == 0
    by.assert_intact()
    poll(lambda: uid_stats(daemon, ATTACKER)["connections"] == 0)


def test_headroom_near_the_global_cap(
    start_daemon: DaemonFactory, attack_report: AttackRow
) -> None:
    """One uid fills the global cap up to its headroom: root still connects, others wait."""
    daemon = start_daemon(
        daemon_extra="max_connections = 100\nconnection_headroom = 10",
        extra=f"[limits.uid.{ATTACKER}]\nmax_connections = 1000",
    )
    by = Bystander(daemon)
    by.send(10)
    holder = Holder(daemon, ATTACKER, 200)
    try:
        # 90 below the headroom, less the bystander's one
        poll(lambda: uid_stats(daemon, ATTACKER).get("connections") == 89)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:  # root: the headroom
            s.connect(daemon.socket)
            s.sendall(b"<13>root gets in\n")
        by.send(10)  # its connection predates the flood: it stays
        by.reconnect()  # a new one, of another uid: accepted and closed at once
        poll(lambda: uid_stats(daemon, BYSTANDER)["dropped"].get("connections") == 1)
    finally:
        holder.release()
    poll(lambda: uid_stats(daemon, ATTACKER)["connections"] == 0)
    by.reconnect()
    by.send(10)
    root = poll(lambda: [r for r in daemon.records(0) if r.get("msg") == "root gets in"])
    lost = by.lost() + (1 - len(root))
    attack_report.report(
        "one uid fills the global cap (100, headroom 10)",
        "uid held 89 (+ 1 bystander = 90); root still connects; other uids refused till it goes",
        lost,
    )
    assert lost == 0
    by.assert_intact()
    assert_contiguous(daemon.records(0))
