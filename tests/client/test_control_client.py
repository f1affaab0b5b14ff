"""The control client's handshake: it waits for the greeting before sending a byte.

A socket that does not greet (the ingest socket, anything else) gets nothing
and is reported as not a control socket within the timeout; a refusal line
becomes ``ControlRefused``; a full backlog becomes ``DaemonBusy``.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from trio_logd.control_client import ControlConnection, request_one
from trio_logd.errors import ControlRefused, DaemonBusy, NotControlSocket
from trio_logd.protocol.control import GREETING


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[socket.socket]:
    """A listening Unix stream socket that serves nobody unless the test says so."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(tmp_path / "sock"))
    s.listen(8)
    yield s
    s.close()


def _serve_once(listener: socket.socket, first: bytes) -> tuple[threading.Thread, list[bytes]]:
    """Accept one connection, write *first*, and keep what the client sends (in the list)."""
    got: list[bytes] = []

    def run() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.sendall(first)
            conn.settimeout(5)
            try:
                while data := conn.recv(4096):
                    got.append(data)
            except OSError:
                pass

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, got


def test_silent_socket_is_not_a_control_socket(listener: socket.socket) -> None:
    """A socket that never speaks: NotControlSocket after the timeout, and nothing sent."""
    path = listener.getsockname()
    start = time.monotonic()
    with pytest.raises(NotControlSocket) as info:
        ControlConnection(path, timeout=0.3)
    assert 0.3 <= time.monotonic() - start < 2.0
    assert str(info.value) == (
        f"{path} is not a trio-logd control socket (no greeting within 0.3 s), "
        "or its daemon is stuck; nothing was sent to it"
    )
    conn, _ = listener.accept()
    with conn:
        conn.settimeout(1)
        assert conn.recv(4096) == b""  # the client sent nothing and closed


def test_garbage_first_line_is_not_a_control_socket(listener: socket.socket) -> None:
    """A server whose first line is not the greeting: NotControlSocket naming what it said."""
    t, got = _serve_once(listener, b"220 smtp ready\n")
    with pytest.raises(NotControlSocket, match="its first line was b'220 smtp ready'"):
        ControlConnection(listener.getsockname(), timeout=2)
    t.join(5)
    assert got == []


def test_refusal_line_becomes_control_refused(listener: socket.socket) -> None:
    """The daemon's one-line refusal is raised with its code and limit, as one message."""
    line = (
        b'{"type":"error","code":"too_many_connections","limit":"max_connections_per_uid",'
        b'"error":"too many control connections of uid 5"}\n'
    )
    t, _got = _serve_once(listener, line)
    path = listener.getsockname()
    with pytest.raises(ControlRefused) as info:
        request_one(path, "status", timeout=2)
    assert (info.value.code, info.value.limit) == (
        "too_many_connections",
        "max_connections_per_uid",
    )
    assert str(info.value) == (
        f"{path}: the daemon refused the connection: too many control connections of uid 5"
    )
    t.join(5)


def test_greeted_client_sends_its_request(listener: socket.socket) -> None:
    """After the greeting the request goes out; the first answer line is returned."""
    got: list[bytes] = []

    def run() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.sendall(GREETING)
            got.append(conn.recv(4096))
            conn.sendall(b'{"type":"ok","pid":1}\n')

    t = threading.Thread(target=run, daemon=True)
    t.start()
    reply = request_one(listener.getsockname(), "status", timeout=2)
    t.join(5)
    assert got == [b'{"op":"status"}\n']
    assert {k: v for k, v in reply.items() if k != "_server"} == {"type": "ok", "pid": 1}


def test_full_backlog_is_daemon_busy(tmp_path: Path) -> None:
    """A listener that never accepts and whose backlog is full: DaemonBusy within the timeout."""
    path = str(tmp_path / "busy")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(path)
        s.listen(0)
        queued = []
        while True:  # fill the backlog (Linux queues backlog + 1)
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
            try:
                c.connect(path)
            except BlockingIOError:
                c.close()
                break
            queued.append(c)
        start = time.monotonic()
        try:
            with pytest.raises(DaemonBusy, match=r"backlog stayed full for 0\.3 s"):
                ControlConnection(path, timeout=0.3)
            assert 0.25 <= time.monotonic() - start < 2.0
        finally:
            for c in queued:
                c.close()
