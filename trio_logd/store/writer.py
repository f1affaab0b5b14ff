"""The store's writing side: per-uid append-only JSON Lines files.

How this works: a :class:`StoreWriter` is a plain synchronous object owned by
the daemon's single writer task, which calls it from a worker thread (one hop
per batch), never concurrently. At :meth:`StoreWriter.open` it verifies
``log_dir``, then for every uid directory recovers the state a crash may have
left: a torn last line of ``current.jsonl`` (no trailing LF) is cut off and set
aside in ``torn-<time>.partial`` (never parsed as a record), and the last
``seq`` on disk is found so that numbering continues without reuse.

Each record line starts with ``{"ts":"<27 chars>","seq":`` (see
``trio_logd.record.encode_line``); the writer relies on that fixed layout to
read ``ts`` without decoding JSON.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import orjson

from trio_logd.errors import DiskFull, ReadOnlyStore, StoreError, UnsafeLogDir
from trio_logd.store import _layout

__all__ = ["StoreWriter", "UidFile", "read_last_seq"]

#: How much of a file's tail we read to find its last complete line; a record
#: is at most max_message_bytes (64 KiB by default) plus its JSON overhead.
_TAIL_CHUNK: Final = 1 << 18

_FSYNC_POLICIES: Final = ("never", "batch", "always")


@dataclass(slots=True)
class UidFile:
    """The open current file of one uid and what the writer knows of it."""

    uid: int
    dir_fd: int
    fd: int
    size: int
    last_seq: int
    dirty: bool = False


def read_last_seq(fd: int, size: int) -> int:
    """Return the ``seq`` of the last complete, parseable line in an open file.

    Returns 0 when the file holds no parseable record.
    """
    end = size
    while end > 0:
        start = max(0, end - _TAIL_CHUNK)
        chunk = os.pread(fd, end - start, start)
        lines = chunk.split(b"\n")
        # lines[0] may be partial unless start == 0; the last element is b"" for a
        # file ending in LF.
        candidates = lines if start == 0 else lines[1:]
        for line in reversed(candidates):
            if not line:
                continue
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(obj, dict) and isinstance(obj.get("seq"), int):
                return int(obj["seq"])
        if start == 0:
            break
        end = start + len(lines[0])
    return 0


def _set_aside_torn_tail(uid_dir: int, reader: int, fd: int, size: int) -> int:
    """Cut a torn last line off the current file; keep its bytes aside. Return the new size."""
    tail_start = max(0, size - _TAIL_CHUNK)
    chunk = os.pread(reader, size - tail_start, tail_start)
    cut = chunk.rfind(b"\n")
    new_size = tail_start + cut + 1 if cut >= 0 else tail_start
    torn = chunk[cut + 1 :] if cut >= 0 else chunk
    name = f"torn-{time.time_ns() // 1000}.partial"
    aside = _layout.open_file(
        uid_dir, name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, what=f"torn tail {name}"
    )
    try:
        os.write(aside, torn)
        os.fsync(aside)
    finally:
        os.close(aside)
    os.ftruncate(fd, new_size)
    os.fsync(fd)
    return new_size


def _store_error(exc: OSError, what: str) -> StoreError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFull(f"{what}: no space left on the log file system")
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return ReadOnlyStore(f"{what}: {exc.strerror}")
    return StoreError(f"{what}: {exc.strerror}")


class StoreWriter:
    """Appends record lines to ``log_dir/<uid>/current.jsonl``.

    Args:
        log_dir: absolute path of the store's root directory.
        fsync: ``never`` (leave it to the kernel), ``batch`` (``fdatasync``
            every file written in a batch, before the batch is acknowledged)
            or ``always`` (after every append).
    """

    def __init__(self, log_dir: str, *, fsync: str = "batch") -> None:
        if fsync not in _FSYNC_POLICIES:
            msg = f"fsync: expected one of {', '.join(_FSYNC_POLICIES)}, got {fsync!r}"
            raise ValueError(msg)
        self.log_dir = log_dir
        self.fsync = fsync
        self._root: int | None = None
        self._files: dict[int, UidFile] = {}
        self._recovered: dict[int, int] = {}

    # -- start-up ---------------------------------------------------------

    def open(self) -> dict[int, int]:
        """Verify ``log_dir``, recover every uid directory, return last seq per uid.

        Raises:
            UnsafeLogDir: ``log_dir`` or a uid directory is unsafe.
        """
        self._root = _layout.open_log_dir(self.log_dir)
        for name in os.listdir(self._root):
            if not name.isdigit() or not name.isascii():
                continue
            uid = int(name)
            uf = self._open_uid(uid, create=False)
            self._recovered[uid] = uf.last_seq
        return dict(self._recovered)

    def _open_uid(self, uid: int, *, create: bool) -> UidFile:
        assert self._root is not None, "StoreWriter.open() first"
        dir_fd = _layout.open_uid_dir(self._root, uid, create=create)
        try:
            fd = _layout.open_file(
                dir_fd,
                _layout.CURRENT,
                os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                what=f"{uid}/{_layout.CURRENT}",
            )
        except BaseException:
            os.close(dir_fd)
            raise
        size = os.fstat(fd).st_size
        reader = os.open(_layout.CURRENT, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        try:
            if size and os.pread(reader, 1, size - 1) != b"\n":
                size = _set_aside_torn_tail(dir_fd, reader, fd, size)
            last = read_last_seq(reader, size)
        finally:
            os.close(reader)
        uf = UidFile(uid=uid, dir_fd=dir_fd, fd=fd, size=size, last_seq=last)
        self._files[uid] = uf
        return uf

    def last_seq(self, uid: int) -> int:
        """Return the last ``seq`` written for *uid* (0 for a uid never seen)."""
        uf = self._files.get(uid)
        return uf.last_seq if uf is not None else self._recovered.get(uid, 0)

    # -- writing ----------------------------------------------------------

    def append(self, uid: int, lines: Sequence[bytes], last_seq: int) -> None:
        """Append complete record lines for *uid*.

        Args:
            uid: the uid the lines are filed with.
            lines: encoded records, each ending in LF, in ``seq`` order.
            last_seq: the ``seq`` of the last line.

        Raises:
            DiskFull, ReadOnlyStore, UnsafeLogDir, StoreError: nothing (or only
                a prefix of whole lines) was written.
        """
        uf = self._files.get(uid)
        try:
            if uf is None:
                uf = self._open_uid(uid, create=True)
            data = b"".join(lines)
            view = memoryview(data)
            while view:
                n = os.write(uf.fd, view)
                view = view[n:]
                uf.size += n
        except UnsafeLogDir:
            raise
        except OSError as exc:
            if uf is not None:
                self._truncate_partial(uf)
            raise _store_error(exc, f"writing uid {uid}") from exc
        uf.last_seq = last_seq
        uf.dirty = True
        if self.fsync == "always":
            self.sync()

    def _truncate_partial(self, uf: UidFile) -> None:
        """After a failed write, cut the file back to its last complete line."""
        try:
            size = os.fstat(uf.fd).st_size
            reader = os.open(
                _layout.CURRENT, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=uf.dir_fd
            )
            try:
                start = max(0, size - _TAIL_CHUNK)
                chunk = os.pread(reader, size - start, start)
            finally:
                os.close(reader)
            cut = chunk.rfind(b"\n")
            good = start + cut + 1 if cut >= 0 else start
            if good != size:
                os.ftruncate(uf.fd, good)
            uf.size = good
        except OSError:
            pass  # the next append retries; a torn line is also cut at the next start

    def sync(self) -> None:
        """``fdatasync`` every file written since the last sync (policy permitting)."""
        if self.fsync == "never":
            for uf in self._files.values():
                uf.dirty = False
            return
        # May run in a worker thread while the event loop appends (server/_writer_task.py):
        # iterate a copy (new uids may appear) and clear the flag before the sync, so
        # that an append during it is synced next time.
        for uf in list(self._files.values()):
            if uf.dirty:
                uf.dirty = False
                try:
                    os.fdatasync(uf.fd)
                except OSError as exc:
                    uf.dirty = True
                    raise _store_error(exc, f"syncing uid {uf.uid}") from exc

    def disk_usage(self, uid: int) -> int:
        """Bytes of *uid*'s current file (rotated files are counted by the retention layer)."""
        uf = self._files.get(uid)
        return uf.size if uf is not None else 0

    def close(self) -> None:
        """Sync (per policy) and close every file."""
        try:
            self.sync()
        finally:
            for uf in self._files.values():
                os.close(uf.fd)
                os.close(uf.dir_fd)
            self._files.clear()
            if self._root is not None:
                os.close(self._root)
                self._root = None
