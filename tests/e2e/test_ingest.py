"""End to end: a real daemon, real clients, records stamped by the kernel."""

from __future__ import annotations

import logging
import logging.handlers
import os
import re
import shutil
import socket
import subprocess
import sys

import pytest

from tests._daemon import DaemonProcess, run_as
from tests._uids import free_uids

ROOT = os.geteuid()
needs_logger = pytest.mark.skipif(
    shutil.which("logger") is None, reason="util-linux logger missing"
)

#: A uid (and gid) without a passwd or group entry, found free on this host.
(FREE,) = free_uids(1)

TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


@needs_logger
def test_logger_lf_is_stamped_with_kernel_credentials(daemon: DaemonProcess) -> None:
    """`logger -u SOCK` (LF framing): uid/gid/pid from the kernel, exe and comm verified."""
    p = subprocess.Popen(["logger", "-u", daemon.socket, "-t", "mytag", "hello world"])
    assert p.wait() == 0
    (rec,) = daemon.wait_records(ROOT, 1)
    assert rec["uid"] == ROOT
    assert rec["gid"] == os.getegid()
    assert rec["pid"] == p.pid
    # logger may have exited before the daemon looked: then exe/comm are left
    # out (never guessed); when present they must be logger's.
    assert rec.get("exe", "/usr/bin/logger") == os.path.realpath(shutil.which("logger") or "")
    assert rec.get("comm", "logger") == "logger"
    assert rec["app"] == "mytag"
    assert rec["msg"] == "hello world"
    assert (rec["fac"], rec["sev"]) == ("user", "notice")
    assert TS_RE.match(rec["ts"])
    assert isinstance(rec["seq"], int)
    assert "conn_uid" not in rec


@needs_logger
def test_logger_octet_counted_rfc5424(daemon: DaemonProcess) -> None:
    """`logger --octet-count --rfc5424` frames are parsed as RFC 5424."""
    p = subprocess.Popen(
        [
            "logger", "-u", daemon.socket, "--octet-count", "--rfc5424", "-p", "local3.err",
            "-t", "app5424", "--msgid", "ID47", "first",
        ]
    )  # fmt: skip
    assert p.wait() == 0
    (rec,) = daemon.wait_records(ROOT, 1)
    assert (rec["fac"], rec["sev"], rec["app"], rec["msgid"], rec["msg"]) == (
        "local3", "err", "app5424", "ID47", "first",
    )  # fmt: skip
    assert rec["pid"] == p.pid
    assert "timeQuality" in rec["fields"]


def test_live_client_gets_verified_exe_and_comm(daemon: DaemonProcess) -> None:
    """A client that is still alive at accept gets exe and comm read through a pidfd."""
    s = daemon.connect()
    s.sendall(b"<13>still here\n")
    (rec,) = daemon.wait_records(ROOT, 1)
    s.close()
    with open("/proc/self/comm") as f:
        comm = f.read().strip()
    assert (rec["exe"], rec["comm"]) == (os.path.realpath(sys.executable), comm)


def test_syslog_handler_stream(daemon: DaemonProcess) -> None:
    """Python's SysLogHandler over SOCK_STREAM (NUL framing) lands with our pid."""
    handler = logging.handlers.SysLogHandler(address=daemon.socket, socktype=socket.SOCK_STREAM)
    handler.ident = "pyapp: "
    logger = logging.getLogger("test_syslog_handler_stream")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        logger.warning("one")
        logger.error("two")
    finally:
        logger.removeHandler(handler)
        handler.close()
    recs = daemon.wait_records(ROOT, 2)
    assert [(r["sev"], r["app"], r["msg"], r["pid"]) for r in recs] == [
        ("warning", "pyapp", "one", os.getpid()),
        ("err", "pyapp", "two", os.getpid()),
    ]


