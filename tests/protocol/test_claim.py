"""Relay claims: the logd-claim@32473 element, from RFC 5424 SD and from @cee: objects."""

from __future__ import annotations

import pytest

from trio_logd.protocol.claim import CLAIM_SD_ID, Claim, take_claim
from trio_logd.protocol.message import Message
from trio_logd.protocol.parse import parse_message


def test_sd_element_claim_is_taken_and_removed() -> None:
    """An RFC 5424 claim gives uid/gid/pid; the element leaves fields, the rest stays."""
    msg = parse_message(
        b'<14>1 - host app 7 - [logd-claim@32473 uid="1000" gid="100" pid="42"][x@1 a="b"] hi'
    )
    taken = take_claim(msg)
    assert taken is not None
    claim, rest = taken
    assert claim == Claim(1000, 100, 42)
    assert rest == msg._replace(fields={"x@1": {"a": "b"}})


def test_cee_claim_with_json_integers() -> None:
    """An @cee: object's logd-claim@32473 key (JSON integers) is a claim too."""
    msg = parse_message(b'<14>app: @cee: {"logd-claim@32473": {"uid": 0}, "msg": "m"}')
    assert take_claim(msg) == (Claim(0, None, None), msg._replace(fields=None))


def test_only_the_claim_leaves_fields_none() -> None:
    """When the claim was the only structured data, fields become None."""
    msg = parse_message(b'<14>1 - - - - - [logd-claim@32473 uid="5"] text')
    assert take_claim(msg) == (Claim(5, None, None), msg._replace(fields=None))


@pytest.mark.parametrize(
    "element",
    [
        {},
        {"pid": "1"},
        {"uid": "-1"},
        {"uid": "+5"},
        {"uid": "05"},
        {"uid": "4294967295"},
        {"uid": "99999999999"},
        {"uid": "1", "pid": "2147483648"},
        {"uid": "1", "gid": "x"},
        {"uid": "1", "user": "root"},
        {"uid": ["1", "2"]},
        {"uid": True},
        {"uid": 1.0},
        {"uid": "١"},
    ],
)
def test_malformed_claims_are_not_claims(element: dict[str, object]) -> None:
    """A claim with a missing, extra, repeated, signed, padded or out-of-range value is none."""
    msg = Message("user", "notice", "m", fields={CLAIM_SD_ID: element})
    assert take_claim(msg) is None


def test_no_fields_or_other_sd_ids_are_not_claims() -> None:
    """Messages without the SD-ID (or with a look-alike) carry no claim."""
    assert take_claim(Message("user", "notice", "m")) is None
    assert take_claim(Message("user", "notice", "m", fields={"logd-claim": {"uid": "1"}})) is None
    assert take_claim(Message("user", "notice", "m", fields={CLAIM_SD_ID: "1"})) is None


def test_largest_ids_are_claims() -> None:
    """The largest uid_t that is not (uid_t)-1 and the largest pid_t are accepted."""
    msg = Message(
        "user", "notice", "m",
        fields={CLAIM_SD_ID: {"uid": "4294967294", "gid": 4294967294, "pid": "2147483647"}},
    )  # fmt: skip
    assert take_claim(msg) == (Claim(4294967294, 4294967294, 2147483647), msg._replace(fields=None))
