"""RFC 5424's writer: what it formats, the parser reads back field for field."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_logd.protocol import _abnf
from trio_logd.protocol.rfc5424 import PRI_NAMES, parse_rfc5424
from trio_logd.protocol.rfc5424_writer import (
    APP_NAME_MAX,
    HOSTNAME_MAX,
    MSGID_MAX,
    PROCID_MAX,
    format_message,
    header_field,
    is_hostname,
    is_sd_name,
    sd_element,
    sd_name,
)

_PRINTUSASCII = re.compile(r"[\x21-\x7e]*")
_any_text = st.text(max_size=300)
#: A header value a sender might give: anything but NILVALUE itself.
_header_value = _any_text.filter(lambda t: t != "-")
_timestamp = st.sampled_from(
    ["2026-11-27T20:47:40.123456Z", "2003-10-11T22:14:15.003+02:00", "1985-04-12T23:20:50Z"]
)
_sd_names = st.text(min_size=1, max_size=40).map(sd_name)
_params = st.lists(st.tuples(_sd_names, _any_text), min_size=1, max_size=4)
#: MSG that the parser reads as it is: not starting with a BOM or ``@cee:``.
_msg = _any_text.filter(lambda t: not t.startswith(("\ufeff", "@cee:")))


@settings(max_examples=300, deadline=None)
@given(
    prival=st.integers(0, 191),
    ts=st.none() | _timestamp,
    host=st.none() | _header_value,
    app=st.none() | _header_value,
    procid=st.none() | st.integers(0, 2**22) | _header_value,
    msgid=st.none() | _header_value,
    elements=st.lists(st.tuples(_sd_names, _params), max_size=3, unique_by=lambda e: e[0]),
    msg=_msg,
)
def test_formatted_message_parses_back(
    prival: int,
    ts: str | None,
    host: str | None,
    app: str | None,
    procid: int | str | None,
    msgid: str | None,
    elements: list[tuple[str, list[tuple[str, str]]]],
    msg: str,
) -> None:
    """Every field of a formatted message, mended where it had to be, is what the parser reads."""
    sd = "".join(sd_element(sd_id, params) for sd_id, params in elements)
    text = format_message(prival, ts, host, app, procid, msgid, sd, msg)
    parsed = parse_rfc5424(text)
    assert parsed is not None, text
    assert (parsed.fac, parsed.sev) == PRI_NAMES[prival]
    assert parsed.claimed_ts == ts
    assert parsed.host == _mended(host, HOSTNAME_MAX)
    assert parsed.app == _mended(app, APP_NAME_MAX)
    assert parsed.msgid == _mended(msgid, MSGID_MAX)
    want_pid = _mended(None if procid is None else str(procid), PROCID_MAX)
    assert (None if parsed.claimed_pid is None else str(parsed.claimed_pid)) == want_pid
    assert parsed.msg == msg
    want: dict[str, dict[str, str | list[str]]] = {}
    for sd_id, params in elements:
        element = want.setdefault(sd_id, {})
        for name, value in params:
            old = element.get(name)
            element[name] = value if old is None else [*_as_list(old), value]
    assert (parsed.fields or {}) == want


def _as_list(value: str | list[str]) -> list[str]:
    return value if isinstance(value, list) else [value]


def _mended(text: str | None, limit: int) -> str | None:
    got = header_field(text, limit)
    return None if got == "-" else got


@given(text=_any_text, limit=st.sampled_from([APP_NAME_MAX, MSGID_MAX, HOSTNAME_MAX]))
def test_header_field_is_printusascii(text: str, limit: int) -> None:
    """A header field is 1 to *limit* PRINTUSASCII characters, and valid text is kept as is."""
    got = header_field(text, limit)
    assert 1 <= len(got) <= limit
    assert _PRINTUSASCII.fullmatch(got)
    if text and len(text) <= limit and _PRINTUSASCII.fullmatch(text):
        assert got == text


@given(name=_any_text)
def test_sd_name_is_valid(name: str) -> None:
    """A mended SD-NAME is one, and a valid one is kept as is."""
    got = sd_name(name)
    assert is_sd_name(got)
    if is_sd_name(name):
        assert got == name


@pytest.mark.parametrize(
    ("text", "ok"),
    [("host.example", True), ("", False), ("a b", False), ("é", False), ("x" * 256, False)],
)
def test_is_hostname(text: str, ok: bool) -> None:
    """HOSTNAME is 1 to 255 PRINTUSASCII characters."""
    assert is_hostname(text) is ok


def test_parser_uses_the_writers_limits() -> None:
    """The parser's header pattern is built from the same limits (one grammar)."""
    pattern = _abnf.RFC5424_HEADER.pattern
    for limit in (HOSTNAME_MAX, APP_NAME_MAX, PROCID_MAX, MSGID_MAX):
        assert f"{{1,{limit}}}" in pattern
