"""What the writer learns from the runs beside the lines, not from the lines' bytes."""

from __future__ import annotations

from pathlib import Path

from tests.store._lines import T0, daemon_line, lines, names
from trio_logd.record import format_ts
from trio_logd.store._layout import RotatedName
from trio_logd.store.runs import LineRun, RunIndex, runs_of_lines
from trio_logd.store.writer import StoreWriter


def _ts(t: float) -> bytes:
    return format_ts(t).encode()


def test_run_index_finds_each_lines_seq_ts_and_event_across_runs() -> None:
    """Line i of several runs has its run's ts and event, and seq counted within the run."""
    runs = [
        LineRun((b"a\n", b"b\n"), 11, _ts(T0)),
        LineRun((b"r\n",), 12, _ts(T0 + 1), "rotated"),
        LineRun((b"c\n", b"d\n", b"e\n"), 20, _ts(T0 + 2)),
    ]
    at = RunIndex(runs)
    assert [at.seq(i) for i in range(6)] == [10, 11, 12, 18, 19, 20]
    assert [at.ts(i) for i in (0, 2, 5)] == [_ts(T0), _ts(T0 + 1), _ts(T0 + 2)]
    assert [at.event(i) for i in range(4)] == [None, None, "rotated", None]
    assert (at.first_record(0, 6), at.first_record(2, 6), at.first_record(2, 3)) == (0, 3, None)


def test_runs_of_lines_read_what_the_encoder_knew() -> None:
    """For bare lines, each line's seq, ts and daemon event are read from its prefix."""
    got = runs_of_lines([*lines(3, 4, ts=T0 + 5), daemon_line(5, "rotated", ts=T0 + 6)], 5)
    assert [(r.last_seq, r.ts, r.event) for r in got] == [
        (3, _ts(T0 + 5), None),
        (4, _ts(T0 + 5), None),
        (5, _ts(T0 + 6), "rotated"),
    ]


def test_append_takes_seq_and_times_from_the_runs(tmp_path: Path) -> None:
    """With runs, a rotated file is named from the runs' seq and ts, as from the lines alone."""
    one = lines(1, 4, ts=T0)
    two = lines(5, 8, ts=T0 + 100)
    for sub, runs in (
        ("bare", None),
        ("runs", [LineRun(one, 4, _ts(T0)), LineRun(two, 8, _ts(T0 + 100))]),
    ):
        store = StoreWriter(str(tmp_path / sub), max_file_bytes=6 * len(one[0]))
        store.open()
        store.append(5, [*one, *two], 8, runs)
        assert store.last_seq(5) == 8
        store.close()
    assert names(tmp_path / "bare" / "5") == names(tmp_path / "runs" / "5")
    (rotated,) = (RotatedName.parse(n) for n in names(tmp_path / "runs" / "5") if "-" in n)
    assert rotated is not None
    assert (rotated.first_seq, rotated.last_seq) == (1, 6)
    assert (rotated.first_time, rotated.last_time) == (T0, T0 + 100)
