"""systemd without libsystemd: $LISTEN_* parsing, checks of passed sockets, sd_notify."""

from __future__ import annotations

import os
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from trio_logd.errors import LogdError
from trio_logd.peer import SO_PASSRIGHTS, SO_PASSSEC
from trio_logd.server import _sockets
from trio_logd.server._systemd import Notifier, _adopt, listen_fds, watchdog_interval


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a path short enough for sockaddr_un."""
    with tempfile.TemporaryDirectory(prefix="sd-") as d:
        yield Path(d)


def test_listen_fds_with_names_and_environment_cleared() -> None:
    """Our LISTEN_PID: fds from 3 with their names; the variables are removed."""
    env = {"LISTEN_PID": "77", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "ingest:datagram", "X": "1"}
    assert listen_fds(env, pid=77) == [(3, "ingest"), (4, "datagram")]
    assert env == {"X": "1"}


@pytest.mark.parametrize(
    "env",
    [
        {"LISTEN_PID": "78", "LISTEN_FDS": "1"},  # meant for another process
        {"LISTEN_FDS": "1"},
        {"LISTEN_PID": "77", "LISTEN_FDS": "one"},
        {"LISTEN_PID": "-77", "LISTEN_FDS": "1"},
        {},
    ],
)
def test_listen_fds_not_for_us(env: dict[str, str]) -> None:
    """A LISTEN_PID other than ours, or malformed variables: no fds, variables still removed."""
    assert listen_fds(env, pid=77) == []
    assert env == {}


def test_listen_fds_names_missing_or_miscounted_are_unknown() -> None:
    """Without a name per fd, every fd is named "unknown", as systemd does."""
    env = {"LISTEN_PID": "5", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "ingest"}
    assert listen_fds(env, pid=5) == [(3, "unknown"), (4, "unknown")]


def _listening(path: Path, kind: int = socket.SOCK_STREAM, passcred: bool = True) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, kind)
    if passcred:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    s.bind(str(path))
    if kind == socket.SOCK_STREAM:
        s.listen()
    return s


def test_adopt_checks_and_sets_passcred(short_dir: Path) -> None:
    """A listening AF_UNIX stream socket at the configured path is adopted with SO_PASSCRED on."""
    path = short_dir / "log.sock"
    s = _listening(path, passcred=False)
    fd = os.dup(s.fileno())
    s.close()
    bound = _adopt(fd, "ingest", kind=socket.SOCK_STREAM, path=str(path), key="socket")
    try:
        assert bound.path == str(path)
        assert bound.inode == path.stat().st_ino
        assert bound.sock.getsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED) == 1
        assert not os.get_inheritable(fd)
    finally:
        bound.sock.close()


def test_adopt_refuses_fds_and_asks_for_labels_on_a_datagram_socket(
    short_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A passed datagram socket gets SO_PASSRIGHTS off, then SO_PASSSEC on (Linux >= 6.16,
    a kernel with an LSM that labels sockets: pretended here)."""
    monkeypatch.setattr(_sockets, "lsm_labels", lambda: True)
    path = short_dir / "d.sock"
    s = _listening(path, socket.SOCK_DGRAM)
    bound = _adopt(s.fileno(), "datagram", kind=socket.SOCK_DGRAM, path=str(path), key="x")
    try:
        try:
            refused = not s.getsockopt(socket.SOL_SOCKET, SO_PASSRIGHTS)
        except OSError:
            pytest.skip("no SO_PASSRIGHTS (Linux < 6.16): the socket is left as it was")
        assert refused
        assert s.getsockopt(socket.SOL_SOCKET, SO_PASSSEC) == 1
    finally:
        bound.sock.detach()
        s.close()


def test_adopt_warns_when_passcred_was_off(short_dir: Path) -> None:
    """A socket unit without PassCredentials=yes is reported: queued bytes lack credentials."""
    path = short_dir / "log.sock"
    s = _listening(path, passcred=False)
    with capture_logs() as logs:
        bound = _adopt(s.fileno(), "ingest", kind=socket.SOCK_STREAM, path=str(path), key="socket")
    bound.sock.detach()
    s.close()
    assert [e["event"] for e in logs] == ["passcred_was_off"]
    assert "PassCredentials=yes" in logs[0]["hint"]


