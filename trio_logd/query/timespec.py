"""Times as users write them for ``--since``/``--until``, and the records' ``ts``.

How this works: :func:`parse_time` turns what a user typed into epoch seconds,
given the current time and (optionally) a time zone; it reads no clock
itself. The forms are journalctl's (systemd.time(7)), minus the weekday
names: ``now``, ``today``, ``yesterday``, ``tomorrow`` (local midnight), a
relative ``-1h``/``+30m``/``1h30m ago`` (units of ``trio_logd._units``), an
epoch ``@1700000000.5``, a time of day ``21:47[:40]`` (today), and ISO 8601
dates and date-times (``2026-11-27``, ``2026-11-27 21:47``,
``2026-11-27T21:47:40.5+01:00``, ``…Z``); without an offset, local time.

Records carry ``ts`` as RFC 3339 UTC with microseconds (``record.format_ts``),
a fixed-width string, so a time bound is kept in that same form and compared
as bytes: no record's ``ts`` needs parsing to filter by time.
"""

from __future__ import annotations

import datetime as _dt
import re
from typing import Final

from trio_logd._units import parse_duration
from trio_logd.record import TS_LENGTH, format_ts

__all__ = ["TS_LENGTH", "parse_time", "ts_bound", "ts_to_epoch"]

_TS_RE: Final = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
_TIME_OF_DAY: Final = re.compile(r"(\d{1,2}):(\d\d)(?::(\d\d)(\.\d{1,6})?)?")
_RELATIVE: Final = re.compile(r"([+-])\s*(.+)|(.+?)\s+ago")
_DAYS: Final = {"today": 0, "yesterday": -1, "tomorrow": 1}


def _local(naive: _dt.datetime, tz: _dt.tzinfo | None) -> float:
    """Epoch of a naive local date-time (in *tz*, or the system's zone)."""
    if tz is None:
        return naive.astimezone().timestamp()  # naive astimezone() reads it as local time
    return naive.replace(tzinfo=tz).timestamp()


def _today(now: float, tz: _dt.tzinfo | None) -> _dt.date:
    return _dt.datetime.fromtimestamp(now, tz).date()


def parse_time(text: str, *, now: float, tz: _dt.tzinfo | None = None) -> float:
    """Return the moment *text* names, in epoch seconds.

    Args:
        text: what the user wrote (see the module docstring for the forms).
        now: the current time, epoch seconds (relative forms count from it).
        tz: the zone of local times; ``None`` for the system's.

    Returns:
        Epoch seconds.

    Raises:
        ValueError: *text* is none of the forms; the message quotes it and
            lists them.
    """
    s = text.strip()
    low = s.lower()
    if low == "now":
        return now
    if low in _DAYS:
        day = _today(now, tz) + _dt.timedelta(days=_DAYS[low])
        return _local(_dt.datetime.combine(day, _dt.time()), tz)
    if s.startswith("@"):
        try:
            return float(s[1:])
        except ValueError:
            pass
    elif m := _RELATIVE.fullmatch(s):
        sign, amount = (m[1], m[2]) if m[1] else ("-", m[3])
        try:
            seconds = parse_duration(amount)
        except ValueError:
            pass
        else:
            return now - seconds if sign == "-" else now + seconds
    elif m := _TIME_OF_DAY.fullmatch(s):
        hour, minute, second = int(m[1]), int(m[2]), int(m[3] or 0)
        micro = int((m[4] or ".0")[1:].ljust(6, "0"))
        try:
            clock = _dt.time(hour, minute, second, micro)
        except ValueError:
            pass
        else:
            return _local(_dt.datetime.combine(_today(now, tz), clock), tz)
    else:
        try:
            parsed = _dt.datetime.fromisoformat(s)
        except ValueError:
            pass
        else:
            if parsed.tzinfo is None:
                return _local(parsed, tz)
            return parsed.timestamp()
    msg = (
        f"invalid time {text!r}: expected an ISO 8601 date or date-time "
        "(2026-11-27, '2026-11-27 21:47:40', 2026-11-27T20:47:40Z), a time of day (21:47), "
        "now, today, yesterday, tomorrow, a relative time (-1h, +30m, '2d ago') or @EPOCH"
    )
    raise ValueError(msg)


def ts_bound(epoch: float) -> str:
    """Return *epoch* in the records' ``ts`` form, for comparing with them.

    Raises:
        ValueError: the time is before year 1 or after year 9999.
    """
    try:
        return format_ts(epoch)
    except (OverflowError, OSError, ValueError) as exc:
        msg = f"time {epoch!r} is out of range (years 1 to 9999)"
        raise ValueError(msg) from exc


def ts_to_epoch(ts: str) -> float:
    """Return the epoch seconds of a record-form ``ts`` string.

    Raises:
        ValueError: *ts* is not ``YYYY-MM-DDTHH:MM:SS.ffffffZ``.
    """
    if not _TS_RE.fullmatch(ts):
        msg = f"invalid time {ts!r}: expected YYYY-MM-DDTHH:MM:SS.ffffffZ (UTC)"
        raise ValueError(msg)
    return _dt.datetime.fromisoformat(ts[:-1] + "+00:00").timestamp()