@pytest.mark.usefixtures("as_root")
@pytest.mark.parametrize(("uid", "gid"), [(FREE, FREE), (65534, 65534)])
def test_other_uid_child_is_stamped_with_its_uid(daemon: DaemonProcess, uid: int, gid: int) -> None:
    """A forked child that setuid's to another uid gets that uid, gid and its own pid."""
    pids: list[int] = []
    r, w = os.pipe()

    def child() -> None:
        os.close(r)
        os.write(w, str(os.getpid()).encode())
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(daemon.socket)
        s.sendall(b"<13>child says hi\n")
        s.close()

    run_as(uid, gid, child)
    os.close(w)
    pids.append(int(os.read(r, 64)))
    os.close(r)
    (rec,) = daemon.wait_records(uid, 1)
    assert (rec["uid"], rec["gid"], rec["pid"], rec["msg"]) == (uid, gid, pids[0], "child says hi")
    assert not (daemon.log_dir / str(ROOT) / "current.jsonl").exists() or all(
        r.get("msg") != "child says hi" for r in daemon.records(ROOT)
    )


@pytest.mark.usefixtures("as_root")
def test_inherited_connection_carries_writer_identity(daemon: DaemonProcess) -> None:
    """Opened by root, written by a child that dropped to a free uid: that uid, conn_uid 0."""
    s = daemon.connect()
    s.sendall(b"<13>from the parent\n")
    parent = os.getpid()
    child_pid = os.fork()
    if child_pid == 0:
        code = 1
        try:
            os.setgroups([])
            os.setgid(FREE)
            os.setuid(FREE)
            s.sendall(b"<13>from the child\n")
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(child_pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    s.sendall(b"<13>parent again\n")
    s.close()
    (child_rec,) = daemon.wait_records(FREE, 1)
    assert (child_rec["uid"], child_rec["gid"], child_rec["pid"]) == (FREE, FREE, child_pid)
    assert (child_rec["conn_uid"], child_rec["conn_pid"]) == (0, parent)
    assert child_rec["msg"] == "from the child"
    assert "exe" not in child_rec  # verified for the connection's peer only
    root_recs = daemon.wait_records(ROOT, 2)
    assert [(r["msg"], r["pid"], "conn_uid" in r) for r in root_recs] == [
        ("from the parent", parent, False),
        ("parent again", parent, False),
    ]


@pytest.mark.usefixtures("as_root")
def test_partial_frame_is_closed_off_when_the_writer_changes(daemon: DaemonProcess) -> None:
    """A partial frame left by one writer is filed under that writer, not glued to the next."""
    s = daemon.connect()
    s.sendall(b"<13>parent partial no newline")
    child_pid = os.fork()
    if child_pid == 0:
        code = 1
        try:
            os.setgroups([])
            os.setgid(FREE)
            os.setuid(FREE)
            s.sendall(b"<13>child line\n")
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(child_pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    s.close()
    (child_rec,) = daemon.wait_records(FREE, 1)
    assert child_rec["msg"] == "child line"
    (parent_rec,) = daemon.wait_records(ROOT, 1)
    assert parent_rec["msg"] == "parent partial no newline"
    assert parent_rec["pid"] == os.getpid()


def test_forged_headers_stay_claims(daemon: DaemonProcess) -> None:
    """Forged pid/host/app/uid in 5424, 3164 and @cee never change a trusted field."""
    s = daemon.connect()
    s.sendall(
        b"<0>1 2020-01-01T00:00:00Z otherhost sshd 1 - - forged 5424\n"
        b"<0>sshd[1]: Accepted password for root\n"
        b'<13>@cee: {"uid": 0, "pid": 1, "ts": "1999-01-01", "seq": 1, "msg": "cee forged"}\n'
        b'<13>line one\n{"ts":"x","seq":1,"uid":0,"pid":1,"msg":"injected"}\n'
    )
    s.close()
    recs = daemon.wait_records(ROOT, 5)
    me = os.getpid()
    for r in recs:
        assert (r["uid"], r["pid"]) == (ROOT, me)
        assert TS_RE.match(r["ts"])
    r5424, r3164, rcee, rline, rinj = recs
    assert (r5424["host"], r5424["app"], r5424["claimed_pid"], r5424["claimed_ts"]) == (
        "otherhost", "sshd", 1, "2020-01-01T00:00:00Z",
    )  # fmt: skip
    assert (r3164["app"], r3164["claimed_pid"], r3164["sev"], r3164["fac"]) == (
        "sshd", 1, "emerg", "kern",
    )  # fmt: skip
    assert rcee["fields"] == {"uid": 0, "pid": 1, "ts": "1999-01-01", "seq": 1}
    assert rcee["msg"] == "cee forged"
    assert rline["msg"] == "line one"
    # the would-be JSON record is just the text of a record of ours
    assert rinj["msg"] == '{"ts":"x","seq":1,"uid":0,"pid":1,"msg":"injected"}'
    seqs = [r["seq"] for r in recs]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == 5


def test_every_message_is_exactly_one_line(daemon: DaemonProcess) -> None:
    """CR, ESC, invalid UTF-8 and a fake JSON record inside one octet-counted frame: one line."""
    payload = b'<13>a\rb\x1b[31mred\x00nul\xff\xfe {"uid":0}\n{"seq":1}'
    s = daemon.connect()
    s.sendall(b"%d %s" % (len(payload), payload))
    s.close()
    (rec,) = daemon.wait_records(ROOT, 1)
    assert rec["msg"] == 'a\rb\x1b[31mred\x00nul\ufffd\ufffd {"uid":0}\n{"seq":1}'
    raw = (daemon.log_dir / str(ROOT) / "current.jsonl").read_bytes()
    assert raw.count(b"\n") == len(daemon.records(ROOT))


def test_oversized_frame_is_truncated_and_framing_stays_in_step(tmp_path: object) -> None:
    """A frame over max_message_bytes is stored cut and marked; the next frame is intact."""
    from tests._daemon import world

    with world() as root, DaemonProcess(root, daemon_extra="max_message_bytes = 1024") as d:
        s = d.connect()
        s.sendall(b"<13>" + b"x" * 5000 + b"\n<13>after\n")
        s.close()
        big, after = d.wait_records(ROOT, 2)
        assert big["truncated"] is True
        assert len(big["msg"]) == 1024 - 4
        assert after["msg"] == "after"
        assert "truncated" not in after


def test_lying_octet_count_closes_connection_with_protocol_error(daemon: DaemonProcess) -> None:
    """A bad octet count stores the good frames, files one protocol_error, and closes."""
    s = daemon.connect()
    s.sendall(b"<13>good one\n12x <13>bad\n<13>never\n")
    s.settimeout(10)
    assert s.recv(10) == b""  # the daemon closed the connection
    s.close()
    recs = daemon.wait_records(ROOT, 1, where=lambda r: r.get("event") == "protocol_error")
    (err,) = recs
    assert err["conn_uid"] == ROOT
    assert err["conn_pid"] == os.getpid()
    assert err["pid"] == daemon.pid
    assert err["count"] == 1
    assert "12x" in err["excerpt"]
    msgs = [r["msg"] for r in daemon.records(ROOT) if "event" not in r]
    assert msgs == ["good one"]


def test_another_client_is_unaffected_by_a_protocol_error(daemon: DaemonProcess) -> None:
    """One connection's bad framing never costs another connection its records."""
    good = daemon.connect()
    good.sendall(b"<13>good before\n")
    bad = daemon.connect()
    bad.sendall(b"99999999999 x")
    good.sendall(b"<13>good after\n")
    good.close()
    bad.close()
    msgs = [r["msg"] for r in daemon.wait_records(ROOT, 2)]
    assert msgs == ["good before", "good after"]


def test_seq_is_contiguous_per_uid(daemon: DaemonProcess) -> None:
    """Records of one uid get strictly increasing seq with no gap."""
    conns = [daemon.connect() for _ in range(4)]
    for i in range(50):
        for k, c in enumerate(conns):
            c.sendall(b"<13>c%d m%d\n" % (k, i))
    for c in conns:
        c.close()
    recs = daemon.wait_records(ROOT, 200)
    seqs = [r["seq"] for r in daemon.records(ROOT)]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert len(recs) == 200
