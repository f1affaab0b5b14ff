"""SeqReader: a uid's records after a seq, across rotated, compressed and current files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import zstandard

from tests.query._store import T0, Rec, line, write_uid
from trio_logd.errors import StoreError
from trio_logd.record import line_seq
from trio_logd.store._layout import CURRENT, RotatedName
from trio_logd.store.seqreader import SeqReader

UID = 1000


def recs(n: int) -> list[Rec]:
    return [Rec(T0 + i, f"message {i}") for i in range(n)]


def read_all(reader: SeqReader, step: int = 1 << 20) -> list[bytes]:
    out: list[bytes] = []
    while lines := reader.read(step):
        out.extend(lines)
    return out


@pytest.mark.parametrize("suffixes", [("",), (".gz",), (".zst",), ("", ".zst", ".gz")])
def test_reads_every_file_in_seq_order(tmp_path: Path, suffixes: tuple[str, ...]) -> None:
    """Rotated files (plain or compressed) then the current file, each line once."""
    stored = write_uid(tmp_path, UID, recs(250), per_file=60, suffixes=suffixes)
    reader = SeqReader(str(tmp_path), UID)
    assert read_all(reader) == stored
    assert (reader.after, reader.missing) == (250, 0)


@pytest.mark.parametrize("after", [0, 1, 59, 60, 61, 200, 249, 250, 300])
def test_starts_after_the_position(tmp_path: Path, after: int) -> None:
    """Only records with a seq above the position are returned, whichever file holds it."""
    stored = write_uid(tmp_path, UID, recs(250), per_file=60)
    assert read_all(SeqReader(str(tmp_path), UID, after)) == stored[after:]


def test_small_steps_return_everything_once(tmp_path: Path) -> None:
    """Steps of a few bytes still give every line exactly once, in order."""
    stored = write_uid(tmp_path, UID, recs(100), per_file=30, suffixes=(".zst", ""))
    assert read_all(SeqReader(str(tmp_path), UID), step=1) == stored


def test_follows_appends_and_torn_lines(tmp_path: Path) -> None:
    """A line being written is left for later; appended lines are read next time."""
    write_uid(tmp_path, UID, recs(3), torn=b'{"ts":"2026')
    reader = SeqReader(str(tmp_path), UID)
    assert [line_seq(x) for x in reader.read(1 << 20)] == [1, 2, 3]
    assert reader.read(1 << 20) == []
    current = tmp_path / str(UID) / CURRENT
    data = current.read_bytes()
    current.write_bytes(data[: data.rindex(b"\n") + 1] + line(UID, 4, Rec(T0, "four")))
    assert [line_seq(x) for x in reader.read(1 << 20)] == [4]


def test_rotation_between_reads(tmp_path: Path) -> None:
    """The current file renamed (and compressed, and a new one started) while we read."""
    d = tmp_path / str(UID)
    write_uid(tmp_path, UID, recs(1000))
    reader = SeqReader(str(tmp_path), UID)
    first = reader.read(1)  # one read of the current file: a part of it
    assert 0 < len(first) < 1000
    # rotation: more lines appended, then current -> rotated (compressed), new current
    extra = b"".join(line(UID, s, Rec(T0 + s, f"m{s}")) for s in range(1001, 1006))
    with open(d / CURRENT, "ab") as f:
        f.write(extra)
    rotated = RotatedName(1, 1005, int(T0), int(T0) + 1006, "")
    os.rename(d / CURRENT, d / rotated.format())
    (d / CURRENT).write_bytes(b"".join(line(UID, s, Rec(T0 + s, f"m{s}")) for s in (1006, 1007)))
    zst = rotated._replace(suffix=".zst")
    (d / zst.format()).write_bytes(
        zstandard.ZstdCompressor().compress((d / rotated.format()).read_bytes())
    )
    (d / rotated.format()).unlink()
    rest = read_all(reader)
    assert [line_seq(x) for x in rest] == list(range(len(first) + 1, 1008))
    assert (reader.after, reader.missing) == (1007, 0)


def test_closed_reader_resumes_at_its_offset(tmp_path: Path) -> None:
    """close() frees the files; the next read goes on where it was, without repeats."""
    stored = write_uid(tmp_path, UID, recs(50), per_file=20, suffixes=(".zst",))
    reader = SeqReader(str(tmp_path), UID)
    got: list[bytes] = []
    while lines := reader.read(300):
        got.extend(lines)
        reader.close()
    assert got == stored


def test_gap_deleted_by_retention_is_counted(tmp_path: Path) -> None:
    """Records deleted before they were read are skipped and counted in `missing`."""
    write_uid(tmp_path, UID, recs(90), per_file=30, suffixes=("",))
    reader = SeqReader(str(tmp_path), UID)
    assert [line_seq(x) for x in reader.read(1)][:1] == [1]
    reader.close()
    for name in os.listdir(tmp_path / str(UID)):
        span = RotatedName.parse(name)
        if span is not None and span.first_seq == 31:
            os.unlink(tmp_path / str(UID) / name)
    rest = read_all(reader)
    assert line_seq(rest[0]) == 61
    assert reader.missing == 30


def test_records_before_the_first_read_are_not_missing(tmp_path: Path) -> None:
    """A store whose oldest records retention removed long ago: nothing counted as missing."""
    write_uid(tmp_path, UID, recs(10), first_seq=500)
    reader = SeqReader(str(tmp_path), UID)
    assert len(read_all(reader)) == 10
    assert (reader.after, reader.missing) == (509, 0)


def test_seek_goes_back(tmp_path: Path) -> None:
    """seek(n) makes the next read start after seq n (a rewind after a lost connection)."""
    stored = write_uid(tmp_path, UID, recs(40), per_file=15, suffixes=(".gz",))
    reader = SeqReader(str(tmp_path), UID)
    read_all(reader)
    reader.seek(12)
    assert read_all(reader) == stored[12:]


def test_no_directory_no_records(tmp_path: Path) -> None:
    """A uid without a directory has nothing to read (yet)."""
    assert SeqReader(str(tmp_path), 4242).read(100) == []


def test_symlinked_uid_directory_is_refused(tmp_path: Path) -> None:
    """A uid directory that is a symlink is never followed."""
    write_uid(tmp_path, UID, recs(2))
    os.symlink(tmp_path / str(UID), tmp_path / "1001")
    with pytest.raises(
        StoreError, match=r"/1001: not a directory \(a symlink\?\); refusing to follow"
    ):
        SeqReader(str(tmp_path), 1001).read(100)


def test_rotation_between_listing_and_opening(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A current file that starts past the position makes the reader look again: no skip."""
    stored = write_uid(tmp_path, UID, recs(20), per_file=10, suffixes=("",))
    real_listdir = os.listdir
    calls = 0

    def listdir_before_rotation(path: int) -> list[str]:
        # the first listing saw the directory just before the rotation: no rotated file yet
        nonlocal calls
        calls += 1
        names = real_listdir(path)
        return [CURRENT] if calls == 1 else names

    monkeypatch.setattr(os, "listdir", listdir_before_rotation)
    reader = SeqReader(str(tmp_path), UID)
    assert read_all(reader) == stored
    assert reader.missing == 0


