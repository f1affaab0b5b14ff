"""End to end: socket activation and sd_notify, as systemd does them for trio-logd.service."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from collections.abc import Callable

from tests._daemon import PYTHON, DaemonProcess, poll, world

ROOT = os.geteuid()

#: What systemd does between fork and exec: the passed socket as fd 3, and
#: LISTEN_PID set to the pid that will exec the daemon (so only a wrapper
#: that execs can know it).
WRAPPER = """\
import os, sys
for target, fd in enumerate(int(f) for f in sys.argv[1].split(",")):
    if fd != 3 + target:
        os.dup2(fd, 3 + target)
        os.close(fd)
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.executable, [sys.executable, "-m", "trio_logd", *sys.argv[2:]])
"""


def _listener(path: str) -> socket.socket:
    """Bind and listen as trio-logd.socket does (PassCredentials=yes)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    s.bind(path)
    os.chmod(path, 0o666)
    s.listen(16)
    return s


def _activate(
    d: DaemonProcess,
    sock: socket.socket,
    notify: str | None,
    names: str = "ingest",
    more: tuple[socket.socket, ...] = (),
) -> subprocess.Popen[bytes]:
    """Start the daemon with *sock* (and *more*) passed as fds 3, 4, … as systemd would."""
    fds = [s.fileno() for s in (sock, *more)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LISTEN_", "NOTIFY_"))}
    env.update(LISTEN_FDS=str(len(fds)), LISTEN_FDNAMES=names)
    if notify is not None:
        env["NOTIFY_SOCKET"] = notify
    with open(d.stderr_path, "ab") as err:
        return subprocess.Popen(
            [PYTHON, "-c", WRAPPER, ",".join(map(str, fds)), "serve", "--config", str(d.config)],
            pass_fds=fds, env=env, stdout=subprocess.DEVNULL, stderr=err, cwd=d.root,
        )  # fmt: skip


def _next(receiver: socket.socket, wanted: Callable[[list[str]], bool]) -> list[str]:
    """The next notification whose lines satisfy *wanted* (STATUS-only updates are skipped)."""
    while True:
        lines = receiver.recv(4096).decode().split("\n")  # the socket has a timeout
        if wanted(lines):
            return lines


def test_socket_activation_and_notifications() -> None:
    """An inherited ingest socket serves (a client queued before start included); READY,
    RELOADING+READY on SIGHUP and STOPPING reach NOTIFY_SOCKET; status names the daemon's pid."""
    with world() as root:
        d = DaemonProcess(root)
        sock = _listener(d.socket)
        notify_path = str(root / "notify.sock")
        receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        receiver.bind(notify_path)
        receiver.settimeout(20)
        early = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        early.connect(d.socket)  # waits in the backlog until the daemon accepts it
        early.sendall(b"<13>queued before the daemon started\n")
        try:
            d.proc = _activate(d, sock, notify_path)
            ready = _next(receiver, lambda lines: "READY=1" in lines)
            assert any(line.startswith("STATUS=") for line in ready)
            d.wait_ready()
            early.close()

            status = json.loads(
                subprocess.run(
                    d.command("status", "--json"), capture_output=True, text=True, timeout=30
                ).stdout
            )
            assert (status["pid"], status["sockets"]["socket"]) == (d.proc.pid, d.socket)
            assert status["sockets"]["control_socket"] == d.control  # bound by the daemon

            with d.connect() as late:
                late.sendall(b"<13>after start\n")
            recs = d.wait_records(ROOT, 2)
            assert [(r["msg"], r["uid"], r["pid"]) for r in recs] == [
                ("queued before the daemon started", ROOT, os.getpid()),
                ("after start", ROOT, os.getpid()),
            ]
            assert all("conn_uid" not in r for r in recs)

            d.proc.send_signal(signal.SIGHUP)
            reloading = _next(receiver, lambda lines: "RELOADING=1" in lines)
            assert reloading[0] == "RELOADING=1"
            assert reloading[1].startswith("MONOTONIC_USEC=")
            assert int(reloading[1].removeprefix("MONOTONIC_USEC=")) > 0
            _next(receiver, lambda lines: "READY=1" in lines)
            stats = subprocess.run(
                d.command("stats", "--json"), capture_output=True, text=True, timeout=30
            )
            assert json.loads(stats.stdout)["daemon"]["reloads"] == 1

            d.proc.send_signal(signal.SIGTERM)
            _next(receiver, lambda lines: "STOPPING=1" in lines)
            assert d.proc.wait(timeout=30) == 0, d.stderr()
            # the socket is systemd's: still there, still listening, for the next start
            assert os.path.exists(d.socket)
            assert not os.path.exists(d.control)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as again:
                again.connect(d.socket)
        finally:
            if d.proc is not None and d.proc.poll() is None:
                d.proc.kill()
                d.proc.wait()
            receiver.close()
            sock.close()


def test_socket_activation_refuses_a_socket_bound_elsewhere() -> None:
    """A passed socket at another path than [daemon] socket: exit 1, both paths named."""
    with world() as root:
        d = DaemonProcess(root)
        other = str(root / "run" / "other.sock")
        sock = _listener(other)
        try:
            proc = _activate(d, sock, None)
            assert proc.wait(timeout=30) == 1
        finally:
            sock.close()
        err = d.stderr()
        assert f"bound to '{other}' but [daemon] socket is '{d.socket}'" in err
        assert "Traceback" not in err
        assert not os.path.exists(d.control)


def test_listen_pid_of_another_process_is_ignored() -> None:
    """LISTEN_PID not ours (the fds were meant for a parent): the daemon binds its own socket."""
    with world() as root:
        d = DaemonProcess(root)
        env = {**os.environ, "LISTEN_PID": "1", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "ingest"}
        with open(d.stderr_path, "ab") as err:
            d.proc = subprocess.Popen(
                d.command("serve"), env=env, stdout=subprocess.DEVNULL, stderr=err, cwd=root
            )
        try:
            d.wait_ready()
            with d.connect() as s:
                s.sendall(b"<13>own socket\n")
            assert [r["msg"] for r in d.wait_records(ROOT, 1)] == ["own socket"]
        finally:
            assert d.stop() == 0
        poll(lambda: not os.path.exists(d.socket))  # its own socket: removed at exit


def test_datagram_socket_is_served_when_configured() -> None:
    """A passed datagram socket is adopted and served when [daemon] datagram_socket names it."""
    with world() as root:
        dgram_path = str(root / "run" / "dgram.sock")
        d = DaemonProcess(root, daemon_extra=f'datagram_socket = "{dgram_path}"')
        sock = _listener(d.socket)
        dgram = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        dgram.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        dgram.bind(dgram_path)
        try:
            d.proc = _activate(d, sock, None, names="ingest:datagram", more=(dgram,))
            d.wait_ready()
            out = subprocess.run(
                d.command("status", "--json"), capture_output=True, text=True, timeout=30
            )
            assert json.loads(out.stdout)["sockets"]["datagram_socket"] == dgram_path
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as client:
                client.sendto(b"<13>through systemd's socket", dgram_path)
            (rec,) = d.wait_records(ROOT, 1)
            assert (rec["msg"], rec["pid"], rec["uid"]) == (
                "through systemd's socket", os.getpid(), ROOT,
            )  # fmt: skip
            assert d.stop() == 0
            assert os.path.exists(dgram_path)  # systemd's: never unlinked
        finally:
            if d.proc is not None and d.proc.poll() is None:
                d.proc.kill()
                d.proc.wait()
            sock.close()
            dgram.close()


def test_datagram_socket_without_config_is_refused() -> None:
    """A datagram socket passed while [daemon] datagram_socket is off: exit 1, say what to set."""
    with world() as root:
        d = DaemonProcess(root)
        sock = _listener(d.socket)
        dgram = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        dgram.bind(str(root / "run" / "dgram.sock"))
        try:
            proc = _activate(d, sock, None, names="trio-logd.socket:x.socket", more=(dgram,))
            assert proc.wait(timeout=30) == 1
        finally:
            sock.close()
            dgram.close()
        assert "fd 4 (x.socket) is a datagram socket but [daemon] datagram_socket" in d.stderr()
