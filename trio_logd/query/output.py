"""Output formats of ``logq``: ``short`` (and ``short-iso``, ``short-precise``),
``cat``, ``json``, ``json-pretty`` and ``verbose``, as journalctl names them.

How this works: each formatter takes one record line as stored and returns
the bytes to print, newline included. ``json`` is the stored line itself
(lossless: nothing is decoded or re-encoded) unless ``--output-fields``
picks fields; ``json-pretty`` re-encodes the decoded record indented, with
the same escapes as the stored line (``record.json_safe``). The text modes
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
from functools import partial
from typing import Any, Final

import orjson

from trio_logd.query.modes import FIELD_FORMATS, FORMATS

__all__ = [
    "ALWAYS_FIELDS",
    "FIELD_FORMATS",
    "FORMATS",
    "Formatter",
    "escape",
    "format_short",
    "format_verbose",
    "make_formatter",
    "parse_output_fields",
]

#: Fields ``--output-fields`` always keeps: where the record is (as journalctl
#: always prints ``__CURSOR`` and ``__REALTIME_TIMESTAMP``).
ALWAYS_FIELDS: Final = ("ts", "seq", "uid")
#: Longest ``--output-fields`` list.
MAX_OUTPUT_FIELDS: Final = 256
#: journalctl's ``short-iso`` time: ISO 8601 with the zone's offset (``+0100``).
_ISO: Final = "%Y-%m-%dT%H:%M:%S%z"
_SHORT: Final = "%b %d %H:%M:%S"
_VERBOSE: Final = "%a %Y-%m-%d %H:%M:%S %Z"

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
    record: Mapping[str, Any],
    *,
    colour: bool = False,
    clock: Callable[[str], str] | None = None,
    uid_column: bool = True,
) -> str:
    """One syslog-like line: local time, uid, app[pid], message.

    ``Nov 27 21:47:40 uid=1000 myapp[4242]: the message``. The app is the
    sender's ``app``, else the kernel-verified ``comm``, else ``-``; the pid
    is the kernel's. Truncated records end in `` [truncated]``.

    Args:
        record: a decoded record.
        colour: colour the message by severity (ANSI; for terminals).
        clock: formats ``ts``; the default prints local time to the second.
        uid_column: print ``uid=N`` (where journalctl prints the host name;
            ``--no-hostname`` leaves it out).

    Returns:
        The line, newline included.
    """
    clock = clock or _LocalTime(_SHORT, None)
    app = record.get("app") or record.get("comm") or "-"
    msg = _text(record.get("msg", ""))
    if record.get("truncated"):
        msg += " [truncated]"
    if colour:
        start = _COLOURS.get(str(record.get("sev")))
        if start is not None:
            msg = f"{start}{msg}{_RESET}"
    uid = f"uid={_text(record.get('uid'))} " if uid_column else ""
    return (
        f"{clock(str(record.get('ts', '')))} {uid}{_text(app)}[{_text(record.get('pid'))}]: {msg}\n"
    )


def format_cat(record: Mapping[str, Any], *, colour: bool = False) -> str:
    """``-o cat``: the message alone (escaped), newline included."""
    msg = _text(record.get("msg", ""))
    if colour:
        start = _COLOURS.get(str(record.get("sev")))
        if start is not None:
            msg = f"{start}{msg}{_RESET}"
    return msg + "\n"


def format_verbose(
    record: Mapping[str, Any],
    *,
    colour: bool = False,
    clock: Callable[[str], str] | None = None,
    trusted: frozenset[str] | None = None,
) -> str:
    """Every field on its own line, ``key=value``, under a header with local time.

    Nested ``fields`` are flattened to ``fields.KEY=value``; values that are
    not strings are shown as JSON. The fields the sender claimed (``app``,
    ``msg``, ``fields`` …: not in *trusted*) come last, under a line that
    says so; a daemon record (one with ``event``) is the daemon's throughout.

    Args:
        record: a decoded record.
        colour: colour the header by severity.
        clock: formats ``ts``.
        trusted: the keys only the daemon or the kernel set
            (``record.TRUSTED_KEYS``); ``None``: no grouping.

    Returns:
        The block of lines, newline included.
    """
    clock = clock or _LocalTime(_VERBOSE, None)
    head = f"{clock(str(record.get('ts', '')))} [uid {_text(record.get('uid'))} seq "
    head += f"{_text(record.get('seq'))}]"
    if colour:
        start = _COLOURS.get(str(record.get("sev")))
        if start is not None:
            head = f"{start}{head}{_RESET}"
    lines = [head]
    claims: list[str] = []
    daemons = trusted is None or "event" in record
    for key, value in record.items():
        out = lines if trusted is None or daemons or key in trusted else claims
        if key == "fields" and isinstance(value, dict):
            out.extend(f"    fields.{_text(k)}={_text(v)}" for k, v in value.items())
        else:
            out.append(f"    {_text(key)}={_text(value)}")
    if claims:
        lines.append("  claimed by the sender (not verified):")
        lines.extend(claims)
    return "\n".join(lines) + "\n"


def parse_output_fields(text: str) -> tuple[str, ...]:
    """Parse ``--output-fields F,…``: top-level names and ``fields.NAME``.

    Raises:
        ValueError: an empty name, or more than :data:`MAX_OUTPUT_FIELDS`.
    """
    names = [n.strip() for n in text.split(",")]
    if not all(names) or len(names) > MAX_OUTPUT_FIELDS:
        msg = (
            f"--output-fields {text[:80]!r}: expected a comma-separated list of at most "
            f"{MAX_OUTPUT_FIELDS} field names (ts, msg, fields.NAME …)"
        )
        raise ValueError(msg)
    return tuple(dict.fromkeys(names))


def _picker(names: tuple[str, ...]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Keep :data:`ALWAYS_FIELDS` and *names* (``fields.NAME``: a sender field), in order."""
    top = frozenset(ALWAYS_FIELDS) | {n for n in names if not n.startswith("fields.")}
    sub = frozenset(n[len("fields.") :] for n in names if n.startswith("fields."))

    def pick(record: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in record.items() if k in top}
        fields = record.get("fields")
        if sub and isinstance(fields, dict) and "fields" not in top:
            kept = {k: v for k, v in fields.items() if k in sub}
            if kept:
                out["fields"] = kept
        return out

    return pick


