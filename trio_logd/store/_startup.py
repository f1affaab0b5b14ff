"""Start-up and recovery of a uid directory: what a crash left, made whole before writing.

How this works: :func:`recover_uid` opens a uid directory, indexes its
rotated files and torn tails (finishing or undoing unfinished compressions,
``_recover``), cuts a torn last line off ``current.jsonl`` (set aside as
``torn-<time>.partial``, never parsed as a record), reopens its chain and
finds the uid's mark (the last ``seq`` on disk), so that numbering goes on
without reuse; :func:`repair_high_water` writes the ``rotated`` record a
crash between a rotation and that record left unwritten. The writer calls
these under its lock, through its :class:`~trio_logd.store._append.Appender`.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

import structlog

from trio_logd.peer import PeerCred
from trio_logd.record import Stamp, daemon_record_line, format_ts
from trio_logd.store import _layout, _recover
from trio_logd.store._chain import Seal
from trio_logd.store._chainfile import read_seal
from trio_logd.store._uidfile import UidFile
from trio_logd.store.runs import LineRun, RunIndex

if TYPE_CHECKING:
    from trio_logd.store._append import Appender

__all__ = ["newest_seal", "recover_current", "recover_uid", "repair_high_water"]

log = structlog.get_logger("trio_logd.store")


def recover_uid(appender: Appender, root: int, uid: int, *, create: bool) -> UidFile:
    """Open and recover one uid directory (not yet among the appender's files).

    Raises:
        UnsafeLogDir: the directory or a file in it is not safe to write through.
        OSError: it cannot be opened or read.
    """
    dir_fd = _layout.open_uid_dir(root, uid, create=create)
    try:
        uf = UidFile(uid=uid, dir_fd=dir_fd, fd=-1, size=0, last_seq=0)
        # index rotated files and torn tails; finish or undo unfinished compressions
        suffix = _layout.COMPRESSED_SUFFIXES.get(appender.compress, "")
        scan = _recover.scan_uid_dir(uf.dir_fd, suffix)
        uf.rotated.update(scan.rotated)
        uf.torn.update(scan.torn)
        uf.chains.update(scan.chains)
        for bad, aside, why in scan.damaged:  # the uncompressed original is kept
            log.error("compressed_file_damaged", uid=uid, file=bad, set_aside=aside, error=why)
        uf.units_index = uf.units_compacted = scan.units_index
        if appender.compress != "none":
            for name in scan.uncompressed:
                appender.compression.add(uf.uid, name)
        appender.open_current(uf, recover=True)
    except BaseException:
        os.close(dir_fd)
        raise
    # the mark: the current file's last seq, or the newest rotated file's
    # (its name says it) when the current file is empty or older
    if uf.rotated:
        uf.last_seq = max(uf.last_seq, uf.rotated[max(uf.rotated)][0].last_seq)
    return uf


def repair_high_water(appender: Appender, uf: UidFile, daemon: PeerCred) -> None:
    """A crash between a rotation and its ``rotated`` record: write that record now.

    Raises:
        OSError: it could not be written (nothing half written stays).
    """
    if not uf.rotated:
        return
    newest, _size = uf.rotated[max(uf.rotated)]
    if uf.size > 0 and uf.last_seq > newest.last_seq:
        return
    if uf.fd < 0:
        return
    seq = uf.last_seq + 1
    name = newest.with_suffix("").format()
    stamp = Stamp(PeerCred(daemon.pid, uf.uid, daemon.gid))
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
    appender.done = 0
    at = RunIndex([LineRun((line,), seq, ts, "rotated")])
    try:
        appender.write(uf, [line], at, 0)
    except OSError:
        appender.cut_partial(uf, [line], at, 0)  # nothing half written stays
        raise
    if appender.fsync != "never":
        os.fdatasync(uf.fd)


def newest_seal(uf: UidFile) -> Seal | None:
    """The newest rotated file's seal (hash ``""`` when it has no chain); ``None``: none."""
    if not uf.rotated:
        return None
    newest, _size = uf.rotated[max(uf.rotated)]
    name = newest.with_suffix("").format()
    found = read_seal(uf.dir_fd, name)
    if found is not None:
        return found
    return Seal(name, newest.first_seq, newest.last_seq, 0, 0, "")


def recover_current(uf: UidFile, fd: int, size: int) -> int:
    """Cut a torn tail off the current file (set aside) and read its bounds into *uf*;
    return its size of complete lines."""
    cur = _recover.recover_current(uf.dir_fd, fd, size)
    if cur.torn is not None:
        name, nbytes = cur.torn
        uf.torn[name] = (nbytes, time.time())
        log.warning("torn_tail_set_aside", uid=uf.uid, file=name, bytes=nbytes)
    uf.last_seq, uf.last_ts = cur.last_seq, cur.last_ts
    uf.first_seq, uf.first_ts = cur.first_seq, cur.first_ts
    uf.records_since = cur.records_since
    return cur.size
