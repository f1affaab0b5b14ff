"""The one task that owns the store.

How this works: it waits for queued batches, takes one round-robin round from
the pipeline and hands the whole round to a worker thread in one hop
(``trio.to_thread.run_sync``): appends, then one ``fdatasync`` per file
written when ``fsync = "batch"``. While the thread writes, connection tasks
keep reading and parsing, and the next round accumulates (group commit).
Failures are per uid: a uid whose append fails has that round's records
counted as dropped (reason ``disk``); other uids' records are unaffected.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
import trio

from trio_logd.errors import StoreError
from trio_logd.limits import SuppressionTracker
from trio_logd.server._pipeline import Batch, Pipeline, UidState
from trio_logd.store.writer import StoreWriter

__all__ = ["serve_writer"]

log = structlog.get_logger("trio_logd.writer")


@dataclass(slots=True)
class _Outcome:
    state: UidState
    batches: list[Batch]
    records: int
    error: StoreError | None = None


def _write_round(store: StoreWriter, work: list[tuple[UidState, list[Batch]]]) -> list[_Outcome]:
    """Runs in a worker thread: append every uid's lines, then sync per policy."""
    outcomes: list[_Outcome] = []
    for st, batches in work:
        lines = [line for b in batches for line in b.lines]
        out = _Outcome(st, batches, len(lines))
        try:
            store.append(st.uid, lines, batches[-1].last_seq)
        except StoreError as exc:
            out.error = exc
        outcomes.append(out)
    if store.fsync == "batch":
        try:
            store.sync()
        except StoreError as exc:
            for out in outcomes:
                if out.error is None:
                    out.error = exc
    return outcomes


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
    task_status.started()
    while await pipeline.wait_for_work():
        work = pipeline.take_round()
        outcomes = await trio.to_thread.run_sync(_write_round, store, work)
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
