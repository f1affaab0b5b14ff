"""--since/--until times: every form, against a fixed clock and zone."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from trio_logd.query.timespec import parse_time, ts_bound, ts_to_epoch

BERLIN = ZoneInfo("Europe/Berlin")
# 2026-11-27 21:47:40.5 in Berlin (UTC+1): 20:47:40.5Z
NOW = dt.datetime(2026, 11, 27, 21, 47, 40, 500000, tzinfo=BERLIN).timestamp()


def at(
    y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0, us: int = 0,
    tz: dt.tzinfo = BERLIN,
) -> float:  # fmt: skip
    return dt.datetime(y, mo, d, h, mi, s, us, tzinfo=tz).timestamp()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", NOW),
        ("today", at(2026, 11, 27)),
        ("yesterday", at(2026, 11, 26)),
        ("Tomorrow", at(2026, 11, 28)),
        ("-1h", NOW - 3600),
        ("+30m", NOW + 1800),
        ("- 1h30m", NOW - 5400),
        ("2d ago", NOW - 2 * 86400),
        ("@1700000000.25", 1700000000.25),
        ("21:00", at(2026, 11, 27, 21, 0)),
        ("08:15:30", at(2026, 11, 27, 8, 15, 30)),
        ("2026-11-20", at(2026, 11, 20)),
        ("2026-11-20 10:11", at(2026, 11, 20, 10, 11)),
        ("2026-11-20T10:11:12", at(2026, 11, 20, 10, 11, 12)),
        ("2026-11-20T10:11:12Z", at(2026, 11, 20, 10, 11, 12, tz=dt.UTC)),
        ("2026-11-20T10:11:12.5+05:00", at(2026, 11, 20, 5, 11, 12, 500000, tz=dt.UTC)),
        ("2026-07-01", at(2026, 7, 1)),  # summer time: UTC+2
    ],
)
def test_parse_time_forms(text: str, expected: float) -> None:
    """Each journalctl-style form names the expected moment (local = the given zone)."""
    assert parse_time(text, now=NOW, tz=BERLIN) == expected


def test_yesterday_across_a_dst_change() -> None:
    """'yesterday' is local midnight even when the day had 25 hours."""
    now = at(2026, 10, 26, 12, 0)  # the day after summer time ended
    assert parse_time("yesterday", now=now, tz=BERLIN) == at(2026, 10, 25)
    assert parse_time("today", now=now, tz=BERLIN) - at(2026, 10, 25) == 25 * 3600


@pytest.mark.parametrize("text", ["", "soon", "-1 fortnight", "25:00", "2026-13-01", "@x", "1h"])
def test_bad_times_are_refused_naming_the_input(text: str) -> None:
    """Anything else is a ValueError that quotes the input and lists the forms."""
    with pytest.raises(ValueError, match="invalid time") as info:
        parse_time(text, now=NOW, tz=BERLIN)
    assert repr(text) in str(info.value)


def test_ts_bound_round_trips_with_records_ts() -> None:
    """A bound is in the records' fixed ts form and reads back to the same moment."""
    bound = ts_bound(at(2026, 11, 20, 10, 11, 12, 345678, tz=dt.UTC))
    assert bound == "2026-11-20T10:11:12.345678Z"
    assert ts_to_epoch(bound) == at(2026, 11, 20, 10, 11, 12, 345678, tz=dt.UTC)


@pytest.mark.parametrize("ts", ["2026-11-20T10:11:12Z", "2026-11-20 10:11:12.000000Z", "x" * 27])
def test_ts_to_epoch_wants_the_record_form(ts: str) -> None:
    """Only YYYY-MM-DDTHH:MM:SS.ffffffZ is a record-form ts."""
    with pytest.raises(ValueError, match=r"expected YYYY-MM-DDTHH:MM:SS\.ffffffZ"):
        ts_to_epoch(ts)


def test_ts_bound_out_of_range() -> None:
    """A moment past year 9999 is refused, not crashed on."""
    with pytest.raises(ValueError, match="out of range"):
        ts_bound(1e14)
