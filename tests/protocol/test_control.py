"""The control protocol codec: request/response lines, bounded line reader."""

from __future__ import annotations

import pytest

from trio_logd.errors import ParseError
from trio_logd.protocol.control import (
    NEED_DATA,
    LineReader,
    Request,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
)


def test_request_round_trips() -> None:
    """encode_request then decode_request gives the op and the non-None arguments."""
    line = encode_request("query", uid=1000, grep=None, n=5)
    assert line.endswith(b"\n")
    assert decode_request(line[:-1]) == Request("query", {"uid": 1000, "n": 5})


@pytest.mark.parametrize("bad", [b"", b"nope", b"[1]", b'{"op": 3}', b'{"x": "status"}'])
def test_malformed_requests_are_parse_errors(bad: bytes) -> None:
    """Anything but an object with a string op is refused with ParseError."""
    with pytest.raises(ParseError, match="invalid control request"):
        decode_request(bad)


def test_response_round_trips() -> None:
    """encode_response/decode_response keep the type and fields."""
    line = encode_response("error", code="denied", error="permission denied")
    assert decode_response(line) == {
        "type": "error",
        "code": "denied",
        "error": "permission denied",
    }


def test_request_is_compact_utf8_as_the_daemon_reads_it() -> None:
    """A request is one compact JSON line, non-ASCII text as UTF-8, what orjson reads back."""
    line = encode_request("query", identifiers=["wéb", "日本"], lines=5)
    assert line == '{"op":"query","identifiers":["wéb","日本"],"lines":5}\n'.encode()
    assert decode_request(line) == Request("query", {"identifiers": ["wéb", "日本"], "lines": 5})


def test_request_with_a_lone_surrogate_is_refused_not_raised() -> None:
    """An argument that was not UTF-8 (a lone surrogate) is sent escaped; the daemon refuses it."""
    line = encode_request("query", identifiers=["\udcff"])
    assert line == b'{"op":"query","identifiers":["\\udcff"]}\n'
    with pytest.raises(ParseError, match="invalid control request"):
        decode_request(line)


@pytest.mark.parametrize(
    "bad",
    [b"", b"nope", b"[1]", b'{"x": 1}', b'{"type": NaN}', b'{"type": "ok", "n": Infinity}',
     b'{"type": "\xff"}', b"[" * 100_000],
)  # fmt: skip
def test_malformed_responses_are_parse_errors(bad: bytes) -> None:
    """Not JSON, not UTF-8, NaN, nested past the parser, or no string type: ParseError."""
    with pytest.raises(ParseError, match="invalid control response"):
        decode_response(bad)


def test_line_reader_splits_any_chunking() -> None:
    """Lines come out the same whether fed whole or byte by byte."""
    data = b'{"op":"a"}\n{"op":"b"}\n'
    for step in (1, 2, 5, len(data)):
        r = LineReader()
        got = []
        for i in range(0, len(data), step):
            r.receive_data(data[i : i + step])
            while (line := r.next_line()) is not NEED_DATA:
                got.append(line)
        assert got == [b'{"op":"a"}', b'{"op":"b"}']


def test_line_reader_bounds_a_line() -> None:
    """A line longer than max_line raises instead of growing without bound."""
    r = LineReader(max_line=10)
    r.receive_data(b"x" * 11)
    with pytest.raises(ParseError, match="longer than 10"):
        r.next_line()


def test_line_reader_eof_inside_a_line() -> None:
    """EOF in the middle of a line is an error; EOF between lines is NEED_DATA."""
    r = LineReader()
    r.receive_data(b"abc")
    r.receive_data(b"")
    with pytest.raises(ParseError, match="ended inside a line"):
        r.next_line()
    r2 = LineReader()
    r2.receive_data(b"")
    assert r2.next_line() is NEED_DATA
