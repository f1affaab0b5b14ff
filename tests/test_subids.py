"""subuid(5)/subgid(5) tables: parsing, overlaps, one-bisect owner lookup, files that change."""

from __future__ import annotations

from pathlib import Path

import pytest

from trio_logd.subids import (
    EMPTY,
    MAX_FILE_BYTES,
    SubidTable,
    file_stamp,
    load_subids,
    parse_subids,
)

USERS = {"alice": 1000, "bob": 1001}


def table(text: str) -> SubidTable:
    return parse_subids(text, USERS.get)


def test_owner_of_names_and_numbers() -> None:
    """Owners by name (as useradd writes them) or by uid; ids outside every range have none."""
    t = table("alice:100000:65536\n1001:165536:65536\n")
    assert [t.owner_of(i) for i in (99999, 100000, 165535, 165536, 231071, 231072)] == [
        None, 1000, 1000, 1001, 1001, None,
    ]  # fmt: skip
    assert t.ranges_of(1000) == ((100000, 165536),)
    assert t.ranges_of(7) == ()


def test_bad_lines_are_skipped_and_counted() -> None:
    """Comments and blanks are ignored; malformed lines and unknown names skipped, counted."""
    t = table("# c\n\nalice:1:x\nnobody:5:5\nalice:200:0\nalice:-1:5\nbob:10:5:extra\nbob:10:5\n")
    assert (t.starts, t.ends, t.owners, t.skipped) == ((10,), (15,), (1001,), 5)


def test_overlap_first_line_wins() -> None:
    """Where ranges overlap (a mistake in the file) the line written first keeps its ids."""
    t = table("alice:100:100\nbob:150:100\nbob:50:20\n")
    assert [t.owner_of(i) for i in (50, 99, 100, 199, 200, 249, 250)] == [
        1001, None, 1000, 1000, 1001, 1001, None,
    ]  # fmt: skip


def test_uid_zero_is_nobodys() -> None:
    """A range starting at 0 delegates everything but root."""
    t = table("alice:0:10\n")
    assert (t.owner_of(0), t.owner_of(1), t.owner_of(9)) == (None, 1000, 1000)


def test_load_reads_both_files_and_their_stamps(tmp_path: Path) -> None:
    """Absent, oversized or present: no ids, no ids, the file's ranges; stamps tell changes."""
    subuid, subgid = tmp_path / "subuid", tmp_path / "subgid"
    got = load_subids((str(subuid), str(subgid)), USERS.get)
    assert (got.uids, got.gids, got.stamps) == (EMPTY, EMPTY, (None, None))
    subuid.write_text("alice:100000:65536\n")
    subgid.write_bytes(b"x" * (MAX_FILE_BYTES + 1))
    got = load_subids((str(subuid), str(subgid)), USERS.get)
    assert (got.uids.owner_of(100001), len(got.gids)) == (1000, 0)
    assert got.stamps == (file_stamp(str(subuid)), file_stamp(str(subgid)))
    subuid.write_text("bob:100000:65536\n")
    assert file_stamp(str(subuid)) != got.stamps[0]


@pytest.mark.parametrize("n", [1, 50])
def test_owner_of_is_a_bisect_over_many_ranges(n: int) -> None:
    """Every id of every one of n users' ranges maps to its user (ends exclusive)."""
    text = "".join(f"{2000 + u}:{100000 + u * 65536}:65536\n" for u in reversed(range(n)))
    t = parse_subids(text, USERS.get)
    for u in range(n):
        start = 100000 + u * 65536
        assert (t.owner_of(start - 1), t.owner_of(start), t.owner_of(start + 65535)) == (
            2000 + u - 1 if u else None, 2000 + u, 2000 + u,
        )  # fmt: skip
