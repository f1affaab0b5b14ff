"""Who else can fill the file system of ``log_dir``.

How this works: the store's pressure rules (``keep_free_bytes``) measure the
free space of ``log_dir``'s file system, which other users can use up when it
also holds a directory they may write: ``/tmp``, ``/var/tmp``, ``/dev/shm``,
home directories. :func:`shared_writable_dirs` compares device numbers
(``st_dev``) of ``log_dir`` and of those directories; ``trio-logd status``
shows the result as a warning, and docs/operators.md recommends a file
system of its own. Sync I/O (``stat``, the passwd database): call it once,
off the event loop.
"""

from __future__ import annotations

import os
import pwd
import stat
from collections.abc import Iterable
from typing import Final

__all__ = ["WORLD_WRITABLE", "candidate_dirs", "shared_writable_dirs"]

#: Directories where every user may write, on most systems.
WORLD_WRITABLE: Final = ("/tmp", "/var/tmp", "/dev/shm", "/home")
#: Regular users' home directories start at this uid (``UID_MIN`` of login.defs).
UID_MIN: Final = 1000
#: At most this many home directories are looked at (a directory service may list many).
MAX_HOMES: Final = 1000


def candidate_dirs() -> list[str]:
    """The world-writable directories and the regular users' home directories."""
    out = list(WORLD_WRITABLE)
    try:
        users = pwd.getpwall()
    except OSError:
        users = []
    homes = sorted({u.pw_dir for u in users if u.pw_uid >= UID_MIN and u.pw_dir.startswith("/")})
    out.extend(h for h in homes[:MAX_HOMES] if h not in out)
    return out


def shared_writable_dirs(log_dir: str, candidates: Iterable[str], owner: int) -> list[str]:
    """The *candidates* on the file system of *log_dir* that others than *owner* can write.

    A directory counts when it is world-writable, or owned by another uid
    (a user's home). Missing or unreadable candidates are skipped.
    """
    try:
        dev = os.stat(log_dir).st_dev
    except OSError:
        return []
    out = []
    for path in candidates:
        try:
            st = os.stat(path)
        except OSError:
            continue
        if st.st_dev != dev or not stat.S_ISDIR(st.st_mode):
            continue
        if st.st_mode & 0o002 or st.st_uid != owner:
            out.append(path)
    return out
