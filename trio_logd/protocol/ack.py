"""Acknowledged delivery on the ingest socket (sans-IO, both ends).

A client that wants to know its records are stored opens its connection with
one frame, exactly :data:`ACK_HELLO` (RFC 6587 octet-counted, 16 bytes of
payload: a NUL, then ``trio-logd ack 1``)::

    b"16 \\x00trio-logd ack 1"

No syslog sender produces it by accident: every real sender starts a payload
with ``<PRI>`` or text, and a payload that starts with NUL can only be sent
octet-counted (NUL ends an LF/NUL frame). The daemon does not store it, and
only looks for it as the first frame of a connection; anywhere else it is an
ordinary (odd) record.

From then on the daemon writes ASCII lines back, each ending in LF. Records
are numbered 1, 2, … in the order the daemon received them on this
connection (the hello is not counted):

``trio-logd ack 1``
    the first line: acknowledged mode is on (protocol version 1).
``drop FIRST LAST REASON``
    records FIRST..LAST (inclusive) were **not** stored: the daemon dropped
    them by policy (REASON is ``rate``, ``quota``, ``disk``, …; SPEC §3's
    ``suppressed`` reasons). Sent before the ``ack`` line that covers them.
``ack N``
    every record 1..N is settled: stored (written, and ``fdatasync``'ed when
    ``[store] fsync`` is ``batch`` or ``always``) unless a ``drop`` line
    named it. N never decreases.

So an ``ack`` never claims that a dropped record was stored. Lines are
cumulative and idempotent, so the daemon may merge them (one ``ack`` for many
batches) and a client may stop reading for a while; unknown lines are to be
ignored (later versions may add some). The client resends on a new
connection whatever was not covered by an ``ack`` when the connection broke,
so a record may be stored twice (after a daemon crash between storing and
acknowledging): duplicates, never losses. Clients make them detectable; see
``docs/client.md``.

This module holds both ends' bookkeeping: :class:`AckLedger` (the daemon's,
per connection) and :class:`AckReader` (the client's line parser).
"""

from __future__ import annotations

from collections import deque
from typing import Final, NamedTuple

from trio_logd.errors import ProtocolError, excerpt

__all__ = [
    "ACK_HELLO",
    "ACK_HELLO_PAYLOAD",
    "ACK_WELCOME",
    "MAX_LINE",
    "AckEvent",
    "AckLedger",
    "AckReader",
    "Segment",
]

#: The payload of the client's first frame (as a :class:`~trio_logd.protocol.framing.Frame`).
ACK_HELLO_PAYLOAD: Final = b"\x00trio-logd ack 1"
#: The exact bytes a client sends first: the payload, octet-counted.
ACK_HELLO: Final = b"%d %s" % (len(ACK_HELLO_PAYLOAD), ACK_HELLO_PAYLOAD)
#: The daemon's first line in acknowledged mode.
ACK_WELCOME: Final = b"trio-logd ack 1\n"
#: Longest line either side accepts: ``drop`` with two 20-digit numbers and a reason.
MAX_LINE: Final = 128


class Segment:
    """A run of one connection's records, consecutive in number, settled together.

    ``state`` is ``None`` while pending, ``True`` once stored, or the drop
    reason (a ``str``).
    """

    __slots__ = ("first", "last", "state")

    def __init__(self, first: int, last: int, state: bool | str | None) -> None:
        self.first = first
        self.last = last
        self.state = state

    def __repr__(self) -> str:
        return f"Segment({self.first}, {self.last}, {self.state!r})"


