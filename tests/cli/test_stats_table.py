"""The `trio-logd stats` table: busiest uid first, every figure in its column."""

from __future__ import annotations

from typing import Any

from trio_logd.cli._stats import render_table

NOW = 1_700_000_100.0


def item(uid: int, rate: float, minute: float, **over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "uid": uid,
        "user": None,
        "connections": 1,
        "records_per_s": rate,
        "records_per_s_1m": minute,
        "records": 1500,
        "bytes": 3 << 20,
        "disk_bytes": 64 << 20,
        "quota_bytes": 128 << 20,
        "dropped": {},
        "last_drop": None,
    }
    return {**base, **over}


STATS: dict[str, Any] = {
    "pid": 321,
    "version": "0.1.0",
    "uptime": 3725.0,
    "daemon": {
        "connections": 3,
        "uids": 3,
        "records_per_s": 1250.0,
        "records_per_s_1m": 900.0,
        "dropped": {"rate": 42, "quota": 0},
        "store_errors": 0,
        "reloads": 2,
    },
    "uids": [
        item(0, 50.0, 10.0, user="root"),
        item(
            1000,
            1200.0,
            890.0,
            user="alice",
            dropped={"rate": 42, "connections": 1},
            last_drop=NOW - 75,
        ),
        item(1001, 0.0, 0.0, user="a-very-long-user-name"),
    ],
}


def test_table_rows_sorted_by_rate_with_every_column() -> None:
    """Summary, header, then rows busiest first: rates, sizes, quota use, drops, last drop."""
    lines = render_table(STATS, now=NOW)
    assert lines[0] == (
        "trio-logd 0.1.0 pid 321, up 1h 2m, 3 connections, 3 uids, 1.2k records/s "
        "(1 min: 900/s), drops rate:42, store errors 0, reloads 2"
    )
    assert lines[1] == ""
    assert lines[2].split() == [
        "UID", "USER", "CONN", "REC/S", "1MIN", "RECORDS", "BYTES", "DISK/QUOTA", "USE",
        "DROPS", "LAST", "DROP",
    ]  # fmt: skip
    assert [line.split()[0] for line in lines[3:]] == ["1000", "0", "1001"]
    alice = lines[3].split()
    assert alice[:9] == ["1000", "alice", "1", "1.2k", "890", "1.5k", "3.0M", "64.0M/128M", "50%"]
    assert alice[9:11] == ["connections:1", "rate:42"]
    assert alice[12:] == ["1m", "ago"]  # the clock time before it depends on the time zone
    assert lines[5].split()[1] == "a-very-long…"
    assert lines[4].split()[-1] == "-"


def test_empty_daemon_says_so() -> None:
    """No uid yet: the table says nobody has logged."""
    lines = render_table({"daemon": {}, "uids": []}, now=NOW)
    assert lines[-1] == "(no uid has logged since the daemon started)"


def _header(lines: list[str]) -> list[str]:
    """The column titles of a fitted table (the line after the first blank one)."""
    titles = lines[lines.index("") + 1].replace("LAST DROP", "LAST_DROP").split()
    return [t.replace("_", " ") for t in titles]


def test_fitted_to_80_columns_keeps_use_drops_and_last_drop() -> None:
    """At 80 columns every line fits; USE, DROPS and LAST DROP stay, 1MIN and RECORDS go."""
    lines = render_table(STATS, now=NOW, width=80)
    assert max(map(len, lines)) <= 80
    assert _header(lines) == [
        "UID", "USER", "CONN", "REC/S", "BYTES", "DISK/QUOTA", "USE", "DROPS", "LAST DROP",
    ]  # fmt: skip
    alice = lines[lines.index("") + 2].split()
    assert alice == ["1000", "alice", "1", "1.2k", "3.0M", "64.0M/128M", "50%",
                     "conn:1", "rate:42", "1m", "ago"]  # fmt: skip
    # the summary is wrapped at its commas, nothing lost
    summary = " ".join(lines[: lines.index("")])
    assert summary == render_table(STATS, now=NOW)[0]


def test_narrower_terminals_drop_columns_by_priority() -> None:
    """Narrower and narrower: columns go in a fixed order, UID, REC/S, USE and DROPS last."""
    previous = _header(render_table(STATS, now=NOW, width=200))
    assert len(previous) == 11
    for width in range(100, 29, -1):
        lines = render_table(STATS, now=NOW, width=width)
        assert max(map(len, lines)) <= width, width
        titles = _header(lines)
        assert set(titles) <= set(previous), width  # a column never comes back
        assert {"UID", "REC/S", "USE", "DROPS"} <= set(titles), width
        previous = titles
    assert previous == ["UID", "REC/S", "USE", "DROPS"]


def test_without_a_width_nothing_is_cut() -> None:
    """`trio-logd stats` (no width): full columns, clock time of the last drop, long names."""
    lines = render_table(STATS, now=NOW)
    assert len(lines[0]) > 80
    assert "connections:1" in lines[3]


def test_units_listed_most_drops_first_and_cut_in_top() -> None:
    """stats lists every unit below the uids, most drops first; top (a width) at most ten."""
    units = [
        {"unit": f"u{i:02d}.service", "records": i, "bytes": 0, "connections": 0,
         "dropped": {"rate": i % 3}}
        for i in range(12)
    ]  # fmt: skip
    full = render_table({**STATS, "units": units}, now=NOW)
    start = full.index(next(x for x in full if x.startswith("UNIT")))
    rows = full[start + 1 : start + 13]
    assert [r.split()[0] for r in rows[:4]] == ["u11.service", "u08.service", "u05.service",
                                                "u02.service"]  # fmt: skip
    top = render_table({**STATS, "units": units}, now=NOW, width=100)
    assert top[-1] == "(2 more units: trio-logd stats)"
