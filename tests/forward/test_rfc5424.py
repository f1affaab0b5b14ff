"""RFC 5424 encoding of stored records: trusted fields in logd@32473, claims elsewhere."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_logd.forward import SD_ID, encode_record, frame, make_encoder, make_framer, sd_name
from trio_logd.forward.rfc5424 import _general
from trio_logd.peer import NO_ATTRIBUTION, Attribution, PeerCred
from trio_logd.protocol.message import FACILITIES, SEVERITIES, Message
from trio_logd.protocol.rfc5424 import parse_rfc5424
from trio_logd.record import Stamp, daemon_record_line, encode_line, sender_json

TS = b"2026-11-27T20:47:40.123456Z"
WRITER = PeerCred(42, 1000, 1000)


def stored(
    msg: Message,
    *,
    seq: int = 17,
    writer: PeerCred = WRITER,
    conn: PeerCred | None = None,
    exe: str | None = "/usr/bin/python3.11",
    comm: str | None = "python3",
    relay: PeerCred | None = None,
    attribution: Attribution = NO_ATTRIBUTION,
) -> bytes:
    """The line the daemon stores for *msg* (its own encoders)."""
    stamp = Stamp(writer, conn, exe=exe, comm=comm, relay=relay, attribution=attribution)
    return encode_line(TS, seq, stamp.fragment, sender_json(msg, writer.pid))


def encode(line: bytes, host: str = "logs1") -> str:
    return encode_record(line, host).decode()


def test_plain_record_whole_message() -> None:
    """A record becomes PRI, ts, host, app, kernel pid, and the trusted element, then the text."""
    line = stored(Message("daemon", "err", "disk on fire", app="backupd"))
    assert encode(line) == (
        '<27>1 2026-11-27T20:47:40.123456Z logs1 backupd 42 - [logd@32473 uid="1000" '
        'gid="1000" pid="42" seq="17" exe="/usr/bin/python3.11" comm="python3"] disk on fire'
    )


def test_claims_stay_claims() -> None:
    """Claimed host, pid and time go to logd-claims@32473; PROCID is the kernel's pid."""
    msg = Message(
        "user", "notice", "hi", app="sshd", host="elsewhere", msgid="ID7",
        claimed_pid=1, claimed_ts="2020-01-01T00:00:00Z",
    )  # fmt: skip
    assert encode(stored(msg, exe=None, comm=None)) == (
        '<13>1 2026-11-27T20:47:40.123456Z logs1 sshd 42 ID7 [logd@32473 uid="1000" '
        'gid="1000" pid="42" seq="17"][logd-claims@32473 host="elsewhere" claimed_pid="1" '
        'claimed_ts="2020-01-01T00:00:00Z"] hi'
    )


def test_forged_trusted_element_stays_a_claim() -> None:
    """A sender's own [logd@32473 uid="0"] lands in logd-fields@32473, never as the element."""
    fields = {"logd@32473": {"uid": "0"}, "logd-claims@32473": {"host": "x"}, "uid": 0}
    line = stored(Message("user", "info", "trust me", fields=fields), exe=None, comm=None)
    text = encode(line)
    assert text == (
        '<14>1 2026-11-27T20:47:40.123456Z logs1 - 42 - [logd@32473 uid="1000" gid="1000" '
        'pid="42" seq="17"][logd-fields@32473 logd@32473="{\\"uid\\":\\"0\\"}" '
        'logd-claims@32473="{\\"host\\":\\"x\\"}" uid="0"] trust me'
    )
    parsed = parse_rfc5424(text)
    assert parsed is not None
    assert parsed.fields is not None
    assert parsed.fields[SD_ID] == {"uid": "1000", "gid": "1000", "pid": "42", "seq": "17"}


def test_sender_sd_elements_pass_through() -> None:
    """A private SD element the sender wrote arrives as it was; @cee keys go to logd-fields."""
    fields = {"ex@32473": {"iut": "3", "tag": ["a", "b"]}, "user": {"id": 7}, "ok": True}
    line = stored(Message("local0", "debug", "", app="app", fields=fields), exe=None, comm=None)
    assert encode(line) == (
        '<135>1 2026-11-27T20:47:40.123456Z logs1 app 42 - [logd@32473 uid="1000" gid="1000" '
        'pid="42" seq="17"][logd-fields@32473 user="{\\"id\\":7}" ok="true"]'
        '[ex@32473 iut="3" tag="a" tag="b"]'
    )


