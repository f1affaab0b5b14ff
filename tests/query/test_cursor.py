"""Cursors: the opaque text, where a scan resumes (seek by seq, by time otherwise), the tracker."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.query._store import T0, Rec, write_uid
from trio_logd.query.cursor import (
    MAX_CURSOR_UIDS,
    Cursor,
    CursorRequest,
    CursorTracker,
    Position,
    SeqFloor,
    TsFloor,
    line_uid,
    place,
)
from trio_logd.query.filters import QuerySpec
from trio_logd.query.scanner import query_scanner
from trio_logd.record import seq_key as line_seq
from trio_logd.store.scan import ScanStats

TS = "2026-11-27T20:47:40.123456Z"


def _recs(n: int, offset: float = 0.0) -> list[Rec]:
    return [Rec(T0 + offset + i, f"m{i}") for i in range(n)]


def _scan(
    log_dir: Path, uids: list[int], cursor: Cursor | None, **kw: object
) -> tuple[list[bytes], ScanStats]:
    s = query_scanner(str(log_dir), uids, QuerySpec(**kw))  # type: ignore[arg-type]
    if cursor is not None:
        place(s, cursor, inclusive=False)
    return [ln for batch in s.batches() for ln in batch], s.stats


def _store_id(log_dir: Path, uid: int) -> int:
    return os.stat(log_dir / str(uid)).st_ino


def test_round_trip_and_opaque_form() -> None:
    """A cursor encodes to c1.<base64url> and decodes to the same positions."""
    c = Cursor(TS, (Position(1000, 42, 7), Position(0, 5, 9)))
    text = c.encode()
    assert text.startswith("c1.")
    assert "=" not in text
    assert Cursor.decode(text) == c
    assert (c.uid, c.seq) == (1000, 42)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "start with 'c1.'"),
        ("s=abc;i=1", "start with 'c1.'"),
        ("c1.!!!", "not base64url"),
        ("c1." + "x" * 50_000, "at most"),
        (Cursor(TS, (Position(1, 2, 3),)).encode()[:-4], "no valid time|not a number|uid.seq"),
    ],
)
def test_malformed_cursors_are_refused_clearly(text: str, why: str) -> None:
    """Anything but a cursor logq printed is refused, saying why, quoting at most 80 characters."""
    with pytest.raises(ValueError, match=why) as info:
        Cursor.decode(text)
    assert str(info.value).startswith("invalid cursor ")
    assert len(str(info.value)) < 200


def test_forged_numbers_are_refused() -> None:
    """A uid out of range, a duplicate uid, a non-number or too many positions: refused."""
    import base64

    def enc(body: str) -> str:
        return "c1." + base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")

    for body in (
        f"{TS};4294967295.1.1",
        f"{TS};1.1.1;1.2.2",
        f"{TS};1.-1.1",
        f"{TS};1.1",
        f"{TS}",
        ";".join([TS, *(f"{u}.1.1" for u in range(MAX_CURSOR_UIDS + 1))]),
        "2026-13-27T20:47:40.123456Z;1.1.1",
    ):
        with pytest.raises(ValueError, match="invalid cursor"):
            Cursor.decode(enc(body))


def test_floor_by_seq_only_for_the_same_store() -> None:
    """Same uid and store: after its seq (--cursor: from the named record); otherwise by time."""
    c = Cursor(TS, (Position(1000, 42, 7), Position(2000, 5, 9)))
    assert c.floor(1000, 7, inclusive=False) == SeqFloor(42)
    assert c.floor(1000, 7, inclusive=True) == SeqFloor(41)
    assert c.floor(2000, 9, inclusive=True) == SeqFloor(5)
    # the store was made again (seq restarted): by time, in the merged order (ts, uid)
    assert c.floor(1000, 8, inclusive=False) == TsFloor(TS.encode(), strict=True)
    assert c.floor(1000, 8, inclusive=True) == TsFloor(TS.encode(), strict=False)
    assert c.floor(999, None, inclusive=False) == TsFloor(TS.encode(), strict=True)
    assert c.floor(1001, None, inclusive=False) == TsFloor(TS.encode(), strict=False)


def test_line_uid_reads_the_prefix() -> None:
    """The uid of a stored line is read without decoding; other layouts give None."""
    assert line_uid(b'{"ts":"%s","seq":12,"uid":1000,"gid":1}' % TS.encode()) == 1000
    assert line_uid(b'{"msg":"x","uid":1000}') is None


def test_tracker_carries_positions_and_names_the_last_record(tmp_path: Path) -> None:
    """The cursor names the last record shown; uids shown before, or only in the start, stay."""
    a = write_uid(tmp_path, 1, _recs(3))
    b = write_uid(tmp_path, 2, _recs(3, 0.5))
    start = Cursor(TS, (Position(3, 99, 33),))
    t = CursorTracker({1: 11, 2: 22}, start)
    for line in (a[0], b[0], a[1]):
        t.see(line)
    c = t.cursor()
    assert c is not None
    assert c.ts == a[1][7:34].decode()
    assert c.positions == (Position(1, 2, 11), Position(2, 1, 22), Position(3, 99, 33))
    assert t.shown == 3
    assert CursorTracker({}).cursor() is None


def test_request_round_trip_and_refusals() -> None:
    """The query's position keys come out of the request; both cursors at once are refused."""
    text = Cursor(TS, (Position(1, 2, 3),)).encode()
    req, rest = CursorRequest.split({"after_cursor": text, "stores": True, "lines": 5})
    assert (req.inclusive, req.stores, rest) == (False, True, {"lines": 5})
    assert req.to_request() == {"after_cursor": text, "stores": True}
    req, _ = CursorRequest.split({"cursor": text})
    assert req.inclusive
    assert req.to_request() == {"cursor": text}
    for bad in ({"cursor": text, "after_cursor": text}, {"cursor": 5}, {"stores": "yes"}):
        with pytest.raises(ValueError, match="query"):
            CursorRequest.split(bad)
    with pytest.raises(ValueError, match="invalid cursor"):
        CursorRequest.split({"after_cursor": "c1.x"})


