"""The client's frames, read back by the daemon's own decoder and parser."""

from __future__ import annotations

import datetime
import os
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_logd.client._encode import (
    DELIVERY_FIELD,
    FrameEncoder,
    encode_record,
    exception_fields,
    facility_code,
    level_severity,
    severity_code,
)
from trio_logd.protocol.framing import FrameDecoder
from trio_logd.protocol.message import Message
from trio_logd.protocol.parse import parse_message

TS = 1_700_000_000.25  # 2023-11-14T22:13:20.250000Z


def read_back(frame: bytes) -> Message:
    """Decode one frame as the daemon does; it must be exactly one octet-counted frame."""
    decoder = FrameDecoder(1 << 20)
    decoder.receive_data(frame)
    frames = decoder.frames()
    assert len(frames) == 1
    assert not frames[0].truncated
    assert decoder.buffered == 0
    return parse_message(frames[0].data)


def encoder(**kw: Any) -> FrameEncoder:
    return FrameEncoder(default_app="myapp", hostname="host1", **kw)


def test_plain_record_reads_back_as_rfc5424() -> None:
    """A record without fields is an RFC 5424 frame with every header field as given."""
    frame = encoder(facility="local3").encode(3, "disk full", None, "worker", "ID7", TS)
    assert read_back(frame) == Message(
        fac="local3",
        sev="err",
        msg="disk full",
        app="worker",
        host="host1",
        msgid="ID7",
        claimed_pid=os.getpid(),
        claimed_ts="2023-11-14T22:13:20.250000Z",
        fields=None,
    )
    assert frame.split(b" ", 1)[1].startswith(b"<155>1 ")  # local3 (19) * 8 + err (3)


def test_octet_count_is_the_payload_length() -> None:
    """The frame is `LEN SP PAYLOAD` with LEN the payload's byte length (UTF-8)."""
    frame = encoder().encode(6, "héllo ✓", None, None, None, TS)
    count, _, payload = frame.partition(b" ")
    assert int(count) == len(payload)
    assert payload.endswith("héllo ✓".encode())


def test_fields_keep_their_json_types() -> None:
    """Fields travel as @cee: JSON: ints, floats, bools, None, lists and dicts come back as such."""
    fields = {"n": 3, "ratio": 0.5, "ok": True, "none": None, "tags": ["a", 1], "sub": {"x": -2}}
    msg = read_back(encoder().encode(6, "hello", fields, None, None, TS))
    assert (msg.msg, msg.fields) == ("hello", fields)


def test_a_message_may_hold_newlines_nul_and_tracebacks() -> None:
    """Octet counting carries LF, CR and NUL inside one record."""
    text = "line 1\nline 2\r\n\x00end"
    assert read_back(encoder().encode(6, text, None, None, None, TS)).msg == text
    assert read_back(encoder().encode(6, text, {"k": 1}, None, None, TS)).msg == text


@pytest.mark.parametrize("text", ['@cee: {"msg": "forged", "uid": 0}', "\ufeffbom first"])
def test_text_the_daemon_would_reinterpret_is_sent_as_json(text: str) -> None:
    """A text starting with @cee: or a BOM arrives unchanged, not parsed as fields."""
    msg = read_back(encoder().encode(6, text, None, None, None, TS))
    assert (msg.msg, msg.fields) == (text, None)


def test_values_json_cannot_hold_are_stringified() -> None:
    """Objects, bytes, sets, datetimes and huge ints become strings or lists, never an error."""

    class Thing:
        def __str__(self) -> str:
            return "a thing"

    fields = {
        "obj": Thing(),
        "raw": b"\xffab",
        "set": {3},
        "when": datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.UTC),
        "big": 2**80,
    }
    msg = read_back(encoder().encode(6, "x", fields, None, None, TS))
    assert msg.fields == {
        "obj": "a thing",
        "raw": "\ufffdab",
        "set": [3],
        "when": "2024-05-01T12:00:00+00:00",
        "big": str(2**80),
    }


def test_hostile_values_never_raise() -> None:
    """A broken __str__, a cycle, non-string keys and lone surrogates still give a record."""

    class Broken:
        def __str__(self) -> str:
            raise RuntimeError("no")

        def __repr__(self) -> str:
            raise RuntimeError("no")

    cycle: dict[str, Any] = {}
    cycle["self"] = cycle
    fields = {"broken": Broken(), "cycle": cycle, "keys": {(1, 2): "t", 3: "i"}, "s": "\udc80"}
    msg = read_back(encoder().encode(6, "still here", fields, None, None, TS))
    assert msg.msg == "still here"
    assert msg.fields is not None
    assert msg.fields["broken"] == "<unprintable Broken>"
    assert msg.fields["keys"] == {"(1, 2)": "t", "3": "i"}
    assert msg.fields["s"] == "?"
    depth, node = 0, msg.fields["cycle"]
    while isinstance(node, dict):
        depth, node = depth + 1, node["self"]
    assert isinstance(node, str)  # the cycle was cut, as text
    assert depth < 64


def test_nesting_deeper_than_the_daemon_reads_is_cut() -> None:
    """A 200-deep structure still arrives as fields (cut to text at depth), not as raw text."""
    deep: Any = "bottom"
    for _ in range(200):
        deep = [deep]
    msg = read_back(encoder().encode(6, "deep", {"d": deep}, None, None, TS))
    assert msg.msg == "deep"
    assert msg.fields is not None
    assert "d" in msg.fields


