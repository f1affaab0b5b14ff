"""Per-uid queues between the connection tasks and the one writer task.

How this works: connection tasks encode whole batches of record lines (one
batch per socket read) and append them to the queue of the uid the records are
filed with, assigning ``seq`` as they do. Assigning ``seq`` and appending
happen with no checkpoint in between, so a uid's queue is always in ``seq``
order, and the writer writes each queue in order: the file order is the
``seq`` order.

The writer drains the queues round-robin, taking at most ``round_bytes`` from
each uid per round, so a uid with a deep backlog (a flooder) cannot make a
quiet uid's record wait behind it: the quiet record goes out in the very next
round. A uid whose queue holds more than ``uid_pending_bytes`` makes its own
connection tasks wait (:meth:`UidState.wait_for_room`): backpressure reaches
that uid's senders through the kernel's socket buffers, and nobody else.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

import trio

__all__ = ["Batch", "Pipeline", "UidState"]

#: How many bytes of one uid's backlog the writer takes per round. A 64 KiB
#: read of 120-byte records gives ~500 records, so a round takes a few reads'
#: worth per uid: large enough to amortise the thread hop, small enough that a
#: quiet uid waits at most one round (~1-2 ms of writing) behind a flooder.
ROUND_BYTES: Final = 256 * 1024
#: Queue depth at which a uid's own connection tasks stop reading.
UID_PENDING_BYTES: Final = 1024 * 1024


@dataclass(slots=True)
class Batch:
    """Encoded record lines of one uid, contiguous in ``seq``, received at one time.

    It is a ``store.Run``: the writer learns from it, not from the bytes, the
    lines' ``seq`` range, their ``ts`` and whether it is a daemon record.
    """

    lines: list[bytes]
    nbytes: int
    last_seq: int
    #: the lines' ``ts``, as encoded in each of them
    ts: bytes
    #: called by the writer once the batch is settled, with how many of its
    #: first lines were stored (and synced per policy): ``len(lines)`` when
    #: all, ``0`` when none; the others were dropped (reason ``disk``).
    on_stored: Callable[[int], None] | None = None
    #: the ``event`` of a daemon record (then the batch's only line), else ``None``
    event: str | None = None
    #: the writer's ``(unit, slice, user_unit, user_slice)`` (``Stamp.names``);
    #: ``None`` for a daemon record, whose line the store searches for them
    names: tuple[str | None, str | None, str | None, str | None] | None = None

    @property
    def first_seq(self) -> int:
        """The ``seq`` of the first line."""
        return self.last_seq - len(self.lines) + 1


@dataclass(slots=True, eq=False)
class UidState:
    """Everything the daemon keeps per uid while it runs."""

    uid: int
    last_seq: int
    #: the store did not know the uid's ``seq`` high-water mark when the uid
    #: was first seen (its directory could not be read): records are numbered
    #: from 0 meanwhile and not written; once the writer learns the mark, what
    #: is queued is numbered again past it (``renumber``)
    provisional: bool = False
    #: the writer's last write for this uid failed; it does not try again
    #: before ``retry_at`` (trio time) unless the disk reports room
    failing: bool = False
    retry_at: float = 0.0
    pending: deque[Batch] = field(default_factory=deque)
    pending_bytes: int = 0
    room: trio.Event | None = None
    # statistics, since start (daemon records not counted in records/bytes)
    records: int = 0
    bytes: int = 0
    stored: int = 0
    connections: int = 0

    def next_seqs(self, n: int) -> int:
        """Reserve *n* sequence numbers; return the first. Sync: no checkpoint."""
        first = self.last_seq + 1
        self.last_seq += n
        return first

    def renumber(self, mark: int, first: int) -> int:
        """Seqs from *first* on were given without knowing the store's *mark*: move them past it.

        Every seq given from *first* up to now moves by the returned offset, so
        *first* becomes ``mark + 1``; the caller renumbers the lines still
        queued (none of them is written yet). Records among them that were
        dropped meanwhile keep their place as a gap, exactly as many as were
        counted. Sync: no checkpoint.

        Returns:
            The offset (``mark - first + 1``, at least 0).
        """
        offset = max(mark - first + 1, 0)
        self.last_seq += offset
        self.provisional = False
        return offset

    async def wait_for_room(self, limit: int = UID_PENDING_BYTES) -> None:
        """Wait while this uid's queue is deeper than *limit* bytes."""
        while self.pending_bytes > limit:
            if self.room is None:
                self.room = trio.Event()
            await self.room.wait()


