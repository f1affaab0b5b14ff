"""The writer's files of unreported drop counts: ``log_dir/.drops/<uid>`` (``dropstate``).

How this works: a :class:`DropFiles` holds the ``.drops`` directory and the
files made ahead in it (for uids first seen on a full disk), makes each uid's
file when the writer opens the uid, and loads and saves the counts. The
writer calls it under its lock; a failure is logged, never raised: the counts
then stay in memory.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import structlog

from trio_logd.errors import UnsafeLogDir
from trio_logd.store import _layout
from trio_logd.store._uidfile import UidFile
from trio_logd.store.dropstate import (
    DROPS_DIR,
    UnitCounts,
    Unreported,
    make_drop_file,
    make_spares,
    read_drop_file,
    take_spare,
    write_drop_file,
)

__all__ = ["DropFiles"]

log = structlog.get_logger("trio_logd.store")


class DropFiles:
    """``log_dir/.drops`` and the uids' files in it.

    Args:
        log_dir: the store's root (for messages).
        sync: whether saves may be synced (``fsync`` is not ``never``).
    """

    def __init__(self, log_dir: str, *, sync: bool) -> None:
        self.log_dir = log_dir
        self.sync = sync
        #: ``log_dir/.drops``; None if it could not be made
        self.dir_fd: int | None = None
        #: files made ahead in it, for uids registered on a full disk
        self.spares: list[str] = []

    def _what(self, uid: int) -> str:
        return f"{self.log_dir}/{DROPS_DIR}/{uid}"

    def open_dir(self, root: int) -> None:
        """Open (making it) ``log_dir/.drops``; a failure is logged (counts stay in memory)."""
        if self.dir_fd is not None:
            return
        what = f"{self.log_dir}/{DROPS_DIR}"
        try:
            self.dir_fd = _layout.open_dir(root, DROPS_DIR, create=True, what=what)
            self.spares = make_spares(self.dir_fd, what=what)
        except (OSError, UnsafeLogDir) as exc:
            log.warning("drops_state_unavailable", error=str(exc))

    def open_uid(self, root: int, uf: UidFile) -> None:
        """Make the uid's file while there is room (a file made ahead when there is not)."""
        if uf.drops_gen is not None:
            return
        self.open_dir(root)
        if self.dir_fd is None:
            return
        try:
            uf.drops_gen = make_drop_file(self.dir_fd, str(uf.uid), what=self._what(uf.uid))
        except (OSError, UnsafeLogDir) as exc:
            # no room (a uid first seen on a full disk): a file made at start
            if take_spare(self.dir_fd, self.spares, str(uf.uid)):
                uf.drops_gen = 0
                return
            log.warning("drops_state_unavailable", uid=uf.uid, error=str(exc))

    def load(self, uid_files: Mapping[int, UidFile]) -> dict[int, Unreported]:
        """The counts the last run left unreported, per uid; each uid's ``numbered`` goes
        past the last seq that run gave out. A file that cannot be read is logged and skipped.
        """
        out: dict[int, Unreported] = {}
        for uid, uf in uid_files.items():
            if uf.drops_gen is None or self.dir_fd is None:
                continue
            try:
                uf.drops_gen, counts, seq, units = read_drop_file(
                    self.dir_fd, str(uid), what=self._what(uid)
                )
            except (OSError, UnsafeLogDir) as exc:
                log.warning("drops_state_unreadable", uid=uid, error=str(exc))
                continue
            if counts:
                out[uid] = (counts, units)
                uf.numbered = max(uf.numbered, seq)
        return out

    def save(
        self,
        root: int,
        uf: UidFile,
        counts: dict[str, int],
        seq: int,
        *,
        sync: bool,
        units: UnitCounts | None = None,
    ) -> bool:
        """Keep the uid's counts (and their units') and last seq given out, in place;
        whether they were kept."""
        self.open_uid(root, uf)
        if uf.drops_gen is None or self.dir_fd is None:
            return False
        gen = uf.drops_gen + 1
        try:
            write_drop_file(
                self.dir_fd,
                str(uf.uid),
                gen,
                counts,
                seq,
                sync=sync and self.sync,
                what=self._what(uf.uid),
                units=units,
            )
        except (OSError, UnsafeLogDir) as exc:
            log.warning("drops_state_write_failed", uid=uf.uid, error=str(exc))
            return False
        uf.drops_gen = gen
        return True

    def close(self) -> None:
        """Close the directory."""
        if self.dir_fd is not None:
            os.close(self.dir_fd)
            self.dir_fd = None
