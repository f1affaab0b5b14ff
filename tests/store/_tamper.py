"""Changing record files in place, as an intruder would: for the verification tests."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import orjson
import zstandard

Change = Callable[[list[bytes]], list[bytes]]


def _codec(name: str) -> tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]]:
    if name.endswith(".zst"):
        return zstandard.ZstdDecompressor().decompressobj().decompress, (
            zstandard.ZstdCompressor().compress
        )
    if name.endswith(".gz"):
        return gzip.decompress, gzip.compress
    return (lambda b: b), (lambda b: b)


def rewrite(path: Path, change: Change) -> None:
    """Apply *change* to a (maybe compressed) file's lines (each with its LF)."""
    unpack, pack = _codec(path.name)
    data = unpack(path.read_bytes()).splitlines(keepends=True)
    path.write_bytes(pack(b"".join(change(data))))


def at(data: list[bytes], seq: int) -> int:
    """The index of record *seq*'s line."""
    return next(i for i, x in enumerate(data) if orjson.loads(x)["seq"] == seq)


def edit_byte(seq: int) -> Change:
    """Change one byte of record *seq*: the first letter of its message changes case."""

    def change(data: list[bytes]) -> list[bytes]:
        i = at(data, seq)
        where = data[i].index(b'"msg":"') + 7
        edited = bytearray(data[i])
        edited[where] ^= 0x20  # a letter: its other case
        data[i] = bytes(edited)
        return data

    return change


def delete_line(seq: int) -> Change:
    """Delete record *seq*'s line."""

    def change(data: list[bytes]) -> list[bytes]:
        del data[at(data, seq)]
        return data

    return change


def swap(seq: int) -> Change:
    """Swap record *seq*'s line with the next."""

    def change(data: list[bytes]) -> list[bytes]:
        i = at(data, seq)
        data[i], data[i + 1] = data[i + 1], data[i]
        return data

    return change


def cut_tail(nbytes: int) -> Change:
    """Cut the last *nbytes* bytes off."""

    def change(data: list[bytes]) -> list[bytes]:
        whole = b"".join(data)[:-nbytes]
        return whole.splitlines(keepends=True)

    return change
