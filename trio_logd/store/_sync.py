"""Syncing the store: a job of descriptors taken under the writer's lock, synced outside it.

How this works: :meth:`StoreWriter.begin_sync` takes, per uid written since
the last sync, duplicates of the files' and the directory's descriptors (or
retired ones, of files rotated meanwhile): a :data:`SyncJob`, which owns
them. Syncing it needs no lock, so appends go on meanwhile (group commit).
It is synced here (:func:`run_job`, in a worker thread) or step by step
elsewhere (:func:`job_steps`, the daemon's helper process), then closed
(:func:`close_job`). Files first, then their directory: a rotated file's
data is on disk before its new name is.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable

from trio_logd.errors import DiskFull, ReadOnlyStore, StoreError
from trio_logd.store import _layout

__all__ = [
    "SyncJob",
    "close_job",
    "dup_for_sync",
    "dup_or_none",
    "job_steps",
    "run_job",
    "store_error",
]

#: What one sync covers: per uid, the file fds to ``fdatasync`` and the
#: directory fd to ``fsync`` (-1: none); the job owns them (dups, or retired).
SyncJob = list[tuple[int, list[int], int]]


def store_error(exc: OSError, what: str) -> StoreError:
    """The store's error for *exc*, met while doing *what*."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFull(f"{what}: no space left on the log file system")
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return ReadOnlyStore(f"{what}: {exc.strerror}")
    return StoreError(f"{what}: {exc.strerror}")


def job_steps(job: SyncJob) -> list[tuple[int, str, str]]:
    """What :func:`run_job` does, in order: ``(fd, "data" | "dir", what)``.

    ``data`` is an ``fdatasync``, ``dir`` an ``fsync`` of a directory: files
    first, then their directory. Stop at the first failure.
    """
    steps: list[tuple[int, str, str]] = []
    for uid, fds, dir_fd in job:
        steps.extend((fd, "data", f"syncing uid {uid}") for fd in fds)
        if dir_fd >= 0:
            steps.append((dir_fd, "dir", f"syncing uid directory {uid}"))
    return steps


def close_job(job: SyncJob) -> None:
    """Close a job's fds (synced elsewhere)."""
    for _uid, fds, dir_fd in job:
        for fd in fds:
            os.close(fd)
        if dir_fd >= 0:
            os.close(dir_fd)


def run_job(job: SyncJob) -> None:
    """Sync and close the fds of a job (any thread: the job owns them).

    Raises:
        DiskFull, ReadOnlyStore, StoreError: the first step that failed (the
            steps after it are not tried; every fd is closed).
    """
    error: StoreError | None = None
    for fd, kind, what in job_steps(job):
        try:
            if error is None:
                _layout.sync_step(fd, kind)
        except OSError as exc:
            error = store_error(exc, what)
        finally:
            os.close(fd)
    if error is not None:
        raise error


def dup_or_none(fd: int, on_shortage: Callable[[], None]) -> int | None:
    """``os.dup(fd)``, or ``None`` (*on_shortage* called) when out of descriptors."""
    try:
        return os.dup(fd)
    except OSError as exc:
        if exc.errno not in (errno.EMFILE, errno.ENFILE):
            raise
    on_shortage()
    return None


def dup_for_sync(fd: int, kind: str, on_shortage: Callable[[], None]) -> list[int]:
    """A dup of *fd* for a sync job; out of descriptors, *fd* is synced here instead.

    The in-place sync holds the writer's lock (appends wait for it), but
    no record is lost and the daemon goes on (EMFILE here once stopped it).
    An I/O error of that in-place sync goes unreported (it takes both at
    once); the shortage is reported (*on_shortage*).
    """
    dup = dup_or_none(fd, on_shortage)
    if dup is not None:
        return [dup]
    with contextlib.suppress(OSError):
        _layout.sync_step(fd, kind)
    return []
