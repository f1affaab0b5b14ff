"""Property: whatever SD or @cee a sender writes, a case-folding collector sees one trusted element.

The sender's payload goes through the ingest parser and the record encoder
(as the daemon stores it), then through the forwarder's encoder and its
framer. The frame is read by a parser that folds SD-IDs and PARAM-NAMEs to
lower case and lets a later element of the same name win, as rsyslog's
``mmpstrucdata`` does with its defaults: it must find exactly one element
named ``logd@32473``, carrying the kernel's values, and a MSG that no
collector reads as ``@cee:``.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_logd.forward import encode_record, make_framer
from trio_logd.peer import PeerCred
from trio_logd.protocol.message import Message
from trio_logd.protocol.parse import parse_message
from trio_logd.protocol.reserved import reads_as_cee
from trio_logd.record import Stamp, encode_line, sender_json

TS = b"2026-11-27T20:47:40.123456Z"
KERNEL = PeerCred(4242, 1000, 100)
OURS = ("logd@32473", "logd-claim@32473", "logd-claims@32473", "logd-fields@32473",
        "logd@32473.1", "logdx@32473")  # fmt: skip

#: RFC 5424 §6: HEADER, then SD-ELEMENTs; SD-NAME = 1*32 PRINTUSASCII but = SP ] "
_HEADER = re.compile(r"<[0-9]{1,3}>1 \S+ \S+ \S+ \S+ \S+ ")
_ELEMENT = re.compile(r'\[([^ =\]"]{1,32})((?: [^ =\]"]{1,32}="(?:[^"\\\]]|\\.)*")*)\]')
_PARAM = re.compile(r' ([^ =\]"]{1,32})="((?:[^"\\\]]|\\.)*)"')


def case_folding_parse(message: str) -> tuple[list[tuple[str, dict[str, str]]], str]:
    """The SD elements (names lowercased, in order) and the MSG, as mmpstrucdata reads them."""
    head = _HEADER.match(message)
    assert head is not None, message
    pos = head.end()
    elements: list[tuple[str, dict[str, str]]] = []
    while (m := _ELEMENT.match(message, pos)) is not None:
        params = {
            name.lower(): re.sub(r"\\(.)", r"\1", value)
            for name, value in _PARAM.findall(m.group(2))
        }
        elements.append((m.group(1).lower(), params))
        pos = m.end()
    assert elements, message  # the trusted element is always there
    rest = message[pos:]
    assert rest == "" or rest.startswith(" "), message
    return elements, rest[1:]


def flip_case(draw: st.DrawFn, name: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(name), max_size=len(name)))
    return "".join(c.upper() if f else c for c, f in zip(name, flips, strict=True))


@st.composite
def sd_ids(draw: st.DrawFn) -> str:
    """SD-IDs: ours in any case, other private ones, IANA-style names."""
    kind = draw(st.sampled_from(["ours", "private", "plain"]))
    if kind == "ours":
        return flip_case(draw, draw(st.sampled_from(OURS)))
    name = draw(st.text(st.sampled_from("abcLOGDxyz-_.0123"), min_size=1, max_size=10))
    return (
        f"{name}@{draw(st.sampled_from(['32473', '1', '32473.2']))}" if kind == "private" else name
    )


_PARAM_NAMES = st.one_of(
    st.sampled_from(["uid", "UID", "gid", "pid", "Pid", "seq", "exe"]),
    st.text(st.sampled_from("abcxyz_"), min_size=1, max_size=6),
)
_VALUES = st.one_of(st.just("0"), st.just("1"), st.text(max_size=8))


def _sd_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


@st.composite
def payloads(draw: st.DrawFn) -> bytes:
    """A sender's payload: RFC 5424 SD elements and/or an @cee: object, under any names."""
    elements = draw(st.lists(st.tuples(sd_ids(), st.dictionaries(_PARAM_NAMES, _VALUES,
                                                                  min_size=1, max_size=4)),
                             max_size=4))  # fmt: skip
    sd = "".join(
        "[" + sid + "".join(f' {k}="{_sd_escape(v)}"' for k, v in params.items()) + "]"
        for sid, params in elements
    )
    cee_obj: dict[str, Any] = draw(
        st.dictionaries(
            st.one_of(sd_ids(), st.just("msg")),
            st.one_of(
                st.dictionaries(_PARAM_NAMES, _VALUES, max_size=3),
                _VALUES,
                st.integers(-5, 5),
            ),
            max_size=4,
        )
    )
    text = draw(st.sampled_from(["hi", "", ' @cee: {"logd@32473": {"uid": "0"}}', '[x@1 a="b"]']))
    as_cee: bool = draw(st.booleans())
    nested: bool = draw(st.booleans())
    if cee_obj or as_cee:
        if not isinstance(cee_obj.get("msg"), str) and nested:
            cee_obj["msg"] = text  # the @cee message text may itself look structured
        text = "@cee: " + orjson.dumps(cee_obj).decode()
    form = draw(st.sampled_from(["5424", "3164"]))
    if form == "5424":
        return f"<13>1 - host app 7 - {sd or '-'} {text}".encode()
    return f"<13>app[7]: {text}".encode()


