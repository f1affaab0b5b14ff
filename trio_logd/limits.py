"""Pure limit objects: token buckets, connection caps, disk quotas, drop reports.

How this works: nothing here reads a clock, a socket or a file. Time is an
argument, ``now``, in monotonic seconds (``trio.current_time()`` in the
daemon, any float in tests), and every object is plain bookkeeping the daemon
consults in the connection's own task before a record enters anything shared.

Invariants:

- ``TokenBucket``: over any window of length ``t``, at most
  ``burst + rate * t`` tokens are taken. Time inside a bucket never runs
  backwards: a ``now`` older than the latest one seen counts as the latest, so
  a clock stepping back neither mints tokens nor loses them.
- ``RateLimiter`` is keyed by uid only, never by pid or connection: a uid
  cannot win a bigger share by opening more connections or forking.
- ``SuppressionTracker`` reports every dropped record exactly once (from
  ``due`` or ``flush``), so that records stored + records reported as dropped
  = records sent.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, Literal, Protocol

__all__ = [
    "DROP_REASONS",
    "SUPPRESSION_WINDOW",
    "ConnectionCounter",
    "ConnectionStatistics",
    "ControlConnections",
    "DropReason",
    "QuotaLedger",
    "RateLimiter",
    "RateSpec",
    "Suppressed",
    "SuppressionTracker",
    "TokenBucket",
]

#: Slack for float rounding when comparing token counts: 0.1 s at 10 tokens/s
#: computes as 0.9999999999999999 tokens, which must still admit one. The
#: slack is absolute, not per call (the balance never drops below -_EPSILON),
#: so over any window it lets through at most a billionth of a token extra.
_EPSILON: Final = 1e-9

#: SPEC §6: "one suppressed record per uid and reason within 10 s of the first
#: drop". We report 5 s after the first drop, leaving half the allowance for
#: the writer task, the disk and a reader's poll.
SUPPRESSION_WINDOW: Final = 5.0

DropReason = Literal["rate", "quota", "connections", "disk"]
#: The ``reason`` values of ``suppressed`` records (SPEC §3).
DROP_REASONS: Final[tuple[DropReason, ...]] = ("rate", "quota", "connections", "disk")


# --------------------------------------------------------------------------- token bucket


class TokenBucket:
    """A token bucket: ``rate`` tokens per second, holding at most ``burst``.

    It starts full. Tokens are floats; ``take`` admits whole tokens.

    Args:
        rate: tokens added per second, ``> 0``.
        burst: capacity, ``>= 1``.
        now: the current monotonic time in seconds.

    Raises:
        ValueError: *rate* or *burst* out of range.
    """

    __slots__ = ("_burst", "_last", "_rate", "_tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        _check_rate(rate, burst)
        self._rate = float(rate)
        self._burst = float(burst)
        self._tokens = float(burst)
        self._last = now

    @property
    def rate(self) -> float:
        """Tokens added per second."""
        return self._rate

    @property
    def burst(self) -> float:
        """Capacity of the bucket."""
        return self._burst

    def available(self, now: float) -> float:
        """Return the tokens in the bucket at *now*, without taking any.

        Args:
            now: monotonic seconds.

        Returns:
            Between ``-1e-9`` and ``burst``.
        """
        if now > self._last:
            return min(self._burst, self._tokens + (now - self._last) * self._rate)
        return self._tokens

    def _refill(self, now: float) -> float:
        if now > self._last:
            self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
            self._last = now
        return self._tokens

    def take(self, n: int, now: float) -> int:
        """Admit as many of *n* units as there are whole tokens for.

        Some-or-all: a batch of 10 records with 7 tokens left admits 7 and
        takes 7 tokens.

        Args:
            n: units wanted, ``>= 0``.
            now: monotonic seconds.

        Returns:
            How many were admitted, ``0 <= k <= n``; *k* tokens were taken.

        Raises:
            ValueError: *n* is negative.
        """
        if n < 0:
            msg = f"cannot take {n} tokens"
            raise ValueError(msg)
        tokens = self._refill(now)
        admitted = min(n, max(0, math.floor(tokens + _EPSILON)))
        self._tokens = tokens - admitted
        return admitted

    def try_take(self, n: float, now: float) -> bool:
        """Take *n* tokens if all are there; otherwise take none.

        Args:
            n: tokens wanted, ``>= 0`` (a float: byte counts work too).
            now: monotonic seconds.

        Returns:
            Whether the tokens were taken.

        Raises:
            ValueError: *n* is negative.
        """
        if n < 0:
            msg = f"cannot take {n} tokens"
            raise ValueError(msg)
        tokens = self._refill(now)
        if n > tokens + _EPSILON:
            return False
        self._tokens = tokens - n
        return True

    def delay_for(self, n: float, now: float) -> float:
        """Return how long until *n* tokens are there (for ``on_rate = "block"``).

        Args:
            n: tokens wanted.
            now: monotonic seconds.

        Returns:
            Seconds to wait from *now*: ``0.0`` when they are there already,
            ``math.inf`` when *n* exceeds ``burst`` (the bucket never holds
            that many). After a clock step back, the wait includes the time
            until the clock reaches the latest ``now`` seen again.
        """
        if n > self._burst + _EPSILON:
            return math.inf
        deficit = n - self.available(now)
        if deficit <= _EPSILON:
            return 0.0
        return max(0.0, self._last - now) + deficit / self._rate

    def reconfigure(self, rate: float, burst: float, now: float) -> None:
        """Change rate and capacity (a reload) without resetting the balance.

        Tokens accrued until *now* are counted at the old rate, then clipped to
        the new ``burst``. A larger ``burst`` adds no tokens: a reload is
        never a free burst.

        Args:
            rate: new tokens per second, ``> 0``.
            burst: new capacity, ``>= 1``.
            now: monotonic seconds.

        Raises:
            ValueError: *rate* or *burst* out of range.
        """
        _check_rate(rate, burst)
        tokens = self._refill(now)
        self._rate = float(rate)
        self._burst = float(burst)
        self._tokens = min(tokens, self._burst)

    def __repr__(self) -> str:
        return (
            f"TokenBucket(rate={self._rate}, burst={self._burst}, "
            f"tokens={self._tokens}, last={self._last})"
        )


def _check_rate(rate: float, burst: float) -> None:
    if not (math.isfinite(rate) and rate > 0):
        msg = f"rate must be a positive number, got {rate}"
        raise ValueError(msg)
    if not (math.isfinite(burst) and burst >= 1):
        msg = f"burst must be at least 1, got {burst}"
        raise ValueError(msg)


# --------------------------------------------------------------------------- per-uid rate limits


class RateSpec(Protocol):
    """The four rate keys of SPEC §6; ``trio_logd.config.Limits`` has them."""

    @property
    def rate_messages(self) -> int: ...
    @property
    def burst_messages(self) -> int: ...
    @property
    def rate_bytes(self) -> int: ...
    @property
    def burst_bytes(self) -> int: ...


class _UidBuckets:
    __slots__ = ("bytes", "limits", "records", "spec")

    def __init__(self, limits: RateSpec, spec: tuple[int, int, int, int], now: float) -> None:
        self.limits = limits
        self.spec = spec
        self.records = TokenBucket(spec[0], spec[1], now)
        self.bytes = TokenBucket(spec[2], spec[3], now)


class RateLimiter:
    """Per-uid token buckets on records and on payload bytes (SPEC §6).

    A batch of records is admitted as its longest prefix that both buckets
    allow: one record token each, and its size in bytes tokens (a record
    larger than ``burst_bytes`` costs ``burst_bytes``, so that it can always
    pass eventually; a validated config makes ``burst_bytes >=
    max_message_bytes`` so this never happens). What is not admitted is the
    caller's to drop or to retry (``on_rate``).

    Limits are passed on every call (the daemon resolves them per uid with
    ``Config.limits_for``); when they change (a reload), the uid's buckets
    are reconfigured in place, keeping their balance (``TokenBucket.reconfigure``).
    """

    __slots__ = ("_uids",)

    def __init__(self) -> None:
        #: by uid (or by unit name: the per-unit limiter keys its buckets so)
        self._uids: dict[Hashable, _UidBuckets] = {}

    def _buckets(self, uid: Hashable, limits: RateSpec, now: float) -> _UidBuckets:
        state = self._uids.get(uid)
        if state is not None and state.limits is limits:
            return state
        spec = (limits.rate_messages, limits.burst_messages, limits.rate_bytes, limits.burst_bytes)
        if state is None:
            state = self._uids[uid] = _UidBuckets(limits, spec, now)
        elif state.spec != spec:
            state.records.reconfigure(spec[0], spec[1], now)
            state.bytes.reconfigure(spec[2], spec[3], now)
            state.spec = spec
        state.limits = limits
        return state

    def admit(self, uid: Hashable, sizes: Sequence[int], limits: RateSpec, now: float) -> int:
        """Admit the longest prefix of a batch that *uid*'s buckets allow.

        Args:
            uid: the kernel-reported uid the records are filed under.
            sizes: payload size in bytes of each record, in order.
            limits: the uid's resolved limits.
            now: monotonic seconds.

        Returns:
            *k*: records ``sizes[:k]`` are admitted and paid for in both
            buckets; the rest are not.
        """
        state = self._buckets(uid, limits, now)
        records, nbytes = state.records, state.bytes
        n = len(sizes)
        most = min(n, max(0, math.floor(records.available(now) + _EPSILON)))
        budget = nbytes.available(now) + _EPSILON
        cap = limits.burst_bytes
        if most == n and n:
            # the usual case, all of it fits: sum() instead of a loop in Python
            total = sum(sizes)
            if total <= budget and (total <= cap or max(sizes) <= cap):
                records.try_take(n, now)
                nbytes.try_take(total, now)
                return n
        spent = 0
        admitted = 0
        for size in sizes[:most]:
            cost = size if size < cap else cap
            if spent + cost > budget:
                break
            spent += cost
            admitted += 1
        if admitted:
            records.try_take(admitted, now)
            nbytes.try_take(spent, now)
        return admitted

    # Any: the keys are the caller's (uids, or unit names), as is limits_for
    def reconfigure(self, limits_for: Callable[[Any], RateSpec], now: float) -> None:
        """Give every uid with buckets its new limits at *now* (a reload).

        Tokens accrued until *now* count at the old rates, the new ones from
        *now* on; balances are kept, clipped to a smaller burst
        (``TokenBucket.reconfigure``). Without this a uid's buckets would be
        reconfigured at its next ``admit``, counting the time in between at
        the old rates.

        Args:
            limits_for: the new resolved limits of a uid.
            now: monotonic seconds.
        """
        for uid in list(self._uids):
            self._buckets(uid, limits_for(uid), now)

    def delay_for(self, uid: Hashable, size: int, limits: RateSpec, now: float) -> float:
        """Return how long until one record of *size* bytes would be admitted.

        For ``on_rate = "block"``: admit what ``admit`` allows, then wait this
        long before offering the rest.

        Args:
            uid: the uid.
            size: payload bytes of the next record.
            limits: the uid's resolved limits.
            now: monotonic seconds.

        Returns:
            Seconds from *now*, ``0.0`` when it would be admitted at once.
        """
        state = self._buckets(uid, limits, now)
        cost = min(size, limits.burst_bytes)
        return max(state.records.delay_for(1, now), state.bytes.delay_for(cost, now))

    def prune(self, now: float) -> int:
        """Forget uids whose buckets are both full; exact, since new buckets start full.

        Args:
            now: monotonic seconds.

        Returns:
            How many uids were forgotten.
        """
        full = [
            uid
            for uid, state in self._uids.items()
            if state.records.available(now) >= state.records.burst - _EPSILON
            and state.bytes.available(now) >= state.bytes.burst - _EPSILON
        ]
        for uid in full:
            del self._uids[uid]
        return len(full)

    def __len__(self) -> int:
        """Number of uids with buckets."""
        return len(self._uids)


# --------------------------------------------------------------------------- connections


@dataclass(frozen=True, slots=True)
class ConnectionStatistics:
    """A snapshot of a ``ConnectionCounter``.

    Attributes:
        total: open connections, all uids.
        global_max: the global cap.
        headroom: connections of the cap reserved for privileged uids.
        open_by_uid: open connections by uid (uids with none left out).
        refused_by_uid: refused connections by uid since start.
    """

    total: int
    global_max: int
    headroom: int
    open_by_uid: Mapping[int, int]
    refused_by_uid: Mapping[int, int]


class ConnectionCounter:
    """Concurrent connections per uid, under a global cap with headroom (SPEC §2, §6).

    ``try_open`` admits a connection when all of these hold:

    - the uid has fewer than its ``per_uid_max`` open (root included: give
      ``[limits.uid.0]`` a larger ``max_connections`` if root needs more);
    - fewer than ``global_max - headroom`` are open in total, or the uid is
      privileged (root or ``[access] admins``) and fewer than ``global_max``
      are open.

    So ordinary uids can fill the cap only up to the headroom, and root and
    admins can still connect (to log, or to run ``trio-logd stats``) when one
    user has taken everything else. Every refusal is counted per uid.

    Args:
        global_max: ``[daemon] max_connections``, ``>= 1``.
        headroom: ``[daemon] connection_headroom``, ``0 <= headroom < global_max``.

    Raises:
        ValueError: the arguments are out of range.
    """

    __slots__ = ("_global_max", "_headroom", "_open", "_refused", "_total")

    def __init__(self, global_max: int, headroom: int) -> None:
        _check_caps(global_max, headroom)
        self._global_max = global_max
        self._headroom = headroom
        self._open: dict[int, int] = {}
        self._refused: dict[int, int] = {}
        self._total = 0

    @property
    def total(self) -> int:
        """Open connections, all uids."""
        return self._total

    @property
    def global_max(self) -> int:
        """The global cap in force."""
        return self._global_max

    def count(self, uid: int) -> int:
        """Return *uid*'s open connections."""
        return self._open.get(uid, 0)

    def refused(self, uid: int) -> int:
        """Return how many of *uid*'s connections were refused since start."""
        return self._refused.get(uid, 0)

    def try_open(self, uid: int, per_uid_max: int, *, privileged: bool = False) -> bool:
        """Count a new connection of *uid*, if the caps allow it.

        Args:
            uid: the connecting uid (SO_PEERCRED).
            per_uid_max: the uid's resolved ``max_connections``.
            privileged: root or a member of ``[access] admins``
                (``Config.is_admin``): may use the headroom.

        Returns:
            ``True`` if counted (pair it with one ``close``); ``False`` if
            refused: the caller closes the connection at once and reports a
            ``connections`` drop.
        """
        mine = self._open.get(uid, 0)
        limit = self._global_max if privileged else self._global_max - self._headroom
        if mine >= per_uid_max or self._total >= limit:
            self._refused[uid] = self._refused.get(uid, 0) + 1
            return False
        self._open[uid] = mine + 1
        self._total += 1
        return True

    def close(self, uid: int) -> None:
        """Uncount a connection that ``try_open`` counted.

        Args:
            uid: the uid it was counted under.

        Raises:
            ValueError: *uid* has no open connection (a bug in the caller).
        """
        mine = self._open.get(uid, 0)
        if mine <= 0:
            msg = f"uid {uid} has no open connection to close"
            raise ValueError(msg)
        if mine == 1:
            del self._open[uid]
        else:
            self._open[uid] = mine - 1
        self._total -= 1

    def reconfigure(self, global_max: int, headroom: int) -> None:
        """Change the global cap on reload; open connections stay open.

        When more are open than the new cap allows, new ones are refused until
        enough have closed.

        Args:
            global_max: the new cap, ``>= 1``.
            headroom: the new headroom, ``0 <= headroom < global_max``.

        Raises:
            ValueError: the arguments are out of range.
        """
        _check_caps(global_max, headroom)
        self._global_max = global_max
        self._headroom = headroom

    def statistics(self) -> ConnectionStatistics:
        """Return a snapshot of the counts."""
        return ConnectionStatistics(
            total=self._total,
            global_max=self._global_max,
            headroom=self._headroom,
            open_by_uid=MappingProxyType(dict(self._open)),
            refused_by_uid=MappingProxyType(dict(self._refused)),
        )


