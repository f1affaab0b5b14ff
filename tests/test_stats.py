"""RateHistory: rates over trailing windows from cumulative counters (pure, times passed in)."""

from __future__ import annotations

import pytest

from trio_logd.stats import Counts, RateHistory, Rates


def test_rate_over_the_last_second_and_minute() -> None:
    """100 records/s for a minute: both windows say 100/s, bytes likewise."""
    h = RateHistory(start=0.0)
    for t in range(1, 61):
        h.sample(float(t), {7: Counts(100 * t, 1000 * t)})
    now, current = 60.0, Counts(6000, 60000)
    assert h.rates(7, now, current, 1.0) == Rates(100.0, 1000.0)
    assert h.rates(7, now, current, 60.0) == Rates(100.0, 1000.0)


def test_burst_shows_now_then_fades_from_the_minute() -> None:
    """600 records in one second: 600/s now, 10/s over the minute; a minute later, zero."""
    h = RateHistory(start=0.0)
    for t in range(1, 61):
        h.sample(float(t), {1: Counts(0 if t < 60 else 600, 0)})
    assert h.rates(1, 60.0, Counts(600, 0), 1.0).records == 600.0
    assert h.rates(1, 60.0, Counts(600, 0), 60.0).records == 10.0
    for t in range(61, 122):
        h.sample(float(t), {1: Counts(600, 0)})
    assert h.rates(1, 121.0, Counts(600, 0), 60.0) == Rates(0.0, 0.0)


def test_uid_first_seen_counts_its_first_records() -> None:
    """A uid that appears between two ticks had zero at the tick before: nothing is lost."""
    h = RateHistory(start=0.0)
    h.sample(1.0, {})
    h.sample(2.0, {5: Counts(50, 0)})
    assert h.rates(5, 2.0, Counts(50, 0), 1.0).records == 50.0


def test_younger_than_the_window_divides_by_uptime() -> None:
    """Ten seconds after start, the one-minute rate is records over ten seconds."""
    h = RateHistory(start=100.0)
    for t in range(101, 111):
        h.sample(float(t), {3: Counts(20 * (t - 100), 0)})
    assert h.rates(3, 110.0, Counts(200, 0), 60.0).records == 20.0


def test_counts_between_ticks_are_included() -> None:
    """Records since the last tick count: the span runs to now, not to the last tick."""
    h = RateHistory(start=0.0)
    h.sample(1.0, {2: Counts(0, 0)})
    h.sample(2.0, {2: Counts(0, 0)})
    assert h.rates(2, 2.5, Counts(30, 0), 1.0).records == pytest.approx(30 / 1.5)


def test_idle_uids_keep_one_sample() -> None:
    """Samples are kept only on change and pruned past the horizon: an idle uid costs one entry."""
    h = RateHistory(start=0.0, horizon=10.0)
    for t in range(1, 200):
        h.sample(float(t), {9: Counts(1, 1)})
    assert len(h._samples[9]) == 1
    assert len(h._ticks) <= 12
    assert h.rates(9, 199.0, Counts(1, 1), 10.0) == Rates(0.0, 0.0)


def test_unknown_key_and_no_time_give_zero() -> None:
    """A uid never sampled has rate = count over the span; at the start instant, zero."""
    h = RateHistory(start=0.0)
    assert h.rates(1, 0.0, Counts(5, 5), 1.0) == Rates(0.0, 0.0)
    assert h.rates(1, 2.0, Counts(4, 8), 60.0) == Rates(2.0, 4.0)