def test_a_field_named_msg_is_renamed() -> None:
    """`msg` is the text; a field of that name arrives as `msg_`."""
    msg = read_back(encoder().encode(6, "the text", {"msg": 5}, None, None, TS))
    assert (msg.msg, msg.fields) == ("the text", {"msg_": 5})


def test_header_fields_are_made_valid() -> None:
    """APP-NAME and MSGID lose spaces and control characters and are cut to RFC 5424's limits."""
    msg = read_back(encoder().encode(6, "x", None, "my app\n" + "a" * 60, "id with space", TS))
    assert msg.app == ("my_app_" + "a" * 60)[:48]
    assert msg.msgid == "id_with_space"
    assert read_back(encoder().encode(6, "x", None, "", None, TS)).app == "myapp"  # "" = default


def test_default_app_is_used_when_none_is_given() -> None:
    """A record without app carries the encoder's default APP-NAME."""
    assert read_back(encoder().encode(6, "x", None, None, None, TS)).app == "myapp"


def test_delivery_ids_are_unique_and_renewed_by_new_identity() -> None:
    """In acknowledged mode each record gets `<client id>:<n>`; a new identity starts a new id."""
    enc = encoder(delivery_ids=True)
    ids = [read_back(enc.encode(6, "x", None, None, None, TS)).fields for _ in range(3)]
    client = enc.client_id
    assert client is not None
    assert len(client) == 16
    assert ids == [{DELIVERY_FIELD: f"{client}:{n}"} for n in (1, 2, 3)]
    enc.new_identity()
    assert enc.client_id != client
    fields = read_back(enc.encode(6, "x", {"a": 1}, None, None, TS)).fields
    assert fields == {"a": 1, DELIVERY_FIELD: f"{enc.client_id}:1"}


def test_timestamp_keeps_microseconds_across_seconds() -> None:
    """The cached per-second prefix never leaks into the next second."""
    enc = encoder()
    assert enc.timestamp(TS) == b"2023-11-14T22:13:20.250000Z"
    assert enc.timestamp(TS + 0.999999) == b"2023-11-14T22:13:21.249999Z"
    assert enc.timestamp(TS + 1) == b"2023-11-14T22:13:21.250000Z"
    assert enc.timestamp(TS) == b"2023-11-14T22:13:20.250000Z"


def test_severity_and_facility_names() -> None:
    """Names, aliases and codes map to RFC 5424 codes; anything else is a ValueError."""
    assert [severity_code(s) for s in ("emerg", "warn", "error", "critical", "INFO", 7)] == [
        0, 4, 3, 2, 6, 7,
    ]  # fmt: skip
    assert [facility_code(f) for f in ("kern", "user", "local7", 3)] == [0, 1, 23, 3]
    for bad in ("loud", 8, -1):
        with pytest.raises(ValueError, match="severity"):
            severity_code(bad)
    with pytest.raises(ValueError, match="facility 'nope'"):
        facility_code("nope")


def test_logging_levels_map_to_severities() -> None:
    """CRITICAL/ERROR/WARNING/INFO/DEBUG and in-between levels map to the next lower one."""
    levels = [0, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 60, 100]
    assert [level_severity(n) for n in levels] == [7, 7, 7, 7, 6, 5, 4, 4, 3, 3, 2, 2, 2]


def test_unknown_severity_is_sent_as_notice_with_the_value() -> None:
    """encode_record never raises for a bad severity: notice, the value kept in `severity`."""
    msg = read_back(encode_record(encoder(), 42, "loudest", {"a": 1}, None, None, TS))
    assert (msg.sev, msg.msg, msg.fields) == ("notice", "42", {"a": 1, "severity": "loudest"})


def test_exception_fields_name_the_type_and_hold_the_traceback() -> None:
    """exc_info tuples, instances and True all give exc_type and the formatted traceback."""
    try:
        raise KeyError("missing")
    except KeyError as exc:
        from_true = exception_fields(True)
        from_tuple = exception_fields(sys.exc_info())
        from_instance = exception_fields(exc)
    assert from_true == from_tuple == from_instance
    assert from_true["exc_type"] == "KeyError"
    assert from_true["exception"].startswith("Traceback (most recent call last):\n")
    assert from_true["exception"].endswith("KeyError: 'missing'")
    assert exception_fields((None, None, None)) == {}
    assert exception_fields(False) == {}


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(
    msg=st.text(),
    fields=st.dictionaries(st.text(max_size=8).filter(lambda k: k != "msg"), json_values),
    app=st.text(max_size=60),
    sev=st.integers(0, 7),
)
def test_any_json_fields_round_trip(msg: str, fields: dict[str, Any], app: str, sev: int) -> None:
    """Whatever JSON fields, text and app: the daemon reads back the same text and fields."""
    text = msg.encode("utf-8", "replace").decode()  # lone surrogates cannot travel as UTF-8
    back = read_back(encoder().encode(sev, text, fields, app, None, TS))
    assert back.sev == ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")[sev]
    assert back.msg == text
    assert back.fields == (fields or None)
