"""Spare files: the files of busy uids' next rotations, made ahead (``StoreWriter``).

How this works: creating a file costs ~0.5 ms on ext4 (the inode), twice per
rotation (current.jsonl, current.chain), in the event loop when appends run
there. So the two files of a uid's next rotation are made ahead, off the
loop, as unnamed files of its directory (``O_TMPFILE``; nothing is left
behind by a crash), and a rotation only links them into place (``linkat``,
~15 µs). Where the file system has no ``O_TMPFILE`` (or /proc is not there
to link through), files are created as before.

A :class:`SparePool` is the bookkeeping: which uids want spares, how many
are held in all, whether they work here. Each uid's spare fds live in its
``UidFile.spares``. The writer calls the pool under its lock.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Mapping
from typing import Final, Protocol

import structlog

from trio_logd.store import _layout

__all__ = [
    "SPARES_MAX_FILES",
    "SPARES_MIN_ROUND",
    "SPARES_PER_UID",
    "SPARE_ROTATIONS",
    "SparePool",
]

log = structlog.get_logger("trio_logd.store")

#: A busy uid keeps the files of its next ``SPARE_ROTATIONS`` rotations ready
#: (two files each), and asks for more as soon as it uses some. A flood fills a
#: 1 MiB file in ~9 ms, and a refill takes ~11 ms when the event loop is
#: saturated (two loop turns): with one rotation's worth, a third of rotations
#: found none and made their files. At most ``SPARES_MAX_FILES`` descriptors
#: are held in all, and only for uids whose rounds are big: a quiet uid's rare
#: rotation creates its files itself.
SPARE_ROTATIONS: Final = 3
SPARES_PER_UID: Final = 2 * SPARE_ROTATIONS
SPARES_MAX_FILES: Final = 128
SPARES_MIN_ROUND: Final = 16 << 10


class HoldsSpares(Protocol):
    """A uid's open files, as far as spares go (``_uidfile.UidFile``)."""

    uid: int
    dir_fd: int
    spares: list[int]


class SparePool:
    """Which uids want spare files, how many are held in all, whether they work here."""

    __slots__ = ("files", "wanted", "works")

    def __init__(self) -> None:
        #: busy uids whose current file will rotate by size and that lack spares
        self.wanted: set[int] = set()
        #: False once the file system refused O_TMPFILE or linking one
        self.works = True
        #: spare files held now, all uids (at most SPARES_MAX_FILES)
        self.files = 0

    def note_write(self, uf: HoldsSpares, nbytes: int, size: int, max_file_bytes: int) -> None:
        """*nbytes* went to *uf*'s current file, now *size* bytes: want spares if busy."""
        if (
            nbytes >= SPARES_MIN_ROUND
            and size > max_file_bytes >> 3  # a file that will rotate, not a huge one
            and len(uf.spares) < SPARES_PER_UID
            and self.works
            and self.files < SPARES_MAX_FILES
        ):
            self.wanted.add(uf.uid)  # a busy uid's rotations are coming

    def jobs(
        self, files: Mapping[int, HoldsSpares], dup: Callable[[int], int | None]
    ) -> list[tuple[int, int, int]]:
        """Take the wanted uids as jobs ``(uid, dir_fd, count)``; *dup* duplicates a dir fd."""
        wanted, self.wanted = self.wanted, set()
        room = SPARES_MAX_FILES - self.files
        jobs = []
        # the uids with the fewest spares first: a uid with none needs them most
        for uid in sorted(wanted, key=lambda u: (len(files[u].spares) if u in files else 0, u)):
            uf = files.get(uid)
            count = min(SPARES_PER_UID - len(uf.spares), room) if uf else 0
            if uf is not None and count > 0:
                dir_fd = dup(uf.dir_fd)
                if dir_fd is None:  # out of descriptors: no spares now
                    break
                jobs.append((uid, dir_fd, count))
                room -= count
        return jobs

    def add(self, uf: HoldsSpares | None, fds: list[int], dir_ino: int) -> int:
        """Give *uf* (``None``: gone) as many of *fds* as it and the cap allow; return how many.

        Files for a directory that is no longer the uid's (*dir_ino*) are
        not kept; the caller closes those not kept.
        """
        keep = 0
        if uf is not None and os.fstat(uf.dir_fd).st_ino == dir_ino:
            keep = max(
                min(len(fds), SPARES_PER_UID - len(uf.spares), SPARES_MAX_FILES - self.files), 0
            )
            uf.spares.extend(fds[:keep])
            self.files += keep
        return keep

    def unsupported(self, error: OSError) -> bool:
        """Note *error* from making spare files; True if it means "never here" (no O_TMPFILE)."""
        if error.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
            self.works = False
            return True
        return False

    def take(self, uf: HoldsSpares) -> int | None:
        """Take one of *uf*'s spares; a uid that had some rotates often: refill at once."""
        if not uf.spares:
            return None
        self.files -= 1
        if self.works:
            self.wanted.add(uf.uid)
        return uf.spares.pop()

    def link(self, uf: HoldsSpares, name: str) -> int:
        """Link a spare file of *uf* into place as *name*; its fd, or -1 (none, or it failed)."""
        fd = self.take(uf)
        if fd is None:
            return -1
        failed = _layout.link_unnamed(fd, uf.dir_fd, name)
        if failed:
            os.close(fd)
            if failed != errno.EEXIST:  # no /proc, or the file system refuses
                self.works = False
                log.warning("spare_files_off", uid=uf.uid, error=os.strerror(failed))
            return -1
        return fd