class AckLedger:
    """The daemon's record of one connection's records: which are settled.

    The connection numbers its records as it hands them on, a read at a time:
    a run queued for the store (:meth:`queued`, settled later by
    :meth:`stored`) or dropped at once (:meth:`dropped`). :meth:`take_lines`
    turns the settled prefix into protocol lines. While nobody takes lines
    (the client does not read), settled runs pile up behind the oldest
    pending one; :meth:`compact` merges neighbours with the same outcome, so
    what remains grows only with pending batches (bounded by the pipeline)
    and with alternations of stored and dropped runs (the caller bounds
    those).
    """

    __slots__ = ("_segments", "acked", "numbered")

    def __init__(self) -> None:
        self._segments: deque[Segment] = deque()
        #: records numbered so far (the last record's number)
        self.numbered = 0
        #: the highest ``ack`` already produced by :meth:`take_lines`
        self.acked = 0

    @property
    def backlog(self) -> int:
        """Segments held: pending batches plus settled runs not yet written out."""
        return len(self._segments)

    def queued(self, n: int) -> Segment:
        """Number *n* records queued for the store; return their pending segment."""
        seg = Segment(self.numbered + 1, self.numbered + n, None)
        self.numbered += n
        self._segments.append(seg)
        return seg

    def stored(self, seg: Segment, stored: int, reason: str = "disk") -> None:
        """The store wrote the first *stored* records of *seg*; the rest were dropped (*reason*).

        A run cut short (a full disk mid-batch) becomes two: stored, then dropped.
        """
        if stored > seg.last - seg.first:
            seg.state = True
        elif stored <= 0:
            seg.state = reason
        else:
            tail = Segment(seg.first + stored, seg.last, reason)
            seg.last = seg.first + stored - 1
            seg.state = True
            segs = self._segments
            segs.insert(segs.index(seg) + 1, tail)  # O(backlog), only on a partial write

    def dropped(self, n: int, reason: str) -> None:
        """Number *n* records that were dropped before reaching the store."""
        if n <= 0:
            return
        first = self.numbered + 1
        self.numbered += n
        segs = self._segments
        if segs and segs[-1].state == reason:
            segs[-1].last = self.numbered
        else:
            segs.append(Segment(first, self.numbered, reason))

    def compact(self) -> int:
        """Merge neighbouring settled runs with the same outcome; return how many remain."""
        out: deque[Segment] = deque()
        settled = 0
        for seg in self._segments:
            state = seg.state
            if state is None:
                out.append(seg)
            elif out and out[-1].state == state:
                out[-1].last = seg.last
            else:
                out.append(seg)
                settled += 1
        self._segments = out
        return settled

    def take_lines(self) -> bytes:
        """Return the lines for what became settled since the last call (maybe ``b""``)."""
        segs = self._segments
        out: list[bytes] = []
        top = self.acked
        while segs and segs[0].state is not None:
            seg = segs.popleft()
            state = seg.state
            last = seg.last
            if state is not True:
                # merge with following runs dropped for the same reason
                while segs and segs[0].state == state:
                    last = segs.popleft().last
                out.append(b"drop %d %d %s\n" % (seg.first, last, str(state).encode()))
            top = last
        if top != self.acked:
            self.acked = top
            out.append(b"ack %d\n" % top)
        return b"".join(out)


class AckEvent(NamedTuple):
    """What one daemon line said, for the client.

    ``kind`` is ``"welcome"``, ``"ack"`` (``last`` = N) or ``"drop"``
    (``first``..``last`` and ``reason``).
    """

    kind: str
    first: int = 0
    last: int = 0
    reason: str = ""


class AckReader:
    """The client's parser of the daemon's lines: bytes in, :class:`AckEvent` out.

    Checks what a client must be able to rely on: numbers are ASCII decimal,
    ``ack`` never decreases, and a ``drop`` range lies beyond the last ack.
    Unknown lines are skipped.
    """

    __slots__ = ("_buf", "_offset", "acked")

    def __init__(self) -> None:
        self._buf = b""
        self._offset = 0
        self.acked = 0

    def receive_data(self, data: bytes) -> list[AckEvent]:
        """Feed bytes from the socket; return the events of the complete lines.

        Raises:
            ProtocolError: a line is too long, not ASCII numbers where they
                must be, or contradicts an earlier one.
        """
        buf = self._buf + data if self._buf else data
        events: list[AckEvent] = []
        start = 0
        while (end := buf.find(b"\n", start)) >= 0:
            line = buf[start:end]
            event = self._parse(line, self._offset + start)
            if event is not None:
                events.append(event)
            start = end + 1
        rest = buf[start:]
        if len(rest) > MAX_LINE:
            msg = f"acknowledgement line {excerpt(rest)} longer than {MAX_LINE} bytes"
            raise ProtocolError(msg, offset=self._offset + start, excerpt=excerpt(rest))
        self._offset += start
        self._buf = rest
        return events

    def _parse(self, line: bytes, offset: int) -> AckEvent | None:
        parts = line.split(b" ")
        kind = parts[0]
        if kind == b"ack" and len(parts) == 2:
            n = _number(parts[1], line, offset)
            if n < self.acked:
                msg = (
                    f"acknowledgement {line!r} at offset {offset}: went back from ack {self.acked}"
                )
                raise ProtocolError(msg, offset=offset, excerpt=excerpt(line))
            self.acked = n
            return AckEvent("ack", 0, n)
        if kind == b"drop" and len(parts) == 4:
            first = _number(parts[1], line, offset)
            last = _number(parts[2], line, offset)
            if not (self.acked < first <= last):
                msg = (
                    f"acknowledgement {line!r} at offset {offset}: expected a range "
                    f"after ack {self.acked}"
                )
                raise ProtocolError(msg, offset=offset, excerpt=excerpt(line))
            return AckEvent("drop", first, last, parts[3].decode("ascii", "replace"))
        if line == ACK_WELCOME[:-1]:
            return AckEvent("welcome")
        return None


def _number(text: bytes, line: bytes, offset: int) -> int:
    # bytes.isdigit is ASCII-only; int() alone would take b"+1" or b"1_0".
    if not (text.isdigit() and len(text) <= 20):
        msg = f"acknowledgement {line!r} at offset {offset}: expected a decimal number"
        raise ProtocolError(msg, offset=offset, excerpt=excerpt(line))
    return int(text)
