"""StoreWriter rotation: by size and age, between records, named by seq and time."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.store._lines import (
    T0,
    chain_bytes,
    daemon_line,
    deletion_marks,
    disk_bytes,
    line,
    lines,
    names,
    seal_hash,
    seqs,
)
from trio_logd.store import _spares as spares_module
from trio_logd.store._layout import RotatedName
from trio_logd.store.files import read_uid_records
from trio_logd.store.verify import verify_store
from trio_logd.store.writer import Rotation, StoreWriter

LINE = len(line(1))


def test_rotates_by_size_between_records(tmp_path: Path) -> None:
    """Files never exceed max_file_bytes, end on a whole line, their names give the seq range."""
    w = StoreWriter(str(tmp_path), max_file_bytes=10 * LINE)
    w.open()
    for first in range(1, 101, 7):  # batches that straddle file boundaries
        last = min(first + 6, 100)
        w.append(5, lines(first, last), last)
    rotations = w.take_rotations()
    w.close()
    d = tmp_path / "5"
    rotated = sorted(n for n in names(d) if n != "current.jsonl")
    assert [(r.first_seq, r.last_seq) for r in map(RotatedName.parse, rotated)] == [  # type: ignore[union-attr]
        (s, s + 9) for s in range(1, 91, 10)
    ]
    for n in rotated:
        data = (d / n).read_bytes()
        assert len(data) == 10 * LINE
        assert data.endswith(b"\n")
    assert rotations == [
        Rotation(5, n, s, s + 9, 10 * LINE, "size", 10, seal_hash(d, n))
        for n, s in zip(rotated, range(1, 91, 10), strict=True)
    ]
    assert seqs(read_uid_records(tmp_path, 5)) == list(range(1, 101))
    assert RotatedName.parse(rotated[0]) == RotatedName(1, 10, int(T0), int(T0), "")


def test_a_record_larger_than_max_file_bytes_gets_a_file_of_its_own(tmp_path: Path) -> None:
    """One oversized record is never split: it is written whole into a file alone."""
    w = StoreWriter(str(tmp_path), max_file_bytes=2 * LINE)
    w.open()
    big = line(2, msg="x" * 5 * LINE)
    w.append(5, [line(1), big, line(3)], 3)
    w.close()
    d = tmp_path / "5"
    sizes = {RotatedName.parse(n)[:2]: (d / n).stat().st_size for n in names(d)[:-1]}  # type: ignore[index]
    assert sizes == {(1, 1): LINE, (2, 2): len(big)}
    assert (d / "current.jsonl").read_bytes() == line(3)


def test_time_span_in_the_name_rounds_outwards(tmp_path: Path) -> None:
    """The name's first time is rounded down and its last up, to the second."""
    w = StoreWriter(str(tmp_path))
    w.open()
    w.append(5, [line(1, T0 + 0.7), line(2, T0 + 5.2)], 2)
    rot = w.rotate(5, "quota")
    w.close()
    assert rot is not None
    assert RotatedName.parse(rot.name) == RotatedName(1, 2, int(T0), int(T0) + 6, "")


def test_rotate_aged_rotates_only_files_with_old_records(tmp_path: Path) -> None:
    """rotate_aged rotates a current file max_file_age after its first record, not before."""
    w = StoreWriter(str(tmp_path), max_file_age=60)
    w.open()
    w.append(5, [line(1, T0)], 1)
    w.append(6, [line(1, T0 + 30)], 1)
    assert w.rotate_aged(T0 + 59) == []
    (rot,) = w.rotate_aged(T0 + 60)
    w.close()
    assert (rot.uid, rot.first_seq, rot.last_seq, rot.reason) == (5, 1, 1, "age")
    assert (tmp_path / "5" / "current.jsonl").read_bytes() == b""


def test_a_file_holding_only_the_rotated_record_is_never_rotated_by_age(tmp_path: Path) -> None:
    """An idle uid's current file (only the `rotated` record) is not rotated by age."""
    w = StoreWriter(str(tmp_path), max_file_age=60)
    w.open()
    w.append(5, [line(1, T0)], 1)
    (rot,) = w.rotate_aged(T0 + 60)
    w.append(5, [daemon_line(2, "rotated", T0 + 60, file=rot.name)], 2)
    assert w.rotate_aged(T0 + 10_000) == []
    w.append(5, [line(3, T0 + 10_000)], 3)
    assert w.rotate_aged(T0 + 10_059) == []
    assert [r.first_seq for r in w.rotate_aged(T0 + 10_060)] == [2]
    w.close()