def test_daemon_event_record() -> None:
    """The daemon's own records put every field it wrote in the trusted element."""
    stamp = Stamp(PeerCred(9, 1000, 1000))
    line = daemon_record_line(
        1_795_000_000.5, 3, stamp, "suppressed", count=12, reason="rate", msg="12 dropped"
    )
    assert encode(line) == (
        '<45>1 2026-11-18T11:06:40.500000Z logs1 trio-logd 9 - [logd@32473 uid="1000" '
        'gid="1000" pid="9" seq="3" event="suppressed" count="12" reason="rate"] 12 dropped'
    )


def test_relay_and_connection_fields_are_trusted() -> None:
    """conn_uid/conn_pid and relay_uid/relay_pid travel in the trusted element."""
    line = stored(
        Message("user", "info", "x"),
        conn=PeerCred(40, 1000, 1000),
        relay=PeerCred(7, 0, 0),
        exe=None,
        comm=None,
    )
    assert encode(line) == (
        '<14>1 2026-11-27T20:47:40.123456Z logs1 - 42 - [logd@32473 uid="1000" gid="1000" '
        'pid="42" seq="17" conn_uid="1000" conn_pid="40" relay_uid="0" relay_pid="7"] x'
    )


def test_attribution_is_trusted() -> None:
    """cgroup, unit, slice, login and label go to the trusted element, in the stamp's order."""
    attribution = Attribution(
        "/system.slice/a.service", "a.service", "system.slice", loginuid=1000, session=4,
        label="system_u:system_r:a_t:s0",
    )  # fmt: skip
    line = stored(Message("user", "info", "m"), exe=None, comm=None, attribution=attribution)
    assert encode(line) == (
        '<14>1 2026-11-27T20:47:40.123456Z logs1 - 42 - [logd@32473 uid="1000" gid="1000" '
        'pid="42" seq="17" cgroup="/system.slice/a.service" unit="a.service" '
        'slice="system.slice" loginuid="1000" session="4" label="system_u:system_r:a_t:s0"] m'
    )


def test_param_values_are_escaped() -> None:
    """'"', '\\' and ']' inside PARAM-VALUEs are escaped (RFC 5424 §6.3.3); the text is not."""
    line = stored(
        Message("user", "info", 'a "b" [c] \\', fields={"k": 'v"]\\'}),
        exe='/opt/we"ird]/bin\\x',
        comm=None,
    )
    text = encode(line)
    assert 'exe="/opt/we\\"ird\\]/bin\\\\x"' in text
    assert 'k="v\\"\\]\\\\"' in text
    assert text.endswith(' a "b" [c] \\')
    parsed = parse_rfc5424(text)
    assert parsed is not None
    assert parsed.fields is not None
    assert parsed.fields[SD_ID]["exe"] == '/opt/we"ird]/bin\\x'
    assert parsed.fields["logd-fields@32473"] == {"k": 'v"]\\'}


@pytest.mark.parametrize(
    ("app", "header"),
    [
        ("my app", "my_app"),
        ("caf\u00e9", "caf_"),
        ("a" * 60, "a" * 48),
        ("", "-"),
        (None, "-"),
    ],
)
def test_header_fields_are_printable_ascii(app: str | None, header: str) -> None:
    """APP-NAME is mended to PRINTUSASCII and cut at 48 (RFC 5424 §6.2.5)."""
    line = stored(Message("user", "info", "m", app=app), exe=None, comm=None)
    assert encode(line).split(" ")[3] == header


def test_field_names_become_sd_names() -> None:
    """A field name with '=', space, ']' or '"' or longer than 32 is mended."""
    assert sd_name('a b=c]d"e') == "a_b_c_d_e"
    assert sd_name("x" * 40) == "x" * 32
    assert sd_name("") == "_"
    assert sd_name("fine.name-1") == "fine.name-1"


def test_frame_counts_octets() -> None:
    """RFC 6587 octet counting counts bytes, not characters."""
    assert frame("é".encode()) == b"2 \xc3\xa9"


def test_hostname_is_mended_once() -> None:
    """A hostname with a space still gives a valid header."""
    rec = orjson.loads(stored(Message("user", "info", "m"), exe=None, comm=None))
    assert make_encoder("my host")(rec).split(b" ")[2] == b"my_host"


