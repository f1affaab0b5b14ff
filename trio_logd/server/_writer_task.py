"""The one task that owns the store's appends, and its fault handling.

How this works: it waits for queued batches, takes one round-robin round from
the pipeline and appends it, quiet uids first, rotating by size and age
between two records: from the event loop while appends are quick (page-cache
copies), in a worker thread in one hop when the disk pushes back or every
append syncs (``_Writer.write``). While a round is in a thread, connection
tasks keep reading and parsing, and the next round accumulates. With ``fsync =
"batch"`` a second task syncs beside the writer (group commit): each sync
covers every round written before it started, and the batches of those
rounds are acknowledged (``Batch.on_stored``) when it returns; so a record
reaches its file without waiting for the disk, and an acknowledgement never
comes before the sync. After each hop the writer files one ``rotated`` record
per rotation (so that the uid's new current file holds its ``seq``
high-water mark) and wakes the housekeeper, which has the rotated files
compressed by the store's helper process. The helper also makes the files
of busy uids' next rotations ahead (``serve_spares``).

Failures are per uid: a uid whose append fails has the records that did not
make it counted as dropped (reason ``disk``), and its acknowledgements say
exactly which (a batch cut short by a full disk is acknowledged up to where
it was cut); other uids' records are unaffected. A failing uid is not
written to again before a cool-down (doubling from ``COOLDOWN_MIN`` to
``COOLDOWN_MAX``) unless the file system reports room again (``fstatvfs``,
one cheap call per round): so a record sent once space is back is written,
and a disk still full costs one failing syscall per cool-down, not one per
round. The first write that succeeds ends the cool-down.

``seq`` and loss: a record's ``seq`` is given when it is queued, so a record
dropped leaves a gap of one in its uid's numbering, and the ``suppressed``
record that reports the drops (filed by ``_suppress.py``) counts exactly the
gap. That record itself is held back while its uid is failing; should it
still meet a full disk, it is not counted as a drop (its count goes back to be
filed again) and its own ``seq`` is given back when nothing was numbered
after it, or else counted with the drops it reports. A uid whose
high-water mark the store did not know when it was first seen
(``UidState.provisional``) has the mark read (``StoreWriter.establish``)
before anything of it is written; what is queued is then numbered again past
the mark (``UidState.renumber``, ``record.with_seq``) and written, and what
was dropped before keeps its place as a gap: again exactly the loss.
"""

from __future__ import annotations

import math
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import structlog
import trio

from trio_logd.errors import DiskFull, SeqConflict, StoreError
from trio_logd.limits import SuppressionTracker
from trio_logd.record import with_seq
from trio_logd.server._helper import HelperUnavailable, StoreHelper
from trio_logd.server._housekeeping import Housekeeper, file_rotated
from trio_logd.server._pipeline import Batch, Pipeline, UidState
from trio_logd.store.writer import Rotation, StoreWriter

__all__ = ["COOLDOWN_MAX", "COOLDOWN_MIN", "serve_store"]

log = structlog.get_logger("trio_logd.writer")

#: After a failed write, a uid's records are dropped without trying for this
#: long, doubling per failure up to COOLDOWN_MAX: a full disk costs one
#: failing syscall per uid per cool-down, not one per round, and a recovered
#: disk is noticed within COOLDOWN_MAX.
COOLDOWN_MIN: Final = 0.25
COOLDOWN_MAX: Final = 2.0
#: An inline round (appends from the event loop) slower than this is slow...
INLINE_ROUND_LIMIT: Final = 0.005
#: ...and SLOW_ROUNDS slow rounds within SLOW_WINDOW seconds, or one round
#: slower than STALL_LIMIT, mean that the disk pushes back: the next rounds
#: go through a worker thread... (One slow round alone is no sign: the
#: process was preempted, or a rotation had to create its files.)
SLOW_ROUNDS: Final = 3
SLOW_WINDOW: Final = 1.0
STALL_LIMIT: Final = 0.05
#: ...for this long, then inline is tried again.
THREAD_PERIOD: Final = 10.0
#: During a cool-down after a full disk, a round is tried at once when the
#: file system reports this much room beyond the round's bytes (for the
#: chain's blocks and the file system's own metadata).
SPACE_MARGIN: Final = 64 * 1024

FileRecord = Callable[..., None]


@dataclass(slots=True)
class _Outcome:
    state: UidState
    batches: list[Batch]
    records: int
    error: StoreError | None = None
    written: int = 0
    #: the store's high-water mark, when the lines were numbered without it
    #: (a provisional uid, or ``SeqConflict``): numbering must move past it
    #: (0: a provisional uid without records, whose numbering stands)
    mark: int | None = None


