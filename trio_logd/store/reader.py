"""The store's reading side (sync): a uid's record lines, oldest first.

How this works: rotated files are named so that sorting their names sorts
them by ``seq``; ``current.jsonl`` comes last. Compressed files are
decompressed as a stream. A torn last line (a crash mid-write) is never
returned: only lines ending in LF are records.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from trio_logd.store import _layout

__all__ = ["read_uid_records", "uid_files"]


def uid_files(log_dir: str | os.PathLike[str], uid: int) -> list[Path]:
    """The record files of *uid*, oldest first (``current.jsonl`` last)."""
    d = Path(log_dir) / str(uid)
    try:
        names = os.listdir(d)
    except FileNotFoundError:
        return []
    rotated = sorted(
        (parsed, n) for n in names if (parsed := _layout.RotatedName.parse(n)) is not None
    )
    files = [d / n for _, n in rotated]
    if _layout.CURRENT in names:
        files.append(d / _layout.CURRENT)
    return files


def _open(path: Path) -> IO[bytes]:
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]  # GzipFile is an IO[bytes]
    if path.name.endswith(".zst"):
        import zstandard

        return zstandard.open(path, "rb")  # type: ignore[no-any-return]
    return open(path, "rb")


def read_uid_records(log_dir: str | os.PathLike[str], uid: int) -> Iterator[bytes]:
    """Yield every complete record line of *uid* (without LF), oldest first."""
    for path in uid_files(log_dir, uid):
        try:
            f = _open(path)
        except FileNotFoundError:
            continue  # rotated away or deleted by retention meanwhile
        with f:
            for line in f:
                if line.endswith(b"\n"):
                    yield line[:-1]
