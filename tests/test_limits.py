"""Limits: token buckets, per-uid rate limiting, connection caps, quotas, drop reports."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_logd.config import Limits, default_config
from trio_logd.limits import (
    DROP_REASONS,
    SUPPRESSION_WINDOW,
    ConnectionCounter,
    ConnectionStatistics,
    ControlConnections,
    QuotaLedger,
    RateLimiter,
    Suppressed,
    SuppressionTracker,
    TokenBucket,
)

#: Float slack allowed in the bound checks (see limits._EPSILON).
SLACK = 1e-6


def limits(
    rate_messages: int = 10,
    burst_messages: int = 20,
    rate_bytes: int = 1000,
    burst_bytes: int = 4000,
) -> Limits:
    return dataclasses.replace(
        default_config().limits_default,
        rate_messages=rate_messages,
        burst_messages=burst_messages,
        rate_bytes=rate_bytes,
        burst_bytes=burst_bytes,
    )


# --------------------------------------------------------------------------- TokenBucket


def test_bucket_starts_full() -> None:
    """A new bucket holds burst tokens."""
    bucket = TokenBucket(rate=2, burst=5, now=100.0)
    assert (bucket.available(100.0), bucket.rate, bucket.burst) == (5.0, 2.0, 5.0)


def test_take_admits_some_or_all() -> None:
    """take admits as many as there are whole tokens for, and takes only those."""
    bucket = TokenBucket(rate=1, burst=5, now=0.0)
    assert [bucket.take(3, 0.0), bucket.take(3, 0.0), bucket.take(3, 0.0)] == [3, 2, 0]
    assert bucket.available(0.0) == 0.0


def test_take_zero() -> None:
    """take(0) admits nothing and takes nothing."""
    bucket = TokenBucket(rate=1, burst=5, now=0.0)
    assert (bucket.take(0, 0.0), bucket.available(0.0)) == (0, 5.0)


def test_try_take_is_all_or_nothing() -> None:
    """try_take takes every token asked for, or none."""
    bucket = TokenBucket(rate=1, burst=5, now=0.0)
    assert [bucket.try_take(4, 0.0), bucket.try_take(2, 0.0), bucket.try_take(1, 0.0)] == [
        True,
        False,
        True,
    ]
    assert bucket.available(0.0) == 0.0


def test_refill_at_rate_capped_at_burst() -> None:
    """Tokens come back at rate per second, never beyond burst."""
    bucket = TokenBucket(rate=10, burst=50, now=0.0)
    bucket.take(50, 0.0)
    assert [bucket.available(t) for t in (0.5, 2.0, 5.0, 1000.0)] == [5.0, 20.0, 50.0, 50.0]


def test_fractional_refill_admits_on_time() -> None:
    """Float rounding does not cost a token: 0.3 s - 0.1 s at 10/s admits 2."""
    bucket = TokenBucket(rate=10, burst=10, now=0.0)
    bucket.take(10, 0.1)
    assert bucket.take(5, 0.3) == 2


def test_clock_step_back_mints_nothing() -> None:
    """A now earlier than the last one neither adds tokens nor moves the bucket's clock back."""
    bucket = TokenBucket(rate=1, burst=10, now=100.0)
    bucket.take(10, 100.0)
    assert bucket.take(10, 50.0) == 0
    # Back at 101 s only one second has passed since the last real use.
    assert bucket.take(10, 101.0) == 1


def test_delay_for() -> None:
    """delay_for says how long until n tokens are there; 0 when they are, inf beyond burst."""
    bucket = TokenBucket(rate=4, burst=10, now=0.0)
    bucket.take(10, 0.0)
    assert [
        bucket.delay_for(2, 0.0),
        bucket.delay_for(2, 0.25),
        bucket.delay_for(2, 1.0),
        bucket.delay_for(11, 1.0),
    ] == [0.5, 0.25, 0.0, math.inf]


def test_delay_for_after_clock_step_back() -> None:
    """After a clock step back, delay_for includes the time to reach the last now again."""
    bucket = TokenBucket(rate=1, burst=10, now=100.0)
    bucket.take(10, 100.0)
    assert bucket.delay_for(1, 99.0) == 2.0


def test_reconfigure_keeps_balance_and_clips_to_burst() -> None:
    """reconfigure counts accrued tokens at the old rate, then clips them to the new burst."""
    bucket = TokenBucket(rate=1, burst=100, now=0.0)
    bucket.take(100, 0.0)
    bucket.reconfigure(rate=10, burst=5, now=30.0)  # 30 tokens accrued, clipped to 5
    assert (bucket.available(30.0), bucket.available(31.0)) == (5.0, 5.0)