def _refusal(fd: int, path: Path, kind: int = socket.SOCK_STREAM) -> str:
    with pytest.raises(LogdError) as info:
        _adopt(fd, "ingest", kind=kind, path=str(path), key="socket")
    return str(info.value)


def test_adopt_refuses_wrong_path_type_and_state(short_dir: Path) -> None:
    """Bound elsewhere, a datagram socket, a non-listening socket, a pipe: each refused, named."""
    s = _listening(short_dir / "a.sock")
    try:
        msg = _refusal(s.fileno(), short_dir / "b.sock")
        assert f"bound to '{short_dir / 'a.sock'}'" in msg
        assert f"[daemon] socket is '{short_dir / 'b.sock'}'" in msg
    finally:
        s.close()
    d = _listening(short_dir / "d.sock", socket.SOCK_DGRAM)
    try:
        assert (
            "expected an AF_UNIX SOCK_STREAM socket for [daemon] socket, got AF_UNIX SOCK_DGRAM"
            in (_refusal(d.fileno(), short_dir / "d.sock"))
        )
    finally:
        d.close()
    u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    u.bind(str(short_dir / "u.sock"))
    try:
        assert "expected a listening socket" in _refusal(u.fileno(), short_dir / "u.sock")
    finally:
        u.close()
    r, w = os.pipe()
    try:
        assert f"fd {r} (ingest): expected a socket" in _refusal(r, short_dir / "u.sock")
    finally:
        os.close(r)
        os.close(w)
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    t.bind(("127.0.0.1", 0))
    t.listen()
    try:
        assert "got AF_INET SOCK_STREAM" in _refusal(t.fileno(), short_dir / "u.sock")
    finally:
        t.close()


def test_notifier_sends_one_datagram_per_message(short_dir: Path) -> None:
    """READY=1 (+STATUS), RELOADING=1 with MONOTONIC_USEC, STOPPING=1 arrive on NOTIFY_SOCKET."""
    path = short_dir / "notify"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(path))
    receiver.settimeout(5)
    env = {"NOTIFY_SOCKET": str(path)}
    n = Notifier.from_environ(env)
    assert env == {}
    try:
        assert n.ready(status="serving")
        assert receiver.recv(4096) == b"READY=1\nSTATUS=serving"
        assert n.reloading()
        lines = receiver.recv(4096).decode().split("\n")
        assert lines[0] == "RELOADING=1"
        assert lines[1].startswith("MONOTONIC_USEC=")
        usec = int(lines[1].removeprefix("MONOTONIC_USEC="))
        now = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        assert 0 <= now - usec < 5_000_000
        assert n.stopping()
        assert receiver.recv(4096) == b"STOPPING=1\nSTATUS=stopping"
    finally:
        n.close()
        receiver.close()


def test_notifier_abstract_socket() -> None:
    """A NOTIFY_SOCKET starting with @ names the abstract namespace."""
    name = f"trio-logd-test-{os.getpid()}"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind("\0" + name)
    receiver.settimeout(5)
    n = Notifier("@" + name)
    try:
        assert n.watchdog()
        assert receiver.recv(100) == b"WATCHDOG=1"
    finally:
        n.close()
        receiver.close()


def test_notifier_without_socket_or_with_a_dead_one_never_raises(short_dir: Path) -> None:
    """No NOTIFY_SOCKET: nothing sent; a socket nobody reads any more: False, no exception."""
    assert not Notifier.from_environ({}).ready()
    n = Notifier(str(short_dir / "gone"))
    assert n.enabled
    assert not n.ready()
    assert not n.stopping()
    n.close()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "60000000"}, 30.0),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "9"}, 30.0),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "10"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    """Half of WATCHDOG_USEC, only when WATCHDOG_PID (if set) is ours."""
    assert watchdog_interval(env, pid=9) == expected
