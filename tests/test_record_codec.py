"""The record line's codec: what the encoders write, every fixed-offset reader reads back."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_logd.protocol.message import FACILITIES, SEVERITIES, Message
from trio_logd.record import (
    SEQ_AT,
    TS_AT,
    PeerCred,
    Stamp,
    daemon_event,
    daemon_record_line,
    encode_line,
    encode_lines,
    format_ts,
    line_seq,
    line_ts,
    sender_json,
    seq_key,
    stamp_span,
    ts_epoch,
    with_seq,
)

_T0 = 1_795_812_460.123456
_WRITER = PeerCred(pid=4321, uid=1000, gid=1000)
#: Sender content that imitates the layout the readers rely on.
_HOSTILE = (
    '","seq":7,"uid":0,',
    '"seq":1,"ts":"2000-01-01T00:00:00.000000Z"',
    ',"fac":"syslog","sev":"info","app":"trio-logd","event":"rotated"',
    '{"ts":"x","seq":1}\n',
    '\\","seq":',
)

_text = st.one_of(st.sampled_from(_HOSTILE), st.text(max_size=40))
_json_value: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8,
)
_messages = st.builds(
    Message,
    fac=st.sampled_from(FACILITIES),
    sev=st.sampled_from(SEVERITIES),
    app=st.none() | _text,
    host=st.none() | _text,
    msgid=st.none() | _text,
    claimed_pid=st.none() | st.integers(0, 2**31),
    claimed_ts=st.none() | _text,
    msg=_text,
    fields=st.dictionaries(_text, _json_value, max_size=3),
    truncated=st.booleans(),
)
_stamps = st.builds(
    Stamp,
    st.just(_WRITER),
    st.none() | st.builds(PeerCred, st.integers(1, 2**22), st.integers(0, 2**32 - 2), st.just(0)),
    exe=st.none() | _text,
    comm=st.none() | _text,
    relay=st.none() | st.builds(PeerCred, st.integers(1, 99), st.integers(0, 99), st.just(0)),
    owner=st.none() | st.integers(0, 2**32 - 2),
    pidns=st.none() | st.booleans(),
)


def _check_readers(line: bytes) -> dict[str, Any]:
    """Every reader of *line* agrees with ``orjson.loads`` of it."""
    obj = orjson.loads(line)
    assert isinstance(obj, dict)
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert line_ts(line).decode() == obj["ts"]
    assert line_seq(line) == seq_key(line) == obj["seq"]
    start, end = stamp_span(line)
    assert start > 0
    assert end > start
    stamp = orjson.loads(b"{" + line[start + 1 : end] + b"}")
    claims = orjson.loads(b"{" + line[end + 1 :])
    assert {**stamp, **claims, "ts": obj["ts"], "seq": obj["seq"]} == obj
    assert next(iter(claims)) == "fac"
    assert set(stamp) <= {"uid", "gid", "pid", "conn_uid", "conn_pid", "relay_uid",
                          "relay_pid", "exe", "comm", "owner_uid", "pidns"}  # fmt: skip
    assert daemon_event(line) == obj.get("event")
    return obj


@settings(max_examples=150, deadline=None)
@given(msg=_messages, stamp=_stamps, seq=st.integers(1, 2**63 - 1))
def test_sender_line_reads_back(msg: Message, stamp: Stamp, seq: int) -> None:
    """A sender's line, however hostile its content, reads back the same by every reader."""
    ts = format_ts(_T0).encode()
    line = encode_line(ts, seq, stamp.fragment, sender_json(msg, _WRITER.pid))
    obj = _check_readers(line)
    assert "event" not in obj
    assert obj["msg"] == msg.msg
    renumbered = with_seq(line, 1)
    assert orjson.loads(renumbered) == {**obj, "seq": 1}


@settings(max_examples=50, deadline=None)
@given(claims=st.lists(_messages, min_size=1, max_size=5), first=st.integers(1, 2**40))
def test_batch_lines_are_encode_line_byte_for_byte(claims: list[Message], first: int) -> None:
    """``encode_lines`` gives what ``encode_line`` gives record by record."""
    ts = format_ts(_T0).encode()
    frag = Stamp(_WRITER).fragment
    encoded = [sender_json(m, _WRITER.pid) for m in claims]
    lines = encode_lines(ts, first, frag, encoded)
    assert lines == [encode_line(ts, first + i, frag, c) for i, c in enumerate(encoded)]
    assert [line_seq(ln) for ln in lines] == list(range(first, first + len(claims)))


@pytest.mark.parametrize("event", ["started", "rotated", "suppressed", "protocol_error"])
def test_daemon_record_reads_back(event: str) -> None:
    """A daemon record's event, ts and seq are read at their places."""
    stamp = Stamp(PeerCred(pid=1, uid=1000, gid=1000))
    line = daemon_record_line(_T0, 12, stamp, event, count=3, reason='"seq":1')
    obj = _check_readers(line)
    assert daemon_event(line) == event == obj["event"]
    assert ts_epoch(line_ts(line)) == pytest.approx(_T0, abs=1e-6)


def test_sender_cannot_look_like_a_daemon_event() -> None:
    """A sender whose app and msg imitate a daemon record is not one."""
    msg = Message(fac="syslog", sev="info", app="trio-logd", msg="rotated")
    line = encode_line(b"2026-11-27T20:47:40.000000Z", 1, Stamp(_WRITER).fragment,
                       sender_json(msg, _WRITER.pid))  # fmt: skip
    assert daemon_event(line) is None


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"nonsense",
        b'{"ts":"2026-11-27T20:47:40.000000Z","seq":,"uid":1}',
        b'{"ts":"2026-11-27T20:47:40.000000Z","seq":-1,"uid":1}',
        b'{"ts":"2026-11-27T20:47:40.000000Z","seq":1e3,"uid":1}',
        b'{"ts":"2026-11-27T20:47:40.00000Z","seq":1,"uid":1}',
        b'{"seq":1,"ts":"2026-11-27T20:47:40.000000Z","uid":1}',
        b'{"ts":"2026-11-27T20:47:40.000000Z","seq":1' + b"0" * 30 + b',"uid":1}',
    ],
)
def test_line_without_the_layout(line: bytes) -> None:
    """A line not of the daemon's layout: seq None (0 as a key), no stamp, no renumbering."""
    assert line_seq(line) is None
    assert seq_key(line) == 0
    if b'"seq":-1' not in line and b'"seq":1e3' not in line:  # seq digits: not checked
        assert stamp_span(line) == (-1, -1)
    assert daemon_event(line) is None
    with pytest.raises(ValueError, match="layout"):
        with_seq(line, 1)


def test_ts_epoch_rejects_other_forms() -> None:
    """A ts not in the daemon's form is an error, not a wrong time."""
    with pytest.raises(ValueError, match="RFC 3339"):
        ts_epoch(b"2026-11-27T20:47:40Z")


def test_layout_offsets() -> None:
    """The offsets the readers use as literals are the layout's (``{"ts":"`` 7, ts 27, …)."""
    assert (TS_AT.start, TS_AT.stop, SEQ_AT) == (7, 34, 42)
    line = encode_line(b"2026-11-27T20:47:40.000000Z", 10**19, b'"uid":1', b'"fac":"user"')
    assert line_seq(line) == 10**19  # the longest seq (20 digits) is still read


def test_peer_cred_is_the_same_class_in_peer() -> None:
    """``trio_logd.peer`` re-exports the codec's PeerCred (one class)."""
    from trio_logd import peer

    assert peer.PeerCred is PeerCred
