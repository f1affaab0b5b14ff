"""A small synchronous client of the control socket, for the CLIs.

It sends one request and yields the response lines (see
``trio_logd.protocol.control`` for the protocol). Before sending, it checks
with ``SO_PEERCRED`` who serves the socket, by the rule the client shim uses
for the ingest socket (``client.check_server``: root, or the owner of
the socket's directory, or ``expected_uid``, or our own uid), so that whoever squats the path
can neither read a query nor feed ``logq`` records of its own making.

The handshake has one deadline (the client's timeout, at most
:data:`HANDSHAKE_TIMEOUT`): the connect waits in
the kernel while the daemon's listen backlog is full (``SO_SNDTIMEO``), and
then the client waits for the server's greeting before it sends a byte. A
socket that does not greet (the ingest socket, anything else) gets nothing
from us and is reported as not a control socket; a daemon that refuses the
connection over a limit answers with one ``error`` line instead, which is
raised as :class:`~trio_logd.errors.ControlRefused`.
"""

from __future__ import annotations

import errno
import socket
import struct
import time
from collections.abc import Iterator
from typing import Any, Final

from trio_logd.client import check_server
from trio_logd.errors import (
    ConnectFailed,
    ControlRefused,
    DaemonBusy,
    NotControlSocket,
    ParseError,
    excerpt,
)
from trio_logd.peer import PeerCred, read_peer_cred
from trio_logd.protocol.control import (
    NEED_DATA,
    LineReader,
    decode_response,
    encode_request,
    is_greeting,
)

__all__ = ["HANDSHAKE_TIMEOUT", "ControlConnection", "request_one"]

#: Seconds to connect and be greeted, at most (``logq -f`` waits for ever
#: for records, but not for a socket that never greets). The daemon greets
#: as soon as it accepts, and accepting never waits on other clients.
HANDSHAKE_TIMEOUT: Final = 5.0
#: ``struct timeval`` for ``SO_SNDTIMEO``.
_TIMEVAL: Final = struct.Struct("@ll")


