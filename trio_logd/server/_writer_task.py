"""The one task that owns the store.

How this works: it waits for queued batches, takes one round-robin round from
the pipeline and appends it to the uids' files from the event loop (a copy
into the page cache). With ``fsync = "batch"`` a second task syncs in a worker
thread, one ``fdatasync`` per file written, covering every round appended
before it started, while the writer goes on appending (group commit); a
round's outcome (stored counts, hooks, ``on_stored``) is finished once it is
synced. With ``"always"`` the whole round goes to the thread (every append
syncs); with ``"never"`` it is finished at once.
Failures are per uid: a uid whose append fails has that round's records
counted as dropped (reason ``disk``); other uids' records are unaffected.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import structlog
import trio

from trio_logd.errors import StoreError
from trio_logd.limits import SuppressionTracker
from trio_logd.server._pipeline import Batch, Pipeline, UidState
from trio_logd.store.writer import StoreWriter

__all__ = ["serve_writer"]

log = structlog.get_logger("trio_logd.writer")

#: With ``fsync = "batch"``, appends run ahead of the sync thread by at most
#: this much; beyond it the writer waits for the sync (and so, through the
#: pipeline, the connections).
MAX_UNSYNCED_BYTES: Final = 4 * 1024 * 1024


@dataclass(slots=True)
class _Outcome:
    state: UidState
    batches: list[Batch]
    records: int
    error: StoreError | None = None


def _append_round(store: StoreWriter, work: list[tuple[UidState, list[Batch]]]) -> list[_Outcome]:
    """Append every uid's lines of a round (no sync)."""
    outcomes: list[_Outcome] = []
    for st, batches in work:
        lines = [line for b in batches for line in b.lines]
        out = _Outcome(st, batches, len(lines))
        try:
            store.append(st.uid, lines, batches[-1].last_seq)
        except StoreError as exc:
            out.error = exc
        outcomes.append(out)
    return outcomes


def _sync_round(store: StoreWriter, outcomes: list[_Outcome]) -> None:
    """Runs in a worker thread: ``fdatasync`` what the round wrote (``fsync = "batch"``)."""
    try:
        store.sync()
    except StoreError as exc:
        for out in outcomes:
            if out.error is None:
                out.error = exc


def _write_round(store: StoreWriter, work: list[tuple[UidState, list[Batch]]]) -> list[_Outcome]:
    """Runs in a worker thread: append every uid's lines, then sync per policy."""
    outcomes = _append_round(store, work)
    if store.fsync == "batch":
        _sync_round(store, outcomes)
    return outcomes


class _Syncer:
    """``fsync = "batch"``: syncs appended rounds in a worker thread, overlapping the appends.

    The writer hands over each appended round and goes on appending; one
    ``StoreWriter.sync()`` at a time runs in a thread and covers every round
    handed over before it started, then their outcomes are finished (stored
    counts, hooks, ``on_stored``). ``StoreWriter.sync`` clears a file's dirty
    flag before its ``fdatasync``, so an append during a sync is never lost
    from the next one.
    """

    def __init__(self, store: StoreWriter, finish: Callable[[list[_Outcome]], None]) -> None:
        self.store = store
        self.finish = finish
        self.pending: list[_Outcome] = []
        self.pending_bytes = 0
        self.closed = False
        self._wake = trio.Event()
        self._room = trio.Event()

    async def add(self, outcomes: list[_Outcome]) -> None:
        """Hand over an appended round; wait only while too much is unsynced."""
        self.pending.extend(outcomes)
        self.pending_bytes += sum(b.nbytes for out in outcomes for b in out.batches)
        self._wake.set()
        if self.pending_bytes <= MAX_UNSYNCED_BYTES:
            await trio.lowlevel.cancel_shielded_checkpoint()
        while self.pending_bytes > MAX_UNSYNCED_BYTES:
            await self._room.wait()

    def close(self) -> None:
        """No more rounds: sync what is pending, then ``run`` returns."""
        self.closed = True
        self._wake.set()

    async def run(self) -> None:
        while True:
            while not self.pending:
                if self.closed:
                    return
                await self._wake.wait()
                self._wake = trio.Event()
            taken, self.pending, self.pending_bytes = self.pending, [], 0
            self._room.set()
            self._room = trio.Event()
            await trio.to_thread.run_sync(_sync_round, self.store, taken)
            self.finish(taken)


async def serve_writer(
    pipeline: Pipeline,
    store: StoreWriter,
    suppression: SuppressionTracker,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Write queued batches until the pipeline is closed and drained.

    Cancellation does not interrupt a round in progress (the worker thread is
    not abandoned), so a round is either written or counted as dropped.
    """

    def finish(outcomes: list[_Outcome]) -> None:
        for out in outcomes:
            st = out.state
            ok = out.error is None
            if ok:
                st.stored += out.records
                if pipeline.written_hooks:
                    lines = [line for b in out.batches for line in b.lines]
                    for hook in pipeline.written_hooks:
                        hook(st.uid, lines)
            else:
                suppression.note_drop(st.uid, "disk", out.records, trio.current_time())
                log.error(
                    "store_write_failed", uid=st.uid, records=out.records, error=str(out.error)
                )
            for b in out.batches:
                if b.on_stored is not None:
                    b.on_stored(ok)

    task_status.started()
    async with trio.open_nursery() as nursery:
        syncer = None
        if store.fsync == "batch":
            syncer = _Syncer(store, finish)
            nursery.start_soon(syncer.run)
        while await pipeline.wait_for_work():
            work = pipeline.take_round()
            if store.fsync == "always":  # every append syncs: all of it in the worker thread
                finish(await trio.to_thread.run_sync(_write_round, store, work))
                continue
            # Appends only copy into the page cache: done here, they cost less than
            # the thread hop, and a quiet uid's line is in its file at once. Through a
            # thread, each handover of the GIL waits for a CPU while connection tasks
            # parse a flood: ~5 ms per round on 2 busy cores (bench/fairness.py).
            outcomes = _append_round(store, work)
            if syncer is not None:
                await syncer.add(outcomes)
            else:
                finish(outcomes)
                await trio.lowlevel.cancel_shielded_checkpoint()
        if syncer is not None:
            syncer.close()
