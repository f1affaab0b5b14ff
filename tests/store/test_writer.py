"""StoreWriter: private files, O_NOFOLLOW, torn-line recovery, seq continuation."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from trio_logd.errors import SeqConflict, UnsafeLogDir
from trio_logd.store.files import read_uid_records
from trio_logd.store.writer import StoreWriter

TS = b"2026-11-27T20:47:40.123456Z"


def line(seq: int, msg: str = "m") -> bytes:
    head = b'{"ts":"%s","seq":%d,"uid":5,"gid":5,"pid":1,' % (TS, seq)
    return head + b'"fac":"user","sev":"info","msg":"%s"}\n' % msg.encode()


def test_appends_records_in_a_private_uid_directory(tmp_path: Path) -> None:
    """Lines land in log_dir/<uid>/current.jsonl; dirs are 0700, files 0600."""
    log_dir = tmp_path / "log"
    w = StoreWriter(str(log_dir))
    assert w.open() == {}
    w.append(5, [line(1), line(2)], 2)
    w.close()
    assert list(read_uid_records(log_dir, 5)) == [line(1)[:-1], line(2)[:-1]]
    assert (log_dir.stat().st_mode & 0o777, (log_dir / "5").stat().st_mode & 0o777) == (
        0o700,
        0o700,
    )
    assert (log_dir / "5" / "current.jsonl").stat().st_mode & 0o777 == 0o600


def test_seq_continues_after_reopen(tmp_path: Path) -> None:
    """open() reports the last seq on disk for each uid."""
    w = StoreWriter(str(tmp_path))
    w.open()
    w.append(5, [line(1), line(2), line(3)], 3)
    w.append(7, [line(10)], 10)
    w.close()
    w2 = StoreWriter(str(tmp_path))
    assert w2.open() == {5: 3, 7: 10}
    assert w2.last_seq(5) == 3
    assert w2.last_seq(99) == 0
    w2.close()


def test_torn_last_line_is_set_aside_not_parsed(tmp_path: Path) -> None:
    """A torn tail is cut off into torn-*.partial; seq continues from the last whole line."""
    w = StoreWriter(str(tmp_path))
    w.open()
    w.append(5, [line(1), line(2)], 2)
    w.close()
    cur = tmp_path / "5" / "current.jsonl"
    with open(cur, "ab") as f:
        f.write(line(3)[:20])
    w2 = StoreWriter(str(tmp_path))
    assert w2.open() == {5: 2}
    w2.append(5, [line(3)], 3)
    w2.close()
    assert [orjson.loads(x)["seq"] for x in read_uid_records(tmp_path, 5)] == [1, 2, 3]
    (aside,) = (tmp_path / "5").glob("torn-*.partial")
    assert aside.read_bytes() == line(3)[:20]


def test_symlinked_uid_directory_is_refused(tmp_path: Path) -> None:
    """A symlinked uid directory is refused at open and on append; nothing is written through it."""
    log_dir = tmp_path / "log"
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    log_dir.mkdir(mode=0o700)
    (log_dir / "5").symlink_to(target)
    w = StoreWriter(str(log_dir))
    assert w.open() == {}
    assert w.refused == {
        5: "uid directory 5: is a symlink or not a directory; refusing to follow it"
    }
    with pytest.raises(UnsafeLogDir, match="symlink"):
        w.append(5, [line(1)], 1)
    w.append(6, [line(1)], 1)  # other uids are unaffected
    w.close()
    assert list(target.iterdir()) == []
    assert list(read_uid_records(log_dir, 6)) == [line(1)[:-1]]


def test_symlinked_current_file_is_refused(tmp_path: Path) -> None:
    """current.jsonl as a symlink is refused (O_NOFOLLOW), the target untouched."""
    log_dir = tmp_path / "log"
    (log_dir / "5").mkdir(parents=True, mode=0o700)
    log_dir.chmod(0o700)
    victim = tmp_path / "victim"
    victim.write_bytes(b"")
    (log_dir / "5" / "current.jsonl").symlink_to(victim)
    w = StoreWriter(str(log_dir))
    w.open()
    assert w.refused == {5: "5/current.jsonl: is a symlink; refusing to follow it"}
    with pytest.raises(UnsafeLogDir, match="symlink"):
        w.append(5, [line(1)], 1)
    w.close()
    assert victim.read_bytes() == b""


def test_hard_linked_current_file_is_refused(tmp_path: Path) -> None:
    """A current file with a second hard link is refused."""
    log_dir = tmp_path / "log"
    (log_dir / "5").mkdir(parents=True, mode=0o700)
    log_dir.chmod(0o700)
    cur = log_dir / "5" / "current.jsonl"
    cur.write_bytes(b"")
    cur.chmod(0o600)
    os.link(cur, tmp_path / "other-link")
    w = StoreWriter(str(log_dir))
    w.open()
    assert w.refused == {5: "5/current.jsonl: has 2 hard links; refusing to write through it"}
    with pytest.raises(UnsafeLogDir, match="hard links"):
        w.append(5, [line(1)], 1)
    w.close()
    assert cur.read_bytes() == b""


def test_log_dir_writable_by_others_is_refused(tmp_path: Path) -> None:
    """A world-writable log_dir is refused with a clear reason."""
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    log_dir.chmod(0o777)
    with pytest.raises(UnsafeLogDir, match="writable by group or others"):
        StoreWriter(str(log_dir)).open()


def test_log_dir_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    """log_dir itself as a symlink is refused."""
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "log").symlink_to(real)
    with pytest.raises(UnsafeLogDir, match="symlink"):
        StoreWriter(str(tmp_path / "log")).open()


def test_lines_at_or_below_the_mark_are_refused_whole(tmp_path: Path) -> None:
    """A line numbered at or below the uid's last seq on disk: SeqConflict, nothing written."""
    w = StoreWriter(str(tmp_path))
    w.open()
    w.append(5, [line(1), line(2), line(3)], 3)
    with pytest.raises(SeqConflict, match="at or below the last seq on disk") as info:
        w.append(5, [line(3), line(4)], 4)
    assert (info.value.mark, info.value.written) == (3, 0)  # type: ignore[attr-defined]
    w.append(5, [line(4)], 4)
    w.close()
    assert [orjson.loads(x)["seq"] for x in read_uid_records(tmp_path, 5)] == [1, 2, 3, 4]


