"""Durations and sizes as operators write them in the config.

How this works: each parser takes a TOML value (a number, or a string with
units) and returns plain seconds (``float``) or bytes (``int``), or raises
``ValueError`` whose message says what was wrong with the *string* (an unknown
unit, a fraction of a byte). The config loader wraps that into a
``ConfigError`` naming the file and key; nothing here knows about files.

Durations: a number of seconds, or one or more ``<number><unit>`` parts,
``"1d"``, ``"12h"``, ``"1h30m"``, ``"1d 12h"``, ``"2w"``; units as systemd
spells them (``ms``, ``s``/``sec``, ``m``/``min`` (minutes, never months),
``h``, ``d``, ``w``). Sizes: a number of bytes, or ``<number><unit>`` with IEC
binary units (``KiB`` ``MiB`` ``GiB`` ``TiB``, and the bare letters ``K``
``M`` ``G`` ``T``, which mean the same as in journald.conf and logrotate) or
SI decimal units (``kB``/``KB`` ``MB`` ``GB`` ``TB``); units ignore case.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Final

__all__ = ["DURATION_UNITS", "SIZE_UNITS", "parse_duration", "parse_size"]

#: Seconds per unit; spellings follow systemd.time(7) minus months and years,
#: whose length varies.
DURATION_UNITS: Final[dict[str, Decimal]] = {
    **dict.fromkeys(("ms", "msec"), Decimal("0.001")),
    **dict.fromkeys(("s", "sec", "second", "seconds"), Decimal(1)),
    **dict.fromkeys(("m", "min", "minute", "minutes"), Decimal(60)),
    **dict.fromkeys(("h", "hr", "hour", "hours"), Decimal(3600)),
    **dict.fromkeys(("d", "day", "days"), Decimal(86400)),
    **dict.fromkeys(("w", "week", "weeks"), Decimal(7 * 86400)),
}

#: Bytes per unit, keyed in lower case. Bare ``k m g t`` are binary, as in
#: journald.conf(5) ("K, M, G, T ... to the base 1024") and logrotate(8).
SIZE_UNITS: Final[dict[str, int]] = {
    "": 1,
    "b": 1,
    **dict.fromkeys(("k", "kib"), 1 << 10),
    **dict.fromkeys(("m", "mib"), 1 << 20),
    **dict.fromkeys(("g", "gib"), 1 << 30),
    **dict.fromkeys(("t", "tib"), 1 << 40),
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
}

_DURATION_PART: Final = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*")
_SIZE: Final = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*")


def parse_duration(value: str | int | float) -> float:
    """Return the length of *value* in seconds.

    Args:
        value: a non-negative number of seconds, or a string such as ``"45s"``,
            ``"30m"``, ``"12h"``, ``"1d"``, ``"2w"``, ``"1h30m"`` or ``"90"``
            (seconds).

    Returns:
        The duration in seconds, ``>= 0``.

    Raises:
        ValueError: negative, not finite, empty, or an unknown unit; the
            message says which.
    """
    if isinstance(value, bool):
        msg = "a boolean is not a duration"
        raise ValueError(msg)
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            msg = "must be a finite number >= 0"
            raise ValueError(msg)
        return float(value)
    total = Decimal(0)
    pos = 0
    text = value.strip()
    if not text:
        msg = "empty"
        raise ValueError(msg)
    while pos < len(text):
        match = _DURATION_PART.match(text, pos)
        if match is None:
            msg = f'cannot read "{text[pos:]}"'
            raise ValueError(msg)
        number, unit = match.groups()
        if not unit and (pos or match.end() < len(text)):
            msg = f'"{number}" needs a unit in a duration with several parts'
            raise ValueError(msg)
        factor = DURATION_UNITS.get(unit.lower() if unit else "s")
        if factor is None:
            msg = f'unknown unit "{unit}" (use ms, s, m, h, d or w)'
            raise ValueError(msg)
        total += Decimal(number) * factor
        pos = match.end()
    return float(total)


def parse_size(value: str | int) -> int:
    """Return *value* as a number of bytes.

    Args:
        value: a non-negative integer, or a string such as ``"16MiB"``,
            ``"512K"``, ``"1GB"``, ``"1.5GiB"``.

    Returns:
        The size in bytes, ``>= 0``.

    Raises:
        ValueError: negative, an unknown unit, or not a whole number of bytes.
    """
    if isinstance(value, bool):
        msg = "a boolean is not a size"
        raise ValueError(msg)
    if isinstance(value, int):
        if value < 0:
            msg = "must be >= 0"
            raise ValueError(msg)
        return value
    match = _SIZE.fullmatch(value)
    if match is None:
        msg = f'cannot read "{value}"'
        raise ValueError(msg)
    number, unit = match.groups()
    factor = SIZE_UNITS.get(unit.lower())
    if factor is None:
        msg = f'unknown unit "{unit}" (use B, KiB, MiB, GiB, TiB, K, M, G, T, kB, MB, GB or TB)'
        raise ValueError(msg)
    size = Decimal(number) * factor
    if size != size.to_integral_value():
        msg = f'"{value}" is not a whole number of bytes'
        raise ValueError(msg)
    return int(size)
