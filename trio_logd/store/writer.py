"""The store's writing side: per-uid append-only JSON Lines files, rotated.

How this works: a :class:`StoreWriter` is a plain synchronous object. The
daemon's single writer task calls :meth:`~StoreWriter.append` and
:meth:`~StoreWriter.sync` from a worker thread (one hop per round); the
housekeeping task calls :meth:`~StoreWriter.rotate`,
:meth:`~StoreWriter.compress_next` and :meth:`~StoreWriter.delete` from
another worker thread. One lock serialises the methods that touch the open
files, the index of rotated files and the ledger; compressing a file runs
outside the lock, so a compression never stalls the writer. The writer is
told what it needs of the lines it appends (``runs``); spare files of coming
rotations (``_spares``), the jobs that sync outside the lock (``_sync``) and
the queue of files to compress (``_compression``) are modules of their own.

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

import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Final

import structlog

from trio_logd.errors import DiskFull, SeqConflict, StoreError, UnsafeLogDir
from trio_logd.limits import QuotaLedger
from trio_logd.peer import PeerCred
from trio_logd.record import Stamp, daemon_record_line, format_ts
from trio_logd.store import _deletion, _layout, _owner, _recover
from trio_logd.store._chain import CURRENT_CHAIN, ChainWriter, Seal, chain_name
from trio_logd.store._chainfile import create_chain, read_seal, recover_chain
from trio_logd.store._compression import CompressionQueue, CompressJob
from trio_logd.store._drops import DropFiles
from trio_logd.store._layout import RotatedName
from trio_logd.store._recover import epoch_or_now, read_last_seq
from trio_logd.store._spares import SparePool
from trio_logd.store._sync import SyncJob, close_job, dup_for_sync, dup_or_none, job_steps, run_job
from trio_logd.store._sync import store_error as _store_error
from trio_logd.store._uidfile import Rotation, UidFile, disk_bytes
from trio_logd.store.retention import StoredFile, UidFiles
from trio_logd.store.runs import LineRun, Run, RunIndex, runs_of_lines

__all__ = ["CompressJob", "Rotation", "StoreWriter", "SyncJob", "UidFile", "read_last_seq"]

log = structlog.get_logger("trio_logd.store")

_FSYNC_POLICIES: Final = ("never", "batch", "always")
_COMPRESS: Final = ("none", "gzip", "zstd")
_UNLIMITED: Final = 1 << 62
#: A uid whose hash chain could not be made (a full disk) tries again at its
#: next append, at most this often (seconds): one failing create per second.
CHAIN_RETRY: Final = 1.0


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
        self._files: dict[int, UidFile] = {}
        self._lock = threading.Lock()
        self._rotations: list[Rotation] = []
        #: lines of the current append written whole so far (for ``written`` on errors)
        self._done = 0
        #: uids with data, rotated files or directory changes not yet synced
        self._dirty: set[int] = set()
        #: rotated files waiting for compression (thread-safe deque)
        self._compression = CompressionQueue(self, compress, sync=fsync != "never")
        #: spare files of coming rotations (``_spares``)
        self._spares = SparePool()
        #: current files created, not linked from a spare (a uid's first file, or a
        #: rotation that found none ready), since start
        self.files_created = 0
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
        """Open and recover one uid directory. Call with the lock held."""
        assert self._root is not None, "StoreWriter.open() first"
        dir_fd = _layout.open_uid_dir(self._root, uid, create=create)
        try:
            uf = UidFile(uid=uid, dir_fd=dir_fd, fd=-1, size=0, last_seq=0)
            self._scan(uf)
            self._open_current(uf, recover=True)
        except BaseException:
            os.close(dir_fd)
            raise
        # the mark: the current file's last seq, or the newest rotated file's
        # (its name says it) when the current file is empty or older
        if uf.rotated:
            uf.last_seq = max(uf.last_seq, uf.rotated[max(uf.rotated)][0].last_seq)
        self._files[uid] = uf
        self.refused.pop(uid, None)
        self._drops.open_uid(self._root, uf)
        self.ledger.set(uid, disk_bytes(uf))
        try:
            self._repair_high_water(uf)
        except OSError as exc:
            # the mark stays in the newest rotated file (retention keeps it
            # while current.jsonl is empty); the next append puts it here
            log.warning("high_water_record_deferred", uid=uid, error=exc.strerror)
        return uf

    def _scan(self, uf: UidFile) -> None:
        """Index rotated files and torn tails; finish or undo unfinished compressions."""
        scan = _recover.scan_uid_dir(uf.dir_fd, self._suffix())
        uf.rotated.update(scan.rotated)
        uf.torn.update(scan.torn)
        uf.chains.update(scan.chains)
        if self.compress != "none":
            for name in scan.uncompressed:
                self._compression.add(uf.uid, name)

    def _suffix(self) -> str:
        return _layout.COMPRESSED_SUFFIXES.get(self.compress, "")

    def _open_current(self, uf: UidFile, *, recover: bool = False) -> None:
        """Open (creating) current.jsonl; at start also cut a torn tail and read its bounds."""
        what = f"{uf.uid}/{_layout.CURRENT}"
        fd = -1 if recover else self._spares.link(uf, _layout.CURRENT)
        if fd < 0:
            if not recover:
                self.files_created += 1
            fd = _layout.open_file(
                uf.dir_fd, _layout.CURRENT, os.O_WRONLY | os.O_APPEND | os.O_CREAT, what=what
            )
        try:
            size = os.fstat(fd).st_size
            if size and recover:
                size = self._recover_current(uf, fd, size)
            elif size:
                # reopened after a failed rotation: someone else's file? refuse to append
                msg = f"{what}: appeared with {size} bytes while the daemon had it rotated"
                raise UnsafeLogDir(msg)
        except BaseException:
            os.close(fd)
            raise
        uf.fd = fd
        uf.size = size
        self._changed_dir(uf)
        self._open_chain(uf, recover=recover)

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

    def _open_chain(self, uf: UidFile, *, recover: bool) -> None:
        """Open current.chain beside the current.jsonl just opened (``_chain``).

        A chain that cannot be made leaves the file unchained (logged, and
        reported by ``logq --verify``): records are never refused for it.
        """
        what = f"{uf.uid}/{CURRENT_CHAIN}"
        chain: ChainWriter | None = None
        try:
            if recover:
                uf.seal = self._newest_seal(uf)
                chain, aside = recover_chain(uf.dir_fd, uf.uid, uf.size, uf.seal, what=what)
                if aside is not None:
                    uf.torn[aside[0]] = (aside[1], time.time())
                    log.warning("chain_set_aside", uid=uf.uid, file=aside[0])
            else:
                spare = self._spares.take(uf)
                chain = create_chain(uf.dir_fd, uf.uid, uf.seal, what=what, spare=spare)
                self.ledger.add(uf.uid, chain.size)
        except (OSError, UnsafeLogDir) as exc:
            log.error("chain_unavailable", uid=uf.uid, error=str(exc))
        uf.chain = chain

    def _retry_chain(self, uf: UidFile) -> None:
        """A chain that could not be made earlier (a full disk): make it now.

        Records already in ``current.jsonl`` are chained as at a start after
        a crash (``recovered``): the chain vouches for them from now on.
        """
        uf.chain_retry_at = time.monotonic() + CHAIN_RETRY
        self._open_chain(uf, recover=True)
        if uf.chain is not None:
            self.ledger.set(uf.uid, disk_bytes(uf))
            self._changed_dir(uf)
            log.info("chain_made", uid=uf.uid)

    def _newest_seal(self, uf: UidFile) -> Seal | None:
        """The newest rotated file's seal (hash ``""`` when it has no chain); ``None``: none."""
        if not uf.rotated:
            return None
        newest, _size = uf.rotated[max(uf.rotated)]
        name = newest.with_suffix("").format()
        found = read_seal(uf.dir_fd, name)
        if found is not None:
            return found
        return Seal(name, newest.first_seq, newest.last_seq, 0, 0, "")

    def _recover_current(self, uf: UidFile, fd: int, size: int) -> int:
        cur = _recover.recover_current(uf.dir_fd, fd, size)
        if cur.torn is not None:
            name, nbytes = cur.torn
            uf.torn[name] = (nbytes, time.time())
            log.warning("torn_tail_set_aside", uid=uf.uid, file=name, bytes=nbytes)
        uf.last_seq, uf.last_ts = cur.last_seq, cur.last_ts
        uf.first_seq, uf.first_ts = cur.first_seq, cur.first_ts
        uf.records_since = cur.records_since
        return cur.size

    def _repair_high_water(self, uf: UidFile) -> None:
        """A crash between a rotation and its ``rotated`` record: write that record now."""
        if not uf.rotated:
            return
        newest, _size = uf.rotated[max(uf.rotated)]
        if uf.size > 0 and uf.last_seq > newest.last_seq:
            return
        if uf.fd < 0:
            return
        seq = uf.last_seq + 1
        name = newest.with_suffix("").format()
        stamp = Stamp(PeerCred(self.daemon.pid, uf.uid, self.daemon.gid))
        seal = read_seal(uf.dir_fd, name)
        sealed = {} if seal is None else {"records": seal.records, "hash": seal.hash}
        ts = format_ts(time.time()).encode()
        line = daemon_record_line(
            ts,
            seq,
            stamp,
            "rotated",
            msg=f"rotated {name} (its record written at start, after a crash)",
            file=name,
            first_seq=newest.first_seq,
            last_seq=newest.last_seq,
            reason="recovered",
            **sealed,
        )
        self._done = 0
        at = RunIndex([LineRun((line,), seq, ts, "rotated")])
        try:
            self._write(uf, [line], at, 0)
        except OSError:
            self._cut_partial(uf, [line], at, 0)  # nothing half written stays
            raise
        if self.fsync != "never":
            os.fdatasync(uf.fd)

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

    def load_drops(self) -> dict[int, dict[str, int]]:
        """The drop counts left unreported by the last run, per uid (call after :meth:`open`).

        The last ``seq`` that run gave each uid is taken too: :meth:`last_seq`
        goes on past it, so the records it lost stay a gap.

        Raises:
            Nothing: a file that cannot be read is logged and skipped.
        """
        with self._lock:
            return self._drops.load(self._files)

    def save_drops(self, uid: int, counts: dict[str, int], seq: int, *, sync: bool = True) -> bool:
        """Keep *uid*'s unreported drop counts (reason -> records) in ``log_dir/.drops/<uid>``.

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
            return self._drops.save(self._root, uf, counts, seq, sync=sync)

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
            self._done = 0
            uf = self._files.get(uid)
            try:
                if uf is None:
                    uf = self._open_uid(uid, create=True)
                    self._done = 0  # a high-water record written there is not one of these
                first = at.seq(0)
                if first <= uf.last_seq:
                    msg = (
                        f"uid {uid}: lines numbered from seq {first}, at or below the "
                        f"last seq on disk ({uf.last_seq}): not written"
                    )
                    raise SeqConflict(msg, uid=uid, mark=uf.last_seq)
                if uf.fd < 0:
                    self._open_current(uf)
                if uf.chain is None and time.monotonic() >= uf.chain_retry_at:
                    self._retry_chain(uf)
                if uf.needs_trim:
                    os.ftruncate(uf.fd, uf.size)
                    uf.needs_trim = False
                if (
                    uf.records_since is not None
                    and self.max_file_age
                    and time.time() - uf.records_since >= self.max_file_age
                ):
                    self._rotate(uf, "age")
                    self._open_current(uf)
                data = lines[0] if len(lines) == 1 else b"".join(lines)
                if uf.size + len(data) <= self.max_file_bytes:
                    self._write(uf, lines, at, 0, data)
                else:
                    self._write_rotating(uf, lines, at, data)
            except (UnsafeLogDir, SeqConflict) as exc:
                exc.written = self._done  # type: ignore[union-attr]
                raise
            except OSError as exc:
                written = self._done  # whole writes before the failure (an earlier file)
                if uf is not None and uf.fd >= 0:
                    written += self._cut_partial(uf, lines, at, written)
                err = _store_error(exc, f"writing uid {uid}")
                err.written = written  # type: ignore[attr-defined]
                raise err from exc
            if self.fsync == "always":
                self._sync_locked()

    def _write(
        self,
        uf: UidFile,
        lines: Sequence[bytes],
        at: RunIndex,
        start: int,
        data: bytes | memoryview | None = None,
    ) -> int:
        """Write *lines* (joined: *data*) to the open current file; return how many (all).

        *lines* are lines ``start…`` of those *at* describes.

        On an error ``uf.size`` still counts only what was there before:
        :meth:`_cut_partial` deals with the bytes that made it.
        """
        if data is None:
            data = lines[0] if len(lines) == 1 else b"".join(lines)
        _layout.write_all(uf.fd, data)
        uf.size += len(data)
        self._spares.note_write(uf, len(data), uf.size, self.max_file_bytes)
        self.ledger.add(uf.uid, len(data))
        stop = start + len(lines)
        last_seq = self._note_written(uf, at, start, stop)
        if uf.chain is not None:
            chained = uf.chain.add(lines, data, last_seq, at.seq(start))
            if chained:
                self.ledger.add(uf.uid, chained)
        self._done += len(lines)
        return len(lines)

    def _note_written(self, uf: UidFile, at: RunIndex, start: int, stop: int) -> int:
        """Note lines ``start…stop`` of *at* written to *uf*; return the last one's ``seq``."""
        if not uf.first_ts:
            uf.first_seq = at.seq(start)
            uf.first_ts = at.ts(start)
        if uf.records_since is None:
            i = at.first_record(start, stop)
            if i is not None:
                uf.records_since = epoch_or_now(at.ts(i))
        uf.last_ts = at.ts(stop - 1)
        uf.last_seq = last_seq = at.seq(stop - 1)
        if not uf.dirty:
            uf.dirty = True
            self._dirty.add(uf.uid)
        return last_seq

    def _write_rotating(
        self, uf: UidFile, lines: Sequence[bytes], at: RunIndex, data: bytes
    ) -> int:
        """Write *lines* (joined: *data*; described by *at*), rotating between two of
        them whenever the next would overflow.

        A file always takes its first record, however long (a ``rotated``
        header does not count as one). The split points are found in *data*
        (the last line feed that fits, and a count of those before it), so a
        round costs no loop over its lines, and its pieces are written from
        views of *data*, not joined again.
        """
        written = 0
        view = memoryview(data)
        n = len(lines)
        has_records = uf.records_since is not None
        c = i = 0  # lines[c:i]: taken for the current file, not written yet...
        oc = oi = 0  # ...data[oc:oi]
        fsize = uf.size
        while i < n:
            if not has_records:  # up to and including the first record: taken as they are
                k = at.first_record(i, n)
                stop = n if k is None else k + 1
                oi += sum(len(line) for line in lines[i:stop])
                i = stop
                has_records = k is not None
                continue
            # the longest run from i that still fits: lines ending at or before `limit`
            limit = min(oc + self.max_file_bytes - fsize, len(data))
            end = data.rfind(b"\n", oi, limit) + 1 if limit > oi else 0
            if end > oi:
                i += data.count(b"\n", oi, end)
                oi = end
                if i < n:
                    continue
                break
            if i > c:
                written += self._write(uf, lines[c:i], at, c, view[oc:oi])
            self._rotate(uf, "size")
            self._open_current(uf)
            fsize = uf.size
            c, oc = i, oi
            has_records = False
        if i > c:
            written += self._write(uf, lines[c:i], at, c, view[oc:oi])
        return written

    def _cut_partial(self, uf: UidFile, lines: Sequence[bytes], at: RunIndex, start: int) -> int:
        """After a failed write of ``lines[start:]`` (described by *at*), cut the file back
        to its last complete line.

        Returns:
            How many of ``lines[start:]`` made it whole before the failure (they stay).
        """
        unwritten = lines[start:]
        try:
            actual = os.fstat(uf.fd).st_size
        except OSError:
            uf.needs_trim = True
            return 0
        extra = actual - uf.size  # bytes of the failed write that reached the file
        whole = done = 0
        for line in unwritten:
            if done + len(line) > extra:
                break
            done += len(line)
            whole += 1
        good = uf.size + done
        if good != actual:
            try:
                os.ftruncate(uf.fd, good)
            except OSError:
                uf.needs_trim = True  # cut before the next write, or at the next start
        uf.size = good
        if whole:
            kept = unwritten[:whole]
            last_seq = self._note_written(uf, at, start, start + whole)
            if uf.chain is not None:
                uf.chain.add(kept, b"".join(kept), last_seq, at.seq(start))
        self.ledger.set(uf.uid, disk_bytes(uf))
        return whole

    # -- rotation ---------------------------------------------------------

    def _rotate(self, uf: UidFile, reason: str) -> Rotation | None:
        """Rename current.jsonl to its rotated name; the caller reopens a new one.

        Raises:
            OSError: the rename (or a sync) failed; nothing changed.
        """
        if uf.fd < 0 or uf.size == 0:
            return None
        name = RotatedName(
            uf.first_seq,
            uf.last_seq,
            math.floor(epoch_or_now(uf.first_ts)),
            math.ceil(epoch_or_now(uf.last_ts)),
            "",
        )
        final = name.format()
        try:
            os.stat(final, dir_fd=uf.dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            pass
        else:
            msg = f"uid directory {uf.uid}: {final} exists already; not rotating over it"
            raise UnsafeLogDir(msg)
        chain = uf.chain
        seal = None
        if chain is not None:
            seal, chained = chain.seal(final, uf.first_seq, uf.last_seq, uf.size)
            self.ledger.add(uf.uid, chained)
        try:
            os.rename(_layout.CURRENT, final, src_dir_fd=uf.dir_fd, dst_dir_fd=uf.dir_fd)
        except BaseException:
            if chain is not None:
                chain.unseal()  # nothing rotated: the chain goes on
            raise
        if chain is not None:
            self._retire_chain(uf, chain, name)
        # its data and the rename are synced with the round (before anything in
        # it is acknowledged), not here: a rotation costs no extra sync
        if self.fsync == "never":
            os.close(uf.fd)
        else:
            uf.retired.append(uf.fd)
        self._changed_dir(uf)
        rot = Rotation(
            uf.uid,
            final,
            uf.first_seq,
            uf.last_seq,
            uf.size,
            reason,
            records=seal.records if seal is not None else 0,
            hash=seal.hash if seal is not None else "",
        )
        uf.seal = seal or Seal(final, uf.first_seq, uf.last_seq, 0, uf.size, "")
        uf.rotated[name.key] = (name, uf.size)
        uf.fd = -1
        uf.size = 0
        uf.dirty = False
        uf.first_seq = 0
        uf.first_ts = uf.last_ts = b""
        uf.records_since = None
        self._rotations.append(rot)
        if self.compress != "none":
            self._compression.add(uf.uid, name)
        return rot

    def _retire_chain(self, uf: UidFile, chain: ChainWriter, name: RotatedName) -> None:
        """The sealed chain follows its file to the rotated name; synced with the round."""
        uf.chain = None
        try:
            os.rename(
                CURRENT_CHAIN,
                chain_name(name.format()),
                src_dir_fd=uf.dir_fd,
                dst_dir_fd=uf.dir_fd,
            )
        except OSError as exc:  # left as current.chain: the next start moves it (it is sealed)
            log.error("chain_rename_failed", uid=uf.uid, error=exc.strerror)
        else:
            uf.chains[name.key] = chain.size
        if self.fsync == "never":
            os.close(chain.fd)
        else:
            uf.retired.append(chain.fd)

    def _changed_dir(self, uf: UidFile) -> None:
        if self.fsync != "never":
            uf.dir_dirty = True
            self._dirty.add(uf.uid)

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
                rot = self._rotate(uf, reason)
                if rot is not None:
                    self._open_current(uf)
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
            out, self._rotations = self._rotations, []
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
