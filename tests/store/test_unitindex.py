"""The unit index (units.index: a summary per rotated file): written, read, damaged,
capped, compacted, and the scans that skip files by it."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from tests.store._lines import T0, batch, daemon_line, disk_bytes, lines, names
from trio_logd.peer import PeerCred
from trio_logd.query.filters import QuerySpec
from trio_logd.query.matches import Selection
from trio_logd.query.scanner import query_scanner
from trio_logd.record import TS_AT, Attribution, Stamp, encode_lines, format_ts
from trio_logd.server._pipeline import Batch
from trio_logd.store import _unitindex
from trio_logd.store._unitindex import (
    INDEX,
    MAX_NAMES,
    UnitSet,
    compact_index,
    needs_compaction,
    parse_entry,
    read_index,
)
from trio_logd.store.scan import ScanStats
from trio_logd.store.writer import StoreWriter

UID = 5
CLAIMS = b'"fac":"user","sev":"info","app":"web","msg":"hello"'


def unit_batch(
    first: int, n: int, unit: str | None = None, *, user_unit: str | None = None
) -> Batch:
    """*n* records from one writer in *unit* (slice system.slice) or the user's *user_unit*
    (slice app.slice), as ingest encodes them: the stamp's names ride on the batch."""
    attribution = Attribution(
        cgroup="/demo",
        unit=unit,
        slice="system.slice" if unit else None,
        user_unit=user_unit,
        user_slice="app.slice" if user_unit else None,
    )
    stamp = Stamp(PeerCred(1, UID, UID), attribution=attribution)
    items = encode_lines(format_ts(T0).encode(), first, stamp.fragment, [CLAIMS] * n)
    return Batch(items, sum(map(len, items)), first + n - 1, items[0][TS_AT], names=stamp.names)


def append(w: StoreWriter, *batches: Batch) -> None:
    """Append batches as the writer task does: their lines, with the batches as runs."""
    w.append(UID, [ln for b in batches for ln in b.lines], batches[-1].last_seq, list(batches))


def rotated(d: Path) -> list[str]:
    return [n for n in names(d) if n != "current.jsonl"]


def index(d: Path) -> dict[str, dict[str, frozenset[str]]]:
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return read_index(fd)
    finally:
        os.close(fd)


def summary(d: Path, name: str) -> dict[str, frozenset[str]] | None:
    return index(d).get(name)


def want(**keys: list[str]) -> dict[str, frozenset[str]]:
    return {k: frozenset(keys.get(k, [])) for k in _unitindex.KEYS}


@pytest.fixture
def writer(tmp_path: Path) -> StoreWriter:
    w = StoreWriter(str(tmp_path))
    w.open()
    return w


def test_each_rotated_file_lists_the_units_its_records_name(
    writer: StoreWriter, tmp_path: Path
) -> None:
    """Each rotated file's summary lists exactly the units, slices, user units and user
    slices of its records; the current file has none; the index is private like records."""
    append(writer, unit_batch(1, 3, "nginx.service"), unit_batch(4, 2, user_unit="app.service"))
    append(writer, unit_batch(6, 1), unit_batch(7, 2, "nginx.service"))
    writer.rotate(UID, "size")
    append(writer, unit_batch(9, 4, "cron.service"))
    writer.rotate(UID, "size")
    append(writer, unit_batch(13, 1, "late.service"))
    writer.close()
    d = tmp_path / str(UID)
    first, second = rotated(d)
    assert summary(d, first) == want(
        unit=["nginx.service"],
        slice=["system.slice"],
        user_unit=["app.service"],
        user_slice=["app.slice"],
    )
    assert summary(d, second) == want(unit=["cron.service"], slice=["system.slice"])
    assert sorted(index(d)) == [first, second]
    assert (os.stat(d / INDEX).st_mode & 0o777) == 0o600


def test_a_file_without_units_has_an_empty_summary(writer: StoreWriter, tmp_path: Path) -> None:
    """Records that name no unit give a summary that lists none: a -u query skips the file."""
    writer.append(UID, lines(1, 5), 5)
    writer.rotate(UID, "size")
    writer.close()
    d = tmp_path / str(UID)
    (only,) = rotated(d)
    assert (d / INDEX).read_bytes() == b'{"units":1,"file":"%s"}\n' % only.encode()
    assert summary(d, only) == want()


