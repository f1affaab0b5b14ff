"""Output formats (journalctl's -o modes); escaping so no record paints the terminal."""

from __future__ import annotations

import datetime as dt

import orjson
import pytest

from trio_logd.query.output import escape, format_short, make_formatter, parse_output_fields

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
        "  claimed by the sender (not verified):\n"
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
    with pytest.raises(ValueError, match=r"expected one of short, short-iso, .*, verbose"):
        make_formatter("xml")


def test_format_short_default_clock_is_local_time() -> None:
    """Without a clock the time is local (here: whatever the zone, 8 characters of time)."""
    out = format_short(REC)
    assert out.endswith(" uid=1000 myapp[4242]: disk full\n")
    assert out[:3] == "Nov"


def test_short_iso_and_short_precise() -> None:
    """short-iso: ISO 8601 time with the zone's offset; short-precise: microseconds."""
    assert make_formatter("short-iso", tz=UTC)(LINE) == (
        b"2026-11-27T20:47:40+0000 uid=1000 myapp[4242]: disk full\n"
    )
    plus_one = dt.timezone(dt.timedelta(hours=1))
    assert make_formatter("short-iso", tz=plus_one)(LINE).startswith(b"2026-11-27T21:47:40+0100 ")
    assert make_formatter("short-precise", tz=UTC)(LINE) == (
        b"Nov 27 20:47:40.123456 uid=1000 myapp[4242]: disk full\n"
    )


def test_no_hostname_leaves_out_the_uid_column() -> None:
    """--no-hostname: the short modes drop uid=N (where journalctl prints the host)."""
    for name, head in (("short", b"Nov 27 20:47:40"), ("short-iso", b"2026-11-27T20:47:40+0000")):
        out = make_formatter(name, tz=UTC, uid_column=False)(LINE)
        assert out == head + b" myapp[4242]: disk full\n"


def test_cat_is_the_message_alone_escaped() -> None:
    """cat: only the message, escaped; coloured by severity when asked."""
    assert make_formatter("cat")(LINE) == b"disk full\n"
    evil = orjson.dumps({**REC, "msg": "\x1b[2J\nfake"})
    assert make_formatter("cat")(evil) == b"\\x1b[2J\\nfake\n"
    assert make_formatter("cat", colour=True)(LINE) == b"\x1b[0;31mdisk full\x1b[0m\n"


def test_json_pretty_is_indented_with_the_stored_escapes() -> None:
    """json-pretty: the record indented by two; line separators stay escaped as stored."""
    stored = b'{"ts":"2026-11-27T20:47:40.123456Z","seq":1,"msg":"a\\u2028b","fields":{"k":1}}'
    assert make_formatter("json-pretty")(stored) == (
        b"{\n"
        b'  "ts": "2026-11-27T20:47:40.123456Z",\n'
        b'  "seq": 1,\n'
        b'  "msg": "a\\u2028b",\n'
        b'  "fields": {\n'
        b'    "k": 1\n'
        b"  }\n"
        b"}\n"
    )


def test_output_fields_pick_fields_and_keep_the_position() -> None:
    """--output-fields: ts, seq, uid always; top-level names; fields.NAME for sender fields."""
    fmt = make_formatter("json", fields=parse_output_fields("msg,fields.path,nosuch"))
    assert fmt(LINE) == (
        b'{"ts":"2026-11-27T20:47:40.123456Z","seq":7,"uid":1000,"msg":"disk full",'
        b'"fields":{"path":"/var"}}\n'
    )
    verbose = make_formatter("verbose", tz=UTC, fields=("pid", "app"))(LINE).decode()
    assert verbose == (
        "Fri 2026-11-27 20:47:40 UTC [uid 1000 seq 7]\n"
        "    ts=2026-11-27T20:47:40.123456Z\n"
        "    seq=7\n"
        "    uid=1000\n"
        "    pid=4242\n"
        "  claimed by the sender (not verified):\n"
        "    app=myapp\n"
    )
    with pytest.raises(ValueError, match="comma-separated"):
        parse_output_fields("msg,,pid")


def test_verbose_daemon_record_has_no_claims() -> None:
    """A daemon record (with event) is the daemon's throughout: no claimed group."""
    rec = {"ts": REC["ts"], "seq": 1, "uid": 0, "app": "trio-logd", "event": "started"}
    out = make_formatter("verbose", tz=UTC)(orjson.dumps(rec)).decode()
    assert "claimed" not in out
    assert out.endswith("    app=trio-logd\n    event=started\n")
