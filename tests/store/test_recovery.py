"""StoreWriter at start: unfinished compressions, a lost `rotated` record, failed writes."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import orjson
import pytest
import zstandard
from structlog.testing import capture_logs

from tests.store._damage import DAMAGES
from tests.store._lines import T0, chain_bytes, line, lines, names, seqs
from trio_logd.errors import DiskFull
from trio_logd.store import _layout
from trio_logd.store._layout import RotatedName
from trio_logd.store.files import read_uid_records
from trio_logd.store.verify import verify_store
from trio_logd.store.writer import StoreWriter

LINE = len(line(1))
X = RotatedName(1, 10, int(T0), int(T0), "").format()  # what rotating seq 1..10 makes


def _rotated_store(log_dir: Path) -> Path:
    """Seq 1..10 in one rotated, uncompressed file, 11..12 in current; returns the uid dir."""
    w = StoreWriter(str(log_dir), max_file_bytes=10 * LINE)
    w.open()
    w.append(5, lines(1, 12), 12)
    w.close()
    d = log_dir / "5"
    assert names(d) == [X, "current.jsonl"]
    return d


def test_unfinished_compression_is_removed_and_done_again(tmp_path: Path) -> None:
    """A leftover .tmp is deleted at start and the uncompressed file is queued again."""
    d = _rotated_store(tmp_path)
    (d / (X + ".zst.tmp")).write_bytes(b"half a frame")
    w = StoreWriter(str(tmp_path), compress="zstd")
    w.open()
    assert names(d) == [X, "current.jsonl"]
    assert w.compress_pending() == 1
    assert w.compress_next() == RotatedName.parse(X + ".zst")
    w.close()
    assert names(d) == [X + ".zst", "current.jsonl"]
    assert seqs(read_uid_records(tmp_path, 5)) == list(range(1, 13))


def test_compressed_and_uncompressed_twins_keep_the_compressed_one(tmp_path: Path) -> None:
    """Crash between the rename of X.jsonl.zst and the unlink of X.jsonl: X.jsonl goes at start."""
    d = _rotated_store(tmp_path)
    (d / (X + ".zst")).write_bytes(zstandard.ZstdCompressor().compress((d / X).read_bytes()))
    assert seqs(read_uid_records(tmp_path, 5)) == list(range(1, 13))  # the reader: once each
    w = StoreWriter(str(tmp_path), compress="zstd")
    w.open()
    assert (names(d), w.compress_pending()) == ([X + ".zst", "current.jsonl"], 0)
    w.close()


@pytest.mark.parametrize("damage", ["empty", "cut in the middle", "garbage"])
def test_a_damaged_compressed_twin_is_set_aside_and_the_original_kept(
    tmp_path: Path, damage: str
) -> None:
    """Crash after the rename of X.jsonl.zst whose bytes never reached the disk: at start
    the .zst is set aside (X.jsonl.zst.damaged, logged), X.jsonl is kept and compressed
    again; no record is lost."""
    d = _rotated_store(tmp_path)
    (d / (X + ".zst")).write_bytes(zstandard.ZstdCompressor().compress((d / X).read_bytes()))
    DAMAGES[damage](d / (X + ".zst"))
    w = StoreWriter(str(tmp_path), compress="zstd")
    with capture_logs() as logs:
        w.open()
    assert names(d) == [X, X + ".zst.damaged", "current.jsonl"]
    (event,) = [e for e in logs if e["event"] == "compressed_file_damaged"]
    assert (event["uid"], event["file"], event["set_aside"]) == (5, X + ".zst", X + ".zst.damaged")
    assert event["error"].startswith(("cut short", "cannot be decompressed"))
    assert w.compress_next() == RotatedName.parse(X + ".zst")
    w.close()
    assert seqs(read_uid_records(tmp_path, 5)) == list(range(1, 13))
    assert verify_store(tmp_path).problems == []


def test_a_lost_rotated_record_is_written_at_start(tmp_path: Path) -> None:
    """Crash after rotating, before the `rotated` record: open writes it; seq survives retention."""
    w = StoreWriter(str(tmp_path), max_file_bytes=10 * LINE)
    w.open()
    w.append(5, lines(1, 10), 10)
    w.rotate(5, "quota")
    w.close()  # a crash here: current.jsonl is empty
    d = tmp_path / "5"
    assert (d / "current.jsonl").read_bytes() == b""
    w = StoreWriter(str(tmp_path))
    assert w.open() == {5: 11}
    w.close()
    (rec,) = [orjson.loads(x) for x in (d / "current.jsonl").read_bytes().splitlines()]
    assert {k: rec[k] for k in ("seq", "uid", "event", "file", "first_seq", "last_seq")} == {
        "seq": 11, "uid": 5, "event": "rotated", "file": X, "first_seq": 1, "last_seq": 10,
    }  # fmt: skip
    os.unlink(d / X)  # retention took every rotated file
    w = StoreWriter(str(tmp_path))
    assert w.open() == {5: 11}
    w.close()


def test_a_missing_current_file_is_recreated_with_the_high_water_mark(tmp_path: Path) -> None:
    """Crash between the rename of current.jsonl and the creation of the next: seq goes on."""
    d = _rotated_store(tmp_path)
    os.unlink(d / "current.jsonl")
    w = StoreWriter(str(tmp_path))
    assert w.open() == {5: 11}
    w.append(5, [line(12)], 12)
    w.close()
    assert seqs(read_uid_records(tmp_path, 5)) == list(range(1, 13))


def test_a_failed_write_keeps_whole_lines_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC mid-write: DiskFull says how many lines made it, the partial one is cut off."""
    w = StoreWriter(str(tmp_path))
    w.open()
    w.append(5, [line(1)], 1)
    real_write = os.write
    budget = [LINE + 10]  # one line and a bit of the next

    def short_write(fd: int, data: bytes | memoryview) -> int:
        if budget[0] <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        n = real_write(fd, bytes(data[: budget[0]]))
        budget[0] -= n
        return n

    monkeypatch.setattr(os, "write", short_write)
    with pytest.raises(DiskFull, match="uid 5: no space left") as info:
        w.append(5, lines(2, 4), 4)
    assert info.value.written == 1  # type: ignore[attr-defined]
    monkeypatch.setattr(os, "write", real_write)
    cur = tmp_path / "5" / "current.jsonl"
    assert cur.read_bytes() == line(1) + line(2)
    assert (w.last_seq(5), w.usage(5)) == (2, 2 * LINE + chain_bytes(tmp_path / "5"))
    w.append(5, lines(3, 4), 4)
    w.close()
    assert seqs(read_uid_records(tmp_path, 5)) == [1, 2, 3, 4]


