"""The queue of rotated files waiting for compression, and its jobs (``StoreWriter``).

How this works: a rotation (or the scan at start) queues the rotated file;
the housekeeper takes the oldest as a :class:`CompressJob` (with a duplicate
of the uid directory's fd), compresses it outside the writer's lock (here,
``compress_next``, or in the daemon's helper process) and ends the job. The
queue asks the writer through :class:`RotatedIndex` whether the file is
still there to compress, and tells it the compressed file's name and size.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from trio_logd.errors import StoreError
from trio_logd.store import _compress
from trio_logd.store._layout import RotatedName
from trio_logd.store._sync import store_error

__all__ = ["CompressJob", "CompressionQueue", "RotatedIndex"]


@dataclass(frozen=True, slots=True)
class CompressJob:
    """A rotated file to compress (:meth:`CompressionQueue.next`)."""

    uid: int
    name: RotatedName
    #: a duplicate of the uid directory's fd, closed when the job ends
    dir_fd: int
    #: ``gzip`` or ``zstd``
    method: str
    #: sync the compressed file and the directory (``fsync`` is not ``never``)
    sync: bool
    #: how to name the uid directory in errors
    what: str


class RotatedIndex(Protocol):
    """What the queue needs of the writer's index of rotated files (under its lock)."""

    def rotated_dir_fd(self, uid: int, name: RotatedName) -> int | None:
        """A dup of *uid*'s directory fd if *name* is still its rotated file; -1: none now."""
        ...

    def compressed(self, uid: int, name: RotatedName, new: RotatedName, size: int) -> None:
        """*name* of *uid* is now the compressed file *new* of *size* bytes."""
        ...


class CompressionQueue:
    """Rotated files waiting for compression, oldest first (a thread-safe deque).

    Args:
        index: the writer's index of rotated files.
        method: ``gzip`` or ``zstd``.
        sync: sync the compressed files and their directory.
    """

    def __init__(self, index: RotatedIndex, method: str, *, sync: bool) -> None:
        self._index = index
        self._method = method
        self._sync = sync
        self._queue: deque[tuple[int, RotatedName]] = deque()

    def add(self, uid: int, name: RotatedName) -> None:
        """Queue the rotated file *name* of *uid*."""
        self._queue.append((uid, name))

    def __len__(self) -> int:
        return len(self._queue)

    def oldest(self) -> int | None:
        """When the oldest file waiting ends (epoch seconds); ``None``: none."""
        try:
            return self._queue[0][1].last_time
        except IndexError:
            return None

    def next(self) -> CompressJob | None:
        """Take the oldest file waiting, as a job (``StoreWriter.next_compression``)."""
        while True:
            try:
                uid, name = self._queue.popleft()
            except IndexError:
                return None
            dir_fd = self._index.rotated_dir_fd(uid, name)
            if dir_fd is None:  # deleted by retention since its rotation
                continue
            if dir_fd < 0:  # out of descriptors: the file waits for the next pass
                self._queue.appendleft((uid, name))
                return None
            return CompressJob(uid, name, dir_fd, self._method, self._sync, f"uid directory {uid}")

    def done(self, job: CompressJob, result: tuple[RotatedName, int] | None) -> RotatedName | None:
        """End *job*: *result* is the compressed file's name and size (``None``: it was gone)."""
        os.close(job.dir_fd)
        if result is None:
            return None
        new, size = result
        self._index.compressed(job.uid, job.name, new, size)
        return new

    def requeue(self, job: CompressJob) -> None:
        """End *job* undone: its file waits again, first in line."""
        os.close(job.dir_fd)
        self._queue.appendleft((job.uid, job.name))

    def failed(self, job: CompressJob, exc: OSError | StoreError) -> None:
        """End *job*, which raised *exc*; raise what the caller reports.

        A file gone meanwhile (``FileNotFoundError``: retention deleted it)
        ends the job quietly. Another ``OSError`` (a full disk) leaves the
        file uncompressed and queued again (retry after a cool-down); an
        unsafe file is not retried.

        Raises:
            StoreError: unless the file was gone.
        """
        if isinstance(exc, FileNotFoundError):
            self.done(job, None)
            return
        if isinstance(exc, StoreError):
            os.close(job.dir_fd)
            raise exc
        self.requeue(job)
        raise store_error(exc, f"compressing {job.uid}/{job.name.format()}") from exc

    def compress_next(self) -> RotatedName | None:
        """Compress the oldest file waiting, in this thread (``StoreWriter.compress_next``)."""
        job = self.next()
        if job is None:
            return None
        try:
            result = _compress.compress_file(
                job.dir_fd, job.name, job.method, sync=job.sync, what=job.what
            )
        except (OSError, StoreError) as exc:
            self.failed(job, exc)
            return None
        return self.done(job, result)