class ControlConnection:
    """One request on the control socket.

    Args:
        path: the control socket.
        timeout: seconds for the handshake (connect and greeting; at most
            :data:`HANDSHAKE_TIMEOUT`) and for each read (``None``: reads wait
            for ever, for follow streams).
        expected_uid: the daemon's uid (default: see the module doc).

    Raises:
        ConnectFailed: nobody answers on *path*.
        DaemonBusy: the daemon's backlog stayed full for the whole handshake.
        NotControlSocket: *path* accepted but did not greet as a control socket.
        ControlRefused: the daemon refused the connection over a limit.
        PeerRefused: *path* is served by an untrusted uid.
    """

    def __init__(
        self, path: str, *, timeout: float | None = 10.0, expected_uid: int | None = None
    ) -> None:
        self.path = path
        handshake = HANDSHAKE_TIMEOUT if timeout is None else min(timeout, HANDSHAKE_TIMEOUT)
        deadline = time.monotonic() + handshake
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self._reader = LineReader(max_line=1 << 26)
        try:
            self._connect(handshake)
            self.server: PeerCred = read_peer_cred(self._sock)
            check_server(path, self.server, expected_uid, "not talking to it")
            self._greeted(handshake, deadline)
        except BaseException:
            self._sock.close()
            raise
        self._sock.settimeout(timeout)

    def settimeout(self, timeout: float | None) -> None:
        """Seconds each later read may wait (``None``: for ever), e.g. to end a follow stream."""
        self._sock.settimeout(timeout)

    def _connect(self, handshake: float) -> None:
        """Connect, waiting in the kernel (up to *handshake* s) while the backlog is full."""
        # a zero timeval would mean "wait for ever": at least 1 us
        sec = int(handshake)
        usec = max(int((handshake - sec) * 1e6), 0 if sec else 1)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _TIMEVAL.pack(sec, usec))
        try:
            self._sock.connect(self.path)
        except OSError as exc:
            if exc.errno == errno.EAGAIN:
                msg = (
                    f"the control socket {self.path} accepts no connection: the daemon's "
                    f"backlog stayed full for {handshake:g} s (overloaded or stuck)"
                )
                raise DaemonBusy(msg) from exc
            msg = f"cannot connect to the control socket {self.path}: {exc.strerror or exc}"
            raise ConnectFailed(msg) from exc
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _TIMEVAL.pack(0, 0))

    def _greeted(self, handshake: float, deadline: float) -> None:
        """Read the server's first line: the greeting, or its refusal."""
        not_ours = f"{self.path} is not a trio-logd control socket"
        try:
            line = self._first_line(deadline)
        except TimeoutError as exc:
            msg = (
                f"{not_ours} (no greeting within {handshake:g} s), or its daemon is stuck; "
                "nothing was sent to it"
            )
            raise NotControlSocket(msg) from exc
        except (OSError, ParseError) as exc:
            msg = f"{not_ours} (it closed the connection without a greeting): {exc}"
            raise NotControlSocket(msg) from exc
        if line is None:
            msg = (
                f"{not_ours}, or the daemon is stopping: it closed the connection "
                "without a greeting"
            )
            raise NotControlSocket(msg)
        try:
            obj = decode_response(line)
        except ParseError as exc:
            msg = f"{not_ours}: its first line was {excerpt(line)}"
            raise NotControlSocket(msg) from exc
        if obj["type"] == "error":
            code, limit = str(obj.get("code", "")), str(obj.get("limit", ""))
            msg = f"{self.path}: the daemon refused the connection: {obj.get('error')}"
            raise ControlRefused(msg, code=code, limit=limit)
        if not is_greeting(obj):
            msg = f"{not_ours}: its first line was {excerpt(line)}"
            raise NotControlSocket(msg)

    def _first_line(self, deadline: float) -> bytes | None:
        """The first line the server sends before *deadline* (``None``: EOF first).

        Raises:
            TimeoutError: no whole line before *deadline*.
        """
        while True:
            line = self._reader.next_line()
            if line is not NEED_DATA:
                assert isinstance(line, bytes)
                return line
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            self._sock.settimeout(left)
            data = self._sock.recv(1 << 16)
            self._reader.receive_data(data)
            if not data:
                return None

    def send(self, op: str, **args: Any) -> None:
        """Send the request."""
        self._sock.sendall(encode_request(op, **args))

    def responses(self) -> Iterator[dict[str, Any]]:
        """Yield response objects until the server closes the connection."""
        for line in self.raw_lines():
            yield decode_response(line)

    def raw_lines(self) -> Iterator[bytes]:
        """Yield response lines undecoded (without LF) until the server closes.

        For streams of many records (``logq``), which can often use a line
        without decoding it.

        Raises:
            ParseError: the server sent a line longer than 64 MiB, or closed
                in the middle of a line.
        """
        while True:
            line = self._reader.next_line()
            if line is NEED_DATA:
                data = self._sock.recv(1 << 18)
                self._reader.receive_data(data)
                if not data:
                    self._reader.next_line()  # raises if the stream ended inside a line
                    return
                continue
            assert isinstance(line, bytes)
            yield line

    def close(self) -> None:
        """Close the connection."""
        self._sock.close()

    def __enter__(self) -> ControlConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def request_one(path: str, op: str, *, timeout: float = 10.0, **args: Any) -> dict[str, Any]:
    """Send one request and return the first response object.

    Raises:
        ConnectFailed: nobody answers, the server closed without answering,
            or did not answer within *timeout* (and the subclasses that
            :class:`ControlConnection` raises).
    """
    with ControlConnection(path, timeout=timeout) as conn:
        try:
            conn.send(op, **args)
            for obj in conn.responses():
                obj["_server"] = conn.server
                return obj
        except TimeoutError as exc:
            msg = f"{path}: no answer to {op!r} within {timeout:g} s"
            raise ConnectFailed(msg) from exc
        except OSError as exc:
            msg = f"{path}: lost the connection to the daemon: {exc.strerror or exc}"
            raise ConnectFailed(msg) from exc
        except ParseError as exc:
            msg = f"{path}: a bad answer to {op!r}: {exc}"
            raise ConnectFailed(msg) from exc
    msg = f"{path}: the daemon closed the connection without answering"
    raise ConnectFailed(msg)
