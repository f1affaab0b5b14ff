"""End to end: the datagram socket with real syslog clients of other uids.

``logger -u`` in datagram mode, Python's ``SysLogHandler`` with its default
datagram type, and glibc's ``syslog(3)`` itself: glibc always sends to
``/dev/log``, so its test runs in a private mount namespace whose ``/dev/log``
is a symlink to the daemon's socket (needs root, as the other-uid tests do).
"""

from __future__ import annotations

import array
import contextlib
import ctypes
import logging
import logging.handlers
import os
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests._daemon import DaemonProcess, run_as, world

ROOT = os.geteuid()
NOBODY = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: forks other uids")
needs_logger = pytest.mark.skipif(
    shutil.which("logger") is None, reason="util-linux logger missing"
)

#: from <sched.h> and <sys/mount.h>
CLONE_NEWNS = 0x00020000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18


@pytest.fixture
def dgram_daemon() -> Iterator[DaemonProcess]:
    """A running daemon with ``[daemon] datagram_socket`` on, stopped with SIGTERM (exit 0)."""
    with world() as root:
        path = root / "run" / "dgram.sock"
        d = DaemonProcess(root, daemon_extra=f'datagram_socket = "{path}"').start()
        d.dgram = str(path)  # type: ignore[attr-defined]
        try:
            yield d
        finally:
            if d.proc is not None and d.proc.poll() is None:
                assert d.stop() == 0, d.stderr()


def _path(d: DaemonProcess) -> str:
    return str(d.dgram)  # type: ignore[attr-defined]


def _as_nobody(fn: Callable[[], int]) -> int:
    """Run *fn* in a child as uid/gid 65534; return the pid it reports."""
    r, w = os.pipe()

    def report() -> None:
        os.write(w, b"%d" % fn())

    try:
        run_as(NOBODY, NOBODY, report)
        return int(os.read(r, 20))
    finally:
        os.close(r)
        os.close(w)


@needs_logger
@needs_root
def test_logger_datagram_mode_lands_with_the_senders_identity(dgram_daemon: DaemonProcess) -> None:
    """`logger -u DGRAM_SOCKET` (it tries SOCK_DGRAM first) run by uid 65534: its uid/gid/pid."""

    def child() -> int:
        p = subprocess.Popen(["logger", "-u", _path(dgram_daemon), "-t", "dgtag", "via logger"])
        assert p.wait() == 0
        return p.pid

    logger_pid = _as_nobody(child)
    (rec,) = dgram_daemon.wait_records(NOBODY, 1)
    assert (rec["uid"], rec["gid"], rec["pid"]) == (NOBODY, NOBODY, logger_pid)
    assert (rec["app"], rec["msg"], rec["fac"], rec["sev"]) == (
        "dgtag", "via logger", "user", "notice",
    )  # fmt: skip
    assert "conn_uid" not in rec
    assert "exe" not in rec  # a datagram has no pidfd: exe/comm are left out, never guessed


@needs_root
def test_syslog_handler_default_datagram_lands_with_the_senders_identity(
    dgram_daemon: DaemonProcess,
) -> None:
    """SysLogHandler(address=DGRAM_SOCKET), default socktype, run by uid 65534."""

    def child() -> int:
        handler = logging.handlers.SysLogHandler(address=_path(dgram_daemon))
        assert handler.socktype == socket.SOCK_DGRAM
        handler.ident = "pyapp: "
        log = logging.getLogger("dgram-e2e")
        log.addHandler(handler)
        log.warning("handler says %s", "hi")  # its datagram ends with NUL
        handler.close()
        return os.getpid()

    child_pid = _as_nobody(child)
    (rec,) = dgram_daemon.wait_records(NOBODY, 1)
    assert (rec["uid"], rec["gid"], rec["pid"]) == (NOBODY, NOBODY, child_pid)
    assert (rec["app"], rec["msg"], rec["sev"]) == ("pyapp", "handler says hi", "warning")


