"""The daemon's file descriptors: raise the soft ``RLIMIT_NOFILE`` to the hard limit at start.

How this works: every ingest connection holds a descriptor, and so do the
store's files, a rotation (the new current file, the compressor's input and
output), the control connections and NSS lookups. The usual soft limit of
1024 is the default ``[daemon] max_connections`` itself, so one uid holding
connections could leave the store unable to open the file of the next
rotation. At start the daemon therefore raises its soft limit to the hard
one (as systemd recommends for daemons that need many fds, and as journald
does), and warns when even that leaves less than :data:`FD_RESERVE`
descriptors beyond ``max_connections``. The raise needs no privilege; trio
waits with epoll, so descriptors above 1024 are fine.
"""

from __future__ import annotations

import resource
from typing import Final, NamedTuple

__all__ = ["FD_RESERVE", "FdLimit", "raise_nofile_limit"]

#: Descriptors kept beyond ``max_connections`` for the store (a uid's current
#: file and directory, a rotation's files, compression in a thread), the
#: control socket's clients, the listeners, NSS and the daemon's own log.
FD_RESERVE: Final = 256
#: Where the hard limit is "unlimited", soft may still go no higher than this
#: (``/proc/sys/fs/nr_open``, whose default is 1048576).
_NR_OPEN: Final = "/proc/sys/fs/nr_open"


class FdLimit(NamedTuple):
    """``RLIMIT_NOFILE`` before and after :func:`raise_nofile_limit`."""

    before: int
    soft: int
    hard: int


def _nr_open() -> int:
    try:
        with open(_NR_OPEN) as f:
            return int(f.read())
    except (OSError, ValueError):
        return 1 << 20


def raise_nofile_limit() -> FdLimit:
    """Raise this process's soft ``RLIMIT_NOFILE`` to its hard limit.

    Returns:
        The soft limit before, and the soft and hard limits now. When the
        kernel refuses (it should not: an unprivileged process may raise its
        soft limit up to the hard one), the limits stay as they were.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = _nr_open() if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (OSError, ValueError):
            return FdLimit(soft, soft, hard)
        return FdLimit(soft, target, hard)
    return FdLimit(soft, soft, hard)
