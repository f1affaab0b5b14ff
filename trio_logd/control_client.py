"""A small synchronous client of the control socket, for the CLIs.

It sends one request and yields the response lines (see
``trio_logd.protocol.control`` for the protocol). Before sending, it checks
with ``SO_PEERCRED`` who serves the socket, by the rule the client shim uses
for the ingest socket (``client._connect.trusted_uid``: root, or the owner of
the socket's directory, or ``expected_uid``, or our own uid), so that whoever squats the path
can neither read a query nor feed ``logq`` records of its own making.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

from trio_logd.client._connect import PeerRefused, check_server
from trio_logd.errors import ConnectFailed
from trio_logd.peer import PeerCred, read_peer_cred
from trio_logd.protocol.control import NEED_DATA, LineReader, decode_response, encode_request

__all__ = ["ControlConnection", "request_one"]


class ControlConnection:
    """One request on the control socket.

    Args:
        path: the control socket.
        timeout: seconds for connecting and for each read (``None``: wait
            forever, for follow streams).
        expected_uid: the daemon's uid (default: see the module doc).

    Raises:
        ConnectFailed: nobody answers on *path*.
        PeerRefused: *path* is served by an untrusted uid.
    """

    def __init__(
        self, path: str, *, timeout: float | None = 10.0, expected_uid: int | None = None
    ) -> None:
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(path)
        except OSError as exc:
            self._sock.close()
            msg = f"cannot connect to the control socket {path}: {exc.strerror or exc}"
            raise ConnectFailed(msg) from exc
        self.server: PeerCred = read_peer_cred(self._sock)
        try:
            check_server(path, self.server, expected_uid, "not talking to it")
        except PeerRefused:
            self._sock.close()
            raise
        self._reader = LineReader(max_line=1 << 26)

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
        ConnectFailed: nobody answers, or the server closed without answering.
    """
    with ControlConnection(path, timeout=timeout) as conn:
        conn.send(op, **args)
        for obj in conn.responses():
            obj["_server"] = conn.server
            return obj
    msg = f"{path}: the daemon closed the connection without answering"
    raise ConnectFailed(msg)
