"""verify_store: an untouched store is OK; each kind of change is named by file and seq.

The store: seq 1..45 of uid 5, 10 records per file, rotated files zstd- or
gzip-compressed, the oldest deleted by retention: files 11..20, 21..30,
31..40 and current.jsonl (41..45).
"""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from tests.store._lines import T0, line, lines, names
from tests.store._tamper import cut_tail, delete_line, edit_byte, rewrite, swap
from trio_logd.store._layout import RotatedName
from trio_logd.store.verify import Finding, verify_store
from trio_logd.store.writer import StoreWriter

LINE = len(line(1))


def rotated(first: int, suffix: str = "") -> str:
    return RotatedName(first, first + 9, int(T0), int(T0), suffix).format()


def make_store(log_dir: Path, compress: str = "zstd") -> Path:
    w = StoreWriter(str(log_dir), max_file_bytes=10 * LINE, compress=compress)
    w.open()
    w.append(5, lines(1, 45), 45)
    while w.compress_next() is not None:
        pass
    (uid5,) = w.snapshot()
    w.delete(uid5.files[:1])  # retention: the oldest
    w.close()
    return log_dir / "5"


def found(log_dir: Path) -> list[tuple[str, str, int | None, int | None]]:
    """(file, what, first, last) of each problem."""
    return [(f.file, f.what, f.first_seq, f.last_seq) for f in verify_store(log_dir).problems]


# -- the tests ------------------------------------------------------------------------


def test_a_deletion_names_the_rule_that_made_it(tmp_path: Path) -> None:
    """Each deletion mark carries its rule: verify tells pressure (keep_free_bytes,
    max_bytes) from routine retention (max_age, quota), still as notes."""
    w = StoreWriter(str(tmp_path), max_file_bytes=10 * LINE, compress="none")
    w.open()
    w.append(5, lines(1, 45), 45)
    (uid5,) = w.snapshot()
    w.delete([uid5.files[0], uid5.files[2]], ("age", "keep_free"))
    w.close()
    report = verify_store(tmp_path)
    assert report.problems == []
    assert [f.text for f in report.findings] == [
        "seq 1..10: deleted by retention: max_age (recorded)",
        "seq 21..30: deleted under disk pressure: keep_free_bytes (the file system was short "
        "of free space) (recorded)",
    ]


@pytest.mark.parametrize("compress", ["zstd", "gzip", "none"])
def test_an_untouched_store_is_ok(tmp_path: Path, compress: str) -> None:
    """Rotations, compression and a retention deletion: no problem; the deletion is a note."""
    make_store(tmp_path, compress)
    report = verify_store(tmp_path)
    assert report.problems == []
    assert [(f.file, f.what, f.first_seq, f.last_seq) for f in report.findings] == [
        (rotated(1), "deleted", 1, 10),
    ]
    assert (report.uids, report.files, report.records) == (1, 4, 35)


