"""Retention's and disk pressure's side of the writer: what is stored, deleting, free space.

How this works: the housekeeper takes a :func:`snapshot` of every uid's
files, lets ``retention.plan_retention`` choose, and has the writer
:func:`delete` what it chose; :func:`free_bytes` and :func:`writable_bytes`
are the figures disk pressure is decided on. The writer calls these under its
lock with its open uid files (``_uidfile.UidFile``) and its quota ledger;
nothing here keeps state of its own.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence

import structlog

from trio_logd.limits import QuotaLedger
from trio_logd.store import _layout
from trio_logd.store._chain import Seal, chain_name
from trio_logd.store._chainfile import read_seal
from trio_logd.store._layout import RotatedName
from trio_logd.store._uidfile import UidFile, disk_bytes, rotated_name
from trio_logd.store.retention import StoredFile, UidFiles

__all__ = ["delete", "free_bytes", "snapshot", "writable_bytes"]

log = structlog.get_logger("trio_logd.store")


def snapshot(uid_files: Mapping[int, UidFile]) -> list[UidFiles]:
    """What retention decides on: every uid's files, oldest first."""
    out = []
    for uid, uf in uid_files.items():
        files = [
            StoredFile(uid, name, size, mtime, 0) for name, (size, mtime) in sorted(uf.torn.items())
        ]
        files.extend(
            StoredFile(
                uid,
                rotated_name(n),
                size + uf.chains.get(n.key, 0),
                float(n.last_time),
                n.last_seq,
            )
            for n, size in (uf.rotated[k] for k in sorted(uf.rotated))
        )
        beside = (uf.chain.size if uf.chain is not None else 0) + uf.units_index
        out.append(UidFiles(uid, uf.size, tuple(files), beside))
    return out


def delete(
    uid_files: Mapping[int, UidFile],
    ledger: QuotaLedger,
    files: Sequence[StoredFile],
    rules: Sequence[str],
    *,
    sync: bool,
) -> int:
    """Delete files chosen by retention; return the bytes freed.

    *rules* names, file by file, the retention rule that chose each
    (``Plan.rules``); it goes into the deletion mark. With *sync* the marks
    and the directories are synced.

    A file already gone (or renamed by compression since the snapshot)
    is looked up by its seq range; the current file is never deleted.
    Before a rotated file goes, its deletion is marked in the uid's
    current chain (with the file's seal), so that ``logq --verify`` can
    tell retention from removal; its chain file goes first, then the file
    (its line in the unit index goes at the index's next compaction).
    """
    freed = 0
    _mark_deleted(uid_files, ledger, files, rules, sync=sync)
    for f in files:
        uf = uid_files.get(f.uid)
        if uf is None:
            continue
        name, size = f.name, f.size
        parsed = RotatedName.parse(f.name)
        if parsed is not None:
            entry = uf.rotated.get(parsed.key)
            if entry is None:
                continue
            name, size = entry[0].format(), entry[1]
        elif f.name not in uf.torn:
            continue
        if parsed is not None and parsed.key in uf.chains:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(chain_name(parsed.with_suffix("").format()), dir_fd=uf.dir_fd)
            size += uf.chains.pop(parsed.key)
        try:
            os.unlink(name, dir_fd=uf.dir_fd)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.error("delete_failed", uid=f.uid, file=name, error=exc.strerror)
            continue
        if parsed is not None:
            del uf.rotated[parsed.key]
        else:
            del uf.torn[f.name]
        ledger.set(f.uid, disk_bytes(uf))
        freed += size
    if sync:
        for uid in {f.uid for f in files}:
            uf = uid_files.get(uid)
            if uf is not None:
                with contextlib.suppress(OSError):
                    _layout.fsync_dir(uf.dir_fd)
    return freed


def _mark_deleted(
    uid_files: Mapping[int, UidFile],
    ledger: QuotaLedger,
    files: Sequence[StoredFile],
    rules: Sequence[str],
    *,
    sync: bool,
) -> None:
    """Mark the rotated files about to be deleted in their uid's current chain (synced)."""
    by_uid: dict[int, list[tuple[Seal, str | None]]] = {}
    for i, f in enumerate(files):
        uf = uid_files.get(f.uid)
        parsed = RotatedName.parse(f.name)
        if uf is None or uf.chain is None or parsed is None or parsed.key not in uf.rotated:
            continue
        name = parsed.with_suffix("").format()
        seal = read_seal(uf.dir_fd, name) if parsed.key in uf.chains else None
        rule = rules[i] if i < len(rules) else None
        by_uid.setdefault(f.uid, []).append(
            (seal or Seal(name, parsed.first_seq, parsed.last_seq, 0, 0, ""), rule)
        )
    for uid, seals in by_uid.items():
        uf = uid_files[uid]
        assert uf.chain is not None
        ledger.add(uid, uf.chain.mark_deleted(seals))
        if sync:  # the mark is on disk before the file is gone
            with contextlib.suppress(OSError):
                os.fdatasync(uf.chain.fd)


def free_bytes(st: os.statvfs_result) -> int:
    """Free bytes of a file system for unprivileged users (as df shows), from its statvfs."""
    return st.f_bavail * st.f_frsize


def writable_bytes(st: os.statvfs_result, *, root: bool) -> int:
    """Bytes an append may take on a file system: as :func:`free_bytes`, but counting the
    blocks reserved for root when *root*, and 0 when it is mounted read-only."""
    if st.f_flag & os.ST_RDONLY:
        return 0
    return (st.f_bfree if root else st.f_bavail) * st.f_frsize