def test_reconfigure_larger_burst_adds_no_tokens() -> None:
    """A reload that raises burst is not a free burst."""
    bucket = TokenBucket(rate=1, burst=10, now=0.0)
    bucket.take(10, 0.0)
    bucket.reconfigure(rate=1, burst=1000, now=2.0)
    assert (bucket.available(2.0), bucket.available(12.0)) == (2.0, 12.0)


@pytest.mark.parametrize(
    ("rate", "burst"), [(0, 1), (-1, 1), (math.inf, 1), (1, 0.5), (1, math.nan)]
)
def test_bucket_refuses_bad_parameters(rate: float, burst: float) -> None:
    """rate must be positive and finite, burst at least 1."""
    with pytest.raises(ValueError, match="must be"):
        TokenBucket(rate, burst, 0.0)


def test_bucket_refuses_negative_amounts() -> None:
    """Taking a negative number of tokens is a ValueError."""
    bucket = TokenBucket(1, 1, 0.0)
    with pytest.raises(ValueError, match="cannot take -1 tokens"):
        bucket.take(-1, 0.0)
    with pytest.raises(ValueError, match="cannot take -1 tokens"):
        bucket.try_take(-1, 0.0)


def assert_window_bound(events: list[tuple[float, float]], rate: float, burst: float) -> None:
    """Over every window [t_i, t_j] of the events, at most burst + rate * (t_j - t_i) passed."""
    for i, (start, _) in enumerate(events):
        total = 0.0
        for end, amount in events[i:]:
            total += amount
            assert total <= burst + rate * (end - start) + SLACK


schedule = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=3, allow_nan=False),
        st.integers(min_value=0, max_value=40),
        st.booleans(),
    ),
    max_size=60,
)


@given(
    rate=st.floats(min_value=0.01, max_value=1000),
    burst=st.integers(min_value=1, max_value=100),
    steps=schedule,
)
def test_bucket_never_admits_more_than_burst_plus_rate_times_t(
    rate: float, burst: int, steps: list[tuple[float, int, bool]]
) -> None:
    """Any schedule of take/try_take: every window of length t admits at most burst + rate*t."""
    bucket = TokenBucket(rate, burst, 0.0)
    now = 0.0
    events = []
    for step, n, all_or_nothing in steps:
        now += step
        admitted = (n if bucket.try_take(n, now) else 0) if all_or_nothing else bucket.take(n, now)
        assert 0 <= admitted <= n
        events.append((now, float(admitted)))
    assert_window_bound(events, rate, burst)


@given(
    rate=st.floats(min_value=0.01, max_value=1000),
    burst=st.integers(min_value=1, max_value=100),
    steps=st.lists(
        st.tuples(st.floats(min_value=-5, max_value=3), st.integers(min_value=0, max_value=40)),
        max_size=60,
    ),
)
def test_bucket_bound_holds_with_clock_steps_back(
    rate: float, burst: int, steps: list[tuple[float, int]]
) -> None:
    """With a clock that may step back, the bound holds on the latest time seen."""
    bucket = TokenBucket(rate, burst, 0.0)
    now = latest = 0.0
    events = []
    for step, n in steps:
        now += step
        latest = max(latest, now)
        events.append((latest, float(bucket.take(n, now))))
    assert_window_bound(events, rate, burst)


@given(
    rate=st.floats(min_value=0.01, max_value=1000),
    burst=st.integers(min_value=1, max_value=100),
    used=st.integers(min_value=0, max_value=100),
    n=st.integers(min_value=1, max_value=100),
    elapsed=st.floats(min_value=0, max_value=10),
)
def test_waiting_delay_for_is_enough(
    rate: float, burst: int, used: int, n: int, elapsed: float
) -> None:
    """Waiting delay_for(n) seconds always makes try_take(n) succeed when n <= burst."""
    n = min(n, burst)
    bucket = TokenBucket(rate, burst, 0.0)
    bucket.take(used, 0.0)
    delay = bucket.delay_for(n, elapsed)
    assert bucket.try_take(n, elapsed + delay)


# --------------------------------------------------------------------------- RateLimiter


def test_config_limits_drive_the_rate_limiter() -> None:
    """Limits from the config are accepted as they are (RateSpec)."""
    limiter = RateLimiter()
    spec = default_config().limits_default
    assert limiter.admit(1000, [100] * 5, spec, 0.0) == 5


