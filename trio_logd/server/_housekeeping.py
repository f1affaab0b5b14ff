"""The store's housekeeper: compression, retention and rotation by age.

How this works: one task, woken by the writer after each rotation and every
``INTERVAL`` seconds otherwise. Each pass runs in a worker thread of its own
(never the writer's hop, so ingest goes on while it works): rotate current
files whose first record is ``max_file_age`` old, plan retention
(``store.retention.plan_retention``) from a snapshot of every uid's files,
the uids' quotas and the free space, rotate and delete as planned; then
compress the rotated files waiting for it, one file per hop, so that
shutdown never waits for more than one file. The ``rotated`` records of its
rotations are filed like the writer's. A compression that fails (a full
disk) leaves the file uncompressed and is retried after ``COMPRESS_COOLDOWN``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

import structlog
import trio

from trio_logd.errors import StoreError
from trio_logd.server._pipeline import Pipeline
from trio_logd.store.retention import RetentionPolicy, plan_retention
from trio_logd.store.writer import Rotation, StoreWriter

__all__ = ["INTERVAL", "Housekeeper", "QuotaFor", "file_rotated"]

log = structlog.get_logger("trio_logd.housekeeping")

#: Seconds between passes when nothing wakes the housekeeper: the lag of
#: rotation by age, of ``max_age``, and of ``keep_free_bytes`` (free space is
#: measured once per pass).
INTERVAL: Final = 1.0
#: After a failed compression (full disk), wait this long before the next.
COMPRESS_COOLDOWN: Final = 5.0

QuotaFor = Callable[[int], tuple[int, str]]


def file_rotated(
    pipeline: Pipeline, file_record: Callable[..., None] | None, rot: Rotation
) -> None:
    """File the ``rotated`` record of *rot* with its uid (none once the pipeline is closed).

    After a shutdown the next start writes it (``StoreWriter.open``).
    """
    if file_record is None or pipeline.closed:
        return
    file_record(
        rot.uid,
        "rotated",
        msg=f"rotated {rot.name} ({rot.bytes} bytes, {rot.reason})",
        file=rot.name,
        first_seq=rot.first_seq,
        last_seq=rot.last_seq,
        bytes=rot.bytes,
        reason=rot.reason,
    )


class Housekeeper:
    """Compresses rotated files, applies retention, rotates by age.

    Args:
        store: the opened store.
        policy: ``max_age``, ``max_bytes``, ``keep_free_bytes``.
        quota_for: *uid* -> ``(quota_bytes, on_quota)``; called in a worker
            thread (it may look up users and groups).
        pipeline: to file ``rotated`` records through.
        file_record: ``IngestContext.file_daemon_record``.
        interval: seconds between passes when not woken.
    """

    def __init__(
        self,
        store: StoreWriter,
        policy: RetentionPolicy,
        quota_for: QuotaFor,
        pipeline: Pipeline,
        file_record: Callable[..., None] | None,
        *,
        interval: float = INTERVAL,
    ) -> None:
        self.store = store
        self.policy = policy
        self.quota_for = quota_for
        self.pipeline = pipeline
        self.file_record = file_record
        self.interval = interval
        self.passes = 0
        self._wake = trio.Event()
        self._compress_after = 0.0

    def wake(self) -> None:
        """Ask for a pass soon (after rotations). Never blocks."""
        self._wake.set()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run passes for ever (cancel to stop)."""
        task_status.started()
        while True:
            await self.run_once()
            with trio.move_on_after(self.interval):
                await self._wake.wait()
            self._wake = trio.Event()

    async def run_once(self) -> None:
        """One pass: age rotation and retention, then compression of what waits."""
        rotations = await trio.to_thread.run_sync(self._retention_pass, time.time())
        for rot in rotations:
            file_rotated(self.pipeline, self.file_record, rot)
        while self.store.compress_pending() and trio.current_time() >= self._compress_after:
            try:
                await trio.to_thread.run_sync(self.store.compress_next)
            except StoreError as exc:
                log.error("compression_failed", error=str(exc))
                self._compress_after = trio.current_time() + COMPRESS_COOLDOWN
        self.passes += 1

    def _retention_pass(self, now: float) -> list[Rotation]:
        """Runs in a worker thread: rotate by age, then plan and apply retention."""
        store = self.store
        rotations = store.rotate_aged(now)
        try:
            free: int | None = store.free_bytes()
        except StoreError as exc:
            log.warning("statvfs_failed", error=str(exc))
            free = None
        plan = plan_retention(
            store.snapshot(), self.policy, self.quota_for, now=now, free_bytes=free
        )
        for uid in plan.rotate:
            try:
                rot = store.rotate(uid, "quota")
            except StoreError as exc:
                log.error("rotation_failed", uid=uid, error=str(exc))
                continue
            if rot is not None:
                rotations.append(rot)
        if plan.delete:
            freed = store.delete(plan.delete)
            log.info(
                "retention_deleted",
                files=len(plan.delete),
                bytes=freed,
                uids=sorted({f.uid for f in plan.delete}),
            )
        return rotations