def test_the_mark_of_an_empty_current_file_is_the_newest_rotated_name(tmp_path: Path) -> None:
    """current.jsonl empty after a rotation: the mark is the newest rotated file's last seq."""
    w = StoreWriter(str(tmp_path))
    w.open()
    w.append(5, [line(1), line(2), line(3)], 3)
    assert w.rotate(5, "size") is not None
    w.close()
    w2 = StoreWriter(str(tmp_path))
    w2.open()  # writes the `rotated` record the daemon did not: seq 4
    assert (w2.last_seq(5), w2.establish(5)) == (4, 4)
    w2.close()


def test_unreported_drops_are_saved_in_place_and_read_back(tmp_path: Path) -> None:
    """save_drops overwrites the uid's preallocated file; the next open reads counts and seq."""
    w = StoreWriter(str(tmp_path))
    w.open()
    w.append(5, [line(1)], 1)
    drops = tmp_path / ".drops" / "5"
    size = drops.stat().st_size
    assert size == 4096
    assert w.save_drops(5, {"disk": 7, "rate": 2}, 12)
    assert w.save_drops(5, {"disk": 9}, 14)
    assert drops.stat().st_size == size  # in place: no block more
    w.close()
    w2 = StoreWriter(str(tmp_path))
    w2.open()
    assert w2.load_drops() == {5: ({"disk": 9}, {})}
    assert w2.last_seq(5) == 14  # numbering goes on past the lost records
    w2.close()
