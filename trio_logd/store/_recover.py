"""What a crash may have left in a uid directory, and how the store finds its bearings.

How this works: at start the writer scans each uid directory once
(:func:`scan_uid_dir`): ``.tmp`` files are unfinished compressions and are
deleted; a rotated file present both compressed and uncompressed was
compressed completely (the compressed one is renamed into place only once
complete), so the uncompressed twin is deleted, once the compressed one was
read whole (a crash may have kept the rename and lost the bytes: a damaged
one is renamed ``X.jsonl.zst.damaged``, kept as evidence, and the
uncompressed twin stays, to be compressed again); an uncompressed rotated
file alone still has to be compressed. Then :func:`recover_current` looks at
``current.jsonl``: a last line without LF is torn (a crash mid-write): it is
moved aside into ``torn-<µs>.partial`` (never parsed as a record) and the file
cut back to its last complete line; the first and last records give the
file's bounds, and the last ``seq`` where numbering continues.
"""

from __future__ import annotations

import contextlib
import os
import stat
import time
from dataclasses import dataclass, field
from typing import Final

import orjson

from trio_logd.record import TS_AT, daemon_event, seq_key, ts_epoch
from trio_logd.store import _layout
from trio_logd.store._chain import CHAIN_SUFFIX
from trio_logd.store._layout import RotatedName
from trio_logd.store._unitindex import INDEX as UNITS_INDEX
from trio_logd.store.files import READ_ERRORS, Stream, read_error, suffix_of

__all__ = [
    "CurrentBounds",
    "Scan",
    "epoch_or_now",
    "read_last_seq",
    "recover_current",
    "scan_uid_dir",
]

#: How much of a file's tail we read to find its last complete line; a record
#: is at most max_message_bytes (64 KiB by default) plus its JSON overhead.
_TAIL_CHUNK: Final = 1 << 18

#: Added to the name of a compressed twin found damaged at start (set aside, kept).
DAMAGED_SUFFIX: Final = ".damaged"

RotatedKey = tuple[int, int, int, int]


@dataclass(slots=True)
class Scan:
    """A uid directory's files, after unfinished compressions were dealt with."""

    #: rotated files by key: (name, size)
    rotated: dict[RotatedKey, tuple[RotatedName, int]] = field(default_factory=dict)
    #: torn tails: name -> (size, mtime)
    torn: dict[str, tuple[int, float]] = field(default_factory=dict)
    #: rotated files still uncompressed, oldest first
    uncompressed: list[RotatedName] = field(default_factory=list)
    #: bytes of the chain files of rotated files, by key (``_chain``)
    chains: dict[RotatedKey, int] = field(default_factory=dict)
    #: compressed twins found damaged and set aside: (name, new name, what is wrong)
    damaged: list[tuple[str, str, str]] = field(default_factory=list)
    #: bytes of the unit index (``_unitindex``)
    units_index: int = 0


@dataclass(frozen=True, slots=True)
class CurrentBounds:
    """What ``current.jsonl`` holds once a torn tail is cut off."""

    size: int
    last_seq: int
    last_ts: bytes
    first_seq: int
    first_ts: bytes
    #: epoch of the first record other than a ``rotated`` one (``None``: none)
    records_since: float | None
    #: (name, bytes) of the torn tail set aside, if any
    torn: tuple[str, int] | None


def epoch_or_now(ts: bytes) -> float:
    """A record's ``ts`` in epoch seconds; now if it cannot be read."""
    try:
        return ts_epoch(ts)
    except ValueError:
        return time.time()