def test_admit_longest_prefix_records_bucket() -> None:
    """With record tokens short, the first records of the batch pass and the rest do not."""
    limiter = RateLimiter()
    spec = limits(burst_messages=3)
    assert [limiter.admit(1000, [10] * 5, spec, 0.0), limiter.admit(1000, [10], spec, 0.0)] == [
        3,
        0,
    ]


def test_admit_longest_prefix_bytes_bucket() -> None:
    """With byte tokens short, the prefix stops at the first record that does not fit."""
    limiter = RateLimiter()
    spec = limits(burst_bytes=1000)
    # 400 + 500 fit, 200 would make 1100: the prefix stops there even though 50 would fit.
    assert limiter.admit(1000, [400, 500, 200, 50], spec, 0.0) == 2
    assert limiter.admit(1000, [100], spec, 0.0) == 1
    assert limiter.admit(1000, [1], spec, 0.0) == 0


def test_admit_charges_both_buckets_only_for_admitted() -> None:
    """Records not admitted cost nothing in either bucket."""
    limiter = RateLimiter()
    spec = limits(burst_messages=2, burst_bytes=1000, rate_messages=1, rate_bytes=1)
    assert limiter.admit(7, [100, 100, 100], spec, 0.0) == 2
    # one second later: 1 record token back, 800 + 1 bytes left
    assert limiter.admit(7, [801], spec, 1.0) == 1


def test_record_larger_than_burst_bytes_costs_a_full_bucket() -> None:
    """A record larger than burst_bytes can still pass, once the bytes bucket is full."""
    limiter = RateLimiter()
    spec = limits(burst_bytes=1000, rate_bytes=100)
    assert limiter.admit(1, [5000], spec, 0.0) == 1
    assert limiter.admit(1, [5000], spec, 5.0) == 0
    assert limiter.delay_for(1, 5000, spec, 5.0) == 5.0
    assert limiter.admit(1, [5000], spec, 10.0) == 1


def test_uids_are_independent() -> None:
    """One uid at its limit does not reduce another uid's allowance."""
    limiter = RateLimiter()
    spec = limits(burst_messages=5)
    assert [
        limiter.admit(1000, [1] * 100, spec, 0.0),
        limiter.admit(1001, [1] * 100, spec, 0.0),
    ] == [5, 5]


def test_delay_for_takes_the_slower_bucket() -> None:
    """delay_for is the wait of whichever bucket needs longer for one record."""
    limiter = RateLimiter()
    spec = limits(rate_messages=10, burst_messages=1, rate_bytes=100, burst_bytes=1000)
    limiter.admit(1, [1000], spec, 0.0)
    assert (limiter.delay_for(1, 10, spec, 0.0), limiter.delay_for(1, 500, spec, 0.0)) == (
        0.1,
        5.0,
    )


def test_changed_limits_reconfigure_without_reset() -> None:
    """New limits (a reload) keep the uid's spent tokens: the new burst is no fresh start."""
    limiter = RateLimiter()
    assert limiter.admit(1, [1] * 50, limits(burst_messages=20), 0.0) == 20
    assert limiter.admit(1, [1] * 50, limits(burst_messages=40, rate_messages=10), 1.0) == 10


def test_equal_limits_objects_do_not_reconfigure() -> None:
    """An equal but distinct Limits object (another connection's) leaves the buckets alone."""
    limiter = RateLimiter()
    assert limiter.admit(1, [1] * 15, limits(burst_messages=20), 0.0) == 15
    assert limiter.admit(1, [1] * 15, limits(burst_messages=20), 0.0) == 5


def test_prune_forgets_only_full_buckets() -> None:
    """prune drops uids whose buckets have refilled, which is exactly a fresh start."""
    limiter = RateLimiter()
    spec = limits(rate_messages=10, burst_messages=10, rate_bytes=1000, burst_bytes=1000)
    limiter.admit(1, [100], spec, 0.0)
    limiter.admit(2, [100] * 10, spec, 0.5)
    assert (limiter.prune(1.0), len(limiter)) == (1, 1)
    assert (limiter.prune(2.0), len(limiter)) == (1, 0)


