"""Property tests of parse_message: never raises, and well-formed payloads round-trip."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_logd.protocol.message import FACILITIES, SEVERITIES, Message
from trio_logd.protocol.parse import parse_message

# Prefixes that steer random payloads into every branch of the parsers.
_PREFIXES = [
    b"",
    b"<13>",
    b"<13>1 ",
    b"<13>1 - - - - - ",
    b"<13>1 - h a p m [",
    b"<191>Nov 27 20:47:40 ",
    b"<0>2024-11-27T20:47:40Z host ",
    b"<13>app[1]: ",
    b"<13>@cee: {",
    b"@cee: ",
    b"<1999>",
    b"<",
]


@settings(max_examples=3000, deadline=None)
@given(
    st.sampled_from(_PREFIXES),
    st.one_of(
        st.binary(max_size=200),
        st.text(max_size=100).map(str.encode),
        st.lists(st.sampled_from(['"', "\\", "]", "[", "=", " ", "a", "-", ":", "{", "}", "x="]))
        .map("".join)
        .map(str.encode),
    ),
    st.booleans(),
)
def test_never_raises(prefix: bytes, rest: bytes, truncated: bool) -> None:
    """Any bytes parse into a Message with keyword fac/sev, str msg, and JSON-encodable fields."""
    message = parse_message(prefix + rest, truncated=truncated)
    assert type(message) is Message
    assert message.fac in FACILITIES
    assert message.sev in SEVERITIES
    assert isinstance(message.msg, str)
    assert message.truncated is truncated
    assert message.claimed_pid is None or isinstance(message.claimed_pid, int | str)
    # The record encoder (orjson) must be able to write whatever came out.
    orjson.dumps(message._asdict())


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=1, max_value=3000))
def test_deep_json_never_raises(depth: int) -> None:
    """Arbitrarily deep @cee JSON never raises out of parse_message."""
    text = "@cee: " + "[" * depth + "]" * depth
    assert parse_message(text.encode()) == Message("user", "notice", text)


# -- RFC 5424 round trip ---------------------------------------------------------------

_PRINTUSASCII = st.characters(min_codepoint=33, max_codepoint=126)
_SD_NAME = st.text(
    st.characters(min_codepoint=33, max_codepoint=126, exclude_characters='= ]"'),
    min_size=1,
    max_size=32,
)


def _token(max_size: int) -> st.SearchStrategy[str | None]:
    return st.none() | st.text(_PRINTUSASCII, min_size=1, max_size=max_size).filter(
        lambda s: s != "-"
    )


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


_msg_text = st.text(max_size=60).filter(lambda s: not s.startswith(("\ufeff", "@cee:")))


@settings(max_examples=800, deadline=None)
@given(
    prival=st.integers(min_value=0, max_value=191),
    ts=st.none()
    | st.sampled_from(["2003-10-11T22:14:15.003Z", "2026-11-27T20:51:16.853286+00:00"]),
    host=_token(255),
    app=_token(48),
    procid=_token(128),
    msgid=_token(32),
    sd=st.dictionaries(
        _SD_NAME, st.dictionaries(_SD_NAME, st.text(max_size=20), max_size=3), max_size=3
    ),
    msg=st.none() | _msg_text,
    bom=st.booleans(),
)  # fmt: skip
def test_rfc5424_round_trip(
    prival: int,
    ts: str | None,
    host: str | None,
    app: str | None,
    procid: str | None,
    msgid: str | None,
    sd: dict[str, dict[str, str]],
    msg: str | None,
    bom: bool,
) -> None:
    """A serialized RFC 5424 message parses back into exactly its parts."""
    header = " ".join(v or "-" for v in (ts, host, app, procid, msgid))
    sd_text = (
        "".join(
            "[" + sd_id + "".join(f' {k}="{_escape(v)}"' for k, v in params.items()) + "]"
            for sd_id, params in sd.items()
        )
        or "-"
    )
    wire = f"<{prival}>1 {header} {sd_text}"
    if msg is not None:
        wire += " " + ("\ufeff" if bom else "") + msg
    pid: int | str | None = procid
    if procid is not None and procid.isdigit() and len(procid) <= 10:
        pid = int(procid)
    fields: dict[str, Any] | None = dict(sd) or None
    assert parse_message(wire.encode()) == Message(
        FACILITIES[prival >> 3],
        SEVERITIES[prival & 7],
        msg or "",
        app=app,
        host=host,
        msgid=msgid,
        claimed_pid=pid,
        claimed_ts=ts,
        fields=fields,
    )


# -- RFC 3164 round trip ---------------------------------------------------------------

# TAG: printable ASCII but '[', ']' and ':', not starting with '@' (sshd(pam_unix),
# %PIX-7-710005); HOSTNAME: a name, or an IPv6 address
_TAG = st.from_regex(r"\A[!-9;-?A-Z\\^-~][!-9;-Z\\^-~]{0,47}\Z")
_HOST = st.from_regex(r"\A[A-Za-z0-9._%@/-]{1,40}\Z") | st.ip_addresses(v=6).map(str)


@settings(max_examples=800, deadline=None)
@given(
    prival=st.integers(min_value=0, max_value=191),
    ts=st.none() | st.sampled_from(["Nov 27 20:47:40", "Jan  1 00:00:00", "2024-11-27T20:47:40Z"]),
    host=st.none() | _HOST,
    tag=_TAG,
    pid=st.none() | st.integers(min_value=0, max_value=4194304),
    msg=_msg_text,
)  # fmt: skip
def test_rfc3164_round_trip(
    prival: int, ts: str | None, host: str | None, tag: str, pid: int | None, msg: str
) -> None:
    """A serialized glibc/logger-style line parses back into exactly its parts."""
    if ts is None:
        host = None  # a host name is only read after a timestamp
    wire = f"<{prival}>"
    wire += f"{ts} " if ts else ""
    wire += f"{host} " if host else ""
    wire += tag + (f"[{pid}]" if pid is not None else "") + ": " + msg
    assert parse_message(wire.encode()) == Message(
        FACILITIES[prival >> 3],
        SEVERITIES[prival & 7],
        msg,
        app=tag,
        host=host,
        claimed_pid=pid,
        claimed_ts=ts,
    )


def _mostly(valid: str, *others: str) -> st.SearchStrategy[str]:
    """The valid form most of the time, so the fast pattern is really exercised."""
    return st.one_of(st.just(valid), st.just(valid), st.sampled_from([valid, *others]))


_GLIBC_LIKE = st.builds(
    lambda pri, mon, day, hms, sp, tag, pid, colon, rest: (
        f"<{pri}>{mon} {day} {hms}{sp}{tag}{pid}{colon}{rest}"
    ),
    st.integers(0, 999).map(str),
    _mostly("Nov", "Dec", "nov", "Foo"),
    _mostly("27", " 7", "7", "2024 27"),
    _mostly("20:47:40", "20:47:40.123", "2:47:40"),
    _mostly(" ", "  ", ""),
    st.one_of(
        st.text(alphabet="abz019_./+-", min_size=1, max_size=50),
        st.text(alphabet="ab1_./@+-:[] ", min_size=0, max_size=12),
        st.text(alphabet='a(%)"\\#é', min_size=1, max_size=12),
    ),
    _mostly("[123]", "", "[12345678901]", "[x]", "[]"),
    _mostly(": ", ":", "::", " ", ": :", ""),
    st.text(max_size=20),
)


@given(_GLIBC_LIKE)
def test_glibc_fast_path_agrees_with_the_full_grammar(text: str) -> None:
    """Where the glibc fast pattern matches, it reads what the full RFC 3164 grammar reads."""
    from trio_logd.protocol._abnf import RFC3164_GLIBC, RFC3164_PAYLOAD

    fast = RFC3164_GLIBC.match(text)
    if fast is None:
        return
    full = RFC3164_PAYLOAD.match(text)
    assert full is not None
    pri, ts, host, app, pidnum, pid = full.groups()
    assert (fast.groups(), fast.end()) == ((pri, ts, app, pidnum), full.end())
    assert (host, pid) == (None, None)