@needs_root
def test_glibc_syslog_unchanged_lands_with_the_senders_identity(
    dgram_daemon: DaemonProcess,
) -> None:
    """glibc openlog()/syslog() to /dev/log (here: the daemon's socket), run by uid 65534."""
    libc = ctypes.CDLL(None, use_errno=True)
    r, w = os.pipe()

    def child() -> None:
        # a private mount namespace: /dev is a fresh tmpfs whose log is our socket
        if libc.unshare(CLONE_NEWNS) != 0:
            os.write(w, b"skip unshare: " + os.strerror(ctypes.get_errno()).encode())
            return
        if libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0:
            os.write(w, b"skip private mounts: " + os.strerror(ctypes.get_errno()).encode())
            return
        if libc.mount(b"tmpfs", b"/dev", b"tmpfs", 0, b"mode=0755") != 0:
            os.write(w, b"skip tmpfs on /dev: " + os.strerror(ctypes.get_errno()).encode())
            return
        os.symlink(_path(dgram_daemon), "/dev/log")
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
        libc.openlog(b"glibcapp", 0x01, 3 << 3)  # LOG_PID, LOG_DAEMON
        libc.syslog(3, b"%s %d", b"glibc says", ctypes.c_int(42))  # LOG_ERR
        os.write(w, b"pid %d" % os.getpid())

    run_as(0, 0, child)  # root in the child for the mounts; it drops to nobody itself
    said = os.read(r, 200).decode()
    os.close(r)
    os.close(w)
    if said.startswith("skip"):
        pytest.skip(f"no private mount namespace here ({said[5:]})")
    (rec,) = dgram_daemon.wait_records(NOBODY, 1)
    assert (rec["uid"], rec["gid"], rec["pid"]) == (NOBODY, NOBODY, int(said.split()[1]))
    assert (rec["app"], rec["msg"], rec["fac"], rec["sev"]) == (
        "glibcapp", "glibc says 42", "daemon", "err",
    )  # fmt: skip
    assert "claimed_pid" not in rec  # glibc's [PID] is the kernel's pid


def test_datagram_socket_is_removed_at_exit_and_not_taken_from_another() -> None:
    """The daemon unlinks its own datagram socket at exit, and refuses to start on a path
    that another process's datagram socket serves (it never hijacks a /dev/log)."""
    with world() as root:
        path = root / "run" / "dgram.sock"
        d = DaemonProcess(root, daemon_extra=f'datagram_socket = "{path}"')
        with d:
            assert path.is_socket()
            status = subprocess.run(d.command("status", "--json"), capture_output=True, text=True)
            assert f'"datagram_socket": "{path}"' in status.stdout
        assert not path.exists()
        other = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        other.bind(str(path))
        try:
            d.start(wait=False)
            assert d.proc is not None
            assert d.proc.wait(timeout=30) == 1
            assert "a datagram socket another process serves" in d.stderr()
            assert "Traceback" not in d.stderr()
            assert path.is_socket()  # left alone: not ours
        finally:
            other.close()


def test_fds_on_datagrams_never_grow_the_daemons_fd_table(
    dgram_daemon: DaemonProcess, tmp_path: Path
) -> None:
    """Many datagrams with fds attached: none of them stays in the daemon; records land."""
    assert dgram_daemon.proc is not None
    table = f"/proc/{dgram_daemon.proc.pid}/fd"
    marker = tmp_path / "passed-file"
    marker.touch()

    def passed() -> int:  # the daemon's fds that are ours (its own come and go)
        n = 0
        for fd in os.listdir(table):
            with contextlib.suppress(OSError):
                n += os.readlink(f"{table}/{fd}") == str(marker)
        return n

    fds = [os.open(marker, os.O_RDONLY) for _ in range(100)]
    rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
    refused = 0
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            for i in range(50):
                try:
                    s.sendmsg([b"<13>fds %d" % i], rights, 0, _path(dgram_daemon))
                except PermissionError:  # SO_PASSRIGHTS off (Linux 6.16): refused
                    refused += 1
                s.sendto(b"<13>plain %d" % i, _path(dgram_daemon))
    finally:
        for fd in fds:
            os.close(fd)
    assert refused in (0, 50)
    recs = dgram_daemon.wait_records(ROOT, 100 - refused)
    assert passed() == 0
    assert sorted(r["msg"] for r in recs if r["msg"].startswith("plain")) == sorted(
        f"plain {i}" for i in range(50)
    )
    assert not any("label" in r for r in recs)  # no LSM here: no label, never an empty one