MIDDLE = rotated(21, ".zst")
CASES = {
    "edit a byte (compressed file)": (MIDDLE, edit_byte(25), [(MIDDLE, "changed", 25, 25)]),
    "edit a byte (current file)": (
        "current.jsonl",
        edit_byte(43),
        [("current.jsonl", "changed", 43, 43)],
    ),
    "delete a line": (MIDDLE, delete_line(27), [(MIDDLE, "removed", 27, 27)]),
    # 22 and 23 swapped: either can be the one that moved
    "swap two lines": (MIDDLE, swap(22), [(MIDDLE, "reordered", 23, 23)]),
    "cut the tail of a rotated file": (
        MIDDLE,
        cut_tail(2 * LINE + 7),
        [(MIDDLE, "truncated", 28, 30), (MIDDLE, "truncated", None, None)],
    ),
    "cut the tail of the current file": (
        "current.jsonl",
        cut_tail(2 * LINE),
        [("current.jsonl", "truncated", 44, 45)],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_change_is_named_by_file_and_seq(tmp_path: Path, case: str) -> None:
    """Editing one byte, deleting, swapping, cutting the tail: the file and seq are named."""
    d = make_store(tmp_path)
    name, change, expected = CASES[case]
    rewrite(d / name, change)
    assert found(tmp_path) == expected


def test_a_rotated_file_removed_in_the_middle_is_missing(tmp_path: Path) -> None:
    """Removing a rotated file (with or without its chain) is named with its seq range;
    retention's deletion of the oldest stays a note."""
    d = make_store(tmp_path)
    os.unlink(d / MIDDLE)
    gone = rotated(21)
    assert found(tmp_path) == [
        (gone, "missing", 21, 30),  # the next file continues from it
        (gone, "missing", 21, 30),  # its chain file is still there
    ]
    os.unlink(d / (gone + ".chain"))
    assert found(tmp_path) == [(gone, "missing", 21, 30)]


def test_the_oldest_file_removed_by_hand_is_not_retention(tmp_path: Path) -> None:
    """Only a deletion retention marked is expected: the oldest file removed otherwise is
    missing."""
    d = make_store(tmp_path)
    oldest = rotated(11)
    os.unlink(d / (oldest + ".zst"))
    os.unlink(d / (oldest + ".chain"))
    assert found(tmp_path) == [(oldest, "missing", 11, 20)]


def test_a_record_rewritten_with_a_matching_check_is_caught_by_the_hash(tmp_path: Path) -> None:
    """A change the 16-bit checks do not see (here: the chain's check edited to match) is
    caught by the block's SHA-256, which names the block's records."""
    d = make_store(tmp_path)
    rewrite(d / "current.jsonl", edit_byte(42))
    chain = d / "current.chain"
    import base64
    import zlib

    entries = [orjson.loads(x) for x in chain.read_bytes().splitlines()]
    data = (d / "current.jsonl").read_bytes().splitlines(keepends=True)
    for e in entries:
        if "n" in e:  # one block: 41..45
            e["c"] = base64.b64encode(bytes(zlib.adler32(x) & 0xFF for x in data)).decode()
    chain.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in entries))
    assert found(tmp_path) == [("current.jsonl", "changed", 41, 45)]


def test_an_edited_seal_or_rotated_record_disagrees(tmp_path: Path) -> None:
    """A chain rewritten from the start of a file no longer meets what its successor and
    the `rotated` record recorded."""
    d = make_store(tmp_path)
    first = d / (rotated(11) + ".chain")
    entries = [orjson.loads(x) for x in first.read_bytes().splitlines()]
    entries[-1]["seal"]["hash"] = "ab" * 32
    first.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in entries))
    problems = verify_store(tmp_path).problems
    assert {(f.file, f.what) for f in problems} == {
        (rotated(11, ".zst"), "mismatch"),  # its seal is not its chain's hash
        (rotated(21, ".zst"), "mismatch"),  # the next file starts elsewhere
    }


def test_a_file_without_its_chain_after_chained_ones_is_a_problem(tmp_path: Path) -> None:
    """A chain file removed: its record file cannot be verified, which is a problem."""
    d = make_store(tmp_path)
    os.unlink(d / (rotated(31) + ".chain"))
    assert ("unchained", rotated(31, ".zst")) in {
        (f.what, f.file) for f in verify_store(tmp_path).problems
    }


def test_records_appended_to_a_sealed_file_are_added(tmp_path: Path) -> None:
    """A line added at the end of a rotated file is outside its seal."""
    d = make_store(tmp_path)
    rewrite(d / MIDDLE, lambda data: [*data, line(99)])
    assert found(tmp_path) == [(MIDDLE, "added", 99, 99)]


