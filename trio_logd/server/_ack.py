"""Acknowledged delivery, the daemon's side (protocol: ``protocol/ack.py``).

How this works: every ingest connection runs inside :func:`serve_with_acks`,
which gives it an :class:`AckSlot` (``conn.ack``) and a nursery. The
connection's first read hands its frames to :meth:`AckSlot.hello`: if the
first frame is the hello, the slot turns on, drops that frame and starts
:meth:`AckSlot.serve_writes` in the nursery; otherwise the connection sets
``conn.ack = None`` and costs nothing more.

In acknowledged mode each batch the connection queues gets a pending segment
in the :class:`~trio_logd.protocol.ack.AckLedger` and an ``on_stored``
callback, which the writer task calls in the event loop once the batch is
written (and synced per policy). Records dropped before the store (rate,
quota) are numbered too, through :meth:`AckSlot.dropped`, so that the
numbering stays that of the records the client sent.

The writer task sleeps until something settles, then writes what
``take_lines`` gives: acks are cumulative, so while the client is slow to
read only the ledger's state grows, never a byte buffer, and one ``ack``
line later covers everything. The ledger itself grows only with pending
batches (bounded by the pipeline's per-uid backpressure) and with
alternating stored/dropped runs not yet written out; past
:data:`ACK_BACKLOG_LIMIT` of those the client is cut off (it does not read
its acks), so memory per connection stays bounded.

After the client's EOF (or at shutdown, when the connection stops reading)
the connection waits up to :data:`ACK_LINGER` seconds for its outstanding
batches, so that the last ``ack`` reaches a client that half-closed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final, Protocol, TypeVar

import structlog
import trio

from trio_logd.protocol.ack import ACK_HELLO_PAYLOAD, ACK_WELCOME, AckLedger
from trio_logd.protocol.framing import Frame
from trio_logd.server._pipeline import Batch

__all__ = ["ACK_BACKLOG_LIMIT", "ACK_LINGER", "AckSlot", "serve_with_acks"]

log = structlog.get_logger("trio_logd.ingest")

#: Settled runs not yet written out (after merging neighbours with the same
#: outcome) that a connection may hold before the daemon decides the client
#: does not read its acks and closes it. A client that reads needs a handful;
#: 4096 segments are ~300 KiB.
ACK_BACKLOG_LIMIT: Final = 4096
#: After EOF, how long a connection waits for its outstanding batches to be
#: stored and acknowledged. The writer normally takes milliseconds; this only
#: bounds a store that is stuck (disk trouble) or a client that stopped reading.
ACK_LINGER: Final = 30.0


class _AckConnection(Protocol):
    ack: AckSlot | None


_C = TypeVar("_C", bound=_AckConnection)


class AckSlot:
    """One connection's acknowledgement state: off until the hello, then on.

    Args:
        stream: the connection (the ack writer sends on it).
        nursery: where the ack writer runs; its cancel scope is the
            connection's, so cancelling it cuts the connection.
    """

    __slots__ = (
        "_compact_at", "_nursery", "_progress", "_stream", "_wake",
        "broken", "ledger", "on", "sent",
    )  # fmt: skip

    def __init__(self, stream: trio.abc.SendStream, nursery: trio.Nursery) -> None:
        self._stream = stream
        self._nursery = nursery
        self._wake = trio.Event()
        self._progress = trio.Event()
        self.ledger = AckLedger()
        self.on = False
        self.broken = False
        #: the last ``ack`` written out in full
        self.sent = 0
        self._compact_at = ACK_BACKLOG_LIMIT

    def hello(self, frames: list[Frame]) -> list[Frame]:
        """The connection's first frames: switch on if they start with the hello.

        Returns:
            *frames* without the hello (the hello is not a record).
        """
        first = frames[0]
        if first.data != ACK_HELLO_PAYLOAD or first.truncated:
            return frames
        self.on = True
        self._nursery.start_soon(self.serve_writes)
        log.debug("ack_mode")
        return frames[1:]

    def queued(self, batch: Batch, n: int) -> None:
        """Number *batch*'s *n* records and acknowledge them once it is stored."""
        seg = self.ledger.queued(n)
        ledger = self.ledger
        before = batch.on_stored

        def settled(stored: int) -> None:
            if before is not None:
                before(stored)
            ledger.stored(seg, stored)
            self._changed()

        batch.on_stored = settled

    def dropped(self, n: int, reason: str) -> None:
        """Number *n* records of this connection dropped before the store (rate, quota).

        Whoever drops records of an acknowledged connection must call this,
        in order with :meth:`queued`, or the numbering would slip.
        """
        self.ledger.dropped(n, reason)
        self._changed()

    def _changed(self) -> None:
        ledger = self.ledger
        if ledger.backlog > self._compact_at:
            settled = ledger.compact()
            if settled > ACK_BACKLOG_LIMIT:
                log.warning("ack_backlog", backlog=settled, action="closing connection")
                self._nursery.cancel_scope.cancel()
                return
            # compact again only once the ledger has doubled: amortised O(1)
            self._compact_at = max(ACK_BACKLOG_LIMIT, 2 * ledger.backlog)
        self._wake.set()

    async def serve_writes(self) -> None:
        """Write the welcome, then acknowledgement lines as records settle. Never raises."""
        try:
            await self._send_all(ACK_WELCOME)
            while True:
                data = self.ledger.take_lines()
                if data:
                    top = self.ledger.acked
                    await self._send_all(data)
                    self.sent = top
                    continue  # more may have settled meanwhile
                self._progress.set()
                self._progress = trio.Event()
                await self._wake.wait()
                self._wake = trio.Event()
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            # the client went away: its reads will see EOF; nothing to tell it
            log.debug("ack_write_failed", error=repr(exc))
            self.broken = True
            self._progress.set()

    async def _send_all(self, data: bytes) -> None:
        await self._stream.send_all(data)

    async def wait_settled(self) -> None:
        """Wait until every record is settled and its line written (or the client is gone)."""
        while not (self.broken or self.sent == self.ledger.numbered):
            await self._progress.wait()


async def serve_with_acks(
    stream: trio.abc.SendStream, conn: _C, serve: Callable[[_C], Awaitable[None]]
) -> None:
    """Run ``serve(conn)`` with acknowledged delivery available to the client on *stream*.

    Raises:
        Exception: whatever *serve* raises, unchanged (not in a group).
    """
    failure: Exception | None = None
    async with trio.open_nursery() as nursery:
        slot = conn.ack = AckSlot(stream, nursery)
        try:
            await serve(conn)
        except Exception as exc:  # re-raised below as itself, not as this nursery's group
            failure = exc
        else:
            if slot.on:
                with trio.move_on_after(ACK_LINGER):
                    await slot.wait_settled()
        nursery.cancel_scope.cancel()
    if failure is not None:
        raise failure
