"""ReceiveBuffer: the unfinished frame kept between reads."""

from __future__ import annotations

from trio_logd.protocol._buffer import ReceiveBuffer


def test_extend_take_clear() -> None:
    """Bytes come out in order, from the front, as immutable bytes."""
    buf = ReceiveBuffer()
    buf.extend(b"abc")
    buf.extend(b"def")
    assert (len(buf), buf.peek(), buf.last_byte()) == (6, b"abcdef", ord("f"))
    assert buf.take(2) == b"ab"
    assert (len(buf), buf.peek()) == (4, b"cdef")
    assert buf.take() == b"cdef"
    assert (len(buf), repr(buf)) == (0, "<ReceiveBuffer 0 bytes>")
    buf.extend(b"x")
    buf.clear()
    assert buf.take() == b""
