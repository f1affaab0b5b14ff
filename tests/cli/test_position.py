"""logq's record output for cursors and --reverse: what is shown, the cursor after it, the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.query._store import T0, Rec, line
from trio_logd.cli._position import Plan, RecordOutput, write_cursor_file
from trio_logd.query.cursor import Cursor, CursorRequest, Position

LINES = [line(1000, i + 1, Rec(T0 + i, f"m{i}"))[:-1] for i in range(50)]


def _run(plan: Plan, lines: list[bytes], memory: int = 1 << 20) -> tuple[bytes, int]:
    out: list[bytes] = []
    shown = RecordOutput(out.append, lambda ln: ln[-8:] + b"\n", plan, reverse_memory=memory)
    shown.stores({1000: 77})
    taken = 0
    for ln in lines:
        taken += 1
        if not shown(ln):
            break
    shown.finish()
    return b"".join(out), taken


@pytest.mark.parametrize("memory", [0, 100, 1 << 20])
def test_reverse_in_memory_or_spilled_is_newest_first(memory: int) -> None:
    """--reverse prints the records newest first, whether held in memory or in a file."""
    out, _ = _run(Plan(reverse=True), LINES, memory)
    assert out == b"".join(ln[-8:] + b"\n" for ln in reversed(LINES))


def test_head_after_a_cursor_stops_after_n() -> None:
    """-n N after a cursor: N records shown, then no more asked for."""
    out, taken = _run(Plan(head=3), LINES)
    assert (out.count(b"\n"), taken) == (3, 3)


def test_show_cursor_names_the_last_record_shown() -> None:
    """--show-cursor ends with '-- cursor: C', C naming the last record (the oldest with -r)."""
    plan = Plan(request=CursorRequest(stores=True), show_cursor=True)
    out, _ = _run(plan, LINES[:5])
    text = out.splitlines()[-1].removeprefix(b"-- cursor: ").decode()
    assert Cursor.decode(text).positions == (Position(1000, 5, 77),)
    out, _ = _run(
        Plan(request=CursorRequest(stores=True), show_cursor=True, reverse=True), LINES[:5]
    )
    text = out.splitlines()[-1].removeprefix(b"-- cursor: ").decode()
    assert Cursor.decode(text).positions == (Position(1000, 1, 77),)
    out, _ = _run(plan, [])
    assert out == b""  # nothing shown: no cursor


def test_cursor_file_is_replaced_whole(tmp_path: Path) -> None:
    """The cursor file is written beside itself and renamed: no temporary file stays."""
    path = tmp_path / "c"
    path.write_text("old\n")
    write_cursor_file(str(path), "c1.new")
    assert path.read_text() == "c1.new\n"
    assert [p.name for p in tmp_path.iterdir()] == ["c"]
    assert path.stat().st_mode & 0o777 == 0o600
