"""Compression claims its file: two compressing processes never touch each other's work."""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

import pytest

from tests.store._lines import lines, seqs
from trio_logd.store import _compress
from trio_logd.store._layout import RotatedName
from trio_logd.store.files import read_uid_records
from trio_logd.store.verify import verify_store
from trio_logd.store.writer import StoreWriter

LINES = 30


def _rotated(tmp_path: Path) -> tuple[StoreWriter, int, RotatedName]:
    """A store whose uid 5 has one rotated file waiting for compression; its dir fd."""
    w = StoreWriter(str(tmp_path), max_file_bytes=len(lines(1, 1)[0]) * 20, compress="zstd")
    w.open()
    w.append(5, lines(1, LINES), LINES)
    job = w.next_compression()
    assert job is not None
    return w, job.dir_fd, job.name


def test_a_file_claimed_by_another_process_is_left_alone(tmp_path: Path) -> None:
    """While another open file description holds the source's claim, compression raises
    BlockingIOError (BUSY) and creates, renames and removes nothing."""
    w, dir_fd, src = _rotated(tmp_path)
    d = tmp_path / "5"
    other_tmp = _compress.tmp_name(src.with_suffix(".zst").format(), 1)
    (d / other_tmp).write_bytes(b"the other claimant's unfinished work")
    before = sorted(os.listdir(d))
    holder = os.open(d / src.format(), os.O_RDONLY)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        with pytest.raises(BlockingIOError) as caught:
            _compress.compress_file(dir_fd, src, "zstd", sync=False, what="uid 5")
        assert (caught.value.errno, caught.value.strerror) == (errno.EWOULDBLOCK, _compress.BUSY)
        assert sorted(os.listdir(d)) == before
    finally:
        os.close(holder)
    os.close(dir_fd)
    w.close()


def test_a_dead_claimants_tmp_is_removed_and_ours_carries_our_pid(tmp_path: Path) -> None:
    """Once the claim is ours, .tmp files of earlier (dead) claimants of the same file go;
    the compressed file replaces the source; every record reads back once."""
    w, dir_fd, src = _rotated(tmp_path)
    d = tmp_path / "5"
    dst = src.with_suffix(".zst").format()
    assert _compress.tmp_name(dst, os.getpid()) == f"{dst}.{os.getpid()}.tmp"
    (d / _compress.tmp_name(dst, 1)).write_bytes(b"a dead claimant's leftover")
    (d / (dst + ".tmp")).write_bytes(b"an older version's leftover")
    name, size = _compress.compress_file(dir_fd, src, "zstd", sync=True, what="uid 5")
    assert name.format() == dst
    assert (d / dst).stat().st_size == size
    assert not [n for n in os.listdir(d) if n.endswith(".tmp")]
    assert src.format() not in os.listdir(d)
    os.close(dir_fd)
    w.close()
    assert seqs(read_uid_records(tmp_path, 5)) == list(range(1, LINES + 1))


def test_a_file_compressed_meanwhile_by_another_is_reported_done(tmp_path: Path) -> None:
    """The source gone and its compressed file in place (another claimant finished): the
    compression reports that file, so the store's index follows it; verify is clean."""
    w, dir_fd, src = _rotated(tmp_path)
    other = os.dup(dir_fd)
    done = _compress.compress_file(other, src, "zstd", sync=False, what="uid 5")
    os.close(other)
    assert _compress.compress_file(dir_fd, src, "zstd", sync=False, what="uid 5") == done
    os.close(dir_fd)
    w.close()
    assert verify_store(tmp_path).problems == []
