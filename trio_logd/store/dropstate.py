"""A uid's unreported drop counts, kept on disk without needing free space (sync).

How this works: records dropped for a uid are counted in memory and reported
by a ``suppressed`` record some seconds later. When the disk is full that
record cannot be written, and a restart would forget the counts. So each uid
has a file ``log_dir/.drops/<uid>`` (:data:`DROPS_DIR`; not a uid directory,
so the store's readers pass it by) of :data:`FILE_BYTES` bytes, written whole
(real bytes, not a hole) when the uid is registered, while there is room.
Later the counts are only ever *overwritten in place*, inside blocks the file
already owns, so saving them needs no free space on the file systems the
daemon runs on (ext4, xfs, tmpfs; a copy-on-write file system such as btrfs
or zfs may still refuse: then the counts stay in memory only, as before).

A uid first registered on a full disk cannot have its file made then: it
takes one of :data:`SPARES` files made ahead at start (``spare-N``) by a
rename, which needs no data block.

The file has two slots of :data:`SLOT_BYTES`; each save goes to the slot the
newest one is not in, with a generation number and a CRC-32, so a write cut
short by a crash leaves the other slot intact: reading takes the valid slot
with the highest generation. A slot holds one JSON object ``{"gen": N,
"counts": {"disk": 12, ...}, "seq": S, "units": {"web.service": {"rate":
5}}}``: reason -> records not reported yet, and the last ``seq`` the daemon
gave the uid's records (dropped ones included), so that the next run numbers
on past the records it lost and the loss shows as a gap of exactly the count.
``units`` (left out when empty; files of earlier versions have none) says
which part of each count came from which system unit: ``counts`` holds the
uid's whole count (so a version that does not know ``units`` still reports
every record), ``units`` a part of it. Units that do not fit the slot are
left out (their records then count as the uid's, without a unit).
"""

from __future__ import annotations

import contextlib
import errno
import os
import zlib
from collections.abc import Mapping
from typing import Final

import orjson

from trio_logd.store import _layout

__all__ = [
    "DROPS_DIR",
    "FILE_BYTES",
    "SLOT_BYTES",
    "SPARES",
    "DropState",
    "UnitCounts",
    "Unreported",
    "decode_slot",
    "encode_slot",
    "make_drop_file",
    "make_spares",
    "read_drop_file",
    "take_spare",
    "write_drop_file",
]

#: The directory of these files under ``log_dir`` (not all digits: no uid's).
DROPS_DIR: Final = ".drops"
#: Files made ahead (``spare-N``, while there is room at start): a uid first
#: registered on a full disk takes one by a rename, which needs no data block.
SPARES: Final = 16
SPARE_PREFIX: Final = "spare-"
#: One slot: a few reasons with 20-digit counts take under 200 bytes.
SLOT_BYTES: Final = 2048
#: Two slots; one page of the page cache, one block of ext4.
FILE_BYTES: Final = 2 * SLOT_BYTES


#: Per system unit, reason -> records: the part of a uid's counts that came from it.
UnitCounts = Mapping[str, Mapping[str, int]]


def encode_slot(
    gen: int, counts: Mapping[str, int], seq: int = 0, units: UnitCounts | None = None
) -> bytes:
    """One slot's bytes: ``CRC32HEX JSON\\n`` padded with spaces to :data:`SLOT_BYTES`.

    The units with the most records are kept as far as they fit; the others
    are left out (their records stay in *counts*, without a unit).

    Raises:
        ValueError: the counts do not fit in a slot.
    """
    kept = sorted(((u, dict(c)) for u, c in (units or {}).items() if c), key=_most_first)
    while True:
        obj: dict[str, object] = {"gen": gen, "counts": dict(counts), "seq": seq}
        if kept:
            obj["units"] = dict(kept)
        body = orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
        line = b"%08x %s\n" % (zlib.crc32(body), body)
        if len(line) <= SLOT_BYTES:
            return line.ljust(SLOT_BYTES, b" ")
        if not kept:
            msg = f"drop counts of {len(line)} bytes do not fit a slot of {SLOT_BYTES}"
            raise ValueError(msg)
        kept.pop()


def _most_first(item: tuple[str, Mapping[str, int]]) -> tuple[int, str]:
    return -sum(item[1].values()), item[0]


#: A uid's unreported counts: reason -> records (all of them), and the part
#: of them that came from each system unit.
Unreported = tuple[dict[str, int], dict[str, dict[str, int]]]

#: ``(gen, counts, seq, units)`` of a slot.
DropState = tuple[int, dict[str, int], int, dict[str, dict[str, int]]]