def _check_caps(global_max: int, headroom: int) -> None:
    if global_max < 1 or not 0 <= headroom < global_max:
        msg = f"need global_max >= 1 and 0 <= headroom < global_max, got {global_max}, {headroom}"
        raise ValueError(msg)


class ControlConnections:
    """Concurrent control connections: a per-uid cap and a global cap with headroom.

    A :class:`ConnectionCounter` does the counting; this adds the per-uid
    cap of the control socket and says which limit refused. ``try_open``
    admits a connection of an ordinary uid while it has fewer than
    ``per_uid_max`` open and fewer than ``global_max - headroom`` are open
    in total; a privileged caller (root or ``[access] admins``) is not held
    to the per-uid cap and may use the headroom, up to ``global_max``. So
    however many connections other uids hold, ``headroom`` of them stay free
    for ``trio-logd status``/``stats``/``reload`` and root's ``logq``.

    Args:
        global_max: ``[control] max_connections``, ``>= 1``.
        per_uid_max: ``[control] max_connections_per_uid``, ``>= 1``.
        headroom: ``[control] connection_headroom``, ``0 <= headroom < global_max``.

    Raises:
        ValueError: the arguments are out of range.
    """

    __slots__ = ("_per_uid", "by_limit", "counter")

    def __init__(self, global_max: int, per_uid_max: int, headroom: int) -> None:
        _check_per_uid(per_uid_max)
        self.counter = ConnectionCounter(global_max, headroom)
        self._per_uid = per_uid_max
        #: refusals since start by the limit that refused them
        self.by_limit: dict[str, int] = {}

    @property
    def total(self) -> int:
        """Open control connections, all uids."""
        return self.counter.total

    def count(self, uid: int) -> int:
        """Return *uid*'s open control connections."""
        return self.counter.count(uid)

    def try_open(self, uid: int, *, privileged: bool) -> str | None:
        """Count a new connection of *uid*, if the caps allow it.

        Returns:
            ``None`` if counted (pair it with one :meth:`close`), else the
            name of the ``[control]`` key that refused it
            (``max_connections_per_uid`` or ``max_connections``).
        """
        per_uid = self.counter.global_max if privileged else self._per_uid
        if self.counter.try_open(uid, per_uid, privileged=privileged):
            return None
        over_own = not privileged and self.counter.count(uid) >= per_uid
        limit = "max_connections_per_uid" if over_own else "max_connections"
        self.by_limit[limit] = self.by_limit.get(limit, 0) + 1
        return limit

    def refuse(self, limit: str) -> None:
        """Count a refusal by *limit* decided elsewhere (the descriptor reserve)."""
        self.by_limit[limit] = self.by_limit.get(limit, 0) + 1

    def close(self, uid: int) -> None:
        """Uncount a connection that :meth:`try_open` counted (``ConnectionCounter.close``)."""
        self.counter.close(uid)

    @property
    def per_uid_max(self) -> int:
        """The per-uid cap in force."""
        return self._per_uid

    def reconfigure(self, global_max: int, per_uid_max: int, headroom: int) -> None:
        """Change the caps (reload); open connections stay open.

        Raises:
            ValueError: the arguments are out of range.
        """
        _check_per_uid(per_uid_max)
        self.counter.reconfigure(global_max, headroom)
        self._per_uid = per_uid_max