def test_temp_and_torn_files_count_towards_usage_only_as_they_should(tmp_path: Path) -> None:
    """At start a torn tail is set aside and counted in usage; .tmp files are gone."""
    d = _rotated_store(tmp_path)
    with open(d / "current.jsonl", "ab") as f:
        f.write(line(13)[:30])
    w = StoreWriter(str(tmp_path))
    assert w.open() == {5: 12}
    on_disk = sum(p.stat().st_size for p in d.iterdir())
    assert w.usage(5) == on_disk == 12 * LINE + 30 + chain_bytes(d)
    (torn,) = (f for u in w.snapshot() for f in u.files if f.name.startswith("torn-"))
    assert torn.size == 30
    w.close()


def test_a_rotation_that_cannot_open_the_next_file_reports_what_was_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC creating the next current file: written counts the lines in the rotated one."""
    w = StoreWriter(str(tmp_path), max_file_bytes=2 * LINE)
    w.open()
    w.append(5, [line(1)], 1)
    real_open = _layout.open_file

    def no_space(dir_fd: int, name: str, flags: int, *, what: str) -> int:
        if name == _layout.CURRENT:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(dir_fd, name, flags, what=what)

    monkeypatch.setattr(_layout, "open_file", no_space)
    with pytest.raises(DiskFull) as info:
        w.append(5, lines(2, 4), 4)
    assert info.value.written == 1  # type: ignore[attr-defined]
    monkeypatch.setattr(_layout, "open_file", real_open)
    w.append(5, lines(3, 4), 4)  # the next append opens a new current file
    w.close()
    assert seqs(read_uid_records(tmp_path, 5)) == [1, 2, 3, 4]
