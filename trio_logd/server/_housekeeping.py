"""The store's housekeeper: compression, retention and rotation by age.

How this works: one task, woken by the writer after each rotation and every
``INTERVAL`` seconds otherwise (passes are at least ``MIN_GAP`` apart). A
pass runs in a worker thread (never the writer's hop, so ingest goes on
while it works): rotate current files whose first record is ``max_file_age``
old, plan retention (``store.retention.plan_retention``) from a snapshot of
every uid's files, the uids' quotas and the free space, rotate and delete as
planned. Then the rotated files waiting for compression are compressed, one
file per job, in the store's helper process (``_helper.py``), which runs at a
lower CPU priority: on a busy machine compression yields the CPU to ingest
and to the writer, never holds the daemon's GIL, and shutdown never waits for
more than one file. While no helper runs (it could not start, or died and
waits for its restart), files are compressed in a thread of our own, also
at a lower priority (``COMPRESS_NICE``). While ingest saturates the
writer, young files wait (``COMPRESS_YIELD``, ``COMPRESS_DEFER_MAX``), and a
pass compresses only until the next one is due, so a backlog never holds up
retention. The ``rotated`` records of its rotations are filed like the
writer's. A compression that fails (a full disk) leaves the file
uncompressed and is retried after ``COMPRESS_COOLDOWN``.
"""

from __future__ import annotations

import contextlib
import math
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Final, TypeVar

import structlog
import trio

from trio_logd.errors import StoreError
from trio_logd.server._helper import HelperUnavailable, StoreHelper
from trio_logd.server._pipeline import Pipeline
from trio_logd.store.retention import RetentionPolicy, plan_retention
from trio_logd.store.writer import Rotation, StoreWriter

__all__ = ["INTERVAL", "Housekeeper", "QuotaFor", "file_rotated"]

log = structlog.get_logger("trio_logd.housekeeping")

#: Seconds between passes when nothing wakes the housekeeper: the lag of
#: rotation by age, of ``max_age``, and of ``keep_free_bytes`` (free space is
#: measured once per pass).
INTERVAL: Final = 1.0
#: Retention passes woken by rotations are at least this far apart.
MIN_GAP: Final = 0.2
#: After a failed compression (full disk), wait this long before the next.
COMPRESS_COOLDOWN: Final = 5.0
#: Compression yields to ingest: while a full round of records waits for the
#: writer (the event loop is saturated), the next file waits, checking again
#: every COMPRESS_YIELD seconds... On two cores, compressing a burst's files
#: while it lasted cost the burst 5-10 % of its throughput, even at nice 10
#: (the other core is the clients' too; BENCHMARKS.md).
COMPRESS_YIELD: Final = 0.1
#: ...for at most this long after the file's last record, and not at all
#: while retention has to delete (or a file system nears keep_free_bytes):
#: a burst is written at full speed and compressed after it; a longer flood
#: has its files compressed this late.
COMPRESS_DEFER_MAX: Final = 5.0
#: The compression thread's nice value (per thread on Linux): it gets the CPU
#: when ingest does not want it.
COMPRESS_NICE: Final = 10

T = TypeVar("T")