@given(
    steps=st.lists(
        st.tuples(
            st.floats(min_value=0, max_value=2, allow_nan=False),
            st.lists(st.integers(min_value=0, max_value=600), max_size=8),
        ),
        max_size=40,
    ),
)
def test_rate_limiter_respects_both_bounds(steps: list[tuple[float, list[int]]]) -> None:
    """Over any window, admitted records and bytes stay within burst + rate * t each."""
    spec = limits(rate_messages=5, burst_messages=8, rate_bytes=500, burst_bytes=1000)
    limiter = RateLimiter()
    now = 0.0
    records, nbytes = [], []
    for step, sizes in steps:
        now += step
        k = limiter.admit(42, sizes, spec, now)
        assert 0 <= k <= len(sizes)
        records.append((now, float(k)))
        nbytes.append((now, float(sum(sizes[:k]))))
    assert_window_bound(records, 5, 8)
    assert_window_bound(nbytes, 500, 1000)


# --------------------------------------------------------------------------- ConnectionCounter


def test_per_uid_cap() -> None:
    """A uid may hold per_uid_max connections; the next is refused and counted."""
    counter = ConnectionCounter(global_max=100, headroom=2)
    assert [counter.try_open(1000, 2) for _ in range(3)] == [True, True, False]
    assert (counter.count(1000), counter.refused(1000), counter.total) == (2, 1, 2)


def test_headroom_reserved_for_privileged() -> None:
    """Near the global cap only privileged uids may open, up to the cap itself."""
    counter = ConnectionCounter(global_max=5, headroom=2)
    assert [counter.try_open(1000, 10) for _ in range(4)] == [True, True, True, False]
    assert counter.try_open(1001, 10) is False
    assert [counter.try_open(0, 10, privileged=True) for _ in range(3)] == [True, True, False]
    assert counter.statistics() == ConnectionStatistics(
        total=5,
        global_max=5,
        headroom=2,
        open_by_uid={1000: 3, 0: 2},
        refused_by_uid={1000: 1, 1001: 1, 0: 1},
    )


def test_privileged_still_bound_by_per_uid_cap() -> None:
    """Privilege opens the headroom, not the per-uid cap."""
    counter = ConnectionCounter(global_max=100, headroom=10)
    assert [counter.try_open(0, 1, privileged=True) for _ in range(2)] == [True, False]


def test_close_frees_a_slot() -> None:
    """close makes room for another connection of the uid."""
    counter = ConnectionCounter(global_max=10, headroom=0)
    assert counter.try_open(5, 1)
    counter.close(5)
    assert (counter.count(5), counter.total, counter.try_open(5, 1)) == (0, 0, True)


def test_close_without_open_is_a_bug() -> None:
    """Closing more than was opened raises ValueError."""
    counter = ConnectionCounter(global_max=10, headroom=0)
    with pytest.raises(ValueError, match="uid 5 has no open connection"):
        counter.close(5)


def test_reconfigure_keeps_open_connections() -> None:
    """A lower cap on reload closes nothing; new connections wait until below it."""
    counter = ConnectionCounter(global_max=10, headroom=0)
    for _ in range(6):
        counter.try_open(1, 10)
    counter.reconfigure(global_max=4, headroom=1)
    assert (counter.total, counter.try_open(2, 10), counter.try_open(0, 10, privileged=True)) == (
        6,
        False,
        False,
    )
    for _ in range(3):
        counter.close(1)
    assert (counter.try_open(2, 10), counter.try_open(2, 10)) == (False, False)
    assert counter.try_open(0, 10, privileged=True) is True


@pytest.mark.parametrize(("global_max", "headroom"), [(0, 0), (5, 5), (5, -1)])
def test_counter_refuses_bad_caps(global_max: int, headroom: int) -> None:
    """global_max >= 1 and 0 <= headroom < global_max."""
    with pytest.raises(ValueError, match="need global_max >= 1"):
        ConnectionCounter(global_max, headroom)


# --------------------------------------------------------------------------- ControlConnections


def test_control_per_uid_cap_names_its_limit() -> None:
    """An ordinary uid gets per_uid_max connections; the next is refused by that key."""
    conns = ControlConnections(global_max=100, per_uid_max=3, headroom=10)
    assert [conns.try_open(1000, privileged=False) for _ in range(4)] == [
        None,
        None,
        None,
        "max_connections_per_uid",
    ]
    assert conns.try_open(1001, privileged=False) is None
    assert (conns.count(1000), conns.total, conns.by_limit) == (
        3,
        4,
        {"max_connections_per_uid": 1},
    )