def test_verify_describes_findings_in_one_line() -> None:
    """A finding reads 'UID/FILE: seq A..B: what happened'."""
    f = Finding(5, "current.jsonl", "removed", "seq 3..4: removed", True, 3, 4)
    assert f.describe() == "5/current.jsonl: seq 3..4: removed"
    assert f.as_dict() == {
        "uid": 5, "file": "current.jsonl", "what": "removed", "problem": True,
        "text": "seq 3..4: removed", "first_seq": 3, "last_seq": 4,
    }  # fmt: skip


def test_a_store_written_before_chains_is_a_note(tmp_path: Path) -> None:
    """Files without chains older than every chained file are not verifiable, not a problem."""
    d = make_store(tmp_path)
    for n in os.listdir(d):
        if n.endswith(".chain"):
            os.unlink(d / n)
    w = StoreWriter(str(tmp_path))
    w.open()  # an upgrade: the current file gets a chain from what it holds
    w.close()
    report = verify_store(tmp_path)
    assert report.problems == []
    assert [(f.what, f.file) for f in report.findings] == [
        ("legacy", rotated(11, ".zst")),
        ("legacy", rotated(21, ".zst")),
        ("legacy", rotated(31, ".zst")),
        ("recovered", "current.jsonl"),
    ]
    assert names(d)[-1] == "current.jsonl"


def test_a_rotation_cut_between_its_renames_is_a_note(tmp_path: Path) -> None:
    """Record file renamed, chain not yet (a crash): verify pairs them and says so."""
    d = make_store(tmp_path)
    w = StoreWriter(str(tmp_path))
    w.open()
    uf = w._files[5]
    assert uf.chain is not None
    name = RotatedName(41, 45, int(T0), int(T0), "").format()
    uf.chain.seal(name, 41, 45, 5 * LINE)
    os.rename(d / "current.jsonl", d / name)  # the crash comes before the chain's rename
    report = verify_store(tmp_path)
    assert report.problems == []
    assert (name, "interrupted") in {(f.file, f.what) for f in report.findings}


def test_an_emptied_chain_beside_whole_records_is_a_note(tmp_path: Path) -> None:
    """fsck left a rotated file's chain empty, its records whole: a note with the reason."""
    d = make_store(tmp_path)
    (d / (rotated(21) + ".chain")).write_bytes(b"")
    report = verify_store(tmp_path)
    assert report.problems == []
    (emptied,) = (f for f in report.findings if f.what == "emptied")
    assert (emptied.file, emptied.first_seq, emptied.last_seq) == (rotated(21, ".zst"), 21, 30)
    assert "file-system repair" in emptied.text


def test_an_emptied_chain_beside_edited_records_is_a_problem(tmp_path: Path) -> None:
    """An empty chain does not hide a removed record: the file no longer matches its name."""
    d = make_store(tmp_path)
    (d / (rotated(21) + ".chain")).write_bytes(b"")
    rewrite(d / rotated(21, ".zst"), lambda data: data[:-1])
    assert found(tmp_path) == [(rotated(21, ".zst"), "emptied", None, None)]


def test_an_emptied_current_chain_is_remade_at_start(tmp_path: Path) -> None:
    """current.chain found empty at start is made anew (not set aside as damaged); its
    records are chained as at a start after a crash."""
    w = StoreWriter(str(tmp_path), max_file_bytes=10 * LINE)
    w.open()
    w.append(5, lines(1, 25), 25)
    w.close()
    d = tmp_path / "5"
    (d / "current.chain").write_bytes(b"")
    before = verify_store(tmp_path)  # before the next start: a note too
    assert [(f.what, f.problem) for f in before.findings] == [("emptied", False)]
    w = StoreWriter(str(tmp_path), max_file_bytes=10 * LINE)
    w.open()
    w.close()
    assert not [n for n in os.listdir(d) if n.endswith((".partial", ".tmp"))]
    report = verify_store(tmp_path)
    assert report.problems == []
    assert [(f.what, f.first_seq, f.last_seq) for f in report.findings] == [("recovered", 21, 25)]