def test_daemon_records_are_searched_for_units(writer: StoreWriter, tmp_path: Path) -> None:
    """A daemon record (no names on its run) naming a unit, as suppressed does, is listed;
    so are lines appended without runs (read back from their bytes)."""
    writer.append(UID, [daemon_line(1, "suppressed", unit="flood.service", count=3)], 1)
    writer.append(UID, unit_batch(2, 1, "nginx.service").lines, 2)
    writer.rotate(UID, "size")
    writer.close()
    d = tmp_path / str(UID)
    (only,) = rotated(d)
    assert summary(d, only) == want(unit=["flood.service", "nginx.service"], slice=["system.slice"])


def test_a_value_that_is_not_a_string_means_no_summary(writer: StoreWriter, tmp_path: Path) -> None:
    """A unit key whose value is not a string cannot be summarised: no summary, the file is read."""
    writer.append(UID, [daemon_line(1, "suppressed", unit=None, count=3)], 1)
    writer.rotate(UID, "size")
    writer.close()
    assert index(tmp_path / str(UID)) == {}


def test_too_many_names_mean_no_summary(writer: StoreWriter, tmp_path: Path) -> None:
    """A file naming more than MAX_NAMES units gets no summary (it is read); the next file,
    back within the cap, gets one again."""
    n = MAX_NAMES  # each unit also names system.slice: MAX_NAMES + 1 names
    append(writer, *(unit_batch(i + 1, 1, f"u{i}.scope") for i in range(n)))
    writer.rotate(UID, "size")
    append(writer, unit_batch(n + 1, 1, "one.service"))
    writer.rotate(UID, "size")
    writer.close()
    d = tmp_path / str(UID)
    big, small = rotated(d)
    assert big not in index(d)
    assert summary(d, small) == want(unit=["one.service"], slice=["system.slice"])


def test_the_cap_counts_bytes_too() -> None:
    """Long names reach the byte cap before the count cap: the set is then unknown."""
    s = UnitSet()
    for i in range(100):
        s.note((f"{i:04d}" + "x" * 1000 + ".service", None, None, None))
    assert s.known is False
    assert s.entry("x.jsonl") is None


def test_a_file_found_with_records_at_start_gets_no_summary(tmp_path: Path) -> None:
    """Records appended before the writer opened the file were not seen: its rotation writes
    no summary; the next file gets one."""
    w = StoreWriter(str(tmp_path))
    w.open()
    append(w, unit_batch(1, 2, "before.service"))
    w.close()
    w = StoreWriter(str(tmp_path))
    w.open()
    append(w, unit_batch(3, 2, "after.service"))
    w.rotate(UID, "size")
    append(w, unit_batch(5, 2, "next.service"))
    w.rotate(UID, "size")
    w.close()
    d = tmp_path / str(UID)
    first, second = rotated(d)
    assert first not in index(d)
    assert summary(d, second) == want(unit=["next.service"], slice=["system.slice"])


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b'{"units":1,"file":"x.jsonl","unit":["a.serv',  # cut short by a crash
        b"\0" * 32,  # blocks a power cut left unwritten
        b'{"units":1,"file":"x.jsonl"}',  # no newline: not complete
        b'{"units":2,"file":"x.jsonl"}\n',  # a version this reader does not know
        b'{"units":1}\n',  # no file
        b'{"units":1,"file":5}\n',
        b'{"units":1,"file":"x.jsonl","unit":[5]}\n',
        b'{"units":1,"file":"x.jsonl","unit":"a.service"}\n',
        b"[1]\n",
        b'{"units":1,"file":"x.jsonl","unit":["' + b"a" * (64 << 10) + b'"]}\n',  # too long
    ],
)
def test_a_damaged_entry_is_no_summary(data: bytes) -> None:
    """Whatever is not a complete entry of the known version reads as none."""
    assert parse_entry(data) is None


def test_a_damaged_line_costs_only_its_file(tmp_path: Path) -> None:
    """Between good lines, a damaged one (a crash's zeros, a cut line) is passed over; the
    last entry of a file counts."""
    (tmp_path / INDEX).write_bytes(
        b'{"units":1,"file":"a.jsonl","unit":["a.service"]}\n'
        b"\0\0\0\0\n"
        b'{"units":1,"file":"b.jsonl","unit":["b.serv\n'
        b'{"units":1,"file":"c.jsonl"}\n'
        b'{"units":1,"file":"a.jsonl","unit":["a2.service"]}\n'
        b'{"units":1,"file":"d.jsonl"}'  # not complete yet
    )
    assert index(tmp_path) == {"a.jsonl": want(unit=["a2.service"]), "c.jsonl": want()}


