"""Turn counted drops into ``suppressed`` records (SPEC §6).

How this works: whoever drops records (rate limits, quotas, connection caps,
a full disk) only counts them in the daemon's ``SuppressionTracker``. This
task wakes once a second, takes the windows that are due, and files one
``suppressed`` record per uid and reason, with that uid, carrying ``count``
and ``reason``. At shutdown the open windows are flushed.
"""

from __future__ import annotations

from typing import Final

import trio

from trio_logd.limits import Suppressed, SuppressionTracker
from trio_logd.server._ingest import IngestContext

__all__ = ["file_suppressed", "serve_suppressions"]

#: How often the task looks for due windows; the tracker reports 5 s after
#: the first drop, so a record is filed 5-6 s after it (SPEC: within 10 s).
TICK: Final = 1.0


def file_suppressed(ctx: IngestContext, items: list[Suppressed]) -> None:
    """Queue one ``suppressed`` record per item, filed with its uid."""
    for s in items:
        ctx.file_daemon_record(
            s.uid,
            "suppressed",
            msg=f"{s.count} records of uid {s.uid} dropped ({s.reason})",
            count=s.count,
            reason=s.reason,
        )


async def serve_suppressions(
    tracker: SuppressionTracker,
    ctx: IngestContext,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """File due ``suppressed`` records forever (cancel to stop; then call ``flush``)."""
    task_status.started()
    while True:
        await trio.sleep(TICK)
        due = tracker.due(trio.current_time())
        if due:
            file_suppressed(ctx, due)
