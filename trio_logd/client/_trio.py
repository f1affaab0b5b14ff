"""``AsyncLogdClient``: the trio client.

How this works: the sans-IO pieces of the sync client (``FrameEncoder``,
``Outbox``, the ack protocol, ``Backoff``) wired to trio instead of a thread.
``async with AsyncLogdClient(...) as log`` opens a nursery running one sender
task. :meth:`AsyncLogdClient.emit` is synchronous: it encodes, appends to the
outbox and, if the sender task sleeps, wakes it; it never waits. The sender
task connects (``_connect.connect``: a non-blocking Unix connect never
blocks the event loop, then the ``SO_PEERCRED`` check), then runs a writer
and a reader for the connection in a nursery of their own; when either ends
(EOF, error, bad acknowledgement) both stop, unsettled records go back to
the queue, and it reconnects after a backoff. Waiters (``send``, ``flush``)
park on a ``ParkingLot`` that is unparked whenever records settle.

Use it from the trio thread only. Unlike the sync client it is not
fork-safe (nor is trio).
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Final

import trio

from trio_logd.client._base import (
    CHUNK_BYTES,
    HEALTHY_AFTER,
    ClientBase,
    ClientStatistics,
)
from trio_logd.client._encode import encode_record
from trio_logd.client._outbox import Backoff, Outbox, queue_drop_report
from trio_logd.errors import ClientError, ProtocolError

__all__ = ["AsyncLogdClient"]

_READ_SIZE: Final = 65536


class AsyncLogdClient(ClientBase):
    """A trio client for trio-logd's ingest socket.

    Use as ``async with AsyncLogdClient(...) as log:``; the sender task runs
    while the block does. Records emitted before entering are sent once it
    starts. Arguments: those of :class:`LogdClient` (see
    :class:`~trio_logd.client._base.ClientBase`).

    Raises:
        ValueError: unknown facility.
    """

    def _setup(self, outbox: Outbox) -> None:
        self._box = outbox
        self._wake = trio.Event()
        self._idle = False
        self._progress = trio.lowlevel.ParkingLot()
        self._connected = False
        self._closing = False
        self._nursery: trio.Nursery | None = None
        self._nursery_manager: Any = None

    async def __aenter__(self) -> AsyncLogdClient:
        self._nursery_manager = trio.open_nursery()
        self._nursery = await self._nursery_manager.__aenter__()
        self._nursery.start_soon(self._run)
        return self

    async def __aexit__(
        self,
        etype: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        try:
            await self.aclose()
        finally:
            suppress: bool = await self._nursery_manager.__aexit__(etype, exc, tb)
        return suppress

    # -- the application's side -------------------------------------------------

    def emit(
        self,
        msg: str,
        *,
        severity: str | int = "info",
        fields: Mapping[str, Any] | None = None,
        app: str | None = None,
        msgid: str | None = None,
        ts: float | None = None,
    ) -> bool:
        """Queue one record; never waits, never raises. Arguments as :meth:`LogdClient.emit`.

        Returns:
            ``True`` if queued, ``False`` if dropped (buffer full, or closed).
        """
        return self._offer(msg, severity, fields, app, msgid, ts) > 0

    async def send(
        self,
        msg: str,
        *,
        severity: str | int = "info",
        fields: Mapping[str, Any] | None = None,
        app: str | None = None,
        msgid: str | None = None,
        ts: float | None = None,
    ) -> bool:
        """Send one record and wait until delivered (``ack=True``: stored), at most ``timeout``.

        As trio prefers, there is no per-call timeout: the client's ``timeout``
        bounds the wait, and a cancel scope around the call can cut it shorter.

        Returns:
            ``True`` once delivered; ``False`` if dropped or not delivered in
            time (then it stays queued and may still be delivered).
        """
        n = self._offer(msg, severity, fields, app, msgid, ts)
        if n == 0:
            return False
        return await self._wait(n, n)

    async def flush(self) -> bool:
        """Wait until every record queued so far is delivered, at most ``timeout`` seconds.

        Returns:
            ``True`` if all were delivered (``ack=True``: stored); ``False`` on
            timeout or if the daemon dropped some.
        """
        first = self._box.settled + 1
        last = self._box.accepted
        if last < first:
            return True
        return await self._wait(first, last)

    async def aclose(self) -> None:
        """Deliver what is held (at most ``timeout`` seconds), then stop. Idempotent."""
        if self._closing:
            return
        self._closing = True
        try:
            if self._nursery is not None:
                await self.flush()
        finally:
            self._box.discard()
            if self._nursery is not None:
                self._nursery.cancel_scope.cancel()

    def statistics(self) -> ClientStatistics:
        """The client's counters now."""
        return self._statistics(self._box, self._connected)

    def _offer(
        self,
        msg: str,
        severity: str | int,
        fields: Mapping[str, Any] | None,
        app: str | None,
        msgid: str | None,
        ts: float | None,
    ) -> int:
        box = self._box
        if self._closing:
            box.refuse()
            return 0
        try:
            frame = encode_record(self._encoder, msg, severity, fields, app, msgid, ts)
        except Exception as exc:  # a bug; never into the application
            box.refuse()
            self._tell(exc)
            return 0
        n = box.offer(frame)
        if n and self._idle:
            self._wake.set()
        return n

    async def _wait(self, first: int, last: int) -> bool:
        box = self._box
        with trio.move_on_after(self.timeout):
            while box.settled < last:
                await self._progress.park()
            return not box.failed(first, last)
        return False

    # -- the sender task -----------------------------------------------------------

    async def _run(self) -> None:
        backoff = Backoff(maximum=self.reconnect_max)
        while True:
            try:
                sock = self._open()
            except ClientError:
                await trio.sleep(backoff.next_delay())
                continue
            started = trio.current_time()
            self._connected = True
            try:
                self._last_error = await self._serve_connection(
                    trio.socket.from_stdlib_socket(sock)
                )
            finally:
                self._connected = False
                sock.close()
                self._box.disconnected()
            if trio.current_time() - started >= HEALTHY_AFTER:
                backoff.reset()
            await trio.sleep(backoff.next_delay())

    async def _serve_connection(self, sock: trio.socket.SocketType) -> str:
        """Write and read until the connection breaks; return why it did."""
        reason = ["connection closed"]

        async def end(
            task: Callable[[trio.socket.SocketType], Any], scope: trio.CancelScope
        ) -> None:
            reason[0] = await task(sock)
            scope.cancel()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(end, self._writer, nursery.cancel_scope)
            nursery.start_soon(end, self._reader, nursery.cancel_scope)
        return reason[0]

    async def _writer(self, sock: trio.socket.SocketType) -> str:
        box = self._box
        while True:
            if box.unreported and box.held < box.limit // 2:
                queue_drop_report(box, self._encoder)
            frames = box.take(CHUNK_BYTES)
            if not frames:
                self._idle = True
                await self._wake.wait()
                self._wake = trio.Event()
                self._idle = False
                continue
            view = memoryview(b"".join(frames))
            ends = list(itertools.accumulate(map(len, frames)))
            pos = done = 0
            while pos < len(view):
                try:
                    pos += await sock.send(view[pos:])
                except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    return f"write failed: {exc}"
                k = bisect.bisect_right(ends, pos, done)
                if k > done and not self.ack:
                    box.written(k - done, ends[k - 1] - (ends[done - 1] if done else 0))
                    self._progress.unpark_all()
                done = k

    async def _reader(self, sock: trio.socket.SocketType) -> str:
        box = self._box
        while True:
            try:
                data = await sock.recv(_READ_SIZE)
            except (OSError, trio.ClosedResourceError) as exc:
                return f"connection broken: {exc}"
            if not data:
                return "the daemon closed the connection"
            if not self.ack:
                continue
            try:
                if box.receive(data):
                    self._progress.unpark_all()
            except ProtocolError as exc:
                self._tell(exc)
                return f"bad acknowledgement: {exc}"
