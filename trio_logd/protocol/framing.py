"""Split a syslog byte stream into frames, decided per frame as rsyslog does.

SPEC §2: a frame that starts with an ASCII digit is RFC 6587 octet-counted
(``MSG-LEN SP SYSLOG-MSG``); anything else ends at LF or NUL, whichever comes
first, with one trailing CR stripped. Empty frames are ignored. A frame longer
than ``max_message_bytes`` is returned cut to that length with
``truncated=True`` and the rest of it is skipped up to its end, so framing
stays in step and memory stays bounded however the bytes trickle in.

How this works: :meth:`FrameDecoder.receive_data` does the work eagerly. The
complete frames of a read are cut straight out of the caller's ``bytes``
(for the common case, hundreds of LF or NUL frames in one 64 KiB read, with
one ``bytes.split`` and a few C-level passes, no Python loop over frames) and
queued; only the unfinished frame at the end is copied into a
:class:`~trio_logd.protocol._buffer.ReceiveBuffer`. Besides the frames
waiting to be taken, the decoder therefore never holds more than
``max_message_bytes + BUFFER_SLACK`` bytes, even when one call hands it 10 MB.
A framing error is remembered and raised by :meth:`~FrameDecoder.next_frame`
/ :meth:`~FrameDecoder.frames` once the frames before it have been taken;
from then on every call raises it.

Decisions where RFC 6587 and SPEC §2 leave a choice:

- An octet count may have leading zeros, and ``0 `` is an empty frame
  (ignored), as rsyslog reads them; more than 10 digits, or digits followed
  by anything but a space, is a :class:`~trio_logd.errors.FramingError`,
  raised as soon as the 11th digit or the wrong byte arrives.
- An octet-counted payload is returned byte for byte: its CR or LF are data.
- A frame too long is returned as soon as that is certain (after
  ``max_message_bytes + 1`` bytes, or + 2 when the extra byte is a CR that
  may yet be stripped), then skipped to its end.
- At EOF: an unfinished LF/NUL frame is a frame (not truncated, as rsyslog
  stores it), an unfinished octet-counted frame is a frame of what arrived
  with ``truncated=True``, and an unfinished octet count (``12`` then EOF) is
  a FramingError: the sender announced a frame it never framed, and the
  daemon then writes a ``protocol_error`` record naming it rather than
  dropping the bytes silently. The same holds when the writer changes
  (:meth:`~FrameDecoder.close_partial`).
- After a FramingError further bytes are counted (``consumed``) and dropped.

Example (the shape of the daemon's read loop)::

    decoder = FrameDecoder(max_message_bytes)
    while True:
        data = await stream.receive_some(65536)
        decoder.receive_data(data)  # b"" is EOF
        while batch := decoder.frames():  # raises FramingError
            store(batch)
        if not data:
            break
"""

from __future__ import annotations

import enum
from itertools import repeat
from operator import itemgetter
from typing import Final, NamedTuple

from trio_logd.errors import EXCERPT_BYTES, FramingError, excerpt
from trio_logd.protocol._abnf import ASCII_DIGITS, MAX_OCTET_COUNT_DIGITS
from trio_logd.protocol._buffer import ReceiveBuffer

__all__ = ["BUFFER_SLACK", "NEED_DATA", "Frame", "FrameDecoder", "NeedData"]


class NeedData(enum.Enum):
    """The type of :data:`NEED_DATA` (an enum, so ``is NEED_DATA`` narrows types)."""

    NEED_DATA = "NEED_DATA"

    def __repr__(self) -> str:
        return self.value

    __str__ = __repr__


#: Returned by :meth:`FrameDecoder.next_frame` when no complete frame is
#: available yet (as h11's ``NEED_DATA``). After EOF it means "no more frames".
NEED_DATA: Final = NeedData.NEED_DATA


class Frame(NamedTuple):
    """One frame of the stream.

    Attributes:
        data: the payload, delimiter and one trailing CR removed (octet-counted
            frames are returned byte for byte); at most ``max_message_bytes``
            long, never empty.
        truncated: the frame was longer than ``max_message_bytes`` and was
            cut (or an octet-counted frame was cut short by EOF or by a change
            of writer).
    """

    data: bytes
    truncated: bool


