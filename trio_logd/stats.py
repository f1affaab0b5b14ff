"""Rates from cumulative counters: what ``stats``, ``top`` and the metrics show.

Pure: time is an argument, nothing here reads a clock. The daemon keeps
cumulative counters per uid (records and bytes accepted since start); a task
samples them once a second into a :class:`RateHistory`, which answers "how
many per second over the last *window* seconds" for any window up to its
horizon (``stats`` shows the last second and the last minute).
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Mapping
from typing import Final, NamedTuple

__all__ = ["HORIZON", "Counts", "RateHistory", "Rates"]

#: The longest window asked for: ``stats`` shows rates over the last minute.
HORIZON: Final = 60.0


class Counts(NamedTuple):
    """Cumulative counters of one uid: records and payload bytes since start."""

    records: int
    bytes: int


class Rates(NamedTuple):
    """Records and bytes per second over one window."""

    records: float
    bytes: float


_ZERO: Final = Counts(0, 0)


def _time(sample: tuple[float, Counts]) -> float:
    return sample[0]


class RateHistory:
    """Samples of cumulative counters per key, and rates over trailing windows.

    A sample is taken at every tick (``sample``); per key only the samples
    where its counters changed are kept, so a thousand idle uids cost one
    entry each. A key first seen at a tick counted zero at the tick before
    (the daemon creates a uid's counters at zero, when it first sees the uid),
    so its first records count towards its rates.

    The rate over a window ending *now* compares the counters now with their
    value at the latest tick at or before ``now - window``, divided by the
    time since that tick: exact at tick granularity, over a span between
    *window* and *window* plus one tick. Before the first such tick the span
    starts at *start*, with every counter at zero.

    Args:
        start: when the counters were all zero (the daemon's start).
        horizon: the longest window ``rates`` will be asked for.
    """

    __slots__ = ("_horizon", "_samples", "_start", "_ticks")

    def __init__(self, start: float, horizon: float = HORIZON) -> None:
        self._start = start
        self._horizon = horizon
        self._ticks: deque[float] = deque()
        self._samples: dict[int, deque[tuple[float, Counts]]] = {}

    def sample(self, now: float, counters: Mapping[int, Counts]) -> None:
        """Record every key's cumulative counters at tick *now* (non-decreasing times)."""
        previous = self._ticks[-1] if self._ticks else self._start
        self._ticks.append(now)
        cutoff = now - self._horizon
        while len(self._ticks) >= 2 and self._ticks[1] <= cutoff:
            self._ticks.popleft()
        for key, counts in counters.items():
            samples = self._samples.get(key)
            if samples is None:
                samples = self._samples[key] = deque([(previous, _ZERO)])
            if samples[-1][1] != counts:
                samples.append((now, counts))
            while len(samples) >= 2 and samples[1][0] <= cutoff:
                samples.popleft()

    def _value_at(self, key: int, t: float) -> Counts:
        samples = self._samples.get(key)
        if not samples:
            return _ZERO
        # the latest sample at or before t; the deque is short (one per tick in the horizon)
        i = bisect.bisect_right(samples, t, key=_time)
        return samples[i - 1][1] if i else _ZERO

    def base(self, now: float, window: float) -> float:
        """The tick a window of *window* seconds ending *now* starts at (or *start*).

        Compute it once for many keys, then call :meth:`rates_since`.
        """
        target = now - window
        base_time = self._start
        for tick in self._ticks:
            if tick > target:
                break
            base_time = tick
        return base_time

    def rates_since(self, key: int, base_time: float, now: float, current: Counts) -> Rates:
        """Per-second rates of *key* from tick *base_time* (see :meth:`base`) to *now*."""
        span = now - base_time
        if span <= 0:
            return Rates(0.0, 0.0)
        base = self._value_at(key, base_time)
        return Rates(
            max(0, current.records - base.records) / span,
            max(0, current.bytes - base.bytes) / span,
        )

    def rates(self, key: int, now: float, current: Counts, window: float) -> Rates:
        """Per-second rates of *key* over the last *window* seconds.

        Args:
            key: the uid.
            now: the current time (on the clock of ``sample``).
            current: the key's cumulative counters now.
            window: seconds, at most the horizon.

        Returns:
            Records and bytes per second; zero when no time has passed.
        """
        return self.rates_since(key, self.base(now, window), now, current)
