"""The record encoder escapes what orjson leaves raw: DEL, C1, bidi and line separators."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_logd.peer import PeerCred
from trio_logd.protocol.parse import parse_message
from trio_logd.record import Stamp, json_safe, sender_json

UNSAFE = (
    "\x7f\x80\x85\x9b\x9f\u061c\u200e\u200f\u2028\u2029"
    "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)


@pytest.mark.parametrize("ch", list(UNSAFE))
def test_each_unsafe_character_is_written_as_an_escape(ch: str) -> None:
    """Each character a line must not hold raw becomes a \\u escape of itself."""
    out = json_safe(orjson.dumps({"msg": f"a{ch}b"}))
    assert out == b'{"msg":"a\\u%04xb"}' % ord(ch)
    assert out.isascii()


def test_harmless_non_ascii_stays_as_it_is() -> None:
    """Accents, symbols, emoji and other formats (BOM, ZWSP) are left raw: nothing to fear."""
    text = "caf\u00e9 \u20ac \U0001f600 \ufeff\u200b \u00a0"
    out = json_safe(orjson.dumps(text))
    assert out == orjson.dumps(text)


@given(st.text())
def test_escaped_json_is_the_same_value_and_one_line_for_every_reader(text: str) -> None:
    """Whatever the text: same value back, and neither bytes nor str.splitlines see a 2nd line."""
    try:
        raw = orjson.dumps({"msg": text})
    except TypeError:  # a lone surrogate: never produced by the parser (UTF-8 decode)
        return
    out = json_safe(raw)
    assert orjson.loads(out) == {"msg": text}
    assert len(out.decode().splitlines()) == 1
    assert not any(ch in out.decode() for ch in UNSAFE)


def test_sender_json_and_stamp_are_escaped() -> None:
    """The claims of a message and a stamp's comm (set by the process) are both escaped."""
    msg = parse_message("<13>app: right\u202eto left\u2028second line".encode())
    assert sender_json(msg, 1).endswith(b'"msg":"right\\u202eto left\\u2028second line"')
    stamp = Stamp(PeerCred(1, 2, 3), comm="evil\x85\u202e", exe="/tmp/a\u2029b")
    assert stamp.fragment == (
        b'"uid":2,"gid":3,"pid":1,"exe":"/tmp/a\\u2029b","comm":"evil\\u0085\\u202e"'
    )
