"""Output formats: short, json, verbose; escaping so no record paints the terminal."""

from __future__ import annotations

import datetime as dt

import orjson
import pytest

from trio_logd.query.output import escape, format_short, make_formatter

UTC = dt.UTC
REC = {
    "ts": "2026-11-27T20:47:40.123456Z",
    "seq": 7,
    "uid": 1000,
    "gid": 1000,
    "pid": 4242,
    "comm": "python3",
    "fac": "user",
    "sev": "err",
    "app": "myapp",
    "msg": "disk full",
    "fields": {"path": "/var", "free": 0},
}
LINE = orjson.dumps(REC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain text, ünïcode ✓", "plain text, ünïcode ✓"),
        ("\x1b[2J\x1b[31mred", "\\x1b[2J\\x1b[31mred"),
        ("a\nb\rc\td", "a\\nb\\rc\\td"),
        ("back\\slash", "back\\\\slash"),
        ("\x7f\x9b31m", "\\x7f\\x9b31m"),
        ("\u202eevil\u2066", "\\u202eevil\\u2066"),
        ("line\u2028sep", "line\\u2028sep"),
        ("\x00\x07", "\\x00\\x07"),
    ],
)
def test_escape(text: str, expected: str) -> None:
    """Controls, C1 (CSI), bidi overrides and separators are escaped; the rest is kept."""
    assert escape(text) == expected


def test_short_line() -> None:
    """short: local time, uid, app[pid], message — here in UTC."""
    fmt = make_formatter("short", tz=UTC)
    assert fmt(LINE) == b"Nov 27 20:47:40 uid=1000 myapp[4242]: disk full\n"


def test_short_falls_back_to_comm_and_escapes_every_sender_field() -> None:
    """Without app the verified comm is shown; app and msg from the sender are escaped."""
    fmt = make_formatter("short", tz=UTC)
    rec = {k: v for k, v in REC.items() if k != "app"}
    assert fmt(orjson.dumps(rec)) == b"Nov 27 20:47:40 uid=1000 python3[4242]: disk full\n"
    evil = {**REC, "app": "x\x1b]0;owned\x07", "msg": "\x1b[2J\nfake line", "truncated": True}
    out = fmt(orjson.dumps(evil))
    assert out == (
        b"Nov 27 20:47:40 uid=1000 x\\x1b]0;owned\\x07[4242]: \\x1b[2J\\nfake line [truncated]\n"
    )
    assert b"\x1b" not in out


def test_short_colours_by_severity_only_when_asked() -> None:
    """Colour wraps the message (err: red, warning: bold yellow, info: none)."""
    fmt = make_formatter("short", colour=True, tz=UTC)
    assert fmt(LINE).endswith(b": \x1b[0;31mdisk full\x1b[0m\n")
    warn = orjson.dumps({**REC, "sev": "warning"})
    assert fmt(warn).endswith(b": \x1b[0;1;33mdisk full\x1b[0m\n")
    info = orjson.dumps({**REC, "sev": "info"})
    assert fmt(info).endswith(b": disk full\n")


def test_json_is_the_stored_line_unchanged() -> None:
    """json output is lossless: the record's own bytes."""
    stored = b'{"ts":"2026-11-27T20:47:40.123456Z","seq":1,"msg":"\\u001b x \xc3\xa9"}'
    assert make_formatter("json")(stored) == stored + b"\n"


def test_verbose_shows_every_field() -> None:
    """verbose: a header, then key=value for every field, nested fields flattened."""
    out = make_formatter("verbose", tz=UTC)(LINE).decode()
    assert out == (
        "Fri 2026-11-27 20:47:40 UTC [uid 1000 seq 7]\n"
        "    ts=2026-11-27T20:47:40.123456Z\n"
        "    seq=7\n"
        "    uid=1000\n"
        "    gid=1000\n"
        "    pid=4242\n"
        "    comm=python3\n"
        "    fac=user\n"
        "    sev=err\n"
        "    app=myapp\n"
        "    msg=disk full\n"
        "    fields.path=/var\n"
        "    fields.free=0\n"
    )


def test_unreadable_line_is_reported_not_crashed_on() -> None:
    """A line that is not a JSON object prints as an escaped marker."""
    assert make_formatter("short")(b"\x1b[2Jnot json") == (
        b"[unreadable record b'\\\\x1b[2Jnot json']\n"
    )


def test_unknown_format() -> None:
    """An unknown -o is refused with the choices."""
    with pytest.raises(ValueError, match="expected one of short, json, verbose"):
        make_formatter("xml")


def test_format_short_default_clock_is_local_time() -> None:
    """Without a clock the time is local (here: whatever the zone, 8 characters of time)."""
    out = format_short(REC)
    assert out.endswith(" uid=1000 myapp[4242]: disk full\n")
    assert out[:3] == "Nov"