@pytest.mark.parametrize("kind", ["symlink", "directory", "missing"])
def test_an_unreadable_index_is_no_summary(tmp_path: Path, kind: str) -> None:
    """An index that is a symlink, a directory or missing reads as empty: every file is read."""
    (tmp_path / "real").write_bytes(b'{"units":1,"file":"a.jsonl"}\n')
    if kind == "symlink":
        (tmp_path / INDEX).symlink_to(tmp_path / "real")
    elif kind == "directory":
        (tmp_path / INDEX).mkdir()
    assert index(tmp_path) == {}


def test_compaction_keeps_the_entries_of_files_still_there(tmp_path: Path) -> None:
    """compact_index rewrites the index with the live files' entries only (a rename: readers
    see the old or the new one); the writer compacts when it doubled past some slack."""
    (tmp_path / INDEX).write_bytes(
        b'{"units":1,"file":"a.jsonl"}\n{"units":1,"file":"b.jsonl","unit":["b.service"]}\n'
    )
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        size = compact_index(fd, {"b.jsonl", "c.jsonl"})
    finally:
        os.close(fd)
    assert index(tmp_path) == {"b.jsonl": want(unit=["b.service"])}
    assert size == (tmp_path / INDEX).stat().st_size
    assert sorted(os.listdir(tmp_path)) == [INDEX]
    assert not needs_compaction(1000, 0)
    assert needs_compaction(3 << 20, 1 << 20)


def test_the_index_counts_in_usage(tmp_path: Path) -> None:
    """The ledger counts the index, after appends, deletions and a restart."""
    w = StoreWriter(str(tmp_path))
    w.open()
    for i in range(3):
        append(w, unit_batch(2 * i + 1, 2, f"s{i}.service"))
        w.rotate(UID, "size")
    d = tmp_path / str(UID)
    w.write_unit_summaries()
    assert w.usage(UID) == disk_bytes(d)
    (uid_files,) = w.snapshot()
    w.delete(uid_files.files[:1])
    assert w.usage(UID) == disk_bytes(d)
    w.close()
    w = StoreWriter(str(tmp_path))
    w.open()
    assert w.usage(UID) == disk_bytes(d)
    w.close()


def test_summaries_are_written_by_the_housekeeper_not_the_rotation(tmp_path: Path) -> None:
    """A rotation only queues its summary (no file work in the writer's round);
    write_unit_summaries appends it; one whose file retention deleted meanwhile is never
    looked up; the ledger stays exact."""
    w = StoreWriter(str(tmp_path))
    w.open()
    append(w, unit_batch(1, 2, "a.service"))
    w.rotate(UID, "size")
    append(w, unit_batch(3, 2, "b.service"))
    w.rotate(UID, "size")
    d = tmp_path / str(UID)
    assert not (d / INDEX).exists()
    (uid_files,) = w.snapshot()
    w.delete(uid_files.files[:1])  # retention, before the pass
    w.write_unit_summaries()
    (kept,) = rotated(d)
    assert summary(d, kept) == want(unit=["b.service"], slice=["system.slice"])
    assert w.usage(UID) == disk_bytes(d)
    w.write_unit_summaries()  # nothing queued: nothing changes
    assert w.usage(UID) == disk_bytes(d)
    w.close()


# --------------------------------------------------------------------------- scans


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """uid 5: rare.service in the first of five rotated files only; often.service in every
    file; the user's app.service in the third; the current file has often.service."""
    w = StoreWriter(str(tmp_path))
    w.open()
    seq = 1
    for i in range(5):
        batches = [unit_batch(seq, 3, "often.service")]
        seq += 3
        if i == 0:
            batches.append(unit_batch(seq, 2, "rare.service"))
            seq += 2
        if i == 2:
            batches.append(unit_batch(seq, 2, user_unit="app.service"))
            seq += 2
        append(w, *batches)
        w.rotate(UID, "size")
    append(w, unit_batch(seq, 3, "often.service"))
    w.close()
    return tmp_path


def scan(store: Path, select: Selection, **kw: object) -> tuple[list[dict[str, object]], ScanStats]:
    s = query_scanner(str(store), [UID], QuerySpec(select=select, **kw))  # type: ignore[arg-type]
    return [orjson.loads(ln) for batch_ in s.batches() for ln in batch_], s.stats


