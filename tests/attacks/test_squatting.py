"""Socket path squatting, and a stale socket left behind.

Defined outcome (SPEC §7, ``server/_sockets.py``, ``client/_connect.py``):
a socket path that answers belongs to someone: the daemon refuses to start
on it (exit 1, naming the pid and uid that serve it) and never unlinks it;
a path that refuses connections is stale and replaced atomically; a path
that is not a socket is refused. The client shim checks who serves the
socket (``SO_PEERCRED``): a server of a uid other than the expected daemon
uid or root gets nothing.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._daemon import DaemonProcess
from tests.attacks._helpers import ATTACKER, THIRD, Bystander, fork_as, run_child, wait_records
from tests.attacks.conftest import AttackRow, DaemonFactory
from trio_logd.client import LogdClient
from trio_logd.client._connect import PeerRefused, connect

pytestmark = pytest.mark.usefixtures("as_root")


class Squatter:
    """The attacker's process (not a daemon) listening on *path*; counts the bytes it gets."""

    def __init__(self, path: str) -> None:
        self.path = path
        r, w = os.pipe()
        self._stop_r, self._stop_w = os.pipe()

        def child() -> None:
            os.close(r)
            srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            srv.bind(path)
            os.chmod(path, 0o666)  # everyone may connect: it wants their records
            srv.listen(16)
            os.write(w, b"ready\n")
            got = 0
            conns: dict[int, socket.socket] = {}
            while True:
                ready, _, _ = select.select([srv.fileno(), self._stop_r, *conns], [], [])
                if self._stop_r in ready:
                    break
                if srv.fileno() in ready:
                    c = srv.accept()[0]
                    conns[c.fileno()] = c
                for fd in ready:
                    if fd in conns:
                        data = conns[fd].recv(65536)
                        got += len(data)
                        if not data:
                            conns.pop(fd).close()
            os.write(w, b"%d\n" % got)

        pid = fork_as(ATTACKER, child)
        os.close(w)
        self.pid = pid
        self._r = r
        self.got: int | None = None
        started, _, _ = select.select([r], [], [], 20)
        assert started, "squatter did not start"
        assert os.read(r, 64) == b"ready\n"

    def stop(self) -> int:
        """Stop listening (once); return how many bytes clients sent it."""
        if self.got is None:
            os.write(self._stop_w, b"x")
            with os.fdopen(self._r, "rb") as answer:
                self.got = int(answer.readline())
            os.waitpid(self.pid, 0)
        return self.got


@contextlib.contextmanager
def squatting(path: str) -> Iterator[Squatter]:
    s = Squatter(path)
    try:
        yield s
    finally:
        s.stop()


def _start_fails(d: DaemonProcess) -> tuple[int, str]:
    proc = subprocess.run(
        d.command("serve"), cwd=d.root, capture_output=True, text=True, timeout=30
    )
    return proc.returncode, proc.stderr


def test_squatted_socket_paths(
    start_daemon: DaemonFactory, root_dir: Path, attack_report: AttackRow
) -> None:
    """The attacker listens first on the ingest or the control path: the daemon refuses to start,
    names the squatter, and leaves its socket alone; a plain file there is refused too.
    Once the path is free again, the daemon starts and serves."""
    run = root_dir / "run"
    run.mkdir(mode=0o777)
    run.chmod(0o1777)  # a shared directory (like /tmp): anyone may create a socket there
    d = DaemonProcess(root_dir)
    outcomes = []
    for path in (d.socket, d.control):
        with squatting(path) as sq:
            rc, err = _start_fails(d)
            outcomes.append((rc, err.strip(), os.path.exists(path)))
            got = sq.stop()
            assert got == 0  # the daemon only probed it
        os.unlink(path)
    Path(d.socket).write_text("not a socket")
    rc, err = _start_fails(d)
    outcomes.append((rc, err.strip(), os.path.exists(d.socket)))
    os.unlink(d.socket)  # the operator removes the squatter
    by = Bystander(start_daemon())
    by.send(10)
    lost = by.lost()
    attack_report.report(
        "socket path squatting (ingest, control; a plain file)",
        "daemon refuses to start, names the squatter's pid and uid, leaves its socket",
        lost,
    )
    (rc1, err1, kept1), (rc2, err2, kept2), (rc3, err3, kept3) = outcomes
    assert (rc1, kept1) == (1, True)
    assert f"{d.socket}: in use by pid " in err1
    assert f"(uid {ATTACKER})" in err1
    assert (rc2, kept2) == (1, True)
    assert "already running (pid " in err2
    assert err2.endswith(f"answers (uid {ATTACKER})")
    assert (rc3, kept3) == (1, True)
    assert err3.endswith(f"{d.socket}: exists and is not a socket; refusing to replace it")
    assert "Traceback" not in err1 + err2 + err3
    assert lost == 0
    by.assert_intact()


def test_client_refuses_a_squatter(
    daemon: DaemonProcess, root_dir: Path, attack_report: AttackRow
) -> None:
    """A socket served by the attacker in a root-owned shared directory: the shim refuses it, and
    the squatter receives not one byte of the user's records (the real daemon serves on)."""
    by = Bystander(daemon)
    by.send(10)
    shared = root_dir / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    path = str(shared / "log.sock")
    with squatting(path) as sq:
        with pytest.raises(PeerRefused, match=rf"served by uid {ATTACKER} .* not sending"):
            connect(path)

        def app() -> dict[str, object]:  # another user's application, using the shim
            told: list[BaseException] = []
            client = LogdClient(path, timeout=1.0, on_error=told.append)
            try:
                delivered = client.send("secret password=hunter2")
            finally:
                client.close(timeout=0.1)
            return {"delivered": delivered, "told": [str(e) for e in told]}

        result = run_child(THIRD, app)
        got = sq.stop()
    by.send(10)
    lost = by.lost()
    attack_report.report(
        "client to a squatted socket (served by another user)",
        f"shim refuses (PeerRefused): the squatter received {got} bytes",
        lost,
    )
    assert result.rc == 0, result.err
    assert result.value["delivered"] is False
    (told,) = result.value["told"]
    assert told.startswith(f"{path}: served by uid {ATTACKER} (pid ")
    assert got == 0
    assert lost == 0
    by.assert_intact()


def test_stale_sockets_are_replaced(
    start_daemon: DaemonFactory, attack_report: AttackRow, root_dir: Path
) -> None:
    """Sockets left by a crashed daemon (nobody listening) are replaced; logging works."""
    (root_dir / "run").mkdir()
    for name in ("log.sock", "ctl.sock"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(str(root_dir / "run" / name))
        s.close()  # bound, never unlinked: stale
    daemon = start_daemon()
    by = Bystander(daemon)
    by.send(10)
    lost = by.lost()
    attack_report.report("stale sockets (a crashed daemon's)", "replaced atomically", lost)
    assert lost == 0
    by.assert_intact()
    assert wait_records(daemon, os.geteuid(), 1, where=lambda r: r.get("event") == "started")
