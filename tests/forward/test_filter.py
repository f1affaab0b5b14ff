"""A destination's filter: uids before reading, severity and facility per record."""

from __future__ import annotations

import pytest

from trio_logd.forward import RecordFilter


def test_empty_means_everything() -> None:
    """No uids, debug and no facilities: every record of every uid."""
    f = RecordFilter.build(uids=[], min_severity="debug", facilities=[])
    assert f == RecordFilter(None, 7, None)
    assert f.all_records
    assert f.wants_uid(12345)
    assert f.wants({"sev": "debug", "fac": "local7"})


def test_uids() -> None:
    """Only the listed uids are read at all."""
    f = RecordFilter.build(uids=[0, 1000], min_severity="debug", facilities=[])
    assert [u for u in (0, 999, 1000, 1001) if f.wants_uid(u)] == [0, 1000]


@pytest.mark.parametrize(
    ("minimum", "passing"),
    [
        ("emerg", ["emerg"]),
        ("warning", ["emerg", "alert", "crit", "err", "warning"]),
        ("debug", ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"]),
    ],
)
def test_min_severity_keeps_it_and_the_more_severe(minimum: str, passing: list[str]) -> None:
    """min_severity = "warning" forwards warning and everything more severe."""
    f = RecordFilter.build(uids=[], min_severity=minimum, facilities=[])
    sevs = ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"]
    assert [s for s in sevs if f.wants({"sev": s, "fac": "user"})] == passing


def test_facilities() -> None:
    """Only the listed facilities; a record without fac is user (the syslog default)."""
    f = RecordFilter.build(uids=[], min_severity="debug", facilities=["auth", "user"])
    assert not f.all_records
    records = [{"fac": "auth"}, {"fac": "daemon"}, {}, {"fac": "authpriv"}]
    assert [f.wants(r) for r in records] == [True, False, True, False]


def test_unknown_severity_is_refused() -> None:
    """A severity keyword that does not exist is a ValueError naming the choices."""
    with pytest.raises(ValueError, match="unknown severity 'warn': expected one of emerg, "):
        RecordFilter.build(uids=[], min_severity="warn", facilities=[])