def scan_uid_dir(dir_fd: int, preferred_suffix: str) -> Scan:
    """Index a uid directory; delete ``.tmp`` files and uncompressed twins.

    Args:
        dir_fd: the verified uid directory.
        preferred_suffix: of two compressed twins (``compress`` changed
            between a crash and a restart), the one kept.

    Raises:
        OSError: listing, ``stat`` or ``unlink`` failed.
    """
    out = Scan()
    by_key: dict[RotatedKey, list[RotatedName]] = {}
    chains: dict[RotatedKey, int] = {}
    for name in os.listdir(dir_fd):
        if name.endswith(_layout.TMP_SUFFIX):
            os.unlink(name, dir_fd=dir_fd)  # a compression a crash interrupted
            continue
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode):
            continue  # never followed, never read, never deleted
        parsed = RotatedName.parse(name)
        if parsed is not None:
            by_key.setdefault(parsed.key, []).append(parsed)
        elif name.startswith(_layout.TORN_PREFIX) and name.endswith(".partial"):
            out.torn[name] = (st.st_size, st.st_mtime)
        elif name.endswith(CHAIN_SUFFIX):
            sealed = RotatedName.parse(name[: -len(CHAIN_SUFFIX)])
            if sealed is not None and not sealed.suffix:
                chains[sealed.key] = st.st_size
        elif name == UNITS_INDEX:
            out.units_index = st.st_size
    for key in sorted(by_key):
        variants = by_key[key]
        # a compressed variant is renamed into place only once complete:
        # prefer it, and drop the uncompressed original it replaces
        variants.sort(key=lambda n: (n.suffix == "", n.suffix != preferred_suffix))
        if any(not n.suffix for n in variants):  # the original is here: is its copy whole?
            while variants[0].suffix and (why := _damage(dir_fd, variants[0].format())):
                bad = variants.pop(0).format()
                os.rename(bad, bad + DAMAGED_SUFFIX, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
                out.damaged.append((bad, bad + DAMAGED_SUFFIX, why))
        keep, *extra = variants
        for dup in extra:
            os.unlink(dup.format(), dir_fd=dir_fd)
        size = os.stat(keep.format(), dir_fd=dir_fd, follow_symlinks=False).st_size
        out.rotated[key] = (keep, size)
        if keep.suffix == "":
            out.uncompressed.append(keep)
    # a chain without its file (removed by hand): left alone, as evidence
    out.chains = {key: size for key, size in chains.items() if key in out.rotated}
    return out


def _damage(dir_fd: int, name: str) -> str | None:
    """What is wrong with the compressed file *name* (read whole); ``None``: nothing."""
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        stream = Stream(fd, suffix_of(name))
        try:
            while stream.read(1 << 20):
                pass
        finally:
            stream.close()
    except READ_ERRORS as exc:
        return read_error(exc)
    finally:
        os.close(fd)
    return None


def read_last_seq(fd: int, size: int) -> int:
    """Return the ``seq`` of the last complete, parseable line in an open file.

    Returns 0 when the file holds no parseable record.
    """
    return read_last(fd, size)[0]


def read_last(fd: int, size: int) -> tuple[int, bytes]:
    """``(seq, ts)`` of the last complete, parseable line; ``(0, b"")`` if none."""
    end = size
    while end > 0:
        start = max(0, end - _TAIL_CHUNK)
        chunk = os.pread(fd, end - start, start)
        lines = chunk.split(b"\n")
        # lines[0] may be partial unless start == 0; the last element is b"" for a
        # file ending in LF.
        candidates = lines if start == 0 else lines[1:]
        for line in reversed(candidates):
            if not line:
                continue
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(obj, dict) and isinstance(obj.get("seq"), int):
                return int(obj["seq"]), line[TS_AT]
        if start == 0:
            break
        end = start + len(lines[0])
    return 0, b""


def set_aside_torn_tail(uid_dir: int, reader: int, fd: int, size: int) -> tuple[int, str, int]:
    """Cut a torn last line off the current file; keep its bytes aside.

    Returns:
        The new size, the name of the file set aside and its size.
    """
    tail_start = max(0, size - _TAIL_CHUNK)
    chunk = os.pread(reader, size - tail_start, tail_start)
    cut = chunk.rfind(b"\n")
    new_size = tail_start + cut + 1 if cut >= 0 else tail_start
    torn = chunk[cut + 1 :] if cut >= 0 else chunk
    name = f"{_layout.TORN_PREFIX}{time.time_ns() // 1000}.partial"
    aside = _layout.open_file(
        uid_dir, name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, what=f"torn tail {name}"
    )
    try:
        _layout.write_all(aside, torn)
        os.fsync(aside)
    except BaseException:
        os.close(aside)
        with contextlib.suppress(OSError):  # a full disk: tried again at the next open
            os.unlink(name, dir_fd=uid_dir)
        raise
    os.close(aside)
    os.ftruncate(fd, new_size)
    os.fsync(fd)
    return new_size, name, len(torn)


def recover_current(dir_fd: int, fd: int, size: int) -> CurrentBounds:
    """Cut a torn tail off ``current.jsonl`` (open for appending as *fd*) and read its bounds.

    Raises:
        OSError: reading, writing the torn tail aside, or truncating failed.
    """
    reader = os.open(_layout.CURRENT, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    torn = None
    try:
        if os.pread(reader, 1, size - 1) != b"\n":
            size, name, nbytes = set_aside_torn_tail(dir_fd, reader, fd, size)
            torn = (name, nbytes)
        last_seq, last_ts = read_last(reader, size)
        head = os.pread(reader, min(size, _TAIL_CHUNK), 0).split(b"\n")
    finally:
        os.close(reader)
    complete = head[:-1]  # the last piece is b"" or a line cut by the chunk
    first_seq, first_ts, since = 0, b"", None
    if complete:
        first = complete[0]
        first_seq = seq_key(first)
        first_ts = first[TS_AT]
        records = [ln for ln in complete if daemon_event(ln) != "rotated"]
        if records:
            since = epoch_or_now(records[0][TS_AT])
        elif size > len(b"\n".join(complete)) + 1:
            since = epoch_or_now(first[TS_AT])  # lines longer than the chunk
    return CurrentBounds(size, last_seq, last_ts, first_seq, first_ts, since, torn)