def test_append_rotates_an_old_file_before_writing(tmp_path: Path) -> None:
    """A record arriving after max_file_age starts a new file even before the timer ran."""
    w = StoreWriter(str(tmp_path), max_file_age=1e-6)
    w.open()
    w.append(5, [line(1, T0)], 1)
    w.append(5, [line(2, T0)], 2)
    (rot,) = w.take_rotations()
    w.close()
    assert (rot.first_seq, rot.last_seq, rot.reason) == (1, 1, "age")
    assert seqs(read_uid_records(tmp_path, 5)) == [1, 2]


def test_compression_replaces_the_rotated_file_and_keeps_its_records(tmp_path: Path) -> None:
    """compress_next turns X.jsonl into X.jsonl.zst (or .gz) with the same lines; usage follows."""
    for method, suffix in (("zstd", ".zst"), ("gzip", ".gz")):
        log_dir = tmp_path / method
        w = StoreWriter(str(log_dir), max_file_bytes=50 * LINE, compress=method)
        w.open()
        w.append(5, lines(1, 120), 120)
        assert w.compress_pending() == 2
        first = w.compress_next()
        assert first is not None
        assert (first.first_seq, first.last_seq, first.suffix) == (1, 50, suffix)
        assert w.compress_next() is not None
        assert w.compress_next() is None
        d = log_dir / "5"
        assert [n.endswith(".jsonl" + suffix) for n in names(d)] == [True, True, False]
        assert w.usage(5) == disk_bytes(d)
        assert w.usage(5) < 120 * LINE / 3
        w.close()
        assert seqs(read_uid_records(log_dir, 5)) == list(range(1, 121))


def test_usage_counts_every_file_of_the_uid(tmp_path: Path) -> None:
    """usage(uid) and the ledger equal the bytes on disk after appends, rotations and deletions."""
    w = StoreWriter(str(tmp_path), max_file_bytes=10 * LINE)
    w.open()
    w.append(5, lines(1, 35), 35)
    w.append(7, lines(1, 3), 3)
    d, d7 = tmp_path / "5", tmp_path / "7"
    assert (w.usage(5), w.usage(7)) == (disk_bytes(d), disk_bytes(d7))
    assert disk_bytes(d7) - chain_bytes(d7) == 3 * LINE
    assert w.ledger.total() == disk_bytes(d) + disk_bytes(d7)
    (uid5,) = (u for u in w.snapshot() if u.uid == 5)
    assert (uid5.current, [f.last_seq for f in uid5.files]) == (5 * LINE, [10, 20, 30])
    chains_before = chain_bytes(d)
    freed = w.delete(uid5.files[:2])
    assert freed == 20 * LINE + chains_before - chain_bytes(d) + len(deletion_marks(d))
    assert w.usage(5) == disk_bytes(d)
    assert disk_bytes(d) - chain_bytes(d) == 15 * LINE
    w.close()
    assert seqs(read_uid_records(tmp_path, 5)) == list(range(21, 36))


def test_rotated_record_is_recognised_only_from_the_daemon(tmp_path: Path) -> None:
    """A sender's record whose fields mimic a `rotated` record still counts as a record for age."""
    w = StoreWriter(str(tmp_path), max_file_age=60)
    w.open()
    fake = line(1, T0)[:-2] + b',"fields":{"app":"trio-logd","event":"rotated"}}\n'
    assert orjson.loads(fake)["fields"]["event"] == "rotated"
    w.append(5, [fake], 1)
    assert [r.first_seq for r in w.rotate_aged(T0 + 60)] == [1]
    w.close()


def _greedy_files(records: list[bytes], limit: int) -> list[list[bytes]]:
    """The rule, one line at a time: a line that would overflow a file holding a
    record (a ``rotated`` header is none) starts the next file."""
    files: list[list[bytes]] = [[]]
    size, has_records = 0, False
    for rec in records:
        if has_records and size + len(rec) > limit:
            files.append([])
            size, has_records = 0, False
        files[-1].append(rec)
        size += len(rec)
        has_records = has_records or b'"event":"rotated"' not in rec
    return files


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    msgs=st.lists(st.integers(0, 400), min_size=1, max_size=60),
    cuts=st.lists(st.integers(1, 12), min_size=1, max_size=20),
    limit=st.integers(1, 1200),
    rotated_at=st.sets(st.integers(0, 59), max_size=4),
    exact=st.none() | st.tuples(st.integers(0, 59), st.sampled_from([-1, 0, 1])),
)
def test_size_rotation_splits_like_the_per_line_rule(
    tmp_path_factory: pytest.TempPathFactory,
    msgs: list[int],
    cuts: list[int],
    limit: int,
    rotated_at: set[int],
    exact: tuple[int, int] | None,
) -> None:
    """Any line sizes, any batches, any limit: the files are what the per-line rule makes."""
    root = tmp_path_factory.mktemp("rot")
    records = [
        daemon_line(i + 1, "rotated") if i in rotated_at else line(i + 1, msg="x" * (m + 1))
        for i, m in enumerate(msgs)
    ]
    if exact is not None:  # a limit at (or a byte off) the end of a line: the edge cases
        upto, off = exact
        limit = max(1, sum(map(len, records[: upto + 1])) + off)
    w = StoreWriter(str(root), max_file_bytes=limit)
    w.open()
    pos, k = 0, 0
    while pos < len(records):
        batch = records[pos : pos + cuts[k % len(cuts)]]
        w.append(5, batch, pos + len(batch))
        pos, k = pos + len(batch), k + 1
    w.close()
    d = root / "5"
    rotated = sorted(
        (n for n in names(d) if n != "current.jsonl"),
        key=lambda n: RotatedName.parse(n).first_seq,  # type: ignore[union-attr]
    )
    on_disk = [(d / n).read_bytes() for n in [*rotated, "current.jsonl"]]
    expected = [b"".join(f) for f in _greedy_files(records, limit)]
    if on_disk[-1] == b"" and len(on_disk) == len(expected) + 1:
        on_disk.pop()  # the batch ended exactly at a rotation: an empty current file
    assert on_disk == expected


