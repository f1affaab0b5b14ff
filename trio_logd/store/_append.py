"""Appending and rotating: the writer's open current files, written and renamed (sync).

How this works: an :class:`Appender` holds every uid's open files
(``_uidfile.UidFile``) and does what touches them: opening ``current.jsonl``
and its chain (from a spare file when one is ready, ``_spares``), writing
record lines (rotating between two of them when the next would overflow, so
a rotated file is always complete), cutting back a write that failed half-way,
and rotating (renaming the file and its sealed chain, queueing its unit
summary for the index, ``_unitindex``, and the file for compression). ``StoreWriter`` calls
it under its lock; start-up (``_startup``) recovers what a crash left before
the first append.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Final, NamedTuple

import structlog

from trio_logd.errors import UnsafeLogDir
from trio_logd.limits import QuotaLedger
from trio_logd.store import _layout, _startup
from trio_logd.store._chain import CURRENT_CHAIN, ChainWriter, Seal, chain_name
from trio_logd.store._chainfile import create_chain, recover_chain
from trio_logd.store._compression import CompressionQueue
from trio_logd.store._layout import RotatedName
from trio_logd.store._recover import epoch_or_now
from trio_logd.store._spares import SparePool
from trio_logd.store._uidfile import Rotation, UidFile, disk_bytes, rotated_name
from trio_logd.store._unitindex import UnitSet, needs_compaction
from trio_logd.store.runs import RunIndex

__all__ = ["CHAIN_RETRY", "Appender", "UnitJob"]

log = structlog.get_logger("trio_logd.store")

#: A uid whose hash chain could not be made (a full disk) tries again at its
#: next append, at most this often (seconds): one failing create per second.
CHAIN_RETRY: Final = 1.0


class UnitJob(NamedTuple):
    """A uid's queued unit index lines (``Appender.unit_jobs``)."""

    uid: int
    #: a dup of the uid's directory (the caller closes it)
    dir_fd: int
    data: bytes
    #: compact the index first, keeping the entries of these files (``None``: do not)
    keep: set[str] | None