def _check_per_uid(per_uid_max: int) -> None:
    if per_uid_max < 1:
        msg = f"need per_uid_max >= 1, got {per_uid_max}"
        raise ValueError(msg)


# --------------------------------------------------------------------------- disk quota


class QuotaLedger:
    """Disk bytes used by each uid's files, kept by the store.

    The store sets a uid's usage when it scans the uid's directory at start,
    adds what it writes and subtracts what it deletes. The ledger only counts;
    the store decides what to delete: for ``on_quota = "rotate"`` that uid's
    oldest files while ``over_quota`` is positive, and under global pressure
    (``max_bytes``, ``keep_free_bytes``) the oldest files of the uids first in
    ``largest()``.
    """

    __slots__ = ("_total", "_used")

    def __init__(self) -> None:
        self._used: dict[int, int] = {}
        self._total = 0

    def set(self, uid: int, nbytes: int) -> None:
        """Set *uid*'s usage to *nbytes*.

        Raises:
            ValueError: *nbytes* is negative.
        """
        if nbytes < 0:
            msg = f"usage of uid {uid} cannot be {nbytes} bytes"
            raise ValueError(msg)
        self._total += nbytes - self._used.pop(uid, 0)
        if nbytes:
            self._used[uid] = nbytes

    def add(self, uid: int, nbytes: int) -> None:
        """Add *nbytes* written for *uid*.

        Raises:
            ValueError: *nbytes* is negative.
        """
        if nbytes < 0:
            msg = f"cannot add {nbytes} bytes"
            raise ValueError(msg)
        self.set(uid, self._used.get(uid, 0) + nbytes)

    def sub(self, uid: int, nbytes: int) -> None:
        """Subtract *nbytes* deleted (or compressed away) for *uid*.

        Raises:
            ValueError: *nbytes* is negative or more than the uid uses.
        """
        used = self._used.get(uid, 0)
        if not 0 <= nbytes <= used:
            msg = f"cannot subtract {nbytes} bytes from uid {uid}, which uses {used}"
            raise ValueError(msg)
        self.set(uid, used - nbytes)

    def usage(self, uid: int) -> int:
        """Return the bytes *uid*'s files use."""
        return self._used.get(uid, 0)

    def total(self) -> int:
        """Return the bytes all uids' files use."""
        return self._total

    def usages(self) -> dict[int, int]:
        """Return every uid's bytes (a copy; uids using none left out)."""
        return dict(self._used)

    def over_quota(self, uid: int, quota: int) -> int:
        """Return how many bytes *uid* is over *quota* (``0`` when within it)."""
        return max(0, self._used.get(uid, 0) - quota)

    def over_total(self, max_bytes: int) -> int:
        """Return how many bytes all uids together are over *max_bytes*."""
        return max(0, self._total - max_bytes)

    def largest(self) -> list[tuple[int, int]]:
        """Return ``(uid, bytes)`` of every uid with files, largest first (ties: lower uid)."""
        return sorted(self._used.items(), key=lambda item: (-item[1], item[0]))