def test_rotation_links_the_files_made_ahead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """For a busy uid whose file will rotate, prepare_spares makes the unnamed files of its
    next two rotations; a rotation links two of them into place as the new current.jsonl
    and current.chain; the store verifies clean."""
    monkeypatch.setattr(spares_module, "SPARES_MIN_ROUND", 2 * LINE)  # rounds of 2 are big
    w = StoreWriter(str(tmp_path), max_file_bytes=20 * LINE)
    w.open()
    w.append(5, lines(1, 2), 2)
    assert not w.spares_wanted  # a file an eighth full or less may never rotate
    w.append(5, [line(3)], 3)
    assert not w.spares_wanted  # a small round: a quiet uid creates its files itself
    w.append(5, lines(4, 5), 5)
    assert w.spares_wanted
    d = tmp_path / "5"
    before = set(os.listdir(d))
    assert w.prepare_spares() == 1
    assert set(os.listdir(d)) == before  # unnamed: nothing to see, nothing left by a crash
    spare_inodes = {os.fstat(fd).st_ino for fd in w._files[5].spares}
    assert len(spare_inodes) == 2 * spares_module.SPARE_ROTATIONS
    w.append(5, lines(6, 25), 25)  # rotates after seq 20
    linked = {(d / "current.jsonl").stat().st_ino, (d / "current.chain").stat().st_ino}
    assert linked < spare_inodes
    assert {os.fstat(fd).st_ino for fd in w._files[5].spares} == spare_inodes - linked
    assert ((d / "current.jsonl").stat().st_mode & 0o777) == 0o600
    assert ((d / "current.chain").stat().st_mode & 0o777) == 0o600
    w.append(5, lines(26, 27), 27)  # the new file is busy too: the pool is filled up again
    assert w.prepare_spares() == 1
    assert len(w._files[5].spares) == 2 * spares_module.SPARE_ROTATIONS
    assert w._spares.files == 2 * spares_module.SPARE_ROTATIONS
    w.close()  # unused spares are closed: they vanish
    assert set(os.listdir(d)) == {"current.jsonl", "current.chain"} | {
        n for n in os.listdir(d) if n.endswith((".jsonl", ".chain", ".index"))
    }
    assert seqs(read_uid_records(tmp_path, 5)) == list(range(1, 28))
    assert verify_store(tmp_path).problems == []


def test_spare_files_are_bounded_in_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """At most SPARES_MAX_FILES spare files are held, whatever the number of busy uids;
    a uid that used its spares makes room for another."""
    monkeypatch.setattr(spares_module, "SPARES_MIN_ROUND", 0)
    monkeypatch.setattr(spares_module, "SPARES_MAX_FILES", 2 * spares_module.SPARE_ROTATIONS)
    w = StoreWriter(str(tmp_path), max_file_bytes=10 * LINE)
    w.open()
    w.append(5, lines(1, 6), 6)
    w.append(6, lines(1, 6), 6)
    assert w.prepare_spares() == 1
    assert w._spares.files == spares_module.SPARES_MAX_FILES
    holder = 5 if w._files[5].spares else 6
    other = 11 - holder
    assert not w._files[other].spares
    w.append(other, lines(7, 7), 7)
    assert w.spares_wanted is False  # not asked for while the cap is reached
    w.append(holder, lines(7, 11), 11)  # rotates: two spares are used (1 line after it)
    assert w._spares.files == spares_module.SPARES_MAX_FILES - 2
    w.append(other, [line(8)], 8)
    assert w.spares_wanted
    assert w.prepare_spares() == 1
    assert len(w._files[other].spares) == 2
    assert w._spares.files == spares_module.SPARES_MAX_FILES
    w.close()