@dataclass(slots=True)
class _Cooldown:
    retry_at: float
    delay: float
    dropped: int = 0
    #: the failure was a full disk: room reported again ends the cool-down
    disk_full: bool = False
    #: room the file system reported right after the failure, and the bytes
    #: of the round that failed
    room_at_failure: int = -1
    need_at_failure: int = 0


def _write_round(
    store: StoreWriter, work: list[tuple[UidState, list[Batch]]]
) -> tuple[list[_Outcome], list[Rotation]]:
    """Runs in a worker thread: append every uid's lines (the smallest first)."""
    outcomes: list[_Outcome] = []
    # quiet uids first: their lines are on disk before a flooder's (maybe
    # rotating) append; the order within a uid is untouched
    work = sorted(work, key=lambda item: sum(b.nbytes for b in item[1]))
    for st, batches in work:
        lines = [line for b in batches for line in b.lines]
        out = _Outcome(st, batches, len(lines))
        try:
            if st.provisional:
                out.mark = store.establish(st.uid)
                if out.mark:  # numbered from 0 without knowing it: none of it may be written
                    outcomes.append(out)
                    continue
            store.append(st.uid, lines, batches[-1].last_seq, batches)
            out.written = len(lines)
        except SeqConflict as exc:
            out.error = exc
            out.mark = exc.mark
        except StoreError as exc:
            out.error = exc
            out.written = getattr(exc, "written", 0)
        outcomes.append(out)
    return outcomes, store.take_rotations()


def _settle(batches: list[Batch], stored: int) -> None:
    """Tell each batch how many of its first lines are among the first *stored* lines."""
    for b in batches:
        n = len(b.lines)
        if b.on_stored is not None:
            b.on_stored(min(max(stored, 0), n))
        stored -= n


