"""One daemon per store: the lock on ``log_dir``.

How this works: the writer opens ``log_dir/logd.lock`` (relative to the
verified ``log_dir`` fd, ``O_NOFOLLOW``, mode 0600, checked like every store
file: ours, regular, one link) and takes an exclusive ``flock`` on it before
it opens or repairs anything else in the store; it writes its pid into the
file and holds the lock for its lifetime. The kernel drops the lock when the
holder exits, however it exits, so a crash never leaves a stale lock behind
(the pid in the file may be stale; the lock is what counts). A second daemon
on the same ``log_dir`` (whatever its sockets) finds the lock taken and stops
with the holder's pid. The name is not a decimal number, so it can never be
a uid directory; readers (``logq --directory``, ``--verify``) list uid
directories only and never take the lock.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from typing import Final

from trio_logd.errors import StoreInUse, UnsafeLogDir
from trio_logd.store import _layout

__all__ = ["LOCK_NAME", "lock_log_dir", "read_holder"]

#: The lock file inside ``log_dir``.
LOCK_NAME: Final = "logd.lock"
#: A pid is at most 7 digits (``pid_max`` <= 2**22); anything longer is not one.
_MAX_PID_BYTES: Final = 16


def read_holder(fd: int) -> int | None:
    """The pid written in the lock file *fd*; ``None`` if there is none (yet)."""
    try:
        data = os.pread(fd, _MAX_PID_BYTES, 0)
    except OSError:
        return None
    text = data.strip()
    return int(text) if text.isdigit() and len(text) < _MAX_PID_BYTES else None


def lock_log_dir(root_fd: int, log_dir: str) -> int:
    """Take the store's lock, write our pid in it; return its fd (held until closed).

    Args:
        root_fd: the verified ``log_dir`` directory fd.
        log_dir: its path, for messages.

    Raises:
        StoreInUse: another process holds the lock (its pid in the message).
        UnsafeLogDir: the lock file is a symlink, not ours, or has other links.
        StoreError: it cannot be opened or locked (a read-only file system).
    """
    what = f"log_dir {log_dir!r}: {LOCK_NAME}"
    try:
        fd = _layout.open_file(root_fd, LOCK_NAME, os.O_RDWR | os.O_CREAT, what=what)
    except OSError as exc:
        msg = f"{what}: cannot open: {exc.strerror}"
        raise UnsafeLogDir(msg) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                msg = f"{what}: cannot lock: {exc.strerror}"
                raise UnsafeLogDir(msg) from exc
            pid = read_holder(fd)
            holder = f"pid {pid}" if pid is not None else "another process"
            msg = f"log_dir {log_dir} is in use by {holder} (its lock {LOCK_NAME} is held)"
            raise StoreInUse(msg, pid=pid) from exc
        # the pid is for people, the lock is what counts; written at a fixed width
        # over the same bytes each time, so that a start on a full disk can still
        # write it (no new block) and a shorter pid leaves no digits of the last one
        with contextlib.suppress(OSError):
            os.fchmod(fd, _layout.FILE_MODE)
            os.pwrite(fd, b"%-*d\n" % (_MAX_PID_BYTES - 1, os.getpid()), 0)
            os.ftruncate(fd, _MAX_PID_BYTES)
    except BaseException:
        os.close(fd)
        raise
    return fd
