"""The names that are ours (``logd…@32473`` in any case), and MSG text a collector reads as @cee."""

from __future__ import annotations

import pytest

from trio_logd.protocol.claim import Claim, take_claim
from trio_logd.protocol.parse import parse_message
from trio_logd.protocol.reserved import inert_text, is_reserved, reads_as_cee, reserved_name


@pytest.mark.parametrize(
    "name",
    [
        "logd@32473", "LOGD@32473", "Logd@32473", "lOgD@32473", "logd@32473.1",
        "logd@32473.1.2", "logd-claim@32473", "LOGD-CLAIM@32473", "logd-claims@32473",
        "Logd-Fields@32473", "logdx@32473", "logd.anything@32473.0",
    ],
)  # fmt: skip
def test_reserved_in_any_case(name: str) -> None:
    """Every logd…@32473 name, in any case and with sub-identifiers, is ours."""
    assert is_reserved(name)
    assert reserved_name(name) == name.lower()


@pytest.mark.parametrize(
    "name",
    ["origin", "meta", "x@32473", "exampleSDID@32473", "logd@324730", "logd@1", "mylogd@32473",
     "logd", "uid", "logd@32473x", ""],
)  # fmt: skip
def test_other_names_are_not_reserved(name: str) -> None:
    """Another PEN, another prefix, or no PEN at all is the sender's to use."""
    assert not is_reserved(name)


def test_claim_element_found_in_any_case() -> None:
    """A relay's claim element is found by the same rule: case does not hide it."""
    msg = parse_message(b'<14>1 - - app - - [LOGD-Claim@32473 uid="1000"][x@1 a="b"] hi')
    taken = take_claim(msg)
    assert taken is not None
    assert taken[0] == Claim(1000, None, None)
    assert taken[1].fields == {"x@1": {"a": "b"}}


def test_two_spellings_of_the_claim_are_no_claim() -> None:
    """Two elements that fold to logd-claim@32473 are ambiguous: neither is read."""
    msg = parse_message(b'<14>1 - - - - - [logd-claim@32473 uid="1"][LOGD-CLAIM@32473 uid="2"] x')
    assert take_claim(msg) is None


@pytest.mark.parametrize(
    ("text", "cee"),
    [
        ('@cee: {"a": 1}', True), ('  @cee: {"a": 1}', True), ('\t\n@cee:{}', True),
        ("x @cee: {}", False), ("@CEE: {}", False), ("plain text", False), ("", False),
    ],
)  # fmt: skip
def test_reads_as_cee_after_blanks(text: str, cee: bool) -> None:
    """A collector reads @cee: after leading blanks, exactly spelled; elsewhere it is text."""
    assert reads_as_cee(text) is cee
    if cee:
        assert inert_text(text) == "\\" + text
        assert not reads_as_cee(inert_text(text))
    else:
        assert inert_text(text) is text