class _Writer:
    """State of the writer task: the cool-downs of failing uids."""

    def __init__(
        self,
        pipeline: Pipeline,
        store: StoreWriter,
        suppression: SuppressionTracker,
        file_record: FileRecord | None,
        housekeeper: Housekeeper | None,
        helper: StoreHelper | None = None,
        *,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.pipeline = pipeline
        #: measures how long an inline round took (tests give a fake disk's clock)
        self._timer = timer
        self.helper = helper
        self.store = store
        self.suppression = suppression
        self.file_record = file_record
        self.housekeeper = housekeeper
        self.failing: dict[int, _Cooldown] = {}
        #: fsync = "batch": syncs run beside the writes (group commit) and
        #: batches are acknowledged once a sync that covers them returns
        self.group_commit = store.fsync == "batch"
        #: batches written since the last sync, with how many of their lines
        self.unsynced: list[tuple[Batch, int]] = []
        self._sync_wanted = trio.Event()
        self._spares_wanted = trio.Event()
        #: rounds go to a worker thread until then (see write)
        self._thread_until = -math.inf
        #: when the last slow inline rounds ended (at most SLOW_ROUNDS)
        self._slow: deque[float] = deque(maxlen=SLOW_ROUNDS)

    async def serve_syncs(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Sync whatever was written since the last sync, one sync at a time, for ever."""
        task_status.started()
        while True:
            await self._sync_wanted.wait()
            self._sync_wanted = trio.Event()
            await self.sync_now()

    async def serve_spares(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Make the files of coming rotations ahead: in the helper process, or a worker thread."""
        task_status.started()
        while True:
            await self._spares_wanted.wait()
            self._spares_wanted = trio.Event()
            if self.helper is None or not await self.helper.start():
                await trio.to_thread.run_sync(self.store.prepare_spares)
                continue
            for uid, dir_fd, count in self.store.spare_jobs():
                try:
                    fds, ino = await self.helper.spares(dir_fd, count)
                except OSError as exc:  # no helper now (the next start retries), or refused
                    if not isinstance(exc, HelperUnavailable):
                        self.store.spares_unsupported(exc)
                    continue
                finally:
                    os.close(dir_fd)
                self.store.add_spares(uid, fds, ino)

    async def sync_now(self) -> None:
        """Sync everything written so far, then acknowledge the batches it covers."""
        with trio.CancelScope(shield=True):  # bounded: one sync; the acks must go out
            batches, self.unsynced = self.unsynced, []
            try:
                await self._sync()
                ok = True
            except StoreError as exc:
                log.error("store_sync_failed", error=str(exc), batches=len(batches))
                ok = False
            for b, n in batches:
                if b.on_stored is not None:
                    b.on_stored(n if ok else 0)

    async def _sync(self) -> None:
        """``store.sync()``: in the helper process while one runs, else in a worker thread."""
        store = self.store
        if self.helper is None or not self.helper.running:
            await trio.to_thread.run_sync(store.sync)
            return
        job = store.begin_sync()
        if not job:
            return
        try:
            await self.helper.sync(store.sync_steps(job))
        except HelperUnavailable:
            await trio.to_thread.run_sync(store.finish_sync, job)  # all of it again, here
            return
        except OSError as exc:
            store.close_sync(job)
            raise store.sync_error(exc, str(exc.filename or "syncing")) from exc
        store.close_sync(job)

    def drop(self, st: UidState, batches: list[Batch], skip: int, now: float) -> int:
        """Count the records of *batches* after the first *skip* as dropped (reason disk).

        A ``suppressed`` record among them is not counted (its own count goes
        back to be filed again, by its batch's ``on_stored``); its ``seq`` is
        given back when nothing was numbered after it, else it is counted too,
        so that the gap stays exactly what the ``suppressed`` records report.
        """
        n = 0
        given: list[int] = []
        for b in batches:
            lines = b.lines
            if skip >= len(lines):
                skip -= len(lines)
                continue
            if b.event == "suppressed":  # a batch of its own
                given.append(b.last_seq)
            else:
                n += len(lines) - skip
            skip = 0
        for seq in reversed(given):
            if seq == st.last_seq:
                st.last_seq -= 1
            else:
                n += 1
        self.suppression.note_drop(st.uid, "disk", n, now)
        return n

    def room(self) -> int:
        """Bytes the store's file system takes now (0 if it cannot say)."""
        try:
            return self.store.writable_bytes()
        except StoreError:
            return 0

    def failed(self, st: UidState, out: _Outcome, dropped: int, now: float) -> None:
        error = out.error
        assert error is not None
        st.failing = True
        cd = self.failing.get(st.uid)
        if cd is None:
            cd = self.failing[st.uid] = _Cooldown(now + COOLDOWN_MIN, COOLDOWN_MIN, dropped)
            log.error("store_write_failed", uid=st.uid, records=dropped, error=str(error))
        else:
            cd.delay = min(cd.delay * 2, COOLDOWN_MAX)
            cd.retry_at = now + cd.delay
            cd.dropped += dropped
            log.debug("store_write_failed_again", uid=st.uid, records=dropped, error=str(error))
        st.retry_at = cd.retry_at
        cd.disk_full = isinstance(error, DiskFull)
        cd.room_at_failure = self.room() if cd.disk_full else -1
        cd.need_at_failure = sum(b.nbytes for b in out.batches)

    def recovered(self, st: UidState) -> None:
        st.failing = False
        cd = self.failing.pop(st.uid, None)
        if cd is not None:
            log.warning("store_write_recovered", uid=st.uid, dropped=cd.dropped)

    def cooling(self, cd: _Cooldown, batches: list[Batch], now: float, room: list[int]) -> bool:
        """Whether a uid cooling down after *cd* stays off the disk for *batches* now.

        After a full disk, a round goes ahead at once when the file system
        reports room for it again (and not the very room it reported when
        the write failed, unless the round is smaller): *room* caches one
        ``fstatvfs`` per writer round.
        """
        if now >= cd.retry_at:
            return False
        if not cd.disk_full:
            return True
        if not room:
            room.append(self.room())
        need = sum(b.nbytes for b in batches)
        if room[0] < need + SPACE_MARGIN:
            return True
        return room[0] == cd.room_at_failure and need >= cd.need_at_failure

    async def write(
        self, attempt: list[tuple[UidState, list[Batch]]]
    ) -> tuple[list[_Outcome], list[Rotation]]:
        """Append a round: in the event loop while appends are quick, else in a thread.

        An append copies into the page cache (~0.1 ms for a 256 KiB round);
        a worker-thread hop costs more, and under a flood each GIL handover
        waits for a CPU: inline, a quiet uid's record reached its file in
        ~0.9 ms (median) instead of ~2.7 ms (bench/fairness.py). Rounds
        slower than ``INLINE_ROUND_LIMIT`` (the kernel throttling writeback, a
        slow file system), ``SLOW_ROUNDS`` of them within ``SLOW_WINDOW`` or
        one slower than ``STALL_LIMIT``, send the next rounds to the thread
        for ``THREAD_PERIOD``, so a slow disk never stalls the event loop for
        long. ``fsync = "always"`` (a sync per append) always uses the thread.
        """
        if self.store.fsync == "always" or trio.current_time() < self._thread_until:
            return await trio.to_thread.run_sync(_write_round, self.store, attempt)
        start = self._timer()
        result = _write_round(self.store, attempt)
        spent = self._timer() - start
        if spent > INLINE_ROUND_LIMIT:
            now = trio.current_time()
            self._slow.append(now)
            if spent > STALL_LIMIT or (
                len(self._slow) == SLOW_ROUNDS and now - self._slow[0] <= SLOW_WINDOW
            ):
                self._slow.clear()
                self._thread_until = now + THREAD_PERIOD
                log.info("slow_appends", seconds=round(spent, 4), thread_for=THREAD_PERIOD)
        await trio.lowlevel.cancel_shielded_checkpoint()
        return result

    async def run_round(self) -> None:
        work = self.pipeline.take_round()
        now = trio.current_time()
        attempt: list[tuple[UidState, list[Batch]]] = []
        room: list[int] = []
        for st, batches in work:
            cd = self.failing.get(st.uid)
            if cd is not None and self.cooling(cd, batches, now, room):
                cd.dropped += self.drop(st, batches, 0, now)
                _settle(batches, 0)
            else:
                attempt.append((st, batches))
        if not attempt:
            return
        outcomes, rotations = await self.write(attempt)
        now = trio.current_time()
        hooks = self.pipeline.written_hooks
        for out in outcomes:
            st = out.state
            if out.mark:
                self.renumber(out)
                continue
            if out.mark == 0:  # the uid had no records: its numbering from 0 was right
                st.provisional = False
            st.stored += out.written
            if out.error is None:
                self.recovered(st)
                if hooks:
                    lines = [line for b in out.batches for line in b.lines]
                    for hook in hooks:
                        hook(st.uid, lines)
            else:
                if out.written and hooks:
                    lines = [line for b in out.batches for line in b.lines][: out.written]
                    for hook in hooks:
                        hook(st.uid, lines)
                self.failed(st, out, self.drop(st, out.batches, out.written, now), now)
            left = out.written
            for b in out.batches:
                n = min(max(left, 0), len(b.lines))
                left -= len(b.lines)
                if b.on_stored is None:
                    continue
                if n and self.group_commit:
                    self.unsynced.append((b, n))
                else:
                    b.on_stored(n)
        if self.group_commit:
            self._sync_wanted.set()
        if self.store.spares_wanted:
            self._spares_wanted.set()
        if rotations:
            for rot in rotations:
                file_rotated(self.pipeline, self.file_record, rot)
            if self.housekeeper is not None:
                self.housekeeper.wake()

    def renumber(self, out: _Outcome) -> None:
        """The store told *out*'s uid its high-water mark: number what is queued past it.

        The round's batches (not written) go back to the front of the queue,
        renumbered with the uid's waiting batches, and are written next round.
        """
        st = out.state
        assert out.mark is not None
        first = 1
        if isinstance(out.error, SeqConflict):  # numbered wrong from this round on
            first = out.batches[0].first_seq
        offset = st.renumber(out.mark, first)
        log.warning("seq_renumbered", uid=st.uid, mark=out.mark, offset=offset)
        if offset:
            for b in (*out.batches, *st.pending):
                b.lines = [
                    with_seq(line, s + offset) for s, line in enumerate(b.lines, b.first_seq)
                ]
                b.last_seq += offset
        self.pipeline.put_back(st, out.batches)
        if out.error is None:
            self.recovered(st)


async def serve_store(
    pipeline: Pipeline,
    store: StoreWriter,
    suppression: SuppressionTracker,
    file_record: FileRecord | None = None,
    housekeeper: Housekeeper | None = None,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Write queued batches until the pipeline is closed and drained; sync; return.

    Cancellation does not interrupt a round in progress (the worker thread is
    not abandoned), so a round is either written or counted as dropped. The
    syncs (``fsync = "batch"``) run beside the writes; the last one runs after
    the last round. The housekeeper (compression, retention, rotation by age)
    is cancelled when the writer is done; a compression in progress finishes
    first.

    Args:
        pipeline: where the batches queue.
        store: the opened store.
        suppression: counts records that could not be written.
        file_record: ``IngestContext.file_daemon_record``, for ``rotated``
            records (none filed when ``None``).
        housekeeper: compresses, applies retention, rotates by age.
    """
    helper = housekeeper.helper if housekeeper is not None else None
    writer = _Writer(pipeline, store, suppression, file_record, housekeeper, helper)
    async with trio.open_nursery() as nursery:
        if housekeeper is not None:
            await nursery.start(housekeeper.serve)
        async with trio.open_nursery() as syncs:
            if writer.group_commit:
                await syncs.start(writer.serve_syncs)
            await syncs.start(writer.serve_spares)
            task_status.started()
            while await pipeline.wait_for_work():
                await writer.run_round()
            syncs.cancel_scope.cancel()
        if writer.group_commit:
            await writer.sync_now()
        nursery.cancel_scope.cancel()
