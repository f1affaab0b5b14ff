"""What a client holds and what became of it (sans-IO: no sockets, threads or clock).

How this works: every record accepted gets an ordinal (1, 2, …) and waits in
``queued`` until the I/O side takes it for the current connection; it then
sits in ``inflight`` until it is *settled*: fully written (plain mode) or
covered by an ``ack`` (acknowledged mode, ``protocol/ack.py``). Records
settle in ordinal order, so one counter (``settled``) says how far delivery
got, and a waiter for ordinal *k* is done once ``settled >= k``; the few
ranges the daemon dropped are remembered for a while to tell those waiters.

When a connection breaks, ``inflight`` goes back to the front of ``queued``,
in order: in plain mode that is only the frame cut mid-write and those not
yet written (bytes the kernel took are gone with the daemon if it died), in
acknowledged mode everything not acknowledged, which is then sent again
(hence possible duplicates, marked by their ``delivery_id``).

``queued`` + ``inflight`` never hold more than ``limit`` bytes: a record that
does not fit is refused and counted (``dropped``); the I/O side reports the
count in a record of its own once it can (:meth:`Outbox.force`).
"""

from __future__ import annotations

import random
from collections import deque
from typing import Final

from trio_logd.client._encode import FrameEncoder
from trio_logd.errors import ProtocolError
from trio_logd.protocol.ack import AckEvent, AckReader

__all__ = ["Backoff", "Outbox", "queue_drop_report"]

#: Ranges of ordinals the daemon dropped, remembered for waiters; older ones
#: are forgotten (a waiter that late has long timed out).
_FAILED_KEPT: Final = 256


def _popleft(frames: deque[bytes], n: int) -> None:
    """Drop the first *n* of *frames* (all of them at C speed, the usual case)."""
    if n == len(frames):
        frames.clear()
    else:
        for _ in range(n):
            frames.popleft()