# --------------------------------------------------------------------------- properties

_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
_scalar = st.one_of(_text, st.integers(-(10**12), 10**12), st.booleans(), st.none())
_json = st.recursive(
    _scalar,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8,
)


@st.composite
def records(draw: st.DrawFn) -> tuple[bytes, Message, PeerCred]:
    msg = Message(
        draw(st.sampled_from(FACILITIES)),
        draw(st.sampled_from(SEVERITIES)),
        draw(_text.filter(lambda t: not t.startswith(("@cee:", "\ufeff")))),
        app=draw(st.none() | _text),
        host=draw(st.none() | _text),
        msgid=draw(st.none() | _text),
        claimed_pid=draw(st.none() | st.integers(0, 99999) | _text),
        claimed_ts=draw(st.none() | _text),
        fields=draw(st.none() | st.dictionaries(_text, _json, min_size=1, max_size=4)),
        truncated=draw(st.booleans()),
    )
    writer = PeerCred(draw(st.integers(0, 2**22)), draw(st.integers(0, 2**32 - 2)), 5)
    conn = draw(st.none() | st.just(PeerCred(1, 2, 3)))
    exe = draw(st.none() | _text)
    seq = draw(st.integers(1, 2**53))
    attribution = Attribution(
        draw(st.none() | _text),
        draw(st.none() | _text),
        draw(st.none() | _text),
        loginuid=draw(st.none() | st.integers(0, 2**32 - 2)),
        label=draw(st.none() | _text),
    )
    line = stored(
        msg, seq=seq, writer=writer, conn=conn, exe=exe, comm=None, attribution=attribution
    )
    return line, msg, writer


@settings(max_examples=200, deadline=None)
@given(records())
def test_trusted_element_round_trips(case: tuple[bytes, Message, PeerCred]) -> None:
    """Whatever the sender wrote, the trusted element parses back to the kernel's values."""
    line, msg, writer = case
    text = encode(line)
    parsed = parse_rfc5424(text)
    assert parsed is not None
    assert parsed.fields is not None
    trusted = parsed.fields[SD_ID]
    rec: dict[str, Any] = orjson.loads(line)
    assert trusted["uid"] == str(writer.uid)
    assert trusted["pid"] == str(writer.pid)
    assert trusted["seq"] == str(rec["seq"])
    assert parsed.claimed_pid == writer.pid
    assert parsed.claimed_ts == TS.decode()
    assert parsed.msg == msg.msg
    assert (parsed.fac, parsed.sev) == (msg.fac, msg.sev)


@settings(max_examples=200, deadline=None)
@given(records())
def test_fast_path_equals_general_path(case: tuple[bytes, Message, PeerCred]) -> None:
    """The cached path for plain records gives exactly what the general path gives."""
    line = case[0]
    rec = orjson.loads(line)
    encoder = make_encoder("h")
    assert encoder(rec) == encoder(rec) == _general("h", rec).encode()


@settings(max_examples=200, deadline=None)
@given(st.lists(records(), min_size=1, max_size=5))
def test_framer_equals_encoder(cases: list[tuple[bytes, Message, PeerCred]]) -> None:
    """The batch framer (sliced lines) gives exactly the framed output of the record encoder."""
    lines = [c[0].rstrip(b"\n") for c in cases]
    framer, encoder = make_framer("h"), make_encoder("h")
    expected = b"".join(frame(encoder(orjson.loads(x))) for x in lines)
    assert framer(lines, None) == (expected, len(lines), 0)
    assert framer(lines, None) == (expected, len(lines), 0)  # from the cache, the same


def test_framer_filters_and_counts_bad_lines() -> None:
    """Lines the filter drops are left out; lines that are not records are counted."""
    info = stored(Message("user", "info", "kept"), exe=None, comm=None).rstrip(b"\n")
    debug = stored(Message("user", "debug", "dropped"), seq=18, exe=None, comm=None).rstrip(b"\n")
    payload, sent, bad = make_framer("h")(
        [info, b"not json", debug, b"[1]"], lambda r: r.get("sev") != "debug"
    )
    assert payload == frame(encode_record(info, "h"))
    assert (sent, bad) == (1, 2)