def test_control_headroom_is_for_privileged_only() -> None:
    """Ordinary uids fill global_max - headroom; privileged ones the rest, past per-uid caps."""
    conns = ControlConnections(global_max=10, per_uid_max=2, headroom=3)
    got = [conns.try_open(uid, privileged=False) for uid in (1000, 1000, 1001, 1001, 1002, 1002)]
    assert got == [None] * 6
    assert conns.try_open(1003, privileged=False) is None
    assert conns.total == 7
    assert conns.try_open(1004, privileged=False) == "max_connections"
    assert [conns.try_open(0, privileged=True) for _ in range(4)] == [
        None,
        None,
        None,
        "max_connections",
    ]
    assert conns.count(0) == 3
    stats = conns.counter.statistics()
    assert (stats.total, stats.global_max, stats.headroom) == (10, 10, 3)
    assert dict(stats.refused_by_uid) == {1004: 1, 0: 1}
    assert conns.by_limit == {"max_connections": 2}


def test_control_close_frees_a_place_and_reconfigure_keeps_open() -> None:
    """close() lets the uid in again; a smaller cap on reload refuses new ones only."""
    conns = ControlConnections(global_max=10, per_uid_max=2, headroom=0)
    assert conns.try_open(5, privileged=False) is None
    assert conns.try_open(5, privileged=False) is None
    conns.reconfigure(10, 1, 0)
    assert conns.count(5) == 2
    assert conns.try_open(5, privileged=False) == "max_connections_per_uid"
    conns.close(5)
    assert conns.try_open(5, privileged=False) == "max_connections_per_uid"
    conns.close(5)
    assert conns.try_open(5, privileged=False) is None
    conns.close(5)
    with pytest.raises(ValueError, match="no open connection"):
        conns.close(5)


@pytest.mark.parametrize(("global_max", "per_uid", "headroom"), [(0, 1, 0), (5, 1, 5), (5, 0, 1)])
def test_control_connections_refuse_bad_caps(global_max: int, per_uid: int, headroom: int) -> None:
    """global_max >= 1, per_uid_max >= 1, 0 <= headroom < global_max."""
    with pytest.raises(ValueError, match="need"):
        ControlConnections(global_max, per_uid, headroom)


# --------------------------------------------------------------------------- QuotaLedger


def test_quota_ledger_bookkeeping() -> None:
    """set, add and sub keep per-uid usage and the total in step."""
    ledger = QuotaLedger()
    ledger.set(1000, 500)
    ledger.add(1000, 300)
    ledger.add(1001, 50)
    ledger.sub(1000, 100)
    assert (ledger.usage(1000), ledger.usage(1001), ledger.usage(7), ledger.total()) == (
        700,
        50,
        0,
        750,
    )


def test_quota_over() -> None:
    """over_quota and over_total give the excess in bytes, 0 when within."""
    ledger = QuotaLedger()
    ledger.set(1, 1500)
    ledger.set(2, 200)
    assert (
        ledger.over_quota(1, 1000),
        ledger.over_quota(2, 1000),
        ledger.over_total(1000),
        ledger.over_total(5000),
    ) == (500, 0, 700, 0)


def test_quota_largest_first() -> None:
    """largest lists uids by usage, largest first, ties by uid; empty uids left out."""
    ledger = QuotaLedger()
    for uid, used in [(3, 10), (1, 30), (2, 30), (4, 0)]:
        ledger.set(uid, used)
    assert ledger.largest() == [(1, 30), (2, 30), (3, 10)]


def test_quota_refuses_impossible_updates() -> None:
    """Negative amounts, or subtracting more than used, raise ValueError."""
    ledger = QuotaLedger()
    ledger.set(1, 10)
    with pytest.raises(ValueError, match="cannot subtract 11 bytes from uid 1, which uses 10"):
        ledger.sub(1, 11)
    with pytest.raises(ValueError, match="cannot add -1 bytes"):
        ledger.add(1, -1)
    with pytest.raises(ValueError, match="cannot be -1 bytes"):
        ledger.set(1, -1)
    assert ledger.total() == 10


# --------------------------------------------------------------------------- SuppressionTracker


def test_suppression_window_is_within_spec() -> None:
    """Reports come at most SUPPRESSION_WINDOW after the first drop, within SPEC's 10 s."""
    assert 0 < SUPPRESSION_WINDOW < 10


