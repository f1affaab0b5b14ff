"""Query memory in bytes: the daemon-wide budget and the cutting of answers into batches.

How this works: every byte of answer the daemon holds for a query (lines
found and not yet sent, a follower's buffered live records) is taken from
one :class:`ByteBudget` shared by all queries and follows
(``[control] query_memory_bytes``), and each query holds at most
``query_buffer_bytes`` of it at a time. A query's scan step takes its
share *before* it runs and gives it back once the batch is sent, so a
client that does not read holds its query paused at that share; a follower
whose share (or the budget) is used up skips records and counts them.

:class:`LineBatch` holds the lines a scan step found and cuts them into
batches by their encoded size, so no batch is bigger than the share it was
given (except one line longer than the whole share, sent alone).

Pure: no trio, no clock, no I/O; the daemon's trio wiring waits on the
budget (``server._query``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Final

__all__ = ["RECORD_OVERHEAD", "ByteBudget", "LineBatch"]

#: Bytes a stored line gains as a ``record`` response line:
#: ``{"type":"record","record":`` before, ``}`` and LF after.
RECORD_OVERHEAD: Final = len(b'{"type":"record","record":') + 2


class ByteBudget:
    """Bytes held by all queries together, against a total.

    Args:
        total: the budget (``[control] query_memory_bytes``); may be changed
            later (reload): what is held stays held, new takes see the new total.
    """

    def __init__(self, total: int) -> None:
        self.total = total
        self.used = 0

    def try_take(self, n: int) -> bool:
        """Take *n* bytes if they fit; return whether they were taken."""
        if self.used + n > self.total:
            return False
        self.used += n
        return True

    def take(self, n: int) -> None:
        """Take *n* bytes whether or not they fit (a batch that ran over its share by one line)."""
        self.used += n

    def release(self, n: int) -> None:
        """Give back *n* bytes taken before."""
        self.used -= n
        if self.used < 0:
            msg = f"released {n} bytes more than were taken"
            self.used = 0
            raise ValueError(msg)


class LineBatch:
    """Lines found and not yet sent, cut into batches by encoded bytes."""

    def __init__(self) -> None:
        self._lines: deque[bytes] = deque()
        #: encoded size of the lines held (:data:`RECORD_OVERHEAD` each included)
        self.nbytes = 0

    def __len__(self) -> int:
        return len(self._lines)

    def add(self, lines: Iterable[bytes]) -> None:
        """Append lines (stored lines, without LF)."""
        for line in lines:
            self._lines.append(line)
            self.nbytes += len(line) + RECORD_OVERHEAD

    def cut(self, max_bytes: int) -> list[bytes]:
        """Take the oldest lines whose encoded size sums to at most *max_bytes*.

        At least one line is taken when any is held, so a line longer than
        *max_bytes* goes out alone rather than never.
        """
        out: list[bytes] = []
        size = 0
        lines = self._lines
        while lines:
            n = len(lines[0]) + RECORD_OVERHEAD
            if out and size + n > max_bytes:
                break
            out.append(lines.popleft())
            size += n
        self.nbytes -= size
        return out
