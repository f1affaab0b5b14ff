"""Slowloris: frames trickled byte by byte, and the memory a connection may hold.

Defined outcome (``[daemon] frame_timeout``, docs/security.md): a frame that
has not ended within the timeout is filed as far as it arrived, marked
``truncated``, one ``protocol_error`` (``reason: "frame_timeout"``) says so,
and the connection is closed. However the bytes come, a connection holds at
most ``max_message_bytes`` (+ 10) of an unfinished frame. ``idle_timeout``
closes a connection that sends nothing.
"""

from __future__ import annotations

import os
import select
import socket
import time

import pytest

from tests.attacks._helpers import (
    ATTACKER,
    Bystander,
    assert_contiguous,
    run_child,
    wait_records,
)
from tests.attacks.conftest import AttackRow, DaemonFactory

pytestmark = pytest.mark.usefixtures("as_root")

FRAME_TIMEOUT = 2.5  # half a second away from the trickle's bytes
FLOODERS = 16
FLOOD_BYTES = 1 << 20  # per connection, no delimiter: 16 MiB if the daemon kept it


def _peak_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_slowloris(start_daemon: DaemonFactory, attack_report: AttackRow) -> None:
    """A frame trickled one byte per second is cut off at frame_timeout; 16 connections
    pushing 1 MiB without a delimiter each raise the daemon's peak memory by far less."""
    daemon = start_daemon(daemon_extra=f"frame_timeout = {FRAME_TIMEOUT}")
    by = Bystander(daemon)
    by.send(10)

    def trickle() -> dict[str, float]:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(daemon.socket)
        s.sendall(b"<13>app: whole\n<13>app: slow")
        start = time.monotonic()
        for byte in b"ly and never ending":
            # waiting one second, on the socket itself: the daemon's close ends the wait
            readable, _, _ = select.select([s], [], [], 1.0)
            if readable and s.recv(1) == b"":
                return {"closed_after": time.monotonic() - start}
            s.sendall(bytes([byte]))
        return {"closed_after": -1.0}

    slow = run_child(ATTACKER, trickle)
    assert slow.rc == 0, slow.err
    by.send(10)

    peak_before = _peak_rss_kib(daemon.pid)

    def flood() -> dict[str, float]:
        conns = []
        for _ in range(FLOODERS):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(daemon.socket)
            conns.append(s)
        chunk = b"<13>app: " + b"z" * (64 << 10)
        for s in conns:
            sent = 0
            while sent < FLOOD_BYTES:
                s.sendall(chunk)
                sent += len(chunk)
        start = time.monotonic()
        open_ = set(conns)
        while open_ and time.monotonic() - start < 10 * FRAME_TIMEOUT:
            readable, _, _ = select.select(list(open_), [], [], 1.0)
            for s in readable:
                if s.recv(65536) == b"":
                    open_.discard(s)
        return {"still_open": len(open_)}

    flooded = run_child(ATTACKER, flood)
    assert flooded.rc == 0, flooded.err
    by.send(10)
    growth_kib = _peak_rss_kib(daemon.pid) - peak_before

    recs = wait_records(daemon, ATTACKER, 2 + FLOODERS)
    faults = wait_records(
        daemon,
        ATTACKER,
        1 + FLOODERS,
        where=lambda r: r.get("event") == "protocol_error",
    )
    lost = 2 + FLOODERS - len(recs) + by.lost()
    attack_report.report(
        "slowloris (1 byte/s; 16 conns x 1 MiB without delimiter)",
        f"cut at frame_timeout ({FRAME_TIMEOUT:g} s): filed truncated, protocol_error, closed;"
        f" peak RSS +{growth_kib // 1024} MiB",
        lost,
    )
    assert FRAME_TIMEOUT - 0.5 <= slow.value["closed_after"] <= FRAME_TIMEOUT + 3
    assert flooded.value == {"still_open": 0}
    # "slow" at 0 s, "l" at 1 s, "y" at 2 s, cut at 2.5 s ("slowl" if "y" came late)
    assert [(r["msg"], r.get("truncated", False)) for r in recs[:2]] in (
        [("whole", False), ("slowly", True)],
        [("whole", False), ("slowl", True)],
    )
    assert {(r["msg"][:1], len(r["msg"]), r["truncated"]) for r in recs[2:]} == {
        ("z", 65536 - 9, True)
    }
    assert {(f["reason"], f["conn_uid"]) for f in faults} == {("frame_timeout", ATTACKER)}
    assert len(faults) == 1 + FLOODERS
    # 16 MiB would be there if the daemon buffered what it was sent
    assert growth_kib < 8 << 10
    assert_contiguous(daemon.records(ATTACKER))
    assert lost == 0
    by.assert_intact()


def test_idle_connection_is_closed(start_daemon: DaemonFactory, attack_report: AttackRow) -> None:
    """idle_timeout = 1 s: a connection that sends nothing is closed, without a record."""
    daemon = start_daemon(daemon_extra='idle_timeout = "1s"')
    by = Bystander(daemon)
    by.send(10)

    def idle() -> dict[str, float]:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(daemon.socket)
        start = time.monotonic()
        s.settimeout(30)
        assert s.recv(1) == b""  # waits for the daemon to close
        return {"closed_after": time.monotonic() - start, "pid": os.getpid()}

    got = run_child(ATTACKER, idle)
    assert got.rc == 0, got.err
    by.reconnect()  # its own connection was idle too meanwhile
    by.send(10)
    lost = by.lost()
    attack_report.report(
        "idle connection (idle_timeout = 1 s)",
        "closed after the timeout, quietly (no record)",
        lost,
    )
    assert 0.8 <= got.value["closed_after"] <= 5.0
    assert daemon.records(ATTACKER) == []
    assert lost == 0
    by.assert_intact()