def decode_slot(data: bytes) -> DropState | None:
    """``(gen, counts, seq, units)`` of one slot, or ``None`` when it is empty, torn or damaged.

    A unit's count is never more than the uid's count for the reason
    (what ``units`` cannot name stays the uid's).
    """
    line, _, _ = data.partition(b"\n")
    crc, _, body = line.partition(b" ")
    if len(crc) != 8 or not body:
        return None
    try:
        if int(crc, 16) != zlib.crc32(body):
            return None
        obj = orjson.loads(body)
    except (ValueError, orjson.JSONDecodeError):
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("gen"), int):
        return None
    raw = obj.get("counts")
    if not isinstance(raw, dict):
        return None
    counts = {str(k): v for k, v in raw.items() if isinstance(v, int) and v > 0}
    seq = obj.get("seq", 0)
    units = _units(obj.get("units"), counts)
    return obj["gen"], counts, seq if isinstance(seq, int) and seq > 0 else 0, units


def _units(raw: object, counts: Mapping[str, int]) -> dict[str, dict[str, int]]:
    """The ``units`` of a slot, each count capped by what is left of the uid's."""
    if not isinstance(raw, dict):
        return {}
    left = dict(counts)
    out: dict[str, dict[str, int]] = {}
    for unit, by_reason in raw.items():
        if not isinstance(by_reason, dict):
            continue
        mine = {}
        for reason, n in by_reason.items():
            if isinstance(n, int) and n > 0 and left.get(reason, 0) > 0:
                mine[reason] = min(n, left[reason])
                left[reason] -= mine[reason]
        if mine:
            out[str(unit)] = mine
    return out


def make_drop_file(dir_fd: int, name: str, *, what: str) -> int:
    """Make the file *name* in *dir_fd*, full size, unless it is there; return its generation.

    Raises:
        OSError: it could not be made (no space: the next registration tries
            again) or read; ``UnsafeLogDir`` for a symlink or a file not ours.
    """
    fd = _layout.open_file(dir_fd, name, os.O_RDWR | os.O_CREAT, what=what)
    try:
        if os.fstat(fd).st_size < FILE_BYTES:  # new, or cut short while being made
            os.pwrite(fd, encode_slot(0, {}) * 2, 0)
            return 0
        return _newest(os.pread(fd, FILE_BYTES, 0))[0]
    finally:
        os.close(fd)


def _newest(data: bytes) -> DropState:
    best: DropState = (0, {}, 0, {})
    for at in (0, SLOT_BYTES):
        slot = decode_slot(data[at : at + SLOT_BYTES])
        if slot is not None and slot[0] >= best[0]:
            best = slot
    return best


def read_drop_file(dir_fd: int, name: str, *, what: str) -> DropState:
    """``(generation, counts, seq, units)`` of the newest valid slot; ``(0, {}, 0, {})`` if none is.

    Raises:
        OSError: the file is missing or could not be read.
    """
    fd = _layout.open_file(dir_fd, name, os.O_RDONLY, what=what)
    try:
        return _newest(os.pread(fd, FILE_BYTES, 0))
    finally:
        os.close(fd)


def write_drop_file(
    dir_fd: int,
    name: str,
    gen: int,
    counts: Mapping[str, int],
    seq: int,
    *,
    sync: bool,
    what: str,
    units: UnitCounts | None = None,
) -> None:
    """Overwrite the slot of generation *gen* (the one after the newest) in place.

    Raises:
        OSError: the file is missing, or the write (or the sync) failed; the
            other slot is intact.
    """
    data = encode_slot(gen, {k: v for k, v in counts.items() if v > 0}, seq, units)
    fd = _layout.open_file(dir_fd, name, os.O_WRONLY, what=what)
    try:
        if os.fstat(fd).st_size < FILE_BYTES:
            msg = f"{what}: shorter than {FILE_BYTES} bytes: not overwritten"
            raise OSError(errno.EIO, msg)
        os.pwrite(fd, data, (gen % 2) * SLOT_BYTES)
        if sync:
            os.fdatasync(fd)
    finally:
        os.close(fd)


def make_spares(dir_fd: int, *, what: str) -> list[str]:
    """Make spare files in *dir_fd* up to :data:`SPARES` (as far as room allows); list them.

    Raises:
        OSError: the directory could not be listed.
    """
    have = sorted(n for n in os.listdir(dir_fd) if n.startswith(SPARE_PREFIX))
    for i in range(SPARES):
        name = f"{SPARE_PREFIX}{i}"
        if name in have:
            continue
        try:
            make_drop_file(dir_fd, name, what=f"{what}/{name}")
        except OSError:
            with contextlib.suppress(OSError):  # half made: not a spare
                os.unlink(name, dir_fd=dir_fd)
            break
        have.append(name)
    return have


def take_spare(dir_fd: int, spares: list[str], name: str) -> bool:
    """Rename one of *spares* (taken off the list) to *name*; whether one was there."""
    while spares:
        spare = spares.pop()
        try:
            os.rename(spare, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except FileNotFoundError:
            continue
        except OSError:
            return False
        return True
    return False
