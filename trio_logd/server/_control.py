"""The control socket: status, stats, reload, queries (see ``protocol.control``).

How this works: one task per control connection. Its first steps have no
checkpoint: read the caller's identity (``SO_PEERCRED`` and
``SO_PEERGROUPS``, once; handlers authorize with it and nothing else),
check the descriptor reserve (``_fdlimit.FdReserve``) and the ``[control]``
caps (``limits.ControlConnections``: per uid, and global with headroom for
root and ``[access] admins``). A connection over a limit gets one ``error``
line naming the limit and is closed; one within them gets the greeting
(``protocol.control.GREETING``). Both writes go to a fresh socket whose
buffer is empty, under a short deadline, so a client that never reads holds
no task for long; the accept loop only starts tasks and never waits on a
client. The task then reads one request line, under two deadlines: the
first byte within ``first_byte_timeout``, the whole line within
``request_timeout`` (both from the accept); looks the operation up in a
table of handlers and lets the handler write its response lines. The
control socket is also the daemon's pid file: whoever connects can learn
the daemon's pid from ``SO_PEERCRED``.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import structlog
import trio

from trio_logd.config import DEFAULT_CONTROL, ControlConfig
from trio_logd.errors import AccessDenied, LogdError, ParseError
from trio_logd.limits import ControlConnections
from trio_logd.peer import PeerCred
from trio_logd.protocol.control import (
    GREETING,
    NEED_DATA,
    LineReader,
    Request,
    decode_request,
    encode_response,
)
from trio_logd.server._accept import Accepted
from trio_logd.server._fdlimit import FdCounters

__all__ = ["ControlCall", "ControlServer", "OpHandler"]

log = structlog.get_logger("trio_logd.control")

#: Seconds the greeting or a refusal may take to be written: the socket is
#: fresh, so it only waits when the kernel is short of memory.
GREET_TIMEOUT: Final = 1.0
#: A closing connection has at most this many reads of unread bytes dropped.
_DISCARD_READS: Final = 8
_ids = itertools.count(1)


@dataclass(eq=False)
class ControlCall:
    """One request being served: who asked, what, and the way to answer."""

    caller: PeerCred
    groups: tuple[int, ...]
    request: Request
    stream: trio.abc.HalfCloseableStream
    #: root or a member of an ``[access] admins`` group (not held to per-uid caps)
    privileged: bool = False

    async def send(self, kind: str, **fields: Any) -> None:
        """Write one response line."""
        await self.stream.send_all(encode_response(kind, **fields))

    async def send_raw(self, data: bytes) -> None:
        """Write pre-encoded response lines (each ending in LF)."""
        await self.stream.send_all(data)


OpHandler = Callable[[ControlCall], Awaitable[None]]


def _root_only(cred: PeerCred, groups: Sequence[int]) -> bool:
    return cred.uid == 0


@dataclass(eq=False)
class ControlServer:
    """Dispatch table, connection caps and connection handling of the control socket.

    Args:
        settings: ``[control]`` in force (:meth:`configure` changes it on reload).
        is_privileged: root or ``[access] admins`` (``Limiter.is_privileged``).
        fds: the daemon's descriptor reserve and shortage counters, or
            ``None`` (no reserve: tests).
    """

    ops: dict[str, OpHandler] = field(default_factory=dict)
    settings: ControlConfig = DEFAULT_CONTROL
    is_privileged: Callable[[PeerCred, Sequence[int]], bool] = _root_only
    #: the uid whose per-uid cap a connection counts against (its owner's for a
    #: subordinate uid: ``Limiter.control_account``); no checkpoint, no I/O
    account_for: Callable[[PeerCred], int] = lambda cred: cred.uid
    fds: FdCounters | None = None
    #: control connections closed for sending too little in time, by limit
    timeouts: dict[str, int] = field(default_factory=dict)
    conns: ControlConnections = field(init=False)

    def __post_init__(self) -> None:
        c = self.settings
        self.conns = ControlConnections(
            c.max_connections, c.max_connections_per_uid, c.connection_headroom
        )

    def register(self, op: str, handler: OpHandler) -> None:
        """Serve *op* with *handler*."""
        self.ops[op] = handler

    def configure(self, settings: ControlConfig) -> None:
        """Put a reloaded ``[control]`` in force; open connections stay open."""
        self.conns.reconfigure(
            settings.max_connections, settings.max_connections_per_uid, settings.connection_headroom
        )
        self.settings = settings

    def statistics(self) -> dict[str, Any]:
        """The ``control`` object of ``stats`` and ``status``."""
        st = self.conns.counter.statistics()
        return {
            "connections": st.total,
            "max_connections": st.global_max,
            "max_connections_per_uid": self.conns.per_uid_max,
            "connection_headroom": st.headroom,
            "refused": dict(self.conns.by_limit),
            "timeouts": dict(self.timeouts),
        }

    def _admit(
        self, accepted: Accepted, caller: PeerCred, account: int, privileged: bool
    ) -> bytes | None:
        """Count a new connection in; ``None`` if admitted, else the refusal line. No checkpoint.

        A stream without a socket (tests) holds no descriptor: only the caps apply.
        """
        c = self.settings
        sock = accepted.socket
        if (
            self.fds is not None
            and sock is not None
            and not self.fds.reserve.admits(sock.fileno(), privileged=privileged)
        ):
            self.fds.note_refused("control")
            self.conns.refuse("fd_reserve")
            error = (
                "the daemon is short of file descriptors: control connection refused "
                "(fd_reserve); try again later"
            )
            return encode_response(
                "error", code="too_many_connections", limit="fd_reserve", error=error
            )
        limit = self.conns.try_open(account, privileged=privileged)
        if limit is None:
            return None
        if limit == "max_connections_per_uid":
            whose = f"uid {account}" + (
                f" (the owner of uid {caller.uid})" if account != caller.uid else ""
            )
            error = (
                f"too many control connections of {whose}: "
                f"{self.conns.count(account)} open, [control] max_connections_per_uid = "
                f"{c.max_connections_per_uid}"
            )
        else:
            error = (
                f"too many control connections: {self.conns.total} open, [control] "
                f"max_connections = {c.max_connections} (of which {c.connection_headroom} "
                "are kept for root and [access] admins)"
            )
        return encode_response("error", code="too_many_connections", limit=limit, error=error)

    async def handle(self, accepted: Accepted) -> None:
        """Serve one control connection. Never raises (except Cancelled)."""
        counted: int | None = None
        stream = accepted.stream
        try:
            caller = accepted.cred
            groups = accepted.read_groups()
            privileged = self.is_privileged(caller, groups)
            account = self.account_for(caller)
            refusal = self._admit(accepted, caller, account, privileged)
            structlog.contextvars.bind_contextvars(ctl=next(_ids), caller_uid=caller.uid)
            if refusal is not None:
                log.debug("control_refused", open=self.conns.count(account))
                with trio.move_on_after(GREET_TIMEOUT):
                    await stream.send_all(refusal)
                return
            counted = account
            c = self.settings
            start = trio.current_time()
            with trio.move_on_after(GREET_TIMEOUT):
                await stream.send_all(GREETING)
            request = await self._read_request(stream, start, c)
            if request is None:
                return
            call = ControlCall(caller, groups, request, stream, privileged=privileged)
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
            if counted is not None:
                self.conns.close(counted)
            if accepted.socket is not None:
                _discard_unread(accepted.socket.fileno())
            await trio.aclose_forcefully(stream)

    async def _read_request(
        self, stream: trio.abc.Stream, start: float, c: ControlConfig
    ) -> Request | None:
        """Read the request line within the deadlines; ``None`` when none came (answered)."""
        whole = start + c.request_timeout if c.request_timeout else math.inf
        first = start + c.first_byte_timeout if c.first_byte_timeout else math.inf
        reader = LineReader()
        got_bytes = False
        while True:
            try:
                line = reader.next_line()
            except ParseError as exc:
                await _send_error(stream, "invalid", str(exc))
                return None
            if line is not NEED_DATA:
                assert isinstance(line, bytes)
                try:
                    return decode_request(line)
                except ParseError as exc:
                    await _send_error(stream, "invalid", str(exc))
                    return None
            limit = "request_timeout" if got_bytes or whole <= first else "first_byte_timeout"
            with trio.move_on_at(whole if got_bytes else min(first, whole)):
                data = await stream.receive_some(65536)
                if not data and reader.eof:
                    return None
                got_bytes = got_bytes or bool(data)
                reader.receive_data(bytes(data))  # a memory stream gives a bytearray
                continue
            self.timeouts[limit] = self.timeouts.get(limit, 0) + 1
            seconds = c.request_timeout if limit == "request_timeout" else c.first_byte_timeout
            what = "request line" if limit == "request_timeout" else "first byte"
            error = f"no {what} within {seconds:g} s ([control] {limit}); connection closed"
            log.debug("control_timeout", limit=limit)
            with trio.move_on_after(GREET_TIMEOUT):
                await _send_error(stream, "timeout", error, limit=limit)
            return None


def _discard_unread(fd: int) -> None:
    """Drop what the client sent and we did not read, so that it reads our last line.

    Linux resets the peer of a Unix socket closed with unread data
    (``unix_release_sock``): the client would get ``ECONNRESET`` instead of
    the error line that says why it was closed.
    """
    for _ in range(_DISCARD_READS):
        try:
            if not os.read(fd, 65536):
                return
        except OSError:  # EAGAIN: nothing (more) to drop
            return


async def _send_error(stream: trio.abc.SendStream, code: str, error: str, **extra: Any) -> None:
    await stream.send_all(encode_response("error", code=code, error=error, **extra))