def test_current_file_cut_shorter_is_read_on_from_its_new_end(tmp_path: Path) -> None:
    """The writer takes back a partial batch: records appended after the cut are not missed."""
    write_uid(tmp_path, UID, recs(5))
    current = tmp_path / str(UID) / CURRENT
    reader = SeqReader(str(tmp_path), UID)
    assert [line_seq(x) for x in reader.read(1 << 20)] == [1, 2, 3, 4, 5]
    data = current.read_bytes()
    cut = data.rindex(b'{"ts"')  # the start of the last line
    os.truncate(current, cut)  # seq 5 taken back
    assert reader.read(1 << 20) == []
    with open(current, "ab") as f:
        f.write(line(UID, 6, Rec(T0 + 6, "six")))
    assert [line_seq(x) for x in reader.read(1 << 20)] == [6]


@pytest.mark.parametrize("suffixes", [("",), (".zst",)])
def test_upto_leaves_later_lines_for_the_next_read(
    tmp_path: Path, suffixes: tuple[str, ...]
) -> None:
    """Lines above `upto` (written, not reported stored yet) come back on a later read."""
    stored = write_uid(tmp_path, UID, recs(30), per_file=20, suffixes=suffixes)
    reader = SeqReader(str(tmp_path), UID)
    assert reader.read(1 << 20, upto=12) == stored[:12]
    assert reader.read(1 << 20, upto=12) == []
    assert reader.read(1 << 20, upto=25) == stored[12:25]
    reader.close()
    assert reader.read(1 << 20, upto=30) == stored[25:]
    assert (reader.after, reader.missing) == (30, 0)
