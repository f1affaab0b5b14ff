"""The scan engine over a store laid out on disk: order, tails, skipping, files that move."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest
import zstandard

from tests.query._store import T0, Rec, write_uid
from trio_logd.errors import StoreError
from trio_logd.query.filters import QuerySpec
from trio_logd.query.scanner import query_scanner
from trio_logd.query.timespec import ts_bound
from trio_logd.record import line_seq
from trio_logd.store import _layout
from trio_logd.store.scan import CHUNK, PIECE, ScanStats, cut_lines

SEVS = ["info", "err", "debug", "warning"]


def _recs(n: int, *, step: float = 60.0, offset: float = 0.0) -> list[Rec]:
    return [
        Rec(
            T0 + offset + i * step,
            f"message {i} " + ("ECONNRESET" if i % 7 == 0 else "ok"),
            SEVS[i % 4],
            pid=100 + i % 3,
        )
        for i in range(n)
    ]


def scan(log_dir: Path, uids: list[int] | None, **kw: object) -> tuple[list[bytes], ScanStats]:
    s = query_scanner(str(log_dir), uids, QuerySpec(**kw))  # type: ignore[arg-type]
    return [ln for batch in s.batches() for ln in batch], s.stats


@pytest.fixture
def store(tmp_path: Path) -> tuple[Path, list[bytes]]:
    """uid 1000: 1000 records in 9 rotated files (zst, gz, plain) + current with a torn tail."""
    lines = write_uid(
        tmp_path, 1000, _recs(1000), per_file=110, suffixes=(".zst", ".gz", ""), torn=b'{"ts":"2'
    )
    return tmp_path, lines


def test_forward_reads_every_file_in_seq_order(store: tuple[Path, list[bytes]]) -> None:
    """Every record, rotated (zst, gz, plain) then current, in seq order; not the torn tail."""
    log_dir, lines = store
    out, stats = scan(log_dir, [1000])
    assert out == lines
    assert (stats.files_opened, stats.files_skipped) == (10, 0)


@pytest.mark.parametrize("n", [0, 1, 5, 100, 110, 111, 350, 999, 1000, 5000])
def test_tail_is_the_last_n(store: tuple[Path, list[bytes]], n: int) -> None:
    """-n N gives the last N records, oldest first, across file boundaries."""
    log_dir, lines = store
    out, _ = scan(log_dir, [1000], lines=n)
    assert out == (lines[-n:] if n else [])


def test_tail_reads_only_the_newest_files(store: tuple[Path, list[bytes]]) -> None:
    """-n reads the current file (10 records), then only the newest rotated ones it needs."""
    log_dir, lines = store
    total = sum(len(x) + 1 for x in lines)
    _, stats = scan(log_dir, [1000], lines=5)
    current = (log_dir / "1000" / _layout.CURRENT).stat().st_size
    assert (stats.files_opened, stats.bytes_read) == (1, current)
    _, stats = scan(log_dir, [1000], lines=100)
    assert stats.files_opened == 2
    assert stats.bytes_read < total / 5


def test_tail_with_filters_equals_filtering_everything(store: tuple[Path, list[bytes]]) -> None:
    """-n with --grep/-p/--pid equals the last N of the full filtered scan."""
    log_dir, _ = store
    for kw in ({"grep": "econnreset"}, {"priority": (0, 3)}, {"pids": (101,)}):
        full, _ = scan(log_dir, [1000], **kw)
        for n in (1, 7, 40, 500):
            out, _ = scan(log_dir, [1000], lines=n, **kw)
            assert out == full[-n:], (kw, n)


def test_time_range_opens_only_files_that_can_hold_it(store: tuple[Path, list[bytes]]) -> None:
    """--since/--until skip rotated files by the span in their names."""
    log_dir, lines = store
    since, until = ts_bound(T0 + 500 * 60), ts_bound(T0 + 520 * 60)
    out, stats = scan(log_dir, [1000], since=since, until=until)
    assert out == lines[500:521]
    # file 4 (records 440-549) holds it; the current file is probed for its span
    assert (stats.files_opened, stats.files_skipped) == (2, 9)


def test_since_last_records_reads_current_only(store: tuple[Path, list[bytes]]) -> None:
    """A range within the current file opens no rotated file."""
    log_dir, lines = store
    out, stats = scan(log_dir, [1000], since=ts_bound(T0 + 995 * 60))
    assert out == lines[995:]
    assert (stats.files_opened, stats.files_skipped) == (1, 9)


def test_merge_across_uids_is_by_ts(tmp_path: Path) -> None:
    """Several uids: each in seq order, together by ts (interleaved clocks)."""
    a = write_uid(tmp_path, 1000, _recs(300), per_file=70)
    b = write_uid(tmp_path, 1001, _recs(200, step=90, offset=30), per_file=0)
    out, _ = scan(tmp_path, [1000, 1001])
    assert out == sorted(a + b, key=lambda ln: orjson.loads(ln)["ts"])
    everyone, _ = scan(tmp_path, None)
    assert everyone == out
    tail, _ = scan(tmp_path, None, lines=25)
    assert tail == out[-25:]


def test_missing_uid_directory_is_empty(tmp_path: Path) -> None:
    """A uid that never logged has no records, and that is not an error."""
    write_uid(tmp_path, 1000, _recs(3))
    assert scan(tmp_path, [4242]) == ([], ScanStats())
    assert scan(tmp_path, [4242], lines=10)[0] == []


def test_symlinked_uid_directory_is_refused(tmp_path: Path) -> None:
    """A uid entry that is a symlink is not followed."""
    write_uid(tmp_path, 1000, _recs(3))
    (tmp_path / "1001").symlink_to(tmp_path / "1000")
    with pytest.raises(StoreError, match="1001: not a directory"):
        scan(tmp_path, [1001])


def test_symlinked_file_is_refused(tmp_path: Path) -> None:
    """current.jsonl as a symlink (to another uid's file) is not followed: no record of
    it is read, and the scan names it as damaged."""
    write_uid(tmp_path, 1000, _recs(3))
    (tmp_path / "1001").mkdir()
    (tmp_path / "1001" / _layout.CURRENT).symlink_to(tmp_path / "1000" / _layout.CURRENT)
    got, stats = scan(tmp_path, [1001])
    assert got == []
    assert [(d.path, d.reason) for d in stats.damaged] == [
        (f"{tmp_path}/1001/current.jsonl", "a symlink, not a file: not followed")
    ]


def test_missing_directory_is_a_store_error(tmp_path: Path) -> None:
    """--directory naming nothing is an error naming the path."""
    with pytest.raises(StoreError, match="nope"):
        scan(tmp_path / "nope", [1000])
    with pytest.raises(StoreError, match="nope"):
        scan(tmp_path / "nope", None)


def test_rotation_after_the_scan_began_gives_no_duplicates(tmp_path: Path) -> None:
    """current.jsonl rotated (and compressed) after the scan opened it: each record once."""
    lines = write_uid(tmp_path, 1000, _recs(300), per_file=100)
    scanner = query_scanner(str(tmp_path), [1000], QuerySpec())
    batches = scanner.batches()
    out = list(next(batches))  # current.jsonl is open, the first rotated file read
    d = tmp_path / "1000"
    cur = d / _layout.CURRENT
    data = cur.read_bytes()
    name = _layout.RotatedName(201, 300, int(T0), int(T0) + 1, ".zst").format()
    (d / name).write_bytes(zstandard.ZstdCompressor().compress(data))
    cur.unlink()
    write_uid(tmp_path, 1000, _recs(5, offset=99999), first_seq=301)  # the new current
    out += [ln for b in batches for ln in b]
    assert out == lines
    assert scanner.last_seqs() == {1000: 300}


def test_file_replaced_by_its_compressed_copy_mid_scan(tmp_path: Path) -> None:
    """X.jsonl vanishing for X.jsonl.zst between two files read: listed again, nothing lost."""
    lines = write_uid(tmp_path, 1000, _recs(300), per_file=100, suffixes=("",))
    scanner = query_scanner(str(tmp_path), [1000], QuerySpec())
    batches = scanner.batches()
    out = list(next(batches))
    d = tmp_path / "1000"
    second = sorted(p for p in d.iterdir() if p.name != _layout.CURRENT)[1]
    (d / (second.name + ".zst")).write_bytes(
        zstandard.ZstdCompressor().compress(second.read_bytes())
    )
    second.unlink()
    out += [ln for b in batches for ln in b]
    assert out == lines


def test_tail_when_retention_deletes_a_file(tmp_path: Path) -> None:
    """A rotated file deleted after the scan began is skipped; the rest still comes, in order."""
    lines = write_uid(tmp_path, 1000, _recs(300), per_file=100, suffixes=("",))
    scanner = query_scanner(str(tmp_path), [1000], QuerySpec(lines=250))
    oldest = sorted(p for p in (tmp_path / "1000").iterdir() if p.name != _layout.CURRENT)[0]
    oldest.unlink()
    out = [ln for b in scanner.batches() for ln in b]
    assert out == lines[100:]
    assert [line_seq(x) for x in out] == list(range(101, 301))


def test_current_file_growing_during_scan_is_read_to_its_size_at_open(tmp_path: Path) -> None:
    """Lines appended after the scan opened current.jsonl are left to followers."""
    lines = write_uid(tmp_path, 1000, _recs(20), per_file=10)
    scanner = query_scanner(str(tmp_path), [1000], QuerySpec())
    batches = scanner.batches()
    out = list(next(batches))  # current.jsonl is open, the rotated file read
    with open(tmp_path / "1000" / _layout.CURRENT, "ab") as f:
        f.write(lines[0] + b"\n")
    out += [ln for b in batches for ln in b]
    assert out == lines
    assert scanner.last_seqs() == {1000: 20}


def test_unreadable_compressed_file_is_passed_over_and_named(tmp_path: Path) -> None:
    """A corrupt .zst: the other files' records are read, and the scan names the file."""
    lines = write_uid(tmp_path, 1000, _recs(20), per_file=10)
    bad = next(p for p in (tmp_path / "1000").iterdir() if p.name.endswith(".zst"))
    bad.write_bytes(b"not zstd at all")
    got, stats = scan(tmp_path, [1000])
    assert got == lines[10:]
    assert [d.path for d in stats.damaged] == [str(bad)]


def test_unreadable_directory_is_a_store_error(tmp_path: Path) -> None:
    """No permission on a uid directory (offline, as a user) is a clear error."""
    if os.geteuid() == 0:
        pytest.skip("root reads everything; needs an unprivileged uid")
    write_uid(tmp_path, 1000, _recs(3))
    (tmp_path / "1000").chmod(0)
    with pytest.raises(StoreError, match="Permission denied"):
        scan(tmp_path, [1000])


def _scan_keep(log_dir: Path, uids: list[int] | None, keep: int, **kw: object) -> list[bytes]:
    s = query_scanner(str(log_dir), uids, QuerySpec(**kw), tail_keep_bytes=keep)  # type: ignore[arg-type]
    return [ln for batch in s.batches() for ln in batch]


@pytest.mark.parametrize("keep", [0, 1, 300, 5000, 1 << 20])
@pytest.mark.parametrize("n", [1, 5, 10, 11, 109, 111, 350, 1000, 5000])
def test_tail_beyond_its_byte_budget_streams_the_same_lines(
    store: tuple[Path, list[bytes]], keep: int, n: int
) -> None:
    """-n N gives the same last N whether its lines fit in the budget or are found by seq."""
    log_dir, lines = store
    assert _scan_keep(log_dir, [1000], keep, lines=n) == lines[-n:]
    full = [ln for ln in lines if b"ECONNRESET" in ln]
    assert _scan_keep(log_dir, [1000], keep, lines=n, grep="ECONNRESET") == full[-n:]
    odd = [ln for ln in lines if orjson.loads(ln)["pid"] == 101]
    assert _scan_keep(log_dir, [1000], keep, lines=n, pids=(101,)) == odd[-n:]


@pytest.mark.parametrize("n", [1, 7, 100, 299, 400, 501, 2000])
def test_tail_over_several_uids_is_the_last_n_merged(tmp_path: Path, n: int) -> None:
    """-n N over several uids: the last N of the ts-merged records, each uid counted not kept."""
    a = write_uid(tmp_path, 1000, _recs(300), per_file=70, suffixes=(".zst", ""))
    b = write_uid(tmp_path, 1001, _recs(200, step=90, offset=30), per_file=0)
    merged = sorted(a + b, key=lambda ln: orjson.loads(ln)["ts"])
    out, _ = scan(tmp_path, [1000, 1001], lines=n)
    assert out == merged[-n:]


def test_tail_yields_between_pieces_when_lines_are_decoded(tmp_path: Path) -> None:
    """A decoding filter is run on pieces of about PIECE bytes, each followed by a turn."""
    big = [Rec(T0 + i, "x" * 2000 + f" {i}") for i in range(400)]
    lines = write_uid(tmp_path, 1000, big, per_file=150, suffixes=(".zst",))
    s = query_scanner(str(tmp_path), [1000], QuerySpec(lines=300, grep="x{3}"), tail_keep_bytes=0)
    batches = list(s.batches())
    assert [ln for b in batches for ln in b] == lines[-300:]
    # 300 lines of ~2.1 KB: ~20 pieces backwards and as many forwards, each a batch
    assert sum(1 for b in batches if not b) >= 20
    assert max(sum(map(len, b)) for b in batches) <= PIECE + 2200


def test_cut_lines_cuts_at_line_ends() -> None:
    """Pieces are whole lines of about the size asked; joined they are the chunk."""
    chunk = b"".join(b"%d %s\n" % (i, b"y" * (i % 50)) for i in range(500))
    for size in (1, 10, 100, 4096, len(chunk), len(chunk) + 1):
        pieces = cut_lines(chunk, size)
        assert b"".join(p for _, p in pieces) == chunk
        assert all(p.endswith(b"\n") for _, p in pieces)
        assert [o for o, _ in pieces] == [chunk.index(p) for _, p in pieces]
        assert all(len(p) < size + 60 for _, p in pieces)


def test_cancelled_filter_ends_its_scan_with_nothing(store: tuple[Path, list[bytes]]) -> None:
    """Once its filter is cancelled, a decoding scan rejects every line."""
    log_dir, _ = store
    s = query_scanner(str(log_dir), [1000], QuerySpec(grep="message"))
    batches = s.batches()
    first = next(b for b in batches if b)
    s.filter.cancel()
    assert first
    assert [ln for b in batches for ln in b] == []


def test_tail_of_a_large_file_gives_the_caller_a_turn_per_chunk(tmp_path: Path) -> None:
    """-n N reads a large current file backwards a chunk at a time, yielding after each."""
    lines = write_uid(tmp_path, 1000, [Rec(T0 + i, "m" * 1000 + str(i)) for i in range(3000)])
    size = (tmp_path / "1000" / _layout.CURRENT).stat().st_size
    s = query_scanner(str(tmp_path), [1000], QuerySpec(lines=2900), tail_keep_bytes=0)
    batches = list(s.batches())
    assert [ln for b in batches for ln in b] == lines[-2900:]
    # backwards: 64 KiB, 128 KiB, then CHUNK at a time; forwards: a batch per CHUNK
    assert sum(1 for b in batches if not b) >= size // CHUNK - 1
    assert max(sum(map(len, b)) for b in batches) <= CHUNK + 1100  # a chunk and a line