# Decoder states. The buffer holds bytes only in _LINE, _COUNT and _OCTET.
_START: Final = 0  # at the start of a frame
_LINE: Final = 1  # an unfinished LF/NUL frame is buffered (no delimiter in it)
_COUNT: Final = 2  # an unfinished octet count is buffered (1..10 ASCII digits)
_OCTET: Final = 3  # collecting the payload of an octet-counted frame
_SKIP_LINE: Final = 4  # skipping the rest of an oversized LF/NUL frame
_SKIP_OCTET: Final = 5  # skipping the rest of an oversized octet-counted frame

_DIGIT_CODES: Final = frozenset(ASCII_DIGITS)  # ints 48..57: what data[i] gives
_CR: Final = 0x0D
# An octet count plus its space fits in this many bytes.
_HEADER_BYTES: Final = MAX_OCTET_COUNT_DIGITS + 1
#: How far ``buffered`` may exceed ``max_message_bytes``. A line is held with
#: at most max + 2 bytes (its payload, a CR that may still be stripped, one byte
#: proving it too long), an octet count with at most 10 digits: this covers
#: both, whatever max_message_bytes is.
BUFFER_SLACK: Final = MAX_OCTET_COUNT_DIGITS

_first_byte = itemgetter(0)
# tuple.__new__(Frame, (data, False)) builds a Frame without the Python-level
# NamedTuple.__new__: 96 ns against 290 ns per frame (CPython 3.11), which is
# most of the fast path's cost.
_tuple_new = tuple.__new__