# --------------------------------------------------------------------------- drop reports


@dataclass(frozen=True, slots=True)
class Suppressed:
    """Drops to report in one ``event: "suppressed"`` record (SPEC §3).

    Attributes:
        uid: the uid whose records (or connections) were dropped; the record
            is filed under it.
        reason: ``rate``, ``quota``, ``connections`` or ``disk``.
        count: how many were dropped.
        first: monotonic time of the first of these drops.
        last: monotonic time of the last of them.
        unit: the system unit they came from (the record's ``unit``), or
            ``None``.
    """

    uid: int
    reason: DropReason
    count: int
    first: float
    last: float
    unit: str | None = None


class _Window:
    __slots__ = ("count", "first", "last")

    def __init__(self, count: int, first: float, last: float) -> None:
        self.count = count
        self.first = first
        self.last = last


#: A window's key: (uid, reason, unit or None).
_WindowKey = tuple[int, DropReason, "str | None"]


class SuppressionTracker:
    """Counts drops per (uid, reason, unit) and says when to report them.

    The first drop of a (uid, reason, unit) opens a window; further drops add to
    it; ``window`` seconds after the first drop ``due`` hands the count over
    (one ``suppressed`` record) and closes the window, and the next drop opens
    a new one. So a uid that keeps exceeding its rate gets one record per
    reason every ``window`` seconds, each at most ``window`` seconds after the
    first drop it reports. The daemon sleeps until ``next_due()``; at
    shutdown it writes ``flush()``. Cumulative counts per uid (``dropped``)
    are for ``stats``.

    Args:
        window: seconds from a first drop to its report, ``> 0``.

    Raises:
        ValueError: *window* out of range.
    """

    __slots__ = ("_dropped", "_open", "_window")

    def __init__(self, window: float = SUPPRESSION_WINDOW) -> None:
        if not (math.isfinite(window) and window > 0):
            msg = f"window must be a positive number of seconds, got {window}"
            raise ValueError(msg)
        self._window = window
        self._open: dict[_WindowKey, _Window] = {}
        self._dropped: dict[int, dict[DropReason, int]] = {}

    def note_drop(
        self, uid: int, reason: DropReason, n: int, now: float, unit: str | None = None
    ) -> None:
        """Count *n* records (or connections) of *uid* dropped for *reason*.

        Args:
            uid: the uid they belonged to.
            reason: one of ``DROP_REASONS``.
            n: how many, ``>= 0`` (``0`` is ignored).
            now: monotonic seconds.
            unit: the system unit they came from (reported apart), or ``None``.

        Raises:
            ValueError: *n* negative or *reason* unknown.
        """
        if n < 0 or reason not in DROP_REASONS:
            msg = f"cannot note {n} drops for reason {reason!r}"
            raise ValueError(msg)
        if n == 0:
            return
        totals = self._dropped.setdefault(uid, {})
        totals[reason] = totals.get(reason, 0) + n
        key = (uid, reason, unit)
        window = self._open.get(key)
        if window is None:
            self._open[key] = _Window(n, now, now)
        else:
            window.count += n
            window.last = max(window.last, now)

    def due(self, now: float) -> list[Suppressed]:
        """Take the windows whose first drop is at least ``window`` seconds old.

        Args:
            now: monotonic seconds.

        Returns:
            One ``Suppressed`` per (uid, reason) to report now, oldest first;
            they are forgotten here (see ``requeue`` if writing fails).
        """
        ripe = [key for key, w in self._open.items() if now - w.first >= self._window]
        return self._take(ripe)

    def flush(self) -> list[Suppressed]:
        """Take every open window, due or not (at shutdown), oldest first."""
        return self._take(list(self._open))

    def _take(self, keys: list[_WindowKey]) -> list[Suppressed]:
        result = []
        for key in keys:
            window = self._open.pop(key)
            uid, reason, unit = key
            result.append(Suppressed(uid, reason, window.count, window.first, window.last, unit))
        result.sort(key=lambda s: (s.first, s.uid, s.reason, s.unit or ""))
        return result

    def next_due(self) -> float | None:
        """Return the monotonic time of the next report, or ``None`` when nothing is open."""
        if not self._open:
            return None
        return min(w.first for w in self._open.values()) + self._window

    def requeue(self, items: Iterable[Suppressed]) -> None:
        """Put back reports that could not be written (disk full, read-only store).

        They merge with any window opened since, keep their first-drop time
        (so they are due again at once) and do not count again in ``dropped``.
        """
        for item in items:
            key = (item.uid, item.reason, item.unit)
            window = self._open.get(key)
            if window is None:
                self._open[key] = _Window(item.count, item.first, item.last)
            else:
                window.count += item.count
                window.first = min(window.first, item.first)
                window.last = max(window.last, item.last)

    def open_counts(self) -> dict[int, dict[DropReason, int]]:
        """Every open window's count, per uid and reason (what no record reported yet)."""
        out: dict[int, dict[DropReason, int]] = {}
        for (uid, reason, _unit), window in self._open.items():
            counts = out.setdefault(uid, {})
            counts[reason] = counts.get(reason, 0) + window.count
        return out

    def open_unit_counts(self) -> dict[int, dict[str, dict[DropReason, int]]]:
        """The part of ``open_counts`` that came from a named unit: per uid, unit and reason."""
        out: dict[int, dict[str, dict[DropReason, int]]] = {}
        for (uid, reason, unit), window in self._open.items():
            if unit is not None:
                counts = out.setdefault(uid, {}).setdefault(unit, {})
                counts[reason] = counts.get(reason, 0) + window.count
        return out

    def pending(self, uid: int, reason: DropReason) -> int:
        """Return the drops of (*uid*, *reason*), any unit, noted but not yet handed out."""
        return sum(w.count for (u, r, _unit), w in self._open.items() if u == uid and r == reason)

    def dropped(self, uid: int) -> Mapping[DropReason, int]:
        """Return *uid*'s drops since start by reason (``stats``: ``dropped``)."""
        return MappingProxyType(dict(self._dropped.get(uid, {})))