class _NiceThread:
    """One thread of our own, at a lower CPU priority, that runs jobs one at a time.

    trio's worker threads are reused by every ``to_thread`` call, so their
    priority cannot be lowered for one kind of job: this thread is ours.
    """

    def __init__(self, nice: int) -> None:
        self._nice = nice
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def _main(self) -> None:
        with contextlib.suppress(OSError):  # lowering one's priority is always allowed
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self._nice)
        while (job := self._jobs.get()) is not None:
            job()

    async def run(self, fn: Callable[[], T]) -> T:
        """Run *fn* in the thread and return its result (a job that started finishes)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._main, name="logd-compress", daemon=True)
            self._thread.start()
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()
        result: list[T] = []
        error: list[BaseException] = []

        def job() -> None:
            try:
                result.append(fn())
            except BaseException as exc:  # handed to the caller
                error.append(exc)
            finally:
                token.run_sync_soon(done.set)

        self._jobs.put(job)
        with trio.CancelScope(shield=True):  # the file is being written: let it finish
            await done.wait()
        if error:
            raise error[0]
        return result[0]

    def close(self) -> None:
        """Let the thread end after its current job."""
        if self._thread is not None:
            self._jobs.put(None)
            self._thread = None


QuotaFor = Callable[[int], tuple[int, str]]


def file_rotated(
    pipeline: Pipeline, file_record: Callable[..., None] | None, rot: Rotation
) -> None:
    """File the ``rotated`` record of *rot* with its uid (none once the pipeline is closed).

    After a shutdown the next start writes it (``StoreWriter.open``).
    """
    if file_record is None or pipeline.closed:
        return
    sealed = {"records": rot.records, "hash": rot.hash} if rot.hash else {}
    file_record(
        rot.uid,
        "rotated",
        msg=f"rotated {rot.name} ({rot.bytes} bytes, {rot.reason})",
        file=rot.name,
        first_seq=rot.first_seq,
        last_seq=rot.last_seq,
        bytes=rot.bytes,
        reason=rot.reason,
        **sealed,
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
        account_for: *uid* -> the uid whose quota its files count against
            (``Limiter.account_for``; subordinate uids); ``None``: its own.
        helper: the store's helper process, where files are compressed
            (``None``, or while it does not run: in a thread of our own).
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
        helper: StoreHelper | None = None,
        account_for: Callable[[int], int] | None = None,
    ) -> None:
        self.store = store
        self.policy = policy
        self.quota_for = quota_for
        self.account_for = account_for
        self.pipeline = pipeline
        self.file_record = file_record
        self.interval = interval
        self.passes = 0
        self._wake = trio.Event()
        self._compress_after = 0.0
        self._last_pass = -math.inf
        self._compressor = _NiceThread(COMPRESS_NICE)
        #: retention deletes, or free space is short: compression does not wait
        self._pressure = False
        self.helper = helper

    def wake(self) -> None:
        """Ask for a pass soon (after rotations). Never blocks."""
        self._wake.set()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run passes for ever (cancel to stop)."""
        task_status.started()
        try:
            while True:
                await self.run_once()
                if not self._compress_due():  # else the backlog goes on after this pass
                    with trio.move_on_after(self.interval):
                        await self._wake.wait()
                self._wake = trio.Event()
        finally:
            self._compressor.close()

    async def run_once(self) -> None:
        """One pass: age rotation and retention, then compression of what waits."""
        await trio.sleep_until(self._last_pass + MIN_GAP)
        self._last_pass = trio.current_time()
        if self.helper is not None:
            await self.helper.start()  # after it died: once RESTART_DELAY has passed
        rotations = await trio.to_thread.run_sync(self._retention_pass, time.time())
        for rot in rotations:
            file_rotated(self.pipeline, self.file_record, rot)
        # until the next pass is due, so that a backlog under a flood never starves
        # retention; at least MIN_GAP, so that a slow retention pass never starves it
        until = max(self._last_pass + self.interval, trio.current_time() + MIN_GAP)
        while self._compress_due() and trio.current_time() < until:
            if self._compression_yields():
                await trio.sleep(COMPRESS_YIELD)
                continue
            try:
                await self._compress_one()
            except StoreError as exc:
                log.error("compression_failed", error=str(exc))
                self._compress_after = trio.current_time() + COMPRESS_COOLDOWN
        self.passes += 1

    def _compress_due(self) -> bool:
        """Files wait for compression, and no failure's cool-down holds it back."""
        return self.store.compress_pending() > 0 and trio.current_time() >= self._compress_after

    def _compression_yields(self) -> bool:
        """Ingest is saturated and the oldest waiting file may wait (``COMPRESS_YIELD``)."""
        if self._pressure or self.pipeline.pending_bytes < self.pipeline.round_bytes:
            return False
        oldest = self.store.oldest_compression()
        return oldest is not None and time.time() - oldest < COMPRESS_DEFER_MAX

    async def _compress_one(self) -> None:
        """Compress the next waiting file: in the helper process, or else in our thread."""
        store = self.store
        if self.helper is None or not await self.helper.start():
            await self._compressor.run(store.compress_next)
            return
        job = store.next_compression()
        if job is None:
            return
        try:
            result = await self.helper.compress(
                job.dir_fd, job.name, job.method, sync=job.sync, what=job.what
            )
        except HelperUnavailable:
            store.requeue_compression(job)  # the next attempt runs in our thread
            return
        except (OSError, StoreError) as exc:
            store.compression_failed(job, exc)
            return
        store.compression_done(job, result)

    def _retention_pass(self, now: float) -> list[Rotation]:
        """Runs in a worker thread: rotate by age, then plan and apply retention."""
        store = self.store
        store.flush_chains()  # a chain lags its file by at most about a pass
        store.write_unit_summaries()  # so does a rotated file's unit summary
        rotations = store.rotate_aged(now)
        try:
            free: int | None = store.free_bytes()
        except StoreError as exc:
            log.warning("statvfs_failed", error=str(exc))
            free = None
        plan = plan_retention(
            store.snapshot(),
            self.policy,
            self.quota_for,
            now=now,
            free_bytes=free,
            account_for=self.account_for,
        )
        rotations += store.rotate_many(plan.rotate, "quota")
        keep_free = self.policy.keep_free_bytes
        self._pressure = bool(plan.delete or plan.rotate) or (
            free is not None and keep_free > 0 and free < 2 * keep_free
        )
        if plan.delete:
            freed = store.delete(plan.delete, plan.rules)
            log.info(
                "retention_deleted",
                files=len(plan.delete),
                bytes=freed,
                uids=sorted({f.uid for f in plan.delete}),
                rules=sorted(set(plan.rules)),
            )
        self._hold(plan.held, plan.held_rule)
        return rotations

    def _hold(self, held: int, rule: str) -> None:
        """Refuse new records while pressure wants *held* bytes only young files hold."""
        if held <= 0:
            if self.store.held is not None:
                log.warning("store_pressure_released")
                self.store.hold(None)
            return
        key = "max_bytes" if rule == "max_bytes" else "keep_free_bytes"
        why = (
            f"[store] {key}: {held} bytes short, and every file that pressure could delete "
            f"is younger than pressure_min_age ({self.policy.pressure_min_age:g} s)"
        )
        if self.store.held is None:
            hint = "free space on the file system of log_dir, or give it one of its own"
            log.error("store_pressure_held", short_bytes=held, rule=rule, hint=hint)
        self.store.hold(why)