class FrameDecoder:
    """Sans-IO decoder: bytes in, :class:`Frame` objects out.

    One per connection. Feed it every read with :meth:`receive_data` (``b""``
    at EOF); take frames with :meth:`frames` (all at once, the fast path) or
    :meth:`next_frame` (one at a time).

    Args:
        max_message_bytes: frames longer than this are cut to it
            (``truncated=True``) and the rest skipped.

    Raises:
        ValueError: *max_message_bytes* is less than 1.
    """

    __slots__ = (
        "_buf",
        "_eof",
        "_error",
        "_max",
        "_ready",
        "_ready_pos",
        "_received",
        "_skip",
        "_state",
        "_want",
    )

    def __init__(self, max_message_bytes: int = 65536) -> None:
        if max_message_bytes < 1:
            msg = f"max_message_bytes must be at least 1, got {max_message_bytes}"
            raise ValueError(msg)
        self._max = max_message_bytes
        self._buf = ReceiveBuffer()
        self._state = _START
        self._want = 0  # _OCTET: payload bytes still to collect
        self._skip = 0  # _OCTET/_SKIP_OCTET: bytes to skip after the kept part
        self._ready: list[Frame] = []
        self._ready_pos = 0  # next_frame() reads _ready from here
        self._received = 0  # stream offset just past the last byte received
        self._eof = False
        self._error: FramingError | None = None

    def __repr__(self) -> str:
        return (
            f"<FrameDecoder state={self._state} buffered={len(self._buf)}"
            f" ready={len(self._ready) - self._ready_pos} eof={self._eof}"
            f" failed={self._error is not None}>"
        )

    @property
    def buffered(self) -> int:
        """Bytes of an unfinished frame held between calls.

        At most ``max_message_bytes + BUFFER_SLACK`` whatever was received.
        Complete frames waiting to be taken are not counted.
        """
        return len(self._buf)

    @property
    def in_frame(self) -> bool:
        """Whether a frame has started and not ended (its bytes buffered or being skipped).

        The daemon's per-frame deadline (``[daemon] frame_timeout``) runs
        while this is true.
        """
        return self._state != _START

    @property
    def consumed(self) -> int:
        """Stream offset of the first byte held in the buffer (for error offsets)."""
        return self._received - len(self._buf)

    # -- input ------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Add bytes read from the connection; ``b""`` means EOF.

        Frames are cut at once and queued for :meth:`frames` /
        :meth:`next_frame`. At EOF an unfinished LF/NUL frame becomes a frame
        (not truncated: it just lacked its delimiter, and rsyslog stores it
        too), and an unfinished octet-counted frame becomes a frame of what
        arrived, ``truncated=True``. After a framing error further bytes are
        counted and dropped.

        Args:
            data: the bytes read, or ``b""`` at EOF. A ``bytearray`` (what
                ``trio.abc.ReceiveStream.receive_some`` may return) or
                ``memoryview`` is copied to ``bytes`` first.

        Raises:
            RuntimeError: bytes were passed after EOF (a programming error).
        """
        if self._eof:
            if data:
                msg = "FrameDecoder.receive_data() got bytes after EOF"
                raise RuntimeError(msg)
            return
        if not data:
            self._eof = True
            if self._error is None:
                frame = self._take_partial("the stream ended")
                if frame is not None:
                    self._ready.append(frame)
            return
        # Frames must be immutable bytes (slices of a bytes object), not views.
        raw = data if type(data) is bytes else bytes(data)
        base = self._received
        self._received = base + len(raw)
        if self._error is not None:
            return
        pos = 0 if self._state == _START else self._resume(raw, base)
        if pos < len(raw):
            self._scan(raw, pos, base)

    # -- output -----------------------------------------------------------

    def next_frame(self) -> Frame | NeedData:
        """Return the next complete frame, or :data:`NEED_DATA`.

        Returns:
            The next :class:`Frame`, or :data:`NEED_DATA` if none is complete
            yet (after EOF: if none will ever come).

        Raises:
            FramingError: the stream cannot be framed (a lying octet count);
                raised once every frame before the error has been returned,
                and again by every later call.
        """
        ready = self._ready
        pos = self._ready_pos
        if pos < len(ready):
            frame = ready[pos]
            pos += 1
            if pos == len(ready):
                self._ready = []
                pos = 0
            self._ready_pos = pos
            return frame
        if self._error is not None:
            raise self._error.with_traceback(None)
        return NEED_DATA

    def frames(self) -> list[Frame]:
        """Return every complete frame available now (the daemon's fast path).

        Returns:
            The frames in stream order; ``[]`` when none is complete yet.

        Raises:
            FramingError: as :meth:`next_frame`: only when no frame is left
                before the error. Call again until it returns ``[]`` so that
                an error behind the last good frame is seen at once.
        """
        ready = self._ready
        if ready:
            pos = self._ready_pos
            self._ready = []
            self._ready_pos = 0
            return ready[pos:] if pos else ready
        if self._error is not None:
            raise self._error.with_traceback(None)
        return []

    def close_partial(self) -> Frame | None:
        """Close off the unfinished frame: the writer changed (SCM_CREDENTIALS).

        The bytes buffered so far become a frame of their own (never glued
        to the next writer's bytes) and the decoder is back at the start of
        a frame. Take the complete frames (:meth:`frames`) first: they come
        before this one.

        Returns:
            The unfinished frame (an LF/NUL frame as it is; an octet-counted
            one with ``truncated=True``), or ``None`` if nothing was buffered,
            the buffered bytes were an empty frame, or the decoder was skipping
            the rest of an oversized frame (it just stops skipping).

        Raises:
            FramingError: the decoder already failed, or an unfinished octet
                count (digits without their space) was buffered: that writer
                sent a frame header it never finished.
            RuntimeError: complete frames were still waiting to be taken.
        """
        if self._ready_pos < len(self._ready):
            msg = "FrameDecoder.close_partial() with frames not yet taken: call frames() first"
            raise RuntimeError(msg)
        if self._error is None:
            frame = self._take_partial("the writer changed")
            if self._error is None:
                return frame
        raise self._error.with_traceback(None)

    # -- internals --------------------------------------------------------

    def _take_partial(self, why: str) -> Frame | None:
        """Turn the unfinished frame into a frame, reset to _START."""
        state = self._state
        self._state = _START
        if state == _LINE:
            data = self._buf.take()
            if data[-1:] == b"\r":
                data = data[:-1]
            # A line stays buffered only while it may still fit (at most max
            # bytes, or max + 1 ending in CR): stripped, it always fits.
            return Frame(data, False) if data else None
        if state == _OCTET:
            data = self._buf.take()
            return Frame(data, True) if data else None
        if state == _COUNT:
            offset = self.consumed
            head = self._buf.take()
            self._fail(
                f"incomplete octet count {excerpt(head)} at offset {offset}:"
                f" {why} before the space that ends it",
                offset,
                head,
            )
        return None  # _START, _SKIP_LINE, _SKIP_OCTET: nothing to return

    def _fail(self, message: str, offset: int, context: bytes) -> None:
        self._error = FramingError(message, offset=offset, excerpt=excerpt(context))
        self._buf.clear()
        self._state = _START

    def _fail_count(self, head: bytes, offset: int, context: bytes) -> None:
        """Record a lying octet count; *head* starts with the count's digits."""
        digits = len(head) - len(head.lstrip(ASCII_DIGITS))
        if digits > MAX_OCTET_COUNT_DIGITS:
            bad = head[:_HEADER_BYTES]
            expected = f"at most {MAX_OCTET_COUNT_DIGITS} ASCII digits then a space"
        else:
            bad = head[: digits + 1]
            expected = "ASCII digits then a space"
        self._fail(
            f"invalid octet count {excerpt(bad)} at offset {offset}: expected {expected}",
            offset,
            context,
        )

    def _scan(self, data: bytes, pos: int, base: int) -> None:
        """Cut frames out of data[pos:], starting at the start of a frame."""
        n = len(data)
        ready = self._ready
        maxb = self._max
        fast = True
        nl = nul = -1  # per-frame path: next LF / NUL at or after pos (n: none)
        while pos < n:
            if data[pos] in _DIGIT_CODES:
                # Octet-counted. Inline the common case (a complete frame that
                # fits); _octet_frame handles the rest, errors included.
                space = data.find(b" ", pos, pos + _HEADER_BYTES)
                if space > pos and (digits := data[pos:space]).isdigit():
                    start = space + 1
                    count = int(digits)  # ASCII digits only: isdigit() checked
                    end = start + count
                    if 0 < count <= maxb and end <= n:
                        ready.append(_tuple_new(Frame, (data[start:end], False)))
                        pos = end
                    else:
                        pos = self._octet_body(data, start, count)
                    continue
                pos = self._octet_frame(data, pos, base)
                continue
            if fast:
                # Every LF/NUL frame up to the last delimiter of the read, in
                # C-level passes. NUL becomes LF (both end a frame, neither is
                # ever part of one) and CR LF becomes LF (one CR stripped).
                last = data.rfind(b"\n")
                last = max(last, data.rfind(b"\x00", last + 1))
                if last >= pos:
                    region = data[pos : last + 1]
                    if b"\x00" in region:
                        region = region.replace(b"\x00", b"\n")
                    if b"\r" in region:
                        region = region.replace(b"\r\n", b"\n")
                    parts = region.split(b"\n")
                    parts.pop()  # the region ends with a delimiter
                    parts = list(filter(None, parts))  # empty frames are ignored
                    # A frame that starts with a digit is octet-counted and may
                    # span LFs, and an oversized one must be cut: both need the
                    # per-frame path.
                    if _DIGIT_CODES.isdisjoint(map(_first_byte, parts)) and (
                        last - pos <= maxb or max(map(len, parts), default=0) <= maxb
                    ):
                        ready.extend(map(_tuple_new, repeat(Frame), zip(parts, repeat(False))))
                        pos = last + 1
                        continue
                fast = False
            # One LF/NUL frame. nl and nul remember the last search, so bytes
            # are searched at most once per delimiter whatever the frame mix.
            if nl < pos:
                nl = data.find(b"\n", pos)
                if nl < 0:
                    nl = n
            if nul < pos:
                nul = data.find(b"\x00", pos)
                if nul < 0:
                    nul = n
            end = min(nl, nul)
            if end == n:
                self._line_tail(data, pos)
                return
            frame = data[pos:end]
            if frame[-1:] == b"\r":
                frame = frame[:-1]
            if frame:
                if len(frame) > maxb:
                    ready.append(Frame(frame[:maxb], True))
                else:
                    ready.append(Frame(frame, False))
            pos = end + 1

    def _line_tail(self, data: bytes, pos: int) -> None:
        """data[pos:] is an LF/NUL frame without its delimiter (yet)."""
        n = len(data)
        maxb = self._max
        size = n - pos
        if size > maxb + 1 or (size == maxb + 1 and data[-1] != _CR):
            # Too long whatever comes next: emit now, skip to the delimiter.
            self._ready.append(Frame(data[pos : pos + maxb], True))
            self._state = _SKIP_LINE
        else:
            self._buf.extend(data[pos:])
            self._state = _LINE

    def _octet_frame(self, data: bytes, pos: int, base: int) -> int:
        """An octet-counted frame starts at data[pos]; return where the next starts."""
        head = data[pos : pos + _HEADER_BYTES]
        space = head.find(b" ")
        # bytes.isdigit() is ASCII-only: b"+1", b"1_0", b" 1" and "١" are refused.
        if space > 0 and head[:space].isdigit():
            return self._octet_body(data, pos + space + 1, int(head[:space]))
        if len(head) <= MAX_OCTET_COUNT_DIGITS and head.isdigit():
            # The read ended inside the count (all digits so far).
            self._buf.extend(head)
            self._state = _COUNT
            return len(data)
        self._fail_count(head, base + pos, data[pos : pos + EXCERPT_BYTES + 1])
        return len(data)

    def _octet_body(self, data: bytes, pos: int, count: int) -> int:
        """The payload of *count* bytes starts at data[pos]; return the end."""
        if count == 0:
            return pos  # "0 " is an empty frame: ignored
        n = len(data)
        maxb = self._max
        keep = min(count, maxb)
        skip = count - keep
        if n - pos < keep:
            self._buf.extend(data[pos:])
            self._want = keep - (n - pos)
            self._skip = skip
            self._state = _OCTET
            return n
        end = pos + keep
        self._ready.append(Frame(data[pos:end], skip > 0))
        return self._skip_octets(n, end, skip)

    def _skip_octets(self, n: int, pos: int, skip: int) -> int:
        if n - pos >= skip:
            self._state = _START
            return pos + skip
        self._skip = skip - (n - pos)
        self._state = _SKIP_OCTET
        return n

    def _skip_line(self, data: bytes, pos: int) -> int:
        end = data.find(b"\n", pos)
        nul = data.find(b"\x00", pos, end if end >= 0 else len(data))
        if nul >= 0:
            end = nul
        if end < 0:
            return len(data)
        self._state = _START
        return end + 1

    def _resume(self, data: bytes, base: int) -> int:
        """Continue an unfinished state with *data*; return where _START resumes."""
        state = self._state
        n = len(data)
        buf = self._buf
        if state == _LINE:
            maxb = self._max
            # Only this many more bytes can matter (see _line_tail).
            limit = maxb + 2 - len(buf)
            end = data.find(b"\n", 0, limit)
            nul = data.find(b"\x00", 0, end if end >= 0 else limit)
            if nul >= 0:
                end = nul
            if end >= 0:
                buf.extend(data[:end])
                frame = buf.take()
                self._state = _START
                if frame[-1:] == b"\r":
                    frame = frame[:-1]
                if frame:
                    if len(frame) > maxb:
                        self._ready.append(Frame(frame[:maxb], True))
                    else:
                        self._ready.append(Frame(frame, False))
                return end + 1
            buf.extend(data[:limit])
            size = len(buf)
            if size > maxb + 1 or (size == maxb + 1 and buf.last_byte() != _CR):
                self._ready.append(Frame(buf.take(maxb), True))
                buf.clear()
                self._state = _SKIP_LINE
                return self._skip_line(data, limit) if limit < n else n
            return n
        if state == _COUNT:
            have = len(buf)
            head = buf.peek() + data[: _HEADER_BYTES - have]
            space = head.find(b" ")
            if space > 0 and head[:space].isdigit():
                buf.clear()
                self._state = _START
                return self._octet_body(data, space + 1 - have, int(head[:space]))
            if len(head) <= MAX_OCTET_COUNT_DIGITS and head.isdigit():
                buf.extend(data)
                return n
            self._fail_count(head, base - have, buf.peek() + data[: EXCERPT_BYTES + 1])
            return n
        if state == _OCTET:
            want = self._want
            if n < want:
                buf.extend(data)
                self._want = want - n
                return n
            buf.extend(data[:want])
            skip = self._skip
            self._ready.append(Frame(buf.take(), skip > 0))
            return self._skip_octets(n, want, skip)
        if state == _SKIP_OCTET:
            return self._skip_octets(n, 0, self._skip)
        # _SKIP_LINE
        return self._skip_line(data, 0)
