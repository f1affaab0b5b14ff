"""@cee: structured fields in MSG (CEE / lumberjack, as rsyslog's mmjsonparse reads them)."""

from __future__ import annotations

import pytest

from trio_logd.protocol.cee import MAX_DEPTH, parse_cee
from trio_logd.protocol.message import Message
from trio_logd.protocol.parse import parse_message


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(
            b'<13>app[1]: @cee: {"msg": "disk full", "path": "/var", "free": 1024,'
            b' "ratio": 0.5, "ok": false, "none": null, "tags": ["a", 1],'
            b' "nested": {"deep": {"x": [1, {"y": 2}]}}}',
            Message("user", "notice", "disk full", app="app", claimed_pid=1,
                    fields={"path": "/var", "free": 1024, "ratio": 0.5, "ok": False,
                            "none": None, "tags": ["a", 1],
                            "nested": {"deep": {"x": [1, {"y": 2}]}}}),
            id="types-kept",
        ),
        pytest.param(
            b'<13>@cee:{"msg":"tight"}',
            Message("user", "notice", "tight"),
            id="no-space-no-tag",
        ),
        pytest.param(
            b'@cee:   \t{"msg": "no pri", "a": 1}',
            Message("user", "notice", "no pri", fields={"a": 1}),
            id="without-pri-whitespace",
        ),
        pytest.param(
            b'<13>Nov 27 20:47:40 app: @cee: {"a": 1}',
            Message("user", "notice", "", app="app", claimed_ts="Nov 27 20:47:40",
                    fields={"a": 1}),
            id="no-msg-key",
        ),
        pytest.param(
            b'<13>@cee: {"msg": 42, "a": 1}',
            Message("user", "notice", "", fields={"msg": 42, "a": 1}),
            id="msg-not-a-string",
        ),
        pytest.param(
            b"<13>@cee: {}",
            Message("user", "notice", ""),
            id="empty-object",
        ),
        pytest.param(
            b'<13>@cee: {"big": 18446744073709551615, "huge": 1e300, "neg": -9223372036854775808}',
            Message("user", "notice", "", fields={"big": 18446744073709551615, "huge": 1e300,
                                                  "neg": -9223372036854775808}),
            id="numbers",
        ),
        pytest.param(
            b'<13>@cee: {"a": "x\\u0000\\n\\u001b[31m", "\\u00e9": "\xc3\xa9", "bad": "\xff"}',
            Message("user", "notice", "", fields={"a": "x\x00\n\x1b[31m", "é": "é",
                                                  "bad": "\ufffd"}),
            id="escapes-and-invalid-utf8",
        ),
        pytest.param(
            b'<13>@cee: {"a": 1, "a": 2}',
            Message("user", "notice", "", fields={"a": 2}),
            id="duplicate-key-last-wins",
        ),
        pytest.param(
            b'<13>1 - - - - - [sd a="1"][both b="2"] @cee: {"both": "cee", "x": 3}',
            Message("user", "notice", "", fields={"sd": {"a": "1"}, "both": "cee", "x": 3}),
            id="merged-with-sd-cee-wins",
        ),
        pytest.param(
            b'<13>1 - - - - - - \xef\xbb\xbf@cee: {"msg": "after bom"}',
            Message("user", "notice", "after bom"),
            id="5424-after-bom",
        ),
        pytest.param(
            b'<13>1 - - - - - [a x="1"] @cee: nope',
            Message("user", "notice", "@cee: nope", fields={"a": {"x": "1"}}),
            id="5424-invalid-cee-keeps-sd",
        ),
    ],
)  # fmt: skip
def test_cee_object(data: bytes, expected: Message) -> None:
    """A JSON object after @cee: becomes fields (JSON types kept) and its "msg" the text."""
    assert parse_message(data) == expected


@pytest.mark.parametrize(
    "msg",
    [
        "@cee: not json",
        "@cee: [1, 2]",
        '@cee: "string"',
        "@cee: 42",
        "@cee: null",
        '@cee: {"a": 1} trailing',
        '@cee: {"a": 1',
        '@cee: {"a": NaN}',
        '@cee: {"a": 1e400}',
        '@cee: {"a": "\\ud800"}',
        "@cee:",
        '@cee {"a": 1}',
        '@CEE: {"a": 1}',
        ' @cee: {"a": 1}',
    ],
)
def test_not_structured_stays_text(msg: str) -> None:
    """Invalid JSON, a non-object, or no exact @cee: cookie: the text stays, no fields."""
    assert parse_cee(msg) is None
    assert parse_message(b"<13>" + msg.encode()) == Message("user", "notice", msg)


@pytest.mark.parametrize("depth", [2000, 1025, MAX_DEPTH + 1])
def test_too_deep_stays_text(depth: int) -> None:
    """Nesting deeper than MAX_DEPTH never raises (no RecursionError): the text stays."""
    msg = "@cee: " + '{"a":' * depth + "1" + "}" * depth
    assert parse_message(msg.encode()) == Message("user", "notice", msg)


def test_max_depth_accepted() -> None:
    """Nesting of exactly MAX_DEPTH objects and lists is structured."""
    inner: object = 1
    for i in range(MAX_DEPTH - 1):
        inner = [inner] if i % 2 else {"k": inner}
    text = '{"msg": "deep", "v": ' + _dumps(inner) + "}"
    assert parse_cee("@cee: " + text) == ("deep", {"v": inner})


def test_many_brackets_in_strings_not_depth() -> None:
    """Brackets inside JSON strings are not nesting: a flat object with many of them is accepted."""
    text = '@cee: {"msg": "' + "[{" * 100 + '", "n": 1}'
    assert parse_cee(text) == ("[{" * 100, {"n": 1})


def _dumps(value: object) -> str:
    import orjson

    return orjson.dumps(value).decode()