@pytest.mark.parametrize("lines_", [None, 100, 1])
@pytest.mark.parametrize(
    ("select", "seqs", "opened"),
    [
        (Selection(units=("rare.service",)), [4, 5], 2),
        (Selection(units=("none.service",)), [], 1),
        (Selection(units=("r*",)), [4, 5], 2),
        (Selection(units=("none.service", "rare.service")), [4, 5], 2),
        (Selection(user_units=("app.service",)), [12, 13], 2),
        (Selection(user_units=("app.slice",), units=("rare.service",)), [4, 5, 12, 13], 3),
        (Selection(matches=((("unit", "rare.service"),),)), [4, 5], 2),
        (Selection(matches=((("user_slice", "app.slice"), ("app", "web")),)), [12, 13], 2),
        (Selection(matches=((("unit", "rare.service"),), (("user_unit", "app.service"),))),
         [4, 5, 12, 13], 3),
        (Selection(units=("none.service",), matches=((("app", "web"),),)), [], 1),
    ],
)  # fmt: skip
def test_a_unit_query_opens_only_the_files_that_may_hold_it(
    store: Path, select: Selection, seqs: list[int], opened: int, lines_: int | None
) -> None:
    """-u, --user-unit and unit matches open the files whose summary may hold a match and the
    current file (always), and give exactly the records a full read gives, forwards and -n
    (a tail that has its N stops early: fewer files)."""
    out, stats = scan(store, select, lines=lines_)
    expect = seqs[-lines_:] if lines_ and seqs else seqs
    assert [r["seq"] for r in out] == expect
    if lines_ is None or lines_ >= len(seqs):
        assert (stats.files_opened, stats.files_skipped) == (opened, 6 - opened)
    else:
        assert 1 < stats.files_opened <= opened


@pytest.mark.parametrize(
    "select",
    [
        Selection(matches=((("unit", "rare.service"),), (("app", "web"),))),  # a group any file
        Selection(matches=((("fields.unit", "rare.service"),),)),  # a sender's field
        Selection(identifiers=("web",)),
    ],
)
def test_selections_a_summary_cannot_rule_out_read_every_file(
    store: Path, select: Selection
) -> None:
    """A selection with a group that names no unit, or only a sender's field, reads every file."""
    _out, stats = scan(store, select)
    assert (stats.files_opened, stats.files_skipped) == (6, 0)


def test_a_damaged_or_missing_summary_means_the_file_is_read(store: Path) -> None:
    """With the rare file's summary cut short and another's removed, those files are read:
    the same records, more files opened."""
    d = store / str(UID)
    files = rotated(d)
    lines = (d / INDEX).read_bytes().splitlines(keepends=True)
    assert len(lines) == 5
    lines[0] = lines[0][:30] + b"\n"  # cut short
    del lines[3]  # lost
    (d / INDEX).write_bytes(b"".join(lines))
    assert sorted(index(d)) == [files[1], files[2], files[4]]
    out, stats = scan(store, Selection(units=("rare.service",)))
    assert [r["seq"] for r in out] == [4, 5]
    assert (stats.files_opened, stats.files_skipped) == (3, 3)


def test_a_lying_summary_is_believed(store: Path) -> None:
    """The test above can fail: a summary that leaves the unit out makes the scan skip its
    file (the summaries, like the records, are the daemon's to write)."""
    d = store / str(UID)
    lie = b'{"units":1,"file":"%s","unit":["often.service"]}\n' % rotated(d)[0].encode()
    with open(d / INDEX, "ab") as f:
        f.write(lie)  # the last entry of a file counts
    out, stats = scan(store, Selection(units=("rare.service",)))
    assert (out, stats.files_opened) == ([], 1)


def test_summary_of_lines_read_back_equals_the_batches(tmp_path: Path) -> None:
    """The names noted from runs equal those searched in the same lines."""
    b = [unit_batch(1, 2, "a.service"), unit_batch(3, 1, user_unit="b.service"), batch(
        lines(4, 4), 4
    )]  # fmt: skip
    from_runs, from_lines = UnitSet(), UnitSet()
    for x in b:
        if x.names is not None:
            from_runs.note(x.names)
        from_lines.note_lines(x.lines)
    assert from_runs.entry("x") == from_lines.entry("x")
    assert from_runs.entry("x") == (
        b'{"units":1,"file":"x","unit":["a.service"],"slice":["system.slice"],'
        b'"user_unit":["b.service"],"user_slice":["app.slice"]}\n'
    )