class _Precise:
    """``Nov 27 21:47:40.123456``: :class:`_LocalTime` plus the record's microseconds."""

    def __init__(self, clock: _LocalTime) -> None:
        self._clock = clock

    def __call__(self, ts: str) -> str:
        return self._clock(ts) + escape(ts[19:26])


def _decoding(fmt: Callable[..., str], clock: Callable[[str], str], colour: bool) -> Formatter:
    def formatter(line: bytes) -> bytes:
        rec = _decode(line)
        if rec is None:
            return _unreadable(line)
        return fmt(rec, colour=colour, clock=clock).encode()

    return formatter


def _cat(record: Mapping[str, Any], *, colour: bool, clock: Callable[[str], str]) -> str:
    return format_cat(record, colour=colour)


def _json(pick: Callable[[dict[str, Any]], dict[str, Any]] | None, option: int) -> Formatter:
    from trio_logd.record import json_safe  # only this mode needs it (logq's start-up)

    def formatter(line: bytes) -> bytes:
        rec = _decode(line)
        if rec is None:
            return _unreadable(line)
        return json_safe(orjson.dumps(pick(rec) if pick else rec, option=option)) + b"\n"

    return formatter


def make_formatter(
    name: str,
    *,
    colour: bool = False,
    tz: _dt.tzinfo | None = None,
    fields: tuple[str, ...] = (),
    uid_column: bool = True,
) -> Formatter:
    """Return the formatter of ``-o NAME``: record line in, bytes to print out.

    Args:
        name: one of :data:`FORMATS`.
        colour: colour by severity (the text modes).
        tz: the zone times are shown in; ``None`` for the system's.
        fields: ``--output-fields`` (the modes of :data:`FIELD_FORMATS`):
            show only these and :data:`ALWAYS_FIELDS`; empty: every field.
        uid_column: the short modes print ``uid=N`` (``--no-hostname``: not).

    Raises:
        ValueError: an unknown format name.
    """
    pick = _picker(fields) if fields else None
    if name == "json":
        if pick is None:
            return lambda line: line + b"\n"
        return _json(pick, 0)
    if name == "json-pretty":
        return _json(pick, orjson.OPT_INDENT_2)
    if name == "cat":
        return _decoding(_cat, _LocalTime(_SHORT, tz), colour)
    if name in ("short", "short-iso", "short-precise"):
        local = _LocalTime(_ISO if name == "short-iso" else _SHORT, tz)
        clock: Callable[[str], str] = _Precise(local) if name == "short-precise" else local
        return _decoding(partial(format_short, uid_column=uid_column), clock, colour)
    if name == "verbose":
        from trio_logd.record import TRUSTED_KEYS  # only this mode needs it (logq's start-up)

        verbose = partial(format_verbose, trusted=TRUSTED_KEYS)
        if pick is None:
            return _decoding(verbose, _LocalTime(_VERBOSE, tz), colour)
        return _decoding(
            lambda rec, **kw: verbose(pick(rec), **kw), _LocalTime(_VERBOSE, tz), colour
        )
    msg = f"invalid output format {name!r}: expected one of {', '.join(FORMATS)}"
    raise ValueError(msg)
