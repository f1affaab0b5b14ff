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

Connections cannot eat into a reserve of descriptors (:class:`FdReserve`),
whatever the limits allow: the kernel gives a new descriptor the lowest free
number, so a connection accepted as descriptor ``n`` means ``0 .. n-1`` are
all in use. An ordinary uid's connection (ingest or control) numbered at or
above ``soft - reserve`` is refused at once (counted); root's and admins'
may go on up to ``soft - reserve/2``; the rest is for the store (its files,
a rotation, syncs), the helper link, forwarding and the exporter, which may
use any number. Every ``EMFILE``/``ENFILE`` the daemon meets anyway is
counted by where (:class:`FdCounters`) and shown in ``stats``, ``status``
and the metrics.
"""

from __future__ import annotations

import errno
import resource
import threading
from typing import Any, Final, NamedTuple

__all__ = [
    "FD_RESERVE",
    "FdCounters",
    "FdLimit",
    "FdReserve",
    "raise_nofile_limit",
]

#: Descriptors kept beyond ``max_connections`` for the store (a uid's current
#: file and directory, a rotation's files, compression in a thread), the
#: control socket's clients, the listeners, NSS and the daemon's own log.
FD_RESERVE: Final = 256
#: Where the hard limit is "unlimited", soft may still go no higher than this
#: (``/proc/sys/fs/nr_open``, whose default is 1048576).
_NR_OPEN: Final = "/proc/sys/fs/nr_open"


#: errno values that mean "out of descriptors" (the process's, or the system's)
FD_SHORTAGE_ERRNOS: Final = frozenset({errno.EMFILE, errno.ENFILE})


def out_of_fds(exc: BaseException | None) -> bool:
    """Tell whether *exc*, or an exception it was raised from, is EMFILE/ENFILE.

    Follows ``__cause__``/``__context__`` and the members of exception
    groups (trio's connect attempts raise groups), at most 16 steps deep.
    """
    todo = [exc]
    for _ in range(16):
        if not todo:
            return False
        e = todo.pop()
        if e is None:
            continue
        if isinstance(e, OSError) and e.errno in FD_SHORTAGE_ERRNOS:
            return True
        if isinstance(e, BaseExceptionGroup):
            todo.extend(e.exceptions)
        todo.extend((e.__cause__, e.__context__))
    return False


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


class FdReserve:
    """Which descriptor numbers a new connection may hold (see the module doc).

    Args:
        soft: the soft ``RLIMIT_NOFILE`` in force.
        reserve: descriptors kept from ordinary connections; at most a
            quarter of *soft* (a daemon started with a tiny limit still
            accepts connections).
    """

    __slots__ = ("ordinary", "privileged", "reserve", "soft")

    def __init__(self, soft: int, reserve: int = FD_RESERVE) -> None:
        self.soft = soft
        self.reserve = min(reserve, soft // 4)
        #: an ordinary uid's connection must have a lower number than this
        self.ordinary = soft - self.reserve
        #: root's and admins' connections, this
        self.privileged = soft - self.reserve // 2

    def admits(self, fd: int, *, privileged: bool = False) -> bool:
        """Whether a connection accepted as descriptor *fd* may stay open."""
        return fd < (self.privileged if privileged else self.ordinary)


class FdCounters:
    """Counts of descriptor shortages, by where; bumped from any thread.

    ``refused``: connections closed at once because they would have used the
    reserve (``ingest``, ``control``). ``exhausted``: ``EMFILE``/``ENFILE``
    met anyway (``ingest_accept``, ``control_accept``, ``store``: a dup for
    a sync, a compression or spare files).
    """

    def __init__(self, reserve: FdReserve) -> None:
        self.reserve = reserve
        self.refused: dict[str, int] = {}
        self.exhausted: dict[str, int] = {}
        self._lock = threading.Lock()

    def note_refused(self, where: str) -> None:
        """Count one connection refused at the reserve."""
        with self._lock:
            self.refused[where] = self.refused.get(where, 0) + 1

    def note_exhausted(self, where: str, n: int = 1) -> None:
        """Count *n* ``EMFILE``/``ENFILE`` errors met at *where*."""
        with self._lock:
            self.exhausted[where] = self.exhausted.get(where, 0) + n

    def snapshot(self) -> dict[str, Any]:
        """The ``fds`` object of ``stats`` and ``status``."""
        with self._lock:
            return {
                "limit": self.reserve.soft,
                "reserve": self.reserve.reserve,
                "refused": dict(self.refused),
                "exhausted": dict(self.exhausted),
            }
