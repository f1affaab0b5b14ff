"""Damaging a store's files as a disk, a crash or a careless hand would: for the tests of
what every reader does with a damaged file (named, passed over, never a traceback)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from tests.store._lines import line, lines
from trio_logd.store.writer import StoreWriter

Damage = Callable[[Path], None]
#: A record line's length: files of 10 records
LINE = len(line(1))


def write_store(log_dir: Path, compress: str, records: dict[int, int]) -> None:
    """A store of *records* (uid -> how many: seq 1..N) in files of 10 records, the rotated
    ones compressed with *compress*, as the daemon leaves them."""
    w = StoreWriter(str(log_dir), max_file_bytes=10 * LINE, compress=compress)
    w.open()
    for uid, n in records.items():
        w.append(uid, lines(1, n), n)
    while w.compress_next() is not None:
        pass
    w.close()


def _cut(at: Callable[[int], int]) -> Damage:
    def damage(path: Path) -> None:
        data = path.read_bytes()
        path.write_bytes(data[: at(len(data))])

    return damage


def _flip(at: Callable[[int], int]) -> Damage:
    def damage(path: Path) -> None:
        data = bytearray(path.read_bytes())
        data[at(len(data))] ^= 0xFF
        path.write_bytes(bytes(data))

    return damage


def _plain(path: Path) -> None:
    """The records, uncompressed, under the compressed name (a wrong suffix)."""
    path.write_bytes(b'{"ts":"2026-11-27T20:47:40.000000Z","seq":21}\n' * 3)


def _garbage(path: Path) -> None:
    path.write_bytes(b"garbage " * 40)


def _directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


def _fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def _symlink(path: Path) -> None:
    """A symlink to a good copy of the file, outside the uid directory: never followed."""
    target = path.parent.parent / f"elsewhere-{path.name}"
    shutil.copyfile(path, target)
    path.unlink()
    path.symlink_to(target)


#: name -> how to damage a (compressed) record file in place
DAMAGES: dict[str, Damage] = {
    "empty": _cut(lambda n: 0),
    "cut in the header": _cut(lambda n: 5),
    "cut in the middle": _cut(lambda n: n // 2),
    "cut in the trailer": _cut(lambda n: n - 4),
    "byte flipped in the header": _flip(lambda n: 1),
    "byte flipped in the body": _flip(lambda n: n // 2),
    "byte flipped in the trailer": _flip(lambda n: n - 2),
    "garbage": _garbage,
    "plain text under a compressed name": _plain,
    "a directory": _directory,
    "a FIFO": _fifo,
    "a symlink": _symlink,
}
