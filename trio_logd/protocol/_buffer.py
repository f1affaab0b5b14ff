# ReceiveBuffer: the one bytearray a FrameDecoder keeps between reads.
#
# How this works: the decoder cuts every complete frame straight out of the
# bytes the caller handed in (bytes.split / find on an immutable object, no
# copy into the buffer). Only the *unfinished* frame at the end of a read is
# copied here, and only as far as it can still matter: at most
# max_message_bytes + 2 bytes for a line (the payload, a CR that may yet be
# stripped, one byte to prove it is too long), at most max_message_bytes of an
# octet-counted payload, at most MAX_OCTET_COUNT_DIGITS digits of a count.
#
# Invariant (the "remembered search offset" of h11's _receivebuffer.py): the
# buffer never holds a frame delimiter. Bytes enter it only after they were
# searched, so the search on the next read starts at the new bytes and a
# sender that trickles one byte per read never causes a rescan. Whatever is
# consumed is taken from the front (del buf[:n]), which CPython does in O(n)
# of the bytes removed (bpo-19087).

from __future__ import annotations

__all__ = ["ReceiveBuffer"]


class ReceiveBuffer:
    """The bytes of one unfinished frame, kept between reads."""

    __slots__ = ("_data",)

    def __init__(self) -> None:
        self._data = bytearray()

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"<ReceiveBuffer {len(self._data)} bytes>"

    def extend(self, data: bytes) -> None:
        """Append *data* (already searched for delimiters by the caller)."""
        self._data += data

    def last_byte(self) -> int:
        """Return the last byte held (the buffer must not be empty)."""
        return self._data[-1]

    def peek(self) -> bytes:
        """Return a copy of everything held, leaving it in place."""
        return bytes(self._data)

    def take(self, n: int = -1) -> bytes:
        """Remove and return the first *n* bytes (all of them when *n* < 0)."""
        if n < 0:
            out = bytes(self._data)
            self._data.clear()
            return out
        out = bytes(self._data[:n])
        del self._data[:n]
        return out

    def clear(self) -> None:
        """Drop everything held."""
        self._data.clear()
