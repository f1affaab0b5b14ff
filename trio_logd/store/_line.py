"""What the store reads from a record line without decoding its JSON.

How this works: every line the daemon writes starts with
``{"ts":"<27 characters>","seq":<digits>,`` (``trio_logd.record.encode_line``),
so ``ts`` and ``seq`` sit at fixed offsets. The daemon's own records carry
only ``uid``, ``gid`` and ``pid`` in their stamp, followed by
``"fac":"syslog","sev":…,"app":"trio-logd","event":…``; a sender's line can
never have ``"event"`` at that place (its claims never include ``event``, and
anything a sender structures is nested under ``fields``, past the anchored
prefix), so an anchored match recognises a daemon event without trusting
anything a sender wrote.
"""

from __future__ import annotations

import calendar
import re
from typing import Final

__all__ = ["SEQ_AT", "TS_AT", "daemon_event", "line_seq", "ts_epoch", "with_seq"]

#: ``{"ts":"`` is 7 bytes, the timestamp 27, ``","seq":`` 8.
TS_AT: Final = slice(7, 34)
SEQ_AT: Final = 42

_DAEMON_EVENT: Final = re.compile(
    rb'\{"ts":"[^"]{27}","seq":\d+,"uid":\d+,"gid":\d+,"pid":\d+,'
    rb'"fac":"syslog","sev":"[a-z]+","app":"trio-logd","event":"([a-z_]+)"'
)


def line_seq(line: bytes) -> int | None:
    """Return the ``seq`` of a record line, or ``None`` if it has not the daemon's layout."""
    if not line.startswith(b'{"ts":"') or line[34:SEQ_AT] != b'","seq":':
        return None
    end = line.find(b",", SEQ_AT, SEQ_AT + 21)
    if end < 0:
        return None
    digits = line[SEQ_AT:end]
    return int(digits) if digits.isdigit() else None


def with_seq(line: bytes, seq: int) -> bytes:
    """The record line *line* (of the daemon's layout) numbered *seq* instead.

    Raises:
        ValueError: *line* has not the daemon's layout.
    """
    end = line.find(b",", SEQ_AT, SEQ_AT + 21) if line_seq(line) is not None else -1
    if end < 0:
        msg = f"not a record line of the daemon's layout: {line[:60]!r}"
        raise ValueError(msg)
    return b"%s%d%s" % (line[:SEQ_AT], seq, line[end:])


def ts_epoch(ts: bytes) -> float:
    """Parse a record's ``ts`` (``2026-11-27T20:47:40.123456Z``) to epoch seconds.

    Raises:
        ValueError: *ts* is not in that form.
    """
    if len(ts) != 27 or ts[26:] != b"Z":
        msg = f"expected an RFC 3339 UTC time with microseconds, got {ts!r}"
        raise ValueError(msg)
    whole = calendar.timegm(
        (int(ts[0:4]), int(ts[5:7]), int(ts[8:10]), int(ts[11:13]), int(ts[14:16]),
         int(ts[17:19]), 0, 0, 0)
    )  # fmt: skip
    return whole + int(ts[20:26]) / 1e6


def daemon_event(line: bytes) -> str | None:
    """Return the ``event`` of one of the daemon's own records, ``None`` for any other line."""
    m = _DAEMON_EVENT.match(line)
    return m[1].decode() if m is not None else None