def test_one_report_per_uid_and_reason_per_window() -> None:
    """Drops add up per (uid, reason) and are due window seconds after the first."""
    tracker = SuppressionTracker(window=10)
    tracker.note_drop(1000, "rate", 5, 100.0)
    tracker.note_drop(1000, "rate", 7, 104.0)
    tracker.note_drop(1000, "quota", 1, 103.0)
    tracker.note_drop(1001, "rate", 2, 101.0)
    assert (tracker.due(109.9), tracker.next_due()) == ([], 110.0)
    assert tracker.due(111.0) == [
        Suppressed(uid=1000, reason="rate", count=12, first=100.0, last=104.0),
        Suppressed(uid=1001, reason="rate", count=2, first=101.0, last=101.0),
    ]
    assert (tracker.next_due(), tracker.pending(1000, "quota")) == (113.0, 1)


def test_drop_after_report_opens_new_window() -> None:
    """After a report, the next drop starts a new window with its own count."""
    tracker = SuppressionTracker(window=10)
    tracker.note_drop(1, "disk", 3, 0.0)
    tracker.due(10.0)
    tracker.note_drop(1, "disk", 4, 12.0)
    assert (tracker.due(21.0), tracker.due(22.0)) == (
        [],
        [Suppressed(uid=1, reason="disk", count=4, first=12.0, last=12.0)],
    )


def test_flush_takes_everything() -> None:
    """flush hands over every open window at shutdown, due or not."""
    tracker = SuppressionTracker()
    tracker.note_drop(2, "connections", 1, 5.0)
    tracker.note_drop(1, "rate", 1, 6.0)
    assert [(s.uid, s.reason) for s in tracker.flush()] == [(2, "connections"), (1, "rate")]
    assert (tracker.flush(), tracker.next_due()) == ([], None)


def test_requeue_after_failed_write() -> None:
    """A report that could not be written comes back, due at once, merged with new drops."""
    tracker = SuppressionTracker(window=10)
    tracker.note_drop(1, "disk", 3, 0.0)
    failed = tracker.due(10.0)
    tracker.note_drop(1, "disk", 2, 11.0)
    tracker.requeue(failed)
    assert tracker.due(12.0) == [Suppressed(uid=1, reason="disk", count=5, first=0.0, last=11.0)]
    assert tracker.dropped(1) == {"disk": 5}


def test_dropped_totals_since_start() -> None:
    """dropped gives a uid's cumulative drops by reason, reported or not."""
    tracker = SuppressionTracker(window=1)
    tracker.note_drop(1, "rate", 3, 0.0)
    tracker.due(5.0)
    tracker.note_drop(1, "rate", 4, 6.0)
    tracker.note_drop(1, "quota", 1, 6.0)
    tracker.note_drop(1, "rate", 0, 6.0)
    assert (tracker.dropped(1), tracker.dropped(2)) == ({"rate": 7, "quota": 1}, {})


def test_note_drop_refuses_bad_input() -> None:
    """A negative count or an unknown reason is a ValueError."""
    tracker = SuppressionTracker()
    with pytest.raises(ValueError, match="cannot note -1 drops"):
        tracker.note_drop(1, "rate", -1, 0.0)
    with pytest.raises(ValueError, match="for reason 'boredom'"):
        tracker.note_drop(1, "boredom", 1, 0.0)  # type: ignore[arg-type]


@given(
    steps=st.lists(
        st.tuples(
            st.floats(min_value=0, max_value=4, allow_nan=False),
            st.integers(min_value=0, max_value=3),
            st.lists(st.integers(min_value=1, max_value=300), max_size=10),
        ),
        max_size=50,
    ),
)
def test_stored_plus_reported_drops_equal_sent(steps: list[tuple[float, int, list[int]]]) -> None:
    """Limiter and tracker together account for every record: stored + dropped = sent."""
    spec = limits(rate_messages=3, burst_messages=5, rate_bytes=300, burst_bytes=600)
    limiter, tracker = RateLimiter(), SuppressionTracker(window=5)
    sent: dict[int, int] = {}
    stored: dict[int, int] = {}
    reported: dict[int, int] = {}
    now = 0.0
    for step, uid, sizes in steps:
        now += step
        k = limiter.admit(uid, sizes, spec, now)
        sent[uid] = sent.get(uid, 0) + len(sizes)
        stored[uid] = stored.get(uid, 0) + k
        tracker.note_drop(uid, "rate", len(sizes) - k, now)
        for report in tracker.due(now):
            assert report.first <= now - 5
            assert report.reason in DROP_REASONS
            reported[report.uid] = reported.get(report.uid, 0) + report.count
    for report in tracker.flush():
        reported[report.uid] = reported.get(report.uid, 0) + report.count
    for uid, count in sent.items():
        assert stored[uid] + reported.get(uid, 0) == count
        assert tracker.dropped(uid).get("rate", 0) == reported.get(uid, 0)
