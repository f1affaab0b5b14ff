"""Output formats of ``logq``: ``short``, ``json`` and ``verbose``.

How this works: each formatter takes one record line as stored and returns
the bytes to print, newline included. ``json`` is the stored line itself
(lossless: nothing is decoded or re-encoded). ``short`` and ``verbose``
decode it and print text, in which every character that could move the
cursor, change colours or reorder text on a terminal is escaped
(:func:`escape`), so that a record can never paint the reader's terminal.
Colours (by severity, as journalctl picks them) are added only when asked
for, i.e. when the output is a terminal.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

import orjson

__all__ = ["FORMATS", "Formatter", "escape", "format_short", "format_verbose", "make_formatter"]

#: The ``-o`` choices.
FORMATS: Final = ("short", "json", "verbose")

# C0 controls (ESC among them), DEL, C1 controls (U+009B is a one-byte CSI on
# some terminals), the backslash (so that an escape in the output is never
# ambiguous), and the bidi and line/paragraph separators that reorder or
# break displayed text (CVE-2021-42574, "Trojan Source").
_UNSAFE: Final = re.compile(
    "[\\x00-\\x1f\\x7f-\\x9f\\\\\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)
_NAMED: Final = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}


def _escape_one(m: re.Match[str]) -> str:
    ch = m.group()
    named = _NAMED.get(ch)
    if named is not None:
        return named
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(text: str) -> str:
    """Escape control, bidi and separator characters (and ``\\``) of *text*."""
    if _UNSAFE.search(text) is None:
        return text
    return _UNSAFE.sub(_escape_one, text)


# journalctl's choice (src/shared/logs-show.c, get_log_colors)
_RESET: Final = "\x1b[0m"
_COLOURS: Final = {
    "emerg": "\x1b[0;1;31m",
    "alert": "\x1b[0;1;31m",
    "crit": "\x1b[0;1;31m",
    "err": "\x1b[0;31m",
    "warning": "\x1b[0;1;33m",
    "notice": "\x1b[0;1;39m",
    "debug": "\x1b[0;38;5;245m",
}

Formatter = Callable[[bytes], bytes]


def _text(value: object) -> str:
    """A field's value as text: strings escaped, anything else as JSON."""
    if isinstance(value, str):
        return escape(value)
    return escape(orjson.dumps(value).decode())


class _LocalTime:
    """``ts`` → local ``Nov 27 21:47:40``, remembering the last second seen."""

    def __init__(self, fmt: str, tz: _dt.tzinfo | None) -> None:
        self._fmt = fmt
        self._tz = tz
        self._key = ""
        self._value = ""

    def __call__(self, ts: str) -> str:
        key = ts[:19]
        if key != self._key:
            try:
                t = _dt.datetime.fromisoformat(key + "+00:00").astimezone(self._tz)
                self._value = t.strftime(self._fmt)
            except ValueError:
                self._value = escape(ts)
            self._key = key
        return self._value


def _decode(line: bytes) -> dict[str, Any] | None:
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None


def _unreadable(line: bytes) -> bytes:
    return f"[unreadable record {escape(repr(line[:80]))}]\n".encode()


def format_short(
    record: Mapping[str, Any], *, colour: bool = False, clock: Callable[[str], str] | None = None
) -> str:
    """One syslog-like line: local time, uid, app[pid], message.

    ``Nov 27 21:47:40 uid=1000 myapp[4242]: the message``. The app is the
    sender's ``app``, else the kernel-verified ``comm``, else ``-``; the pid
    is the kernel's. Truncated records end in `` [truncated]``.

    Args:
        record: a decoded record.
        colour: colour the message by severity (ANSI; for terminals).
        clock: formats ``ts``; the default prints local time to the second.

    Returns:
        The line, newline included.
    """
    clock = clock or _LocalTime("%b %d %H:%M:%S", None)
    app = record.get("app") or record.get("comm") or "-"
    msg = _text(record.get("msg", ""))
    if record.get("truncated"):
        msg += " [truncated]"
    if colour:
        start = _COLOURS.get(str(record.get("sev")))
        if start is not None:
            msg = f"{start}{msg}{_RESET}"
    return (
        f"{clock(str(record.get('ts', '')))} uid={_text(record.get('uid'))} "
        f"{_text(app)}[{_text(record.get('pid'))}]: {msg}\n"
    )


def format_verbose(
    record: Mapping[str, Any], *, colour: bool = False, clock: Callable[[str], str] | None = None
) -> str:
    """Every field on its own line, ``key=value``, under a header with local time.

    Nested ``fields`` are flattened to ``fields.KEY=value``; values that are
    not strings are shown as JSON.

    Returns:
        The block of lines, newline included.
    """
    clock = clock or _LocalTime("%a %Y-%m-%d %H:%M:%S %Z", None)
    head = f"{clock(str(record.get('ts', '')))} [uid {_text(record.get('uid'))} seq "
    head += f"{_text(record.get('seq'))}]"
    if colour:
        start = _COLOURS.get(str(record.get("sev")))
        if start is not None:
            head = f"{start}{head}{_RESET}"
    lines = [head]
    for key, value in record.items():
        if key == "fields" and isinstance(value, dict):
            lines.extend(f"    fields.{_text(k)}={_text(v)}" for k, v in value.items())
        else:
            lines.append(f"    {_text(key)}={_text(value)}")
    return "\n".join(lines) + "\n"


def _decoding(fmt: Callable[..., str], clock: Callable[[str], str], colour: bool) -> Formatter:
    def formatter(line: bytes) -> bytes:
        rec = _decode(line)
        if rec is None:
            return _unreadable(line)
        return fmt(rec, colour=colour, clock=clock).encode()

    return formatter


def make_formatter(name: str, *, colour: bool = False, tz: _dt.tzinfo | None = None) -> Formatter:
    """Return the formatter of ``-o NAME``: record line in, bytes to print out.

    Args:
        name: ``short``, ``json`` or ``verbose``.
        colour: colour by severity (``short`` and ``verbose``).
        tz: the zone times are shown in; ``None`` for the system's.

    Raises:
        ValueError: an unknown format name.
    """
    if name == "json":
        return lambda line: line + b"\n"
    if name == "short":
        return _decoding(format_short, _LocalTime("%b %d %H:%M:%S", tz), colour)
    if name == "verbose":
        return _decoding(format_verbose, _LocalTime("%a %Y-%m-%d %H:%M:%S %Z", tz), colour)
    msg = f"invalid output format {name!r}: expected one of {', '.join(FORMATS)}"
    raise ValueError(msg)