class Appender:
    """Every uid's open files, and writing to them (call with the writer's lock held).

    Args:
        fsync: the writer's policy (``never``, ``batch``, ``always``).
        max_file_bytes, max_file_age: when to rotate (``StoreWriter``).
        compress: ``none``, ``gzip`` or ``zstd``: rotated files are queued
            for compression unless ``none``.
        ledger: the disk bytes of every uid's files, kept up to date.
        spares: the spare files of coming rotations.
        compression: the queue rotated files go to.

    Attributes:
        files: the open uids.
        dirty: uids with data, rotated files or directory changes not yet synced.
        rotations: the rotations done since the writer's last ``take_rotations``.
        done: lines of the current append written whole so far (for ``written``
            on errors).
        files_created: current files created, not linked from a spare (a uid's
            first file, or a rotation that found none ready), since start.
    """

    def __init__(
        self,
        *,
        fsync: str,
        max_file_bytes: int,
        max_file_age: float,
        compress: str,
        ledger: QuotaLedger,
        spares: SparePool,
        compression: CompressionQueue,
    ) -> None:
        self.fsync = fsync
        self.max_file_bytes = max_file_bytes
        self.max_file_age = max_file_age
        self.compress = compress
        self.ledger = ledger
        self.spares = spares
        self.compression = compression
        self.files: dict[int, UidFile] = {}
        self.dirty: set[int] = set()
        self.rotations: list[Rotation] = []
        self.done = 0
        self.files_created = 0

    def add(self, uf: UidFile, lines: Sequence[bytes], at: RunIndex) -> None:
        """Write *lines* (described by *at*) to *uf*, numbered above its mark, rotating by
        age and size; the current file and chain are (re)opened first when needed.

        Raises:
            OSError, UnsafeLogDir: not every line was written (:attr:`done` says
                how many were; the caller cuts a partial line: :meth:`cut_partial`).
        """
        if uf.fd < 0:
            self.open_current(uf)
        if uf.chain is None and time.monotonic() >= uf.chain_retry_at:
            self.retry_chain(uf)
        if uf.needs_trim:
            os.ftruncate(uf.fd, uf.size)
            uf.needs_trim = False
        if (
            uf.records_since is not None
            and self.max_file_age
            and time.time() - uf.records_since >= self.max_file_age
        ):
            self.rotate(uf, "age")
            self.open_current(uf)
        data = lines[0] if len(lines) == 1 else b"".join(lines)
        if uf.size + len(data) <= self.max_file_bytes:
            self.write(uf, lines, at, 0, data)
        else:
            self.write_rotating(uf, lines, at, data)

    def open_current(self, uf: UidFile, *, recover: bool = False) -> None:
        """Open (creating) current.jsonl; at start also cut a torn tail and read its bounds."""
        what = f"{uf.uid}/{_layout.CURRENT}"
        fd = -1 if recover else self.spares.link(uf, _layout.CURRENT)
        if fd < 0:
            if not recover:
                self.files_created += 1
            fd = _layout.open_file(
                uf.dir_fd, _layout.CURRENT, os.O_WRONLY | os.O_APPEND | os.O_CREAT, what=what
            )
        try:
            size = os.fstat(fd).st_size
            if size and recover:
                size = _startup.recover_current(uf, fd, size)
            elif size:
                # reopened after a failed rotation: someone else's file? refuse to append
                msg = f"{what}: appeared with {size} bytes while the daemon had it rotated"
                raise UnsafeLogDir(msg)
        except BaseException:
            os.close(fd)
            raise
        uf.fd = fd
        uf.size = size
        # lines written before this process opened the file were not seen
        uf.units = UnitSet(known=size == 0)
        self.changed_dir(uf)
        self.open_chain(uf, recover=recover)

    def open_chain(self, uf: UidFile, *, recover: bool) -> None:
        """Open current.chain beside the current.jsonl just opened (``_chain``).

        A chain that cannot be made leaves the file unchained (logged, and
        reported by ``logq --verify``): records are never refused for it.
        """
        what = f"{uf.uid}/{CURRENT_CHAIN}"
        chain: ChainWriter | None = None
        try:
            if recover:
                uf.seal = _startup.newest_seal(uf)
                chain, aside = recover_chain(uf.dir_fd, uf.uid, uf.size, uf.seal, what=what)
                if aside is not None:
                    uf.torn[aside[0]] = (aside[1], time.time())
                    log.warning("chain_set_aside", uid=uf.uid, file=aside[0])
            else:
                spare = self.spares.take(uf)
                chain = create_chain(uf.dir_fd, uf.uid, uf.seal, what=what, spare=spare)
                self.ledger.add(uf.uid, chain.size)
        except (OSError, UnsafeLogDir) as exc:
            log.error("chain_unavailable", uid=uf.uid, error=str(exc))
        uf.chain = chain

    def retry_chain(self, uf: UidFile) -> None:
        """A chain that could not be made earlier (a full disk): make it now.

        Records already in ``current.jsonl`` are chained as at a start after
        a crash (``recovered``): the chain vouches for them from now on.
        """
        uf.chain_retry_at = time.monotonic() + CHAIN_RETRY
        self.open_chain(uf, recover=True)
        if uf.chain is not None:
            self.ledger.set(uf.uid, disk_bytes(uf))
            self.changed_dir(uf)
            log.info("chain_made", uid=uf.uid)

    def write(
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
        :meth:`cut_partial` deals with the bytes that made it.
        """
        if data is None:
            data = lines[0] if len(lines) == 1 else b"".join(lines)
        _layout.write_all(uf.fd, data)
        uf.size += len(data)
        self.spares.note_write(uf, len(data), uf.size, self.max_file_bytes)
        self.ledger.add(uf.uid, len(data))
        stop = start + len(lines)
        last_seq = self.note_written(uf, at, start, stop)
        if uf.chain is not None:
            chained = uf.chain.add(lines, data, last_seq, at.seq(start))
            if chained:
                self.ledger.add(uf.uid, chained)
        self.done += len(lines)
        return len(lines)

    def note_written(self, uf: UidFile, at: RunIndex, start: int, stop: int) -> int:
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
        units = uf.units
        if units.known:  # a compare per run; a set lookup when the writer's units change
            for run in at.runs_in(start, stop):
                names = run.names
                if names is None:
                    units.note_lines(run.lines)
                else:
                    units.note(names)
        if not uf.dirty:
            uf.dirty = True
            self.dirty.add(uf.uid)
        return last_seq

    def write_rotating(self, uf: UidFile, lines: Sequence[bytes], at: RunIndex, data: bytes) -> int:
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
                written += self.write(uf, lines[c:i], at, c, view[oc:oi])
            self.rotate(uf, "size")
            self.open_current(uf)
            fsize = uf.size
            c, oc = i, oi
            has_records = False
        if i > c:
            written += self.write(uf, lines[c:i], at, c, view[oc:oi])
        return written

    def cut_partial(self, uf: UidFile, lines: Sequence[bytes], at: RunIndex, start: int) -> int:
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
            last_seq = self.note_written(uf, at, start, start + whole)
            if uf.chain is not None:
                uf.chain.add(kept, b"".join(kept), last_seq, at.seq(start))
        self.ledger.set(uf.uid, disk_bytes(uf))
        return whole

    def rotate(self, uf: UidFile, reason: str) -> Rotation | None:
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
            self.retire_chain(uf, chain, name)
        entry = uf.units.entry(final)
        uf.units = UnitSet()
        if entry is not None:
            uf.pending_units.append(entry)
        # its data and the rename are synced with the round (before anything in
        # it is acknowledged), not here: a rotation costs no extra sync
        if self.fsync == "never":
            os.close(uf.fd)
        else:
            uf.retired.append(uf.fd)
        self.changed_dir(uf)
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
        self.rotations.append(rot)
        if self.compress != "none":
            self.compression.add(uf.uid, name)
        return rot

    def retire_chain(self, uf: UidFile, chain: ChainWriter, name: RotatedName) -> None:
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

    def unit_jobs(self, dup: Callable[[int], int | None]) -> list[UnitJob]:
        """The queued index lines, by uid, for ``_unitindex.append_entries`` outside the
        lock (out of descriptors, a uid's stay queued)."""
        jobs = []
        for uf in self.files.values():
            if uf.pending_units:
                fd = dup(uf.dir_fd)
                if fd is None:
                    continue
                keep = None
                if needs_compaction(uf.units_index, uf.units_compacted):
                    keep = {rotated_name(n.with_suffix("")) for n, _ in uf.rotated.values()}
                jobs.append(UnitJob(uf.uid, fd, b"".join(uf.pending_units), keep))
                uf.pending_units = []
        return jobs

    def units_written(self, uid: int, size: int, *, compacted: bool) -> None:
        """The index of *uid* is *size* bytes now (just *compacted*, or appended to)."""
        uf = self.files.get(uid)
        if uf is None:
            return
        uf.units_index = size
        if compacted:
            uf.units_compacted = size
        self.ledger.set(uid, disk_bytes(uf))

    def changed_dir(self, uf: UidFile) -> None:
        if self.fsync != "never":
            uf.dir_dirty = True
            self.dirty.add(uf.uid)
