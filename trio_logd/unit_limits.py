"""Per-unit limits (``[limits.unit."GLOB"]``) resolved, and per-unit figures, bounded.

How this works (pure: no trio, no I/O, times passed in): a unit's table
(``config.UnitLimits``, keys left out meaning "no limit") is resolved once
into a :class:`UnitPolicy`, a complete rate spec for ``limits.RateLimiter``
whose missing limits are :data:`UNLIMITED` (a bucket so large that it never
refuses), so that the unit's buckets are the uid's code, keyed by unit name.

:class:`UnitLedger` keeps the figures ``stats``, ``top`` and the metrics show
per unit: records and bytes accepted, open connections, drops by reason.
Who creates units decides how many there are: every ssh login is a new
``session-N.scope``, and a user allowed to start transient units can make
thousands. So the ledger holds at most :data:`MAX_UNITS` names; a new unit
beyond that replaces the one without open connections that has gone
longest without a new connection or drop (records alone do not count, to
keep the hot path at one dict lookup per batch), whose counts move to the
:data:`OTHER` row (totals stay right), and when every tracked unit has
connections open, the newcomer is
counted under :data:`OTHER` from the start. The metrics' ``unit`` label and
the ``suppressed`` records' ``unit`` take only tracked names, so neither
grows with what an attacker creates.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from trio_logd.config import Config, UnitLimits
from trio_logd.limits import DROP_REASONS, DropReason, RateLimiter

__all__ = [
    "MAX_UNITS",
    "OTHER",
    "UNLIMITED",
    "UnitFigures",
    "UnitLedger",
    "UnitLimiter",
    "UnitPolicy",
    "resolve_unit_policy",
]

#: A limit that is never reached: 2**53, exact as a float (token buckets count in floats).
UNLIMITED: Final = 1 << 53
#: Unit names tracked apart in stats and metrics (a metrics label's cardinality).
MAX_UNITS: Final = 256
#: The row that counts every unit not tracked apart; no unit name has parentheses.
OTHER: Final = "(other)"
#: Units whose table (or none) is remembered; more and the memo starts again.
_POLICY_MEMO: Final = 4096


@dataclass(frozen=True, slots=True)
class UnitPolicy:
    """The resolved limits of the units one ``[limits.unit."GLOB"]`` table matches.

    A ``limits.RateSpec``: the four rate fields are complete (:data:`UNLIMITED`
    where the table sets none).

    Attributes:
        pattern: the table's glob.
        rated: the table sets a rate: the unit's buckets are worth asking.
    """

    pattern: str
    rate_messages: int
    burst_messages: int
    rate_bytes: int
    burst_bytes: int
    max_connections: int
    rated: bool


def resolve_unit_policy(limits: UnitLimits, max_message_bytes: int) -> UnitPolicy:
    """Complete a unit table: bursts default to one second's worth (bytes: at least one
    record of *max_message_bytes*), missing limits to :data:`UNLIMITED`."""
    rate_messages = limits.rate_messages or UNLIMITED
    rate_bytes = limits.rate_bytes or UNLIMITED
    burst_messages = limits.burst_messages or rate_messages
    burst_bytes = limits.burst_bytes or max(rate_bytes, max_message_bytes)
    return UnitPolicy(
        pattern=limits.pattern,
        rate_messages=rate_messages,
        burst_messages=burst_messages,
        rate_bytes=rate_bytes,
        burst_bytes=burst_bytes,
        max_connections=limits.max_connections or UNLIMITED,
        rated=limits.rate_messages is not None or limits.rate_bytes is not None,
    )


class UnitFigures:
    """One unit's counts since the daemon started (or since it was tracked apart)."""

    __slots__ = ("bytes", "connections", "dropped", "records")

    def __init__(self) -> None:
        self.records = 0
        self.bytes = 0
        self.connections = 0
        self.dropped: dict[DropReason, int] = {}

    def merge(self, other: UnitFigures) -> None:
        """Add *other*'s counts to these."""
        self.records += other.records
        self.bytes += other.bytes
        self.connections += other.connections
        for reason, n in other.dropped.items():
            self.dropped[reason] = self.dropped.get(reason, 0) + n

    def as_dict(self, unit: str) -> dict[str, Any]:
        """The ``stats`` item: ``unit``, ``records``, ``bytes``, ``connections``, ``dropped``."""
        return {
            "unit": unit,
            "records": self.records,
            "bytes": self.bytes,
            "connections": self.connections,
            "dropped": {reason: self.dropped.get(reason, 0) for reason in DROP_REASONS},
        }


