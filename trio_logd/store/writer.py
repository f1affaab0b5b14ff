"""The store's writing side: per-uid append-only JSON Lines files, rotated.

How this works: a :class:`StoreWriter` is a plain synchronous object. The
daemon's single writer task calls :meth:`~StoreWriter.append` and
:meth:`~StoreWriter.sync` from a worker thread (one hop per round); the
housekeeping task calls :meth:`~StoreWriter.rotate`,
:meth:`~StoreWriter.compress_next` and :meth:`~StoreWriter.delete` from
another worker thread. One lock serialises the methods that touch the open
files, the index of rotated files and the ledger; compressing a file runs
outside the lock, so a compression never stalls the writer. The writer is
told what it needs of the lines it appends (``runs``). It is the lock and the
public face; each job is a module it calls under the lock: the open files,
appending and rotating (``_append.Appender``), start-up and recovery
(``_startup``), retention's deletions and free space (``_deletion``), drop
counts' files (``_drops``), spare files of coming rotations (``_spares``),
the jobs that sync outside the lock (``_sync``) and the queue of files to
compress (``_compression``). What stays here is one thing, the writer's
public API (the daemon's writer task, housekeeper and helper call it): its
length is mostly the contract of each method.

Invariants:

- Each uid directory holds ``current.jsonl`` and rotated files
  (``_layout.RotatedName``); a rotated file is always complete: it is made by
  renaming ``current.jsonl`` between two appends, never mid-record.
- ``seq`` is never reused: the uid's high-water mark is always on disk in
  ``current.jsonl`` or, right after a rotation, in the newest rotated file
  (its name says its last ``seq``). Retention never deletes that newest file
  while ``current.jsonl`` is empty; the ``rotated`` record the daemon files
  after each rotation makes it non-empty, and :meth:`~StoreWriter.open`
  writes that record itself if a crash came first (or leaves it for later
  when the disk is full: the mark is read from the name either way).
- A uid is written to only once its mark is known: a uid directory that
  could not be read at start has no mark (:meth:`~StoreWriter.last_seq`
  says ``None``) until :meth:`~StoreWriter.establish` reads it, and
  :meth:`~StoreWriter.append` refuses lines numbered at or below the mark
  (``SeqConflict``), whatever happened before.
- The ledger holds, per uid, the bytes of every file of the uid (current,
  rotated, torn tails).

At :meth:`~StoreWriter.open` every uid directory is recovered: unfinished
compressions are removed or finished (``_compress``), a torn last line of
``current.jsonl`` (no trailing LF) is cut off and set aside in
``torn-<time>.partial`` (never parsed as a record), and the last ``seq`` is
found so that numbering continues without reuse.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Final

import structlog

from trio_logd.errors import DiskFull, SeqConflict, StoreError, UnsafeLogDir
from trio_logd.limits import QuotaLedger
from trio_logd.peer import PeerCred
from trio_logd.store import _deletion, _layout, _owner, _startup
from trio_logd.store._append import Appender
from trio_logd.store._compression import CompressionQueue, CompressJob
from trio_logd.store._drops import DropFiles
from trio_logd.store._layout import RotatedName
from trio_logd.store._recover import read_last_seq
from trio_logd.store._spares import SparePool
from trio_logd.store._sync import SyncJob, close_job, dup_for_sync, dup_or_none, job_steps, run_job
from trio_logd.store._sync import store_error as _store_error
from trio_logd.store._uidfile import Rotation, UidFile, disk_bytes
from trio_logd.store._unitindex import append_entries, compact_index
from trio_logd.store.dropstate import UnitCounts, Unreported
from trio_logd.store.retention import StoredFile, UidFiles
from trio_logd.store.runs import Run, RunIndex, runs_of_lines

__all__ = [
    "Appender",
    "CompressJob",
    "Rotation",
    "StoreWriter",
    "SyncJob",
    "UidFile",
    "read_last_seq",
]

log = structlog.get_logger("trio_logd.store")

_FSYNC_POLICIES: Final = ("never", "batch", "always")
_COMPRESS: Final = ("none", "gzip", "zstd")
_UNLIMITED: Final = 1 << 62


class StoreWriter:
    """Appends record lines to ``log_dir/<uid>/current.jsonl`` and rotates them.

    Args:
        log_dir: absolute path of the store's root directory.
        fsync: ``never`` (leave it to the kernel), ``batch`` (``fdatasync``
            every file written in a round, before the round is acknowledged;
            rotations and compressions synced with their directory) or
            ``always`` (as ``batch``, and after every append).
        max_file_bytes: rotate ``current.jsonl`` before a record would take
            it past this size (a single larger record gets a file of its own).
        max_file_age: rotate it this many seconds after its first record;
            ``0`` = by size only.
        compress: ``none``, ``gzip`` or ``zstd``: how rotated files are
            compressed (by :meth:`compress_next`).
        daemon: the daemon's credentials, for the ``rotated`` record that
            :meth:`open` writes when a crash came between a rotation and that
            record (default: this process).
        error_hooks: called (in the calling thread) with each ``StoreError``
            that :meth:`append` or :meth:`sync` raises, before it is raised;
            more can be added to :attr:`error_hooks` later.

    Raises:
        ValueError: an argument is out of range.
    """

    def __init__(
        self,
        log_dir: str,
        *,
        fsync: str = "batch",
        max_file_bytes: int = _UNLIMITED,
        max_file_age: float = 0.0,
        compress: str = "none",
        daemon: PeerCred | None = None,
        error_hooks: Iterable[Callable[[StoreError], None]] = (),
    ) -> None:
        if fsync not in _FSYNC_POLICIES:
            msg = f"fsync: expected one of {', '.join(_FSYNC_POLICIES)}, got {fsync!r}"
            raise ValueError(msg)
        if compress not in _COMPRESS:
            msg = f"compress: expected one of {', '.join(_COMPRESS)}, got {compress!r}"
            raise ValueError(msg)
        if max_file_bytes < 1 or max_file_age < 0:
            msg = (
                "need max_file_bytes >= 1 and max_file_age >= 0, "
                f"got {max_file_bytes}, {max_file_age}"
            )
            raise ValueError(msg)
        self.log_dir = log_dir
        self.fsync = fsync
        self.max_file_bytes = max_file_bytes
        self.max_file_age = max_file_age
        self.compress = compress
        self.daemon = daemon or PeerCred(os.getpid(), os.geteuid(), os.getegid())
        #: observers of the errors of append and sync (the daemon's counters)
        self.error_hooks: list[Callable[[StoreError], None]] = list(error_hooks)
        #: disk bytes of every uid's files; the quota policy reads it
        self.ledger = QuotaLedger()
        #: uid directories refused at open (unsafe): uid -> reason
        self.refused: dict[int, str] = {}
        self._root: int | None = None
        #: the store's lock (``_owner``), held from open() to close()
        self._lock_fd = -1
        #: ``log_dir/.drops`` and the uids' files in it (``dropstate``)
        self._drops = DropFiles(log_dir, sync=fsync != "never")
        self._euid = os.geteuid()
        self._lock = threading.Lock()
        #: rotated files waiting for compression (thread-safe deque)
        self._compression = CompressionQueue(self, compress, sync=fsync != "never")
        #: spare files of coming rotations (``_spares``)
        self._spares = SparePool()
        #: the open files, appending and rotating (``_append``)
        self._appender = Appender(
            fsync=fsync,
            max_file_bytes=max_file_bytes,
            max_file_age=max_file_age,
            compress=compress,
            ledger=self.ledger,
            spares=self._spares,
            compression=self._compression,
        )
        #: the open uids (the appender's)
        self._files = self._appender.files
        #: uids with data, rotated files or directory changes not yet synced (the appender's)
        self._dirty = self._appender.dirty
        #: called (any thread) when a dup for a sync, a compression or spare
        #: files found the process out of descriptors (the work waits or is done in place)
        self.on_fd_shortage: Callable[[], None] = lambda: None
        #: why appends are refused (:meth:`hold`); ``None``: they are not
        self.held: str | None = None

    # -- start-up ---------------------------------------------------------

    def open(self) -> dict[int, int]:
        """Verify ``log_dir``, recover every uid directory, return last seq per uid.

        A uid directory that is unsafe (a symlink, writable by others, not
        ours) is refused: logged, listed in :attr:`refused`, never written
        through; the other uids are unaffected.

        Raises:
            UnsafeLogDir: ``log_dir`` itself is unsafe.
            StoreInUse: another daemon holds ``log_dir``; nothing was opened.
            StoreError: ``log_dir`` cannot be read.
        """
        root = _layout.open_log_dir(self.log_dir)
        try:  # before anything in the store is opened or repaired: one owner
            self._lock_fd = _owner.lock_log_dir(root, self.log_dir)
        except BaseException:
            os.close(root)
            raise
        self._root = root
        try:
            names = os.listdir(self._root)
        except OSError as exc:
            raise _store_error(exc, f"log_dir {self.log_dir!r}") from exc
        self._drops.open_dir(root)
        for name in names:
            if not name.isdigit() or not name.isascii():
                continue
            uid = int(name)
            try:
                with self._lock:
                    self._open_uid(uid, create=False)
            except UnsafeLogDir as exc:
                self.refused[uid] = str(exc)
                log.error("uid_directory_refused", uid=uid, error=str(exc))
            except OSError as exc:
                err = _store_error(exc, f"uid directory {uid}")
                self.refused[uid] = str(err)
                log.error("uid_directory_unreadable", uid=uid, error=str(err))
        return {uid: uf.last_seq for uid, uf in self._files.items()}

    def _open_uid(self, uid: int, *, create: bool) -> UidFile:
        """Open and recover one uid directory (``_startup``). Call with the lock held."""
        assert self._root is not None, "StoreWriter.open() first"
        uf = _startup.recover_uid(self._appender, self._root, uid, create=create)
        self._files[uid] = uf
        self.refused.pop(uid, None)
        self._drops.open_uid(self._root, uf)
        self.ledger.set(uid, disk_bytes(uf))
        try:
            _startup.repair_high_water(self._appender, uf, self.daemon)
        except OSError as exc:
            # the mark stays in the newest rotated file (retention keeps it
            # while current.jsonl is empty); the next append puts it here
            log.warning("high_water_record_deferred", uid=uid, error=exc.strerror)
        return uf

    @property
    def files_created(self) -> int:
        """Current files created, not linked from a spare (a uid's first file, or a
        rotation that found none ready), since start."""
        return self._appender.files_created

    # -- spare files (``_spares``) ------------------------------------------

    @property
    def spares_wanted(self) -> bool:
        """Some uid nears a rotation and lacks spare files: call :meth:`prepare_spares`."""
        return bool(self._spares.wanted)

    def spare_jobs(self) -> list[tuple[int, int, int]]:
        """Take the uids :attr:`spares_wanted` names, as jobs for :meth:`add_spares`.

        Returns:
            ``(uid, dir_fd, count)``: make *count* unnamed files in *dir_fd*
            (a duplicate of the uid directory's fd: the caller closes it).
        """
        with self._lock:
            return self._spares.jobs(self._files, self._dup_or_none)

    def add_spares(self, uid: int, fds: Sequence[int], dir_ino: int) -> int:
        """Give *uid* the unnamed files *fds*, made in the directory of inode *dir_ino*.

        Files beyond what the uid or ``SPARES_MAX_FILES`` allow, or for a
        directory that is no longer the uid's, are closed (they vanish).

        Returns:
            How many were kept.
        """
        with self._lock:
            keep = self._spares.add(self._files.get(uid), list(fds), dir_ino)
        for fd in fds[keep:]:
            os.close(fd)
        return keep

    def spares_unsupported(self, error: OSError) -> bool:
        """Note *error* from making spare files; True if it means "never here" (no O_TMPFILE).

        From then on rotations create their files as before.
        """
        return self._spares.unsupported(error)

    def prepare_spares(self) -> int:
        """Make the spare files :attr:`spares_wanted` asks for, in this thread.

        The daemon has its helper process make them (``server/_helper.py``);
        this is the same in process.

        Returns:
            How many uids got spares.
        """
        made = 0
        for uid, dir_fd, count in self.spare_jobs():
            try:
                fds = _layout.make_unnamed(dir_fd, count)
                ino = os.fstat(dir_fd).st_ino
            except OSError as exc:
                self.spares_unsupported(exc)
                continue
            finally:
                os.close(dir_fd)
            made += self.add_spares(uid, fds, ino) > 0
        return made

    def last_seq(self, uid: int) -> int | None:
        """Return the last ``seq`` written for *uid* (0 for a uid never seen).

        ``None``: not known, because *uid*'s directory could not be read at
        start (:attr:`refused`); call :meth:`establish` before writing.
        """
        uf = self._files.get(uid)
        if uf is not None:
            return max(uf.last_seq, uf.numbered)
        return None if uid in self.refused else 0

    def establish(self, uid: int) -> int:
        """Open *uid*'s directory if it is not open yet, and return its last ``seq``.

        Raises:
            DiskFull, ReadOnlyStore, UnsafeLogDir, StoreError: the directory
                (still) cannot be read or recovered; nothing was written.
        """
        with self._lock:
            uf = self._files.get(uid)
            if uf is None:
                try:
                    uf = self._open_uid(uid, create=True)
                except OSError as exc:
                    raise _store_error(exc, f"uid directory {uid}") from exc
            return max(uf.last_seq, uf.numbered)

    # -- unreported drop counts (``dropstate``) ------------------------------

    def load_drops(self) -> dict[int, Unreported]:
        """The drop counts left unreported by the last run, per uid (call after :meth:`open`).

        The last ``seq`` that run gave each uid is taken too: :meth:`last_seq`
        goes on past it, so the records it lost stay a gap.

        Raises:
            Nothing: a file that cannot be read is logged and skipped.
        """
        with self._lock:
            return self._drops.load(self._files)

    def save_drops(
        self,
        uid: int,
        counts: dict[str, int],
        seq: int,
        *,
        sync: bool = True,
        units: UnitCounts | None = None,
    ) -> bool:
        """Keep *uid*'s unreported drop counts (reason -> records) in ``log_dir/.drops/<uid>``.

        *units* names the part of them that came from each system unit.

        *seq* is the last ``seq`` given to the uid's records, dropped ones included.
        With *sync* the file is synced too (unless ``fsync`` is ``never``).

        Overwrites the file in place: no free space needed once it exists.

        Returns:
            Whether they were kept (``False``: no file for the uid, or the
            write failed; logged).
        """
        with self._lock:
            uf = self._files.get(uid)
            if uf is None:
                return not counts
            assert self._root is not None, "StoreWriter.open() first"
            return self._drops.save(self._root, uf, counts, seq, sync=sync, units=units)

    # -- writing ----------------------------------------------------------

    def append(
        self,
        uid: int,
        lines: Sequence[bytes],
        last_seq: int,
        runs: Sequence[Run] | None = None,
    ) -> None:
        """Append complete record lines for *uid*, rotating by size and age.

        Args:
            uid: the uid the lines are filed with.
            lines: encoded records, each ending in LF, in ``seq`` order.
            last_seq: the ``seq`` of the last line.
            runs: what the encoder knew of *lines*, run by run (the daemon's
                batches): their ``seq``, ``ts`` and daemon events. Without
                them they are read from each line (``runs_of_lines``).

        Raises:
            DiskFull, ReadOnlyStore, UnsafeLogDir, StoreError: not every line
                was written; the exception's ``written`` attribute says how
                many of the first lines were (whole lines only; the rest of a
                partly written line is cut off).
        """
        try:
            self._append(uid, lines, last_seq, runs)
        except StoreError as exc:
            for hook in self.error_hooks:
                hook(exc)
            raise

    def _append(
        self, uid: int, lines: Sequence[bytes], last_seq: int, runs: Sequence[Run] | None
    ) -> None:
        if not lines:
            return
        if self.held is not None:  # pressure that may not delete young records: drop new ones
            full = DiskFull(f"writing uid {uid}: {self.held}")
            full.written = 0  # type: ignore[attr-defined]
            raise full
        at = RunIndex(runs if runs is not None else runs_of_lines(lines, last_seq))
        with self._lock:
            self._appender.done = 0
            uf = self._files.get(uid)
            try:
                if uf is None:
                    uf = self._open_uid(uid, create=True)
                    self._appender.done = 0  # a high-water record written there is not one of these
                first = at.seq(0)
                if first <= uf.last_seq:
                    msg = (
                        f"uid {uid}: lines numbered from seq {first}, at or below the "
                        f"last seq on disk ({uf.last_seq}): not written"
                    )
                    raise SeqConflict(msg, uid=uid, mark=uf.last_seq)
                self._appender.add(uf, lines, at)
            except (UnsafeLogDir, SeqConflict) as exc:
                exc.written = self._appender.done  # type: ignore[union-attr]
                raise
            except OSError as exc:
                written = self._appender.done  # whole writes before the failure (an earlier file)
                if uf is not None and uf.fd >= 0:
                    written += self._appender.cut_partial(uf, lines, at, written)
                err = _store_error(exc, f"writing uid {uid}")
                err.written = written  # type: ignore[attr-defined]
                raise err from exc
            if self.fsync == "always":
                self._sync_locked()

    # -- rotation ---------------------------------------------------------

    def rotate(self, uid: int, reason: str) -> Rotation | None:
        """Rotate *uid*'s current file now (quota, age), if it holds anything.

        Returns:
            The rotation, or ``None`` when there was nothing to rotate.

        Raises:
            StoreError: the rename failed (nothing changed) or a new current
                file could not be opened (the next append retries).
        """
        with self._lock:
            uf = self._files.get(uid)
            if uf is None:
                return None
            try:
                rot = self._appender.rotate(uf, reason)
                if rot is not None:
                    self._appender.open_current(uf)
                self._sync_locked()
            except OSError as exc:
                raise _store_error(exc, f"rotating uid {uid}") from exc
            return rot

    def rotate_aged(self, now: float) -> list[Rotation]:
        """Rotate every current file whose first record is ``max_file_age`` old.

        Args:
            now: epoch seconds.

        Returns:
            The rotations done; a uid whose rotation fails is logged and skipped.
        """
        if not self.max_file_age:
            return []
        due = [
            uid
            for uid, uf in list(self._files.items())
            if uf.records_since is not None and now - uf.records_since >= self.max_file_age
        ]
        return self.rotate_many(due, "age")

    def rotate_many(self, uids: Sequence[int], reason: str) -> list[Rotation]:
        """Rotate each uid's current file (see :meth:`rotate`); a failure is logged and skipped.

        Returns:
            The rotations done.
        """
        out = []
        for uid in uids:
            try:
                rot = self.rotate(uid, reason)
            except StoreError as exc:
                log.error("rotation_failed", uid=uid, error=str(exc))
                continue
            if rot is not None:
                out.append(rot)
        return out

    def take_rotations(self) -> list[Rotation]:
        """Return (and forget) the rotations done by :meth:`append` since the last call."""
        with self._lock:
            out, self._appender.rotations = self._appender.rotations, []
        return out

    # -- compression and retention (the housekeeping thread) ---------------

    def compress_pending(self) -> int:
        """Return how many rotated files wait for compression."""
        return len(self._compression)

    def oldest_compression(self) -> int | None:
        """When the oldest file waiting for compression ends (epoch seconds); ``None``: none."""
        return self._compression.oldest()

    def next_compression(self) -> CompressJob | None:
        """Take the oldest rotated file waiting for compression, as a job.

        Run it with ``_compress.compress_file`` (here: :meth:`compress_next`;
        in the daemon: its helper process), outside the writer's lock, then
        end it with :meth:`compression_done` or :meth:`compression_failed`.

        Returns:
            The job (it holds a duplicate of the uid directory's fd, closed
            when the job ends), or ``None`` when nothing waits. Files deleted
            by retention since their rotation are skipped.
        """
        return self._compression.next()

    def compression_done(
        self, job: CompressJob, result: tuple[RotatedName, int] | None
    ) -> RotatedName | None:
        """End *job*: *result* is the compressed file's name and size (``None``: it was gone).

        Returns:
            The compressed file's name, or ``None``.
        """
        return self._compression.done(job, result)

    def requeue_compression(self, job: CompressJob) -> None:
        """End *job* undone: its file waits again, first in line."""
        self._compression.requeue(job)

    def compression_failed(self, job: CompressJob, exc: OSError | StoreError) -> None:
        """End *job*, which raised *exc* (``CompressionQueue.failed``).

        Raises:
            StoreError: unless the file was gone.
        """
        self._compression.failed(job, exc)

    def compress_next(self) -> RotatedName | None:
        """Compress the oldest rotated file waiting for it, in this thread.

        Returns:
            The compressed file's name, or ``None`` when nothing waits.

        Raises:
            StoreError: compression failed; the file stays uncompressed and is
                queued again (call later: a full disk needs a cool-down).
        """
        return self._compression.compress_next()

    def rotated_dir_fd(self, uid: int, name: RotatedName) -> int | None:
        """For the compression queue: a dup of *uid*'s directory fd while *name* is its
        rotated file (``None``: deleted since; -1: out of descriptors)."""
        with self._lock:
            uf = self._files.get(uid)
            if uf is None or uf.rotated.get(name.key, (None, 0))[0] != name:
                return None
            dir_fd = self._dup_or_none(uf.dir_fd)
        return -1 if dir_fd is None else dir_fd

    def compressed(self, uid: int, name: RotatedName, new: RotatedName, size: int) -> None:
        """For the compression queue: *name* of *uid* is now *new*, *size* bytes."""
        with self._lock:
            uf = self._files.get(uid)
            if uf is not None:
                if name.key in uf.rotated:
                    uf.rotated[name.key] = (new, size)
                self.ledger.set(uid, disk_bytes(uf))

    def snapshot(self) -> list[UidFiles]:
        """What retention decides on: every uid's files, oldest first."""
        with self._lock:
            return _deletion.snapshot(self._files)

    def delete(self, files: Sequence[StoredFile], rules: Sequence[str] = ()) -> int:
        """Delete files chosen by retention; return the bytes freed (``_deletion.delete``).

        *rules* names, file by file, the retention rule that chose each
        (``Plan.rules``); it goes into the deletion mark.
        """
        with self._lock:
            return _deletion.delete(
                self._files, self.ledger, files, rules, sync=self.fsync != "never"
            )

    def flush_chains(self) -> None:
        """Write every current chain's pending block (the housekeeper, once a second)."""
        with self._lock:
            for uf in self._files.values():
                if uf.chain is not None:
                    chained = uf.chain.flush()
                    if chained:
                        self.ledger.add(uf.uid, chained)

    def write_unit_summaries(self) -> None:
        """Append the unit summaries of the files rotated since the last call to their
        uid's index (the housekeeper, once a second, from a worker thread: one append
        per uid, outside the writer's rounds and lock; ``_unitindex``)."""
        with self._lock:
            jobs = self._appender.unit_jobs(self._dup_or_none)
        for job in jobs:
            compacted = False
            try:
                if job.keep is not None:
                    compact_index(job.dir_fd, job.keep)
                    compacted = True
                size = append_entries(job.dir_fd, job.data)
            except (OSError, UnsafeLogDir) as exc:  # those files are read instead
                log.warning("units_index_failed", uid=job.uid, error=str(exc))
                continue
            finally:
                os.close(job.dir_fd)
            with self._lock:
                self._appender.units_written(job.uid, size, compacted=compacted)

    def hold(self, why: str | None) -> None:
        """Refuse every append with ``DiskFull(why)`` from now on (``None``: write again).

        The housekeeper holds the store while ``max_bytes``/``keep_free_bytes``
        pressure may not delete what it would need to (``pressure_min_age``):
        new records are then dropped and counted like on a full disk.
        """
        self.held = why

    def free_bytes(self) -> int:
        """Free bytes on the file system of ``log_dir`` (for unprivileged users, as df shows).

        Raises:
            StoreError: ``statvfs`` failed.
        """
        return _deletion.free_bytes(self._statvfs())

    def writable_bytes(self) -> int:
        """Bytes an append may take now on the file system of ``log_dir`` (a cheap check).

        As :meth:`free_bytes`, but counting the blocks reserved for root when
        the daemon runs as root (it may write there), and 0 on a file system
        mounted read-only.

        Raises:
            StoreError: ``statvfs`` failed.
        """
        return _deletion.writable_bytes(self._statvfs(), root=self._euid == 0)

    def _statvfs(self) -> os.statvfs_result:
        assert self._root is not None, "StoreWriter.open() first"
        try:
            return os.fstatvfs(self._root)
        except OSError as exc:
            raise _store_error(exc, f"log_dir {self.log_dir!r}") from exc

    # -- syncing, figures, closing -------------------------------------------

    def sync(self) -> None:
        """``fdatasync`` every file written since the last sync (policy permitting).

        The files are chosen under the writer's lock and synced outside it, so
        that appends go on while the disk syncs (group commit): everything
        appended before the call is synced when it returns. Call it from one
        thread at a time.

        Raises:
            DiskFull, ReadOnlyStore, StoreError: a sync failed (those files'
                data may be lost; what is appended next is synced next time).
        """
        try:
            with self._lock:
                job = self._begin_sync()
            self._finish_sync(job)
        except StoreError as exc:
            for hook in self.error_hooks:
                hook(exc)
            raise

    def _sync_locked(self) -> None:
        self._finish_sync(self._begin_sync())

    def begin_sync(self) -> SyncJob:
        """The first half of :meth:`sync`: take what needs syncing now.

        Sync it with :meth:`finish_sync` (here), or follow :meth:`sync_steps`
        elsewhere (the daemon's helper process) and then :meth:`close_sync`.
        """
        with self._lock:
            return self._begin_sync()

    def finish_sync(self, job: SyncJob) -> None:
        """The second half of :meth:`sync` (any thread; the job owns its fds)."""
        self._finish_sync(job)

    @staticmethod
    def sync_steps(job: SyncJob) -> list[tuple[int, str, str]]:
        """What :meth:`finish_sync` does, in order (``_sync.job_steps``)."""
        return job_steps(job)

    @staticmethod
    def close_sync(job: SyncJob) -> None:
        """Close a job's fds (synced elsewhere)."""
        close_job(job)

    @staticmethod
    def sync_error(exc: OSError, what: str) -> StoreError:
        """The error :meth:`finish_sync` raises for *exc* at step *what*."""
        return _store_error(exc, what)

    def _begin_sync(self) -> SyncJob:
        """Take what needs syncing: per uid, file fds and a directory fd (-1: none),
        all owned by the job (dups, or retired ones)."""
        if self.fsync == "never":
            self._dirty.clear()
            return []
        job = []
        while self._dirty:
            uid = self._dirty.pop()
            uf = self._files.get(uid)
            if uf is None:
                continue
            fds, uf.retired = uf.retired, []
            if uf.dirty and uf.fd >= 0:
                fds.extend(dup_for_sync(uf.fd, "data", self._fd_shortage))
            dir_fd = -1
            if uf.dir_dirty:
                dir_fd = next(iter(dup_for_sync(uf.dir_fd, "dir", self._fd_shortage)), -1)
            uf.dirty = uf.dir_dirty = False
            job.append((uid, fds, dir_fd))
        return job

    def _dup_or_none(self, fd: int) -> int | None:
        """``os.dup(fd)``, or ``None`` (counted: ``on_fd_shortage``) when out of descriptors."""
        return dup_or_none(fd, self._fd_shortage)

    def _fd_shortage(self) -> None:
        self.on_fd_shortage()

    def _finish_sync(self, job: SyncJob) -> None:
        run_job(job)

    def usage(self, uid: int) -> int:
        """Return the disk bytes of all *uid*'s files (current, rotated, torn tails)."""
        return self.ledger.usage(uid)

    def disk_usage(self, uid: int) -> int:
        """Same as :meth:`usage` (the name ``stats`` uses)."""
        return self.ledger.usage(uid)

    def current_size(self, uid: int) -> int:
        """Bytes of *uid*'s current file."""
        uf = self._files.get(uid)
        return uf.size if uf is not None else 0

    def uids(self) -> list[int]:
        """Every uid with a directory the writer has open."""
        return list(self._files)

    def close(self) -> None:
        """Sync (per policy) and close every file."""
        with self._lock:
            try:
                for uf in self._files.values():
                    if uf.chain is not None:
                        uf.chain.flush()
                    if uf.pending_units:
                        with contextlib.suppress(OSError, UnsafeLogDir):
                            append_entries(uf.dir_fd, b"".join(uf.pending_units))
                self._sync_locked()
            finally:
                for uf in self._files.values():
                    for fd in uf.retired + uf.spares:
                        os.close(fd)
                    uf.spares.clear()
                    if uf.fd >= 0:
                        os.close(uf.fd)
                    if uf.chain is not None:
                        os.close(uf.chain.fd)
                        uf.chain = None
                    os.close(uf.dir_fd)
                self._files.clear()
                self._spares.files = 0
                self._drops.close()
                if self._root is not None:
                    os.close(self._root)
                    self._root = None
                if self._lock_fd >= 0:  # last: the store is closed, another may own it
                    os.close(self._lock_fd)
                    self._lock_fd = -1