class Pipeline:
    """The per-uid queues, plus the wake-up of the writer.

    Args:
        last_seq: where a uid's numbering continues (the store's view after
            recovery); called once per uid, the first time it is seen;
            ``None``: not known yet (the uid starts ``provisional``).
        round_bytes: per-uid share of one writer round.
    """

    def __init__(
        self, last_seq: Callable[[int], int | None], *, round_bytes: int = ROUND_BYTES
    ) -> None:
        self._last_seq = last_seq
        self.round_bytes = round_bytes
        self.uids: dict[int, UidState] = {}
        self._ready: deque[UidState] = deque()
        self._work = trio.Event()
        self.closed = False
        self.pending_bytes = 0
        #: called by the writer task, in the event loop, after each uid's lines
        #: of a round are stored: ``hook(uid, lines)``. Followers (``logq -f``)
        #: and forwarders subscribe here; a hook must not block.
        self.written_hooks: list[Callable[[int, list[bytes]], None]] = []

    def state(self, uid: int) -> UidState:
        """Return (creating on first use) the state of *uid*."""
        st = self.uids.get(uid)
        if st is None:
            mark = self._last_seq(uid)
            st = self.uids[uid] = UidState(uid, mark or 0, provisional=mark is None)
        return st

    def submit(self, st: UidState, batch: Batch) -> None:
        """Queue a batch for *st*'s uid and wake the writer. Never blocks."""
        if self.closed:
            msg = "pipeline closed"
            raise trio.ClosedResourceError(msg)
        if not st.pending:
            self._ready.append(st)
        st.pending.append(batch)
        st.pending_bytes += batch.nbytes
        self.pending_bytes += batch.nbytes
        self._work.set()

    def put_back(self, st: UidState, batches: list[Batch]) -> None:
        """Queue *batches* (taken from *st* by :meth:`take_round`) again, first in line."""
        if not batches:
            return
        if not st.pending and st not in self._ready:
            self._ready.append(st)
        st.pending.extendleft(reversed(batches))
        n = sum(b.nbytes for b in batches)
        st.pending_bytes += n
        self.pending_bytes += n
        self._work.set()

    def close(self) -> None:
        """No more batches; the writer drains what is queued and stops."""
        self.closed = True
        self._work.set()

    async def wait_for_work(self) -> bool:
        """Wait until something is queued; return ``False`` once closed and drained."""
        while not self._ready:
            if self.closed:
                return False
            await self._work.wait()
            self._work = trio.Event()
        return True

    def take_round(self) -> list[tuple[UidState, list[Batch]]]:
        """Take up to ``round_bytes`` of each ready uid's backlog, round-robin."""
        out: list[tuple[UidState, list[Batch]]] = []
        for _ in range(len(self._ready)):
            st = self._ready.popleft()
            taken: list[Batch] = []
            budget = self.round_bytes
            while st.pending and budget > 0:
                b = st.pending.popleft()
                budget -= b.nbytes
                taken.append(b)
            n = sum(b.nbytes for b in taken)
            st.pending_bytes -= n
            self.pending_bytes -= n
            if st.pending:
                self._ready.append(st)
            if st.room is not None:
                st.room.set()
                st.room = None
            out.append((st, taken))
        return out

    def states(self) -> Iterable[UidState]:
        """Every uid seen since start."""
        return self.uids.values()