class UnitLedger:
    """Per-unit figures for at most ``max_units`` names, the rest under :data:`OTHER`.

    Args:
        max_units: names tracked apart, ``>= 1``.
    """

    def __init__(self, max_units: int = MAX_UNITS) -> None:
        self._max = max_units
        #: least recently active first
        self._units: OrderedDict[str, UnitFigures] = OrderedDict()
        self.other = UnitFigures()

    def __len__(self) -> int:
        """Units tracked apart."""
        return len(self._units)

    def key(self, unit: str) -> str | None:
        """*unit* if it is tracked apart now (a name to report), else ``None``."""
        return unit if unit in self._units else None

    def figures(self, unit: str) -> UnitFigures:
        """*unit*'s figures, tracking it if there is room (or a quiet unit to replace).

        Marks it as the most recently active. O(1), except when a new unit
        must replace one: then O(tracked) to find the quietest without
        connections.
        """
        units = self._units
        f = units.get(unit)
        if f is not None:
            units.move_to_end(unit)
            return f
        if len(units) >= self._max:
            idle = next((name for name, g in units.items() if not g.connections), None)
            if idle is None:
                return self.other
            self.other.merge(units.pop(idle))
        f = units[unit] = UnitFigures()
        return f

    def count(self, unit: str, records: int, nbytes: int) -> None:
        """Count accepted records of *unit* (once per batch, on the hot path)."""
        f = self._units.get(unit)
        if f is None:
            f = self.figures(unit)
        f.records += records
        f.bytes += nbytes

    def drop(self, unit: str, reason: DropReason, n: int) -> str | None:
        """Count *n* of *unit*'s records (or connections) dropped; return its reported name."""
        f = self.figures(unit)
        f.dropped[reason] = f.dropped.get(reason, 0) + n
        return self.key(unit)

    def snapshot(self) -> list[dict[str, Any]]:
        """Every tracked unit's ``stats`` item, by name, then :data:`OTHER` if it counted any."""
        items = [f.as_dict(name) for name, f in sorted(self._units.items())]
        o = self.other
        if o.records or o.connections or any(o.dropped.values()):
            items.append(o.as_dict(OTHER))
        return items


class UnitLimiter:
    """The ``[limits.unit."GLOB"]`` tables in force: per-unit buckets and connection caps.

    Args:
        config: the config in force (its ``limits_unit`` tables).
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        #: per-unit buckets, keyed by unit name
        self.rate = RateLimiter()
        #: per-unit figures (stats, metrics, the ``suppressed`` records' ``unit``)
        self.ledger = UnitLedger()
        #: unit name -> its resolved table, or None (no table matches)
        self._policies: dict[str, UnitPolicy | None] = {}
        #: open connections per unit whose table sets max_connections
        self._conns: dict[str, int] = {}

    def reconfigure(self, config: Config) -> None:
        """A reload: units take their new tables at their next batch (buckets keep their
        balance, ``TokenBucket.reconfigure``) and new connections meet the new caps."""
        self.config = config
        self._policies = {}

    def policy(self, unit: str) -> UnitPolicy | None:
        """*unit*'s resolved table (the first whose glob matches), or ``None``."""
        memo = self._policies
        try:
            return memo[unit]
        except KeyError:
            pass
        table = self.config.unit_limits_for(unit)
        mmb = self.config.daemon.max_message_bytes
        policy = None if table is None else resolve_unit_policy(table, mmb)
        if len(memo) >= _POLICY_MEMO:
            memo.clear()
        memo[unit] = policy
        return policy

    def admit(self, unit: str, sizes: Sequence[int], now: float) -> int:
        """How many of *sizes* (a prefix) *unit*'s buckets admit; those are paid for.

        A unit without a table, or whose table sets no rate, admits all.
        """
        policy = self.policy(unit)
        if policy is None or not policy.rated:
            return len(sizes)
        return self.rate.admit(unit, sizes, policy, now)

    def delay_for(self, unit: str, size: int, now: float) -> float:
        """How long until *unit*'s buckets admit one record of *size* bytes."""
        policy = self.policy(unit)
        if policy is None or not policy.rated:
            return 0.0
        return self.rate.delay_for(unit, size, policy, now)

    def open(self, unit: str) -> UnitFigures | None:
        """Count a new connection opened from *unit*, if its ``max_connections`` allows.

        Returns:
            The unit's figures (pass them to :meth:`close`), or ``None``:
            refused (the caller counts the drop and closes the connection).
        """
        policy = self.policy(unit)
        if policy is not None and policy.max_connections < UNLIMITED:
            n = self._conns.get(unit, 0)
            if n >= policy.max_connections:
                return None
            self._conns[unit] = n + 1
        figures = self.ledger.figures(unit)
        figures.connections += 1
        return figures

    def close(self, unit: str, figures: UnitFigures) -> None:
        """Uncount a connection that :meth:`open` counted."""
        figures.connections -= 1
        n = self._conns.get(unit)
        if n is not None:
            if n <= 1:
                del self._conns[unit]
            else:
                self._conns[unit] = n - 1
