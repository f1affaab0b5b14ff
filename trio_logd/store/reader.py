"""The store's reading side (sync): a uid's record lines, oldest first, each once.

How this works: rotated files are named so that sorting their names sorts
them by ``seq``; ``current.jsonl`` comes last. Compressed files are
decompressed as a stream. The reader runs while the daemon writes, rotates,
compresses and deletes, so it defends against each of those:

- a rotated file that exists both uncompressed and compressed (a compression
  between its rename and its unlink) is read once, under one name;
- a file that vanishes between the listing and the opening (compressed,
  rotated or deleted meanwhile) makes the reader list the directory again and
  go on from the last ``seq`` it returned;
- every line is returned only if its ``seq`` is above the last one returned,
  so no record is ever returned twice, whatever the race;
- only lines ending in LF are records: a torn last line (a crash, or a write
  in progress) is never returned; ``.tmp`` and ``torn-*.partial`` files are
  never read.

Files are opened with ``O_NOFOLLOW``: a symlink planted in the store is not
followed.
"""

from __future__ import annotations

import errno
import gzip
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Final

from trio_logd.store import _layout
from trio_logd.store._line import line_seq

__all__ = ["read_uid_records", "uid_files"]

#: How often the reader lists a directory again when files vanish under it
#: (each time means a rotation or compression happened while it read).
_RELISTS: Final = 100


def _listing(d: Path) -> list[tuple[Path, int]]:
    """``(path, last_seq)`` of each file to read, oldest first; current last (seq -1)."""
    try:
        names = os.listdir(d)
    except (FileNotFoundError, NotADirectoryError):
        return []
    best: dict[tuple[int, int, int, int], _layout.RotatedName] = {}
    for n in names:
        parsed = _layout.RotatedName.parse(n)
        if parsed is None:
            continue
        other = best.get(parsed.key)
        # both complete (compression renames into place); prefer the compressed
        # one: the uncompressed one is the next to be unlinked
        if other is None or other.suffix == "":
            best[parsed.key] = parsed
    out = [(d / best[k].format(), best[k].last_seq) for k in sorted(best)]
    if _layout.CURRENT in names:
        out.append((d / _layout.CURRENT, -1))
    return out


def uid_files(log_dir: str | os.PathLike[str], uid: int) -> list[Path]:
    """The record files of *uid*, oldest first (``current.jsonl`` last), each once."""
    return [p for p, _ in _listing(Path(log_dir) / str(uid))]


def _open(path: Path) -> IO[bytes]:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    return os.fdopen(fd, "rb")


def _decompressed(raw: IO[bytes], name: str) -> IO[bytes]:
    if name.endswith(".gz"):
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]  # an IO[bytes]
    if name.endswith(".zst"):
        import zstandard

        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw, closefd=False))
    return raw


def _lines(raw: IO[bytes], name: str, last: int) -> Iterator[tuple[bytes, int]]:
    """Complete lines of a file above seq *last*: ``(line without LF, its seq or -1)``."""
    with raw, _decompressed(raw, name) as f:
        for line in f:
            if not line.endswith(b"\n"):
                continue  # torn: a crash, or a write in progress
            seq = line_seq(line)
            if seq is None:
                yield line[:-1], -1
            elif seq > last:
                yield line[:-1], seq


def read_uid_records(log_dir: str | os.PathLike[str], uid: int) -> Iterator[bytes]:
    """Yield every complete record line of *uid* (without LF), oldest first, once each.

    Args:
        log_dir: the store's root.
        uid: whose records.

    Yields:
        Record lines in ``seq`` order. A line whose ``seq`` cannot be read
        (not the daemon's layout) is yielded where it stands.
    """
    d = Path(log_dir) / str(uid)
    current = d / _layout.CURRENT
    last = 0
    listing = _listing(d)
    for _ in range(_RELISTS):  # each turn of this loop is one race lost to the daemon
        for path, file_last in listing:
            if 0 <= file_last <= last:
                continue  # read already (under another name, or before a re-listing)
            if file_last < 0:  # current.jsonl
                break
            try:
                f = _open(path)
            except FileNotFoundError:
                break  # compressed or deleted meanwhile: list again
            except OSError as exc:
                if exc.errno != errno.ELOOP:
                    raise
                last = max(last, file_last)  # a symlink: never followed
                continue
            for line, seq in _lines(f, path.name, last):
                last = max(last, seq)
                yield line
            last = max(last, file_last)  # the name says so, even if its lines did not
        else:
            return  # no current file
        if path == current:
            cur: IO[bytes] | None
            try:
                cur = _open(current)
            except FileNotFoundError:
                cur = None  # being rotated: list again
            except OSError as exc:
                if exc.errno != errno.ELOOP:
                    raise
                return  # a symlink: never followed
            if cur is not None:
                # a rotation between the listing and this open would make us skip
                # the rotated file: check that no file newer than what we read appeared
                listing = _listing(d)
                if not any(file_last > last for _, file_last in listing):
                    for line, seq in _lines(cur, current.name, last):
                        last = max(last, seq)
                        yield line
                    return
                cur.close()
                continue
        listing = _listing(d)
