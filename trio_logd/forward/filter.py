"""Which records a destination wants: by uid, severity and facility.

How this works: the uid test runs before anything is read (a destination
that forwards uid 1000 never opens another uid's files); severity and
facility are tested on the decoded record, before it is encoded. A record
a destination does not want still moves its cursor: it is handled.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from trio_logd.protocol.message import DEFAULT_FACILITY, DEFAULT_SEVERITY, SEVERITIES

__all__ = ["RecordFilter"]

_SEV_CODE: Final = {name: code for code, name in enumerate(SEVERITIES)}


@dataclass(frozen=True, slots=True)
class RecordFilter:
    """A destination's choice of records.

    Attributes:
        uids: the uids forwarded, or ``None`` for every uid.
        max_severity: the largest severity code forwarded (0 = ``emerg`` …
            7 = ``debug``): ``min_severity = "warning"`` is 4.
        facilities: the facility keywords forwarded, or ``None`` for all.
    """

    uids: frozenset[int] | None = None
    max_severity: int = 7
    facilities: frozenset[str] | None = None

    @classmethod
    def build(
        cls, *, uids: Iterable[int], min_severity: str, facilities: Iterable[str]
    ) -> RecordFilter:
        """Make a filter from ``[[forward]]`` values (empty collections mean "all").

        Raises:
            ValueError: *min_severity* is not a severity keyword.
        """
        code = _SEV_CODE.get(min_severity)
        if code is None:
            msg = f"unknown severity {min_severity!r}: expected one of {', '.join(SEVERITIES)}"
            raise ValueError(msg)
        uid_set = frozenset(uids)
        fac_set = frozenset(facilities)
        return cls(uid_set or None, code, fac_set or None)

    @property
    def all_records(self) -> bool:
        """Every record of a wanted uid passes (no need to test them one by one)."""
        return self.max_severity == 7 and self.facilities is None

    def wants_uid(self, uid: int) -> bool:
        """Tell whether records of *uid* may be forwarded at all."""
        return self.uids is None or uid in self.uids

    def wants(self, record: Mapping[str, Any]) -> bool:
        """Tell whether a decoded record of a wanted uid is forwarded."""
        if _SEV_CODE.get(record.get("sev", DEFAULT_SEVERITY), 5) > self.max_severity:
            return False
        return self.facilities is None or record.get("fac", DEFAULT_FACILITY) in self.facilities
