"""The control socket: status, stats, reload, queries (see ``protocol.control``).

How this works: one task per control connection reads one request line,
looks the operation up in a table of handlers and lets the handler write
its response lines. The caller's identity is ``SO_PEERCRED`` and
``SO_PEERGROUPS`` of the connection, read once at accept; handlers
authorize with it and nothing else. The control socket is also the daemon's
pid file: whoever connects can learn the daemon's pid from ``SO_PEERCRED``.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

import structlog
import trio

from trio_logd.errors import AccessDenied, LogdError, ParseError
from trio_logd.peer import PeerCred, read_peer_cred, read_peer_groups
from trio_logd.protocol.control import (
    NEED_DATA,
    LineReader,
    Request,
    decode_request,
    encode_response,
)

__all__ = ["ControlCall", "ControlServer", "OpHandler"]

log = structlog.get_logger("trio_logd.control")

#: A control client must send its request within this time.
REQUEST_TIMEOUT: Final = 10.0
_ids = itertools.count(1)


@dataclass(eq=False)
class ControlCall:
    """One request being served: who asked, what, and the way to answer."""

    caller: PeerCred
    groups: tuple[int, ...]
    request: Request
    stream: trio.SocketStream

    async def send(self, kind: str, **fields: Any) -> None:
        """Write one response line."""
        await self.stream.send_all(encode_response(kind, **fields))

    async def send_raw(self, data: bytes) -> None:
        """Write pre-encoded response lines (each ending in LF)."""
        await self.stream.send_all(data)


OpHandler = Callable[[ControlCall], Awaitable[None]]


@dataclass(eq=False)
class ControlServer:
    """Dispatch table and connection handling of the control socket."""

    ops: dict[str, OpHandler] = field(default_factory=dict)

    def register(self, op: str, handler: OpHandler) -> None:
        """Serve *op* with *handler*."""
        self.ops[op] = handler

    async def handle(self, stream: trio.SocketStream) -> None:
        """Serve one control connection. Never raises (except Cancelled)."""
        try:
            sock = stream.socket
            caller = read_peer_cred(sock)  # type: ignore[arg-type]
            groups = read_peer_groups(sock)  # type: ignore[arg-type]
            structlog.contextvars.bind_contextvars(ctl=next(_ids), caller_uid=caller.uid)
            with trio.move_on_after(REQUEST_TIMEOUT) as scope:
                request = await _read_request(stream)
            if scope.cancelled_caught or request is None:
                return
            call = ControlCall(caller, groups, request, stream)
            handler = self.ops.get(request.op)
            if handler is None:
                known = ", ".join(sorted(self.ops))
                await call.send(
                    "error",
                    code="unknown_op",
                    error=f"unknown operation {request.op!r}: expected one of {known}",
                )
                return
            try:
                await handler(call)
            except AccessDenied as exc:
                await call.send("error", code="denied", error=str(exc))
            except (ParseError, ValueError) as exc:
                await call.send("error", code="invalid", error=str(exc))
            except LogdError as exc:
                await call.send("error", code="failed", error=str(exc))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client went away; nothing to answer
        except Exception as exc:
            log.warning("control_failed", error=repr(exc))
        finally:
            await trio.aclose_forcefully(stream)


async def _read_request(stream: trio.SocketStream) -> Request | None:
    reader = LineReader()
    while True:
        try:
            line = reader.next_line()
        except ParseError as exc:
            await stream.send_all(encode_response("error", code="invalid", error=str(exc)))
            return None
        if line is not NEED_DATA:
            assert isinstance(line, bytes)
            try:
                return decode_request(line)
            except ParseError as exc:
                await stream.send_all(encode_response("error", code="invalid", error=str(exc)))
                return None
        data = await stream.receive_some(65536)
        if not data and reader.eof:
            return None
        reader.receive_data(data)
