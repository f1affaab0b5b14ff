"""The store's one reader (store.files): each record once, in seq order, never a torn line,
whatever happens; seeking by seq; every compression read the same way."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import zstandard

from tests.store._lines import T0, line, lines, names, seqs
from trio_logd.record import line_seq, with_seq
from trio_logd.store.files import (
    Stream,
    files_after,
    line_time,
    read_uid_records,
    read_whole,
    rotated_files,
    seek_seq,
    suffix_of,
    uid_files,
    zstd_cut,
)
from trio_logd.store.seqreader import SeqReader
from trio_logd.store.writer import StoreWriter

LINE = len(line(1))


def test_never_returns_a_record_twice_while_the_store_rotates_compresses_and_deletes(
    tmp_path: Path,
) -> None:
    """Reading lazily while files rotate, compress and go: strictly increasing seq, no torn line."""
    w = StoreWriter(str(tmp_path), max_file_bytes=20 * LINE, compress="zstd")
    w.open()
    w.append(5, lines(1, 100), 100)
    reader = read_uid_records(tmp_path, 5)
    got = [next(reader) for _ in range(15)]  # in the middle of the first file
    next_seq = 101
    for _ in range(10):  # rotate, compress and delete under the reader's feet
        w.append(5, lines(next_seq, next_seq + 29), next_seq + 29)
        next_seq += 30
        while w.compress_next() is not None:
            pass
        (snap,) = w.snapshot()
        w.delete(snap.files[:1])
        got.extend(next(reader) for _ in range(5))
    got.extend(reader)
    w.close()
    s = seqs(got)
    assert s == sorted(set(s))
    assert s[:15] == list(range(1, 16))
    assert s[-1] == next_seq - 1


def test_skips_a_torn_last_line_and_temp_files(tmp_path: Path) -> None:
    """Only LF-terminated lines are records; .tmp and torn-*.partial files are never read."""
    w = StoreWriter(str(tmp_path))
    w.open()
    w.append(5, lines(1, 2), 2)
    w.close()
    d = tmp_path / "5"
    with open(d / "current.jsonl", "ab") as f:
        f.write(line(3)[:25])
    (
        d / "0000000000000003-0000000000000003.20261127T204740Z-20261127T204740Z.jsonl.zst.tmp"
    ).write_bytes(line(3))
    (d / "torn-1.partial").write_bytes(line(3)[:25])
    assert seqs(read_uid_records(tmp_path, 5)) == [1, 2]
    assert uid_files(tmp_path, 5) == [d / "current.jsonl"]


def test_a_symlink_in_the_store_is_not_followed(tmp_path: Path) -> None:
    """A rotated-looking name that is a symlink is not read through."""
    w = StoreWriter(str(tmp_path))
    w.open()
    w.append(5, lines(5, 6), 6)
    w.close()
    secret = tmp_path / "secret"
    secret.write_bytes(line(1))
    name = "0000000000000001-0000000000000001.20261127T204740Z-20261127T204740Z.jsonl"
    (tmp_path / "5" / name).symlink_to(secret)
    assert seqs(read_uid_records(tmp_path, 5)) == [5, 6]


def test_reads_nothing_for_an_unknown_uid(tmp_path: Path) -> None:
    """A uid without a directory has no records."""
    assert list(read_uid_records(tmp_path, 42)) == []


def test_reads_every_file_of_a_long_history(tmp_path: Path) -> None:
    """Hundreds of rotated files are all read, in order."""
    w = StoreWriter(str(tmp_path), max_file_bytes=2 * LINE)
    w.open()
    w.append(5, lines(1, 701), 701)
    w.close()
    assert len(names(tmp_path / "5")) == 351
    assert seqs(read_uid_records(tmp_path, 5)) == list(range(1, 702))


def test_with_seq_renumbers_a_line_and_nothing_else() -> None:
    """with_seq changes only the seq, whatever its number of digits."""
    original = b'{"ts":"2026-11-27T20:47:40.123456Z","seq":7,"uid":5,"msg":"seq 7"}\n'
    moved = with_seq(original, 1007)
    assert moved == original.replace(b'"seq":7,', b'"seq":1007,')
    assert line_seq(moved) == 1007
    with pytest.raises(ValueError, match="not a record line"):
        with_seq(b"garbage\n", 1)


_NAME = "0000000000000001-0000000000000020.20261127T204740Z-20261127T204741Z.jsonl"


def test_rotated_files_lists_each_file_once_in_seq_order() -> None:
    """A file both plain and compressed is listed once; other names are left out."""
    later = "0000000000000021-0000000000000030.20261127T204741Z-20261127T204742Z.jsonl"
    names = [later, _NAME + ".zst", "current.jsonl", _NAME, "torn-1.partial", _NAME + ".chain"]
    assert [r.format() for r in rotated_files(names)] == [_NAME + ".zst", later]
    plain = rotated_files(names, prefer_plain=True)
    assert [r.format() for r in plain] == [_NAME, later]
    assert [r.first_seq for r in files_after(plain, 20)] == [21]
    assert files_after(plain, 30) == []


def test_seek_seq_finds_the_first_line_after_a_seq() -> None:
    """seek_seq bisects lines by their seq: what follows it, with or without LF."""
    got = [line(s) for s in (3, 4, 7, 9)]
    assert [seek_seq(got, s) for s in (0, 3, 5, 7, 9, 10)] == [0, 1, 2, 3, 4, 4]
    assert seek_seq([x.rstrip(b"\n") for x in got], 4) == 2
    assert line_time(got[0]) == T0


def test_read_uid_records_seeks_after_a_seq(tmp_path: Path) -> None:
    """Starting after a seq skips whole files by name and the lines before it."""
    w = StoreWriter(str(tmp_path), max_file_bytes=10 * LINE, compress="gzip")
    w.open()
    w.append(5, lines(1, 35), 35)
    while w.compress_next() is not None:
        pass
    w.close()
    assert seqs(read_uid_records(tmp_path, 5, after=17)) == list(range(18, 36))
    assert list(read_uid_records(tmp_path, 5, after=35)) == []


@pytest.mark.parametrize("compress", ["gzip", "zstd"])
def test_read_whole_reads_plain_and_compressed_files_alike(tmp_path: Path, compress: str) -> None:
    """A rotated file's bytes are the same whatever its compression."""
    w = StoreWriter(str(tmp_path), max_file_bytes=10 * LINE, compress=compress)
    w.open()
    w.append(5, lines(1, 12), 12)
    while w.compress_next() is not None:
        pass
    w.close()
    (first, *_) = uid_files(tmp_path, 5)
    assert suffix_of(first.name) == {"gzip": ".gz", "zstd": ".zst"}[compress]
    fd = os.open(first, os.O_RDONLY)
    try:
        assert read_whole(fd, suffix_of(first.name)) == b"".join(lines(1, 10))
    finally:
        os.close(fd)