def _line(payload: bytes) -> bytes:
    msg = parse_message(payload)
    stamp = Stamp(KERNEL, exe="/usr/bin/app", comm="app")
    return encode_line(TS, 9, stamp.fragment, sender_json(msg, KERNEL.pid))


@settings(max_examples=300, deadline=None)
@given(payloads())
def test_one_trusted_element_with_the_kernel_values(payload: bytes) -> None:
    """Any sender SD/@cee: one logd@32473 (the kernel's) after case folding, and no @cee MSG."""
    line = _line(payload)
    framed, sent, bad = make_framer("box")([line.rstrip(b"\n")], None)
    assert (sent, bad) == (1, 0)
    head, _, message = framed.partition(b" ")
    assert int(head) == len(message)
    assert message == encode_record(line, "box")
    elements, msg = case_folding_parse(message.decode())
    trusted = [params for sid, params in elements if sid == "logd@32473"]
    assert len(trusted) == 1, elements
    assert elements[0][0] == "logd@32473"
    assert {k: trusted[0][k] for k in ("uid", "gid", "pid", "seq")} == {
        "uid": "1000", "gid": "100", "pid": "4242", "seq": "9",
    }  # fmt: skip
    ours = [sid for sid, _params in elements if sid.startswith("logd")]
    assert len(ours) == len(set(ours)), elements  # no element of ours twice, in any case
    assert set(ours) <= {"logd@32473", "logd-claims@32473", "logd-fields@32473"}
    assert not reads_as_cee(msg)


def test_case_variants_of_ours_go_into_the_fields_element() -> None:
    """LOGD@32473, logd@32473.1 (SD) and Logd@32473 (@cee) become logd-fields@32473 params."""
    cee: dict[str, Any] = {"Logd@32473": {"uid": "0", "pid": "1"}, "msg": "m"}
    payload = b'<13>1 - - app - - [LOGD@32473 uid="0"][logd@32473.1 pid="1"] @cee: '
    message = encode_record(_line(payload + orjson.dumps(cee)), "box").decode()
    assert message.endswith(
        '[logd-fields@32473 LOGD@32473="{\\"uid\\":\\"0\\"}" logd@32473.1="{\\"pid\\":\\"1\\"}" '
        'Logd@32473="{\\"uid\\":\\"0\\",\\"pid\\":\\"1\\"}"] m'
    )
    elements, msg = case_folding_parse(message)
    assert [sid for sid, _ in elements] == ["logd@32473", "logd-fields@32473"]
    assert msg == "m"


def test_header_fields_are_escaped() -> None:
    """APP-NAME, MSGID and HOSTNAME cannot carry SD: spaces become _, so the SD stays ours."""
    msg = Message("user", "notice", "x", app='a [logd@32473 uid="0"]', msgid="m [LOGD@32473 x]")
    stamp = Stamp(KERNEL)
    line = encode_line(TS, 9, stamp.fragment, sender_json(msg, KERNEL.pid))
    message = encode_record(line, 'my host [logd@32473 uid="0"]').decode()
    fields = message.split(" ")
    assert fields[2:6] == ['my_host_[logd@32473_uid="0"]', 'a_[logd@32473_uid="0"]', "4242",
                           "m_[LOGD@32473_x]"]  # fmt: skip
    elements, _msg = case_folding_parse(message)
    assert [sid for sid, _ in elements] == ["logd@32473"]