class Outbox:
    """A client's records between the application and the socket.

    Args:
        limit: bytes that ``queued`` and ``inflight`` may hold together.
        ack: acknowledged mode (records settle on ``ack``, not on write).
    """

    __slots__ = (
        "_drops",
        "_failed",
        "_reader",
        "accepted",
        "ack",
        "conn_acked",
        "conn_sent",
        "daemon_dropped",
        "delivered",
        "dropped",
        "held",
        "inflight",
        "limit",
        "queued",
        "queued_bytes",
        "reported",
        "settled",
    )  # fmt: skip

    def __init__(self, limit: int, *, ack: bool = False) -> None:
        self.limit = limit
        self.ack = ack
        self.queued: deque[bytes] = deque()
        self.inflight: deque[bytes] = deque()
        #: bytes in queued + inflight, and in queued alone
        self.held = 0
        self.queued_bytes = 0
        #: records accepted (the last ordinal given out)
        self.accepted = 0
        #: records settled, in ordinal order
        self.settled = 0
        #: settled records that were delivered (written; stored, when acknowledged)
        self.delivered = 0
        #: records refused (no room, or closed) or thrown away at close
        self.dropped = 0
        #: of ``dropped``, how many a report record has announced
        self.reported = 0
        #: records the daemon reported dropped, by reason (acknowledged mode)
        self.daemon_dropped: dict[str, int] = {}
        #: records handed to the current connection / acknowledged on it
        self.conn_sent = 0
        self.conn_acked = 0
        self._reader = AckReader()
        self._drops: deque[AckEvent] = deque()
        self._failed: deque[tuple[int, int]] = deque(maxlen=_FAILED_KEPT)

    @property
    def empty(self) -> bool:
        """Nothing waits to be written or acknowledged."""
        return not (self.queued or self.inflight)

    @property
    def unreported(self) -> int:
        """Dropped records no report has announced yet."""
        return self.dropped - self.reported

    def offer(self, frame: bytes) -> int:
        """Accept *frame* if it fits; return its ordinal, or 0 (refused and counted)."""
        size = len(frame)
        if self.held + size > self.limit:
            self.dropped += 1
            return 0
        self.held += size
        self.queued_bytes += size
        self.queued.append(frame)
        self.accepted += 1
        return self.accepted

    def force(self, frame: bytes) -> int:
        """Accept *frame* even beyond the limit (the client's own drop report)."""
        self.held += len(frame)
        self.queued_bytes += len(frame)
        self.queued.append(frame)
        self.accepted += 1
        return self.accepted

    def refuse(self) -> None:
        """Count a record refused without offering it (the client is closed)."""
        self.dropped += 1

    def take(self, max_bytes: int) -> list[bytes]:
        """Hand queued frames (at least one, if any) to the connection, up to *max_bytes*."""
        queued = self.queued
        if self.queued_bytes <= max_bytes:  # the common case: everything, at C speed
            out = list(queued)
            queued.clear()
            self.queued_bytes = 0
        else:
            out = []
            size = 0
            while queued and (size < max_bytes or not out):
                frame = queued.popleft()
                size += len(frame)
                out.append(frame)
            self.queued_bytes -= size
        self.inflight.extend(out)
        self.conn_sent += len(out)
        return out

    def written(self, n: int, size: int) -> None:
        """Plain mode: the first *n* in-flight frames (*size* bytes) were written; they settle."""
        if self.ack or n <= 0:
            return
        _popleft(self.inflight, n)
        self.held -= size
        self.settled += n
        self.delivered += n
        self.conn_acked += n

    def receive(self, data: bytes) -> int:
        """Acknowledged mode: feed the daemon's bytes; return how many records settled.

        Raises:
            ProtocolError: the daemon's lines are malformed or acknowledge
                records never sent on this connection (the caller reconnects).
        """
        before = self.settled
        for event in self._reader.receive_data(data):
            if event.kind == "drop":
                if event.last > self.conn_sent:
                    msg = f"daemon dropped records up to {event.last}, only {self.conn_sent} sent"
                    raise ProtocolError(msg)
                self._drops.append(event)
            elif event.kind == "ack":
                if event.last > self.conn_sent:
                    msg = f"daemon acknowledged {event.last} records, only {self.conn_sent} sent"
                    raise ProtocolError(msg)
                self._ack(event.last)
        return self.settled - before

    def _ack(self, n: int) -> None:
        c = self.conn_acked
        drops = self._drops
        while c < n:
            if drops and drops[0].first <= n:
                d = drops[0]
                if c + 1 < d.first:  # stored up to the drop
                    self._settle(d.first - 1 - c, None)
                    c = d.first - 1
                end = min(d.last, n)
                self._settle(end - c, d.reason)
                c = end
                if end == d.last:
                    drops.popleft()
            else:
                self._settle(n - c, None)
                c = n
        self.conn_acked = n

    def _settle(self, n: int, dropped_for: str | None) -> None:
        inflight = self.inflight
        if n == len(inflight):
            size = sum(map(len, inflight))
            inflight.clear()
        else:
            size = 0
            for _ in range(n):
                size += len(inflight.popleft())
        self.held -= size
        first = self.settled + 1
        self.settled += n
        if dropped_for is None:
            self.delivered += n
        else:
            self.daemon_dropped[dropped_for] = self.daemon_dropped.get(dropped_for, 0) + n
            self._failed.append((first, self.settled))

    def disconnected(self) -> int:
        """The connection broke: unsettled in-flight frames go back to the front, in order.

        Returns:
            How many records will be sent again.
        """
        inflight = self.inflight
        n = len(inflight)
        self.queued_bytes += sum(map(len, inflight))
        inflight.reverse()
        self.queued.extendleft(inflight)  # extendleft reverses again: order kept
        inflight.clear()
        self.conn_sent = self.conn_acked = 0
        self._reader = AckReader()
        self._drops.clear()
        return n

    def failed(self, first: int, last: int | None = None) -> bool:
        """Whether the daemon dropped any record with an ordinal in ``first..last``."""
        last = first if last is None else last
        return any(lo <= last and first <= hi for lo, hi in self._failed)

    def discard(self) -> int:
        """Throw away everything held (close, or a forked child); count it as dropped."""
        n = len(self.queued) + len(self.inflight)
        self.queued.clear()
        self.inflight.clear()
        self.held = self.queued_bytes = 0
        self.dropped += n
        if n:
            self._failed.append((self.settled + 1, self.accepted))
        self.settled = self.accepted
        return n


def queue_drop_report(box: Outbox, encoder: FrameEncoder) -> None:
    """Queue the record that reports ``box.unreported`` dropped records (and mark them reported).

    It goes at the end of the queue, beyond the limit: it is the one record
    that must get through.
    """
    n = box.unreported
    msg = (
        f"trio-logd client dropped {n} record{'s' if n != 1 else ''}: its buffer was full "
        "(the daemon was unreachable or too slow)"
    )
    fields = {"dropped": n, "reason": "buffer_full", "buffer_bytes": box.limit}
    box.force(encoder.encode(4, msg, fields, None, "dropped"))
    box.reported += n


class Backoff:
    """Delays between connection attempts: doubling up to *maximum*, with jitter.

    Each delay is drawn from the upper half of the current step ("equal
    jitter"), so many clients of a restarted daemon do not reconnect in step.

    Args:
        initial: the first step, seconds.
        maximum: the largest step, seconds.
    """

    __slots__ = ("_rng", "_step", "initial", "maximum")

    def __init__(self, initial: float = 0.05, maximum: float = 5.0) -> None:
        self.initial = initial
        self.maximum = maximum
        self._step = initial
        # a generator of our own: a logging client must not draw from (or
        # disturb) the application's global random stream
        self._rng = random.Random()

    def next_delay(self) -> float:
        """Return the next delay and double the step."""
        step = self._step
        self._step = min(self.maximum, step * 2)
        return step / 2 + self._rng.random() * step / 2

    def reset(self) -> None:
        """Back to the first step (after a connection that worked)."""
        self._step = self.initial