# --------------------------------------------------------------------------- the scan


@pytest.fixture
def store(tmp_path: Path) -> tuple[Path, list[bytes]]:
    """uid 1000: 1000 records in 9 rotated files (zst, gz, plain) + a current file of 10."""
    return tmp_path, write_uid(
        tmp_path, 1000, _recs(1000), per_file=110, suffixes=(".zst", ".gz", "")
    )


@pytest.mark.parametrize("after", [0, 1, 109, 110, 111, 500, 989, 990, 995, 999, 1000, 5000])
def test_after_cursor_is_exactly_the_records_after(
    store: tuple[Path, list[bytes]], after: int
) -> None:
    """Whatever file the cursor's record is in, the scan gives exactly the records after it."""
    log_dir, lines = store
    c = Cursor(TS, (Position(1000, after, _store_id(log_dir, 1000)),))
    got, _ = _scan(log_dir, [1000], c)
    assert got == lines[after:]
    s = query_scanner(str(log_dir), [1000], QuerySpec())
    place(s, c, inclusive=True)
    assert [ln for batch in s.batches() for ln in batch] == lines[max(after - 1, 0) :]


def test_after_cursor_seeks_rather_than_scans(store: tuple[Path, list[bytes]]) -> None:
    """A cursor near the end opens only the current file: the rotated ones are passed by name."""
    log_dir, _ = store
    c = Cursor(TS, (Position(1000, 995, _store_id(log_dir, 1000)),))
    got, stats = _scan(log_dir, [1000], c)
    assert [line_seq(x) for x in got] == [996, 997, 998, 999, 1000]
    assert stats.files_opened == 1


def test_seek_bisects_the_current_file(tmp_path: Path) -> None:
    """In a current file of 20 000 records, the records after a cursor are read, not the file."""
    lines = write_uid(tmp_path, 7, _recs(20_000))
    size = (tmp_path / "7" / "current.jsonl").stat().st_size
    c = Cursor(TS, (Position(7, 19_990, _store_id(tmp_path, 7)),))
    got, stats = _scan(tmp_path, [7], c)
    assert got == lines[19_990:]
    assert stats.bytes_read < size // 50


def test_cursor_of_another_store_resumes_by_time(store: tuple[Path, list[bytes]]) -> None:
    """A store made again (another identity): the records after the cursor's time, none twice."""
    log_dir, lines = store
    named = lines[499]
    ts = named[7:34].decode()
    c = Cursor(ts, (Position(1000, 500, _store_id(log_dir, 1000) + 1),))
    got, _ = _scan(log_dir, [1000], c)
    assert got == lines[500:]


def test_uids_the_cursor_does_not_know_resume_in_merged_order(tmp_path: Path) -> None:
    """Several uids: a uid new to the cursor gives what the merged order puts after it."""
    a = write_uid(tmp_path, 1, _recs(10))
    b = write_uid(tmp_path, 2, _recs(10))  # same times: the merged order is (ts, uid)
    everything, _ = _scan(tmp_path, [1, 2], None)
    c = Cursor(a[4][7:34].decode(), (Position(1, 5, _store_id(tmp_path, 1)),))
    got, _ = _scan(tmp_path, [1, 2], c)
    assert got == everything[everything.index(a[4]) + 1 :]
    assert b[4] in got
    assert b[3] not in got


def test_cursor_with_filters_and_lines(store: tuple[Path, list[bytes]]) -> None:
    """A cursor composes with filters; a cursor with 'lines' is refused (it reads forwards)."""
    log_dir, lines = store
    c = Cursor(TS, (Position(1000, 900, _store_id(log_dir, 1000)),))
    got, _ = _scan(log_dir, [1000], c, grep="m99")
    assert got == [ln for ln in lines[900:] if b'"m99' in ln]
    with pytest.raises(ValueError, match="cannot be used with 'lines'"):
        place(query_scanner(str(log_dir), [1000], QuerySpec(lines=5)), c, inclusive=False)
