"""A connection used by a process that did not open it: fork after connect, SCM_RIGHTS.

Defined outcome (SPEC §2): every record carries the credentials of the
process that wrote its bytes (``SCM_CREDENTIALS`` of the read), and
``conn_uid``/``conn_pid`` name who opened the connection when that differs.
Getting hold of root's connection does not let a user log as root.
"""

from __future__ import annotations

import array
import os
import socket

import pytest

from tests._daemon import DaemonProcess
from tests.attacks._helpers import (
    ATTACKER,
    Bystander,
    assert_contiguous,
    run_child,
    wait_records,
)
from tests.attacks.conftest import AttackRow

pytestmark = pytest.mark.usefixtures("as_root")


def test_fd_passed_to_another_uid(daemon: DaemonProcess, attack_report: AttackRow) -> None:
    """Root opens a connection and passes it (SCM_RIGHTS) to a process of the attacker's
    uid, which writes: the records are the attacker's, with conn_uid 0; root's own stay root's."""
    by = Bystander(daemon)
    by.send(10)
    here, there = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)

    def receiver() -> dict[str, int]:
        here.close()
        fds = array.array("i")
        _msg, anc, _flags, _addr = there.recvmsg(1, socket.CMSG_SPACE(fds.itemsize))
        fds.frombytes(anc[0][2][: fds.itemsize])
        conn = socket.socket(fileno=fds[0])
        conn.sendall(b"<13>app: I am root now\n<13>app: " + b"partial from the thief")
        return {"pid": os.getpid()}

    conn = daemon.connect()
    conn.sendall(b"<13>app: root before\n")
    pid = os.fork()
    if pid == 0:  # the receiving end runs as the attacker
        result = run_child(ATTACKER, receiver)
        os._exit(0 if result.rc == 0 and result.value else 1)
    there.close()
    here.sendmsg(
        [b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [conn.fileno()]))]
    )
    here.close()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    conn.sendall(b"<13>app: root after\n")
    conn.close()
    by.send(10)
    stolen = wait_records(daemon, ATTACKER, 2)
    mine = wait_records(daemon, 0, 2)
    lost = 4 - len(stolen) - len(mine) + by.lost()
    attack_report.report(
        "fd passing (SCM_RIGHTS) of root's connection to another uid",
        "records carry the writer's uid/pid and conn_uid 0/conn_pid of the opener",
        lost,
    )
    assert [(r["msg"], r.get("truncated", False)) for r in stolen] == [
        ("I am root now", False),
        ("partial from the thief", False),  # closed off when root wrote again
    ]
    for r in stolen:
        assert (r["uid"], r["gid"], r["conn_uid"], r["conn_pid"]) == (
            ATTACKER, ATTACKER, 0, os.getpid(),
        )  # fmt: skip
        assert r["pid"] not in (os.getpid(), pid)  # the grandchild: the writer itself
        assert "exe" not in r  # verified for the opener only
    assert [(r["msg"], r["pid"], "conn_uid" in r) for r in mine] == [
        ("root before", os.getpid(), False),
        ("root after", os.getpid(), False),
    ]
    assert_contiguous(daemon.records(ATTACKER))
    assert lost == 0
    by.assert_intact()


def test_fork_after_connect(daemon: DaemonProcess, attack_report: AttackRow) -> None:
    """The attacker connects, then a forked child writes on the inherited connection and the
    parent too: each record carries its writer's pid, the child's also conn_pid."""
    by = Bystander(daemon)
    by.send(10)

    def parent() -> dict[str, int]:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(daemon.socket)
        s.sendall(b"<13>app: parent 1\n")
        child = os.fork()
        if child == 0:
            s.sendall(b"<13>app: child\n")
            os._exit(0)
        os.waitpid(child, 0)
        s.sendall(b"<13>app: parent 2\n")
        s.close()
        return {"parent": os.getpid(), "child": child}

    got = run_child(ATTACKER, parent)
    assert got.rc == 0, got.err
    by.send(10)
    recs = wait_records(daemon, ATTACKER, 3)
    lost = 3 - len(recs) + by.lost()
    attack_report.report(
        "fork after connect (inherited connection)",
        "each record carries its writer's pid; the child's also conn_pid",
        lost,
    )
    p, c = got.value["parent"], got.value["child"]
    assert [(r["msg"], r["pid"], r.get("conn_pid")) for r in recs] == [
        ("parent 1", p, None),
        ("child", c, p),
        ("parent 2", p, None),
    ]
    assert {r["uid"] for r in recs} == {ATTACKER}
    assert "conn_uid" in recs[1]
    assert lost == 0
    by.assert_intact()