def test_a_damaged_compressed_file_is_passed_over_and_told_by_the_forwarders_reader(
    tmp_path: Path,
) -> None:
    """Garbage under a .zst name: the reader names it in ``damaged`` and goes on with the
    next file (its records are counted missing), never a traceback."""
    d = tmp_path / "5"
    d.mkdir()
    (d / (_NAME + ".zst")).write_bytes(b"not zstd at all" * 10)
    (d / "current.jsonl").write_bytes(b"".join(lines(21, 22)))
    reader = SeqReader(str(tmp_path), 5, after=0)
    assert seqs(reader.read(1 << 20)) == [21, 22]
    (damaged,) = reader.damaged
    assert re.search(r"5/0+1-0+20\..*\.jsonl\.zst$", damaged.path)
    assert damaged.reason.startswith("cannot be decompressed: ")
    reader.close()
    with pytest.raises(ValueError, match="not a compressed"):
        Stream(0, ".jsonl")


def test_the_store_imports_nothing_of_the_query_layer() -> None:
    """Every module of store/ loads without loading query/ (the store sits below it)."""
    import subprocess
    import sys

    code = (
        "import pkgutil, importlib, sys, trio_logd.store as s\n"
        "for m in pkgutil.iter_modules(s.__path__):\n"
        "    importlib.import_module('trio_logd.store.' + m.name)\n"
        "print(sorted(n for n in sys.modules if n.startswith('trio_logd.query')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_zstd_cut_finds_every_cut_and_only_cuts(tmp_path: Path) -> None:
    """A file of zstd frames (with and without checksum and size, RLE and raw blocks, a
    skippable frame between) cut at any byte is found cut, unless the cut falls between
    frames; whole, it is not."""
    data = b"".join(lines(1, 400))
    frames = [
        zstandard.ZstdCompressor(write_checksum=True).compress(data),
        b"\x50\x2a\x4d\x18" + (5).to_bytes(4, "little") + b"skip!",  # a skippable frame
        zstandard.ZstdCompressor(write_content_size=False).compress(b"x" * 300_000),  # RLE
        zstandard.ZstdCompressor(level=-50).compress(os.urandom(1000)),  # raw blocks
    ]
    whole = b"".join(frames)
    ends = {sum(map(len, frames[:i])) for i in range(len(frames) + 1)}
    path = tmp_path / "f.zst"
    for n in range(len(whole) + 1):
        path.write_bytes(whole[:n])
        fd = os.open(path, os.O_RDONLY)
        try:
            assert (zstd_cut(fd) is None) == (n in ends), n
        finally:
            os.close(fd)
