"""Field matches, units, identifiers and -F values: parsing, the request, and the filter
against a naive evaluation of journalctl's rules on decoded records."""

from __future__ import annotations

import re
from fnmatch import fnmatchcase
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_logd.query.filters import LineFilter, QuerySpec
from trio_logd.query.matcher import Matcher
from trio_logd.query.matches import (
    MAX_MATCHES,
    Selection,
    parse_matches,
    unit_pattern,
    value_printer,
)
from trio_logd.record import json_safe

# -- the words ----------------------------------------------------------------


def test_parse_matches_groups_on_plus() -> None:
    """FIELD=VALUE words form a group; '+' starts the next; '=' in a value is kept."""
    assert parse_matches([]) == ()
    assert parse_matches(["app=web", "pid=1", "+", "fields.q=a=b", "app="]) == (
        (("app", "web"), ("pid", "1")),
        (("fields.q", "a=b"), ("app", "")),
    )


@pytest.mark.parametrize(
    ("words", "error"),
    [
        (["+"], "'\\+' must stand between"),
        (["app=web", "+"], "'\\+' must stand between"),
        (["+", "app=web"], "'\\+' must stand between"),
        (["app=web", "+", "+", "pid=1"], "'\\+' must stand between"),
        (["web"], "invalid match 'web': expected FIELD=VALUE"),
        (["=web"], "invalid match '=web'"),
    ],
)
def test_parse_matches_refuses(words: list[str], error: str) -> None:
    """A lone or doubled '+', or a word without FIELD=, is refused naming it."""
    with pytest.raises(ValueError, match=error):
        parse_matches(words)


@pytest.mark.parametrize(
    ("name", "pattern"),
    [
        ("sshd", "sshd.service"),
        ("sshd.service", "sshd.service"),
        ("user-1000.slice", "user-1000.slice"),
        ("session-3.scope", "session-3.scope"),
        ("ssh*", "ssh*"),
        ("foo.bar", "foo.bar.service"),
        ("getty@tty1", "getty@tty1.service"),
        ("[ab].socket", "[ab].socket"),
    ],
)
def test_unit_pattern_like_journalctl(name: str, pattern: str) -> None:
    """A name without a unit type gets .service; a glob or a typed name stays."""
    assert unit_pattern(name) == pattern


# -- the request --------------------------------------------------------------


def test_request_round_trip() -> None:
    """A spec's selection goes through the query request unchanged."""
    select = Selection(
        matches=((("app", "web"), ("pid", "1")), (("fields.x", "y"),)),
        units=("a.service",),
        user_units=("b*",),
        identifiers=("web", "api"),
        field="unit",
    )
    spec = QuerySpec(uids=(5,), select=select)
    request = spec.to_request()
    assert request["matches"] == [[["app", "web"], ["pid", "1"]], [["fields.x", "y"]]]
    assert QuerySpec.from_request(request) == spec
    assert QuerySpec().to_request() == {}


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ({"matches": "app=web"}, "'matches': expected a list of groups"),
        ({"matches": [[]]}, "'matches': expected a list of groups"),
        ({"matches": [[["app"]]]}, "'matches': expected \\[field, value\\]"),
        ({"matches": [[["", "x"]]]}, "'matches': expected \\[field, value\\]"),
        ({"matches": [[["app", 5]]]}, "'matches': expected \\[field, value\\]"),
        ({"matches": [[["a", "x" * 5000]]]}, "'matches': expected \\[field, value\\]"),
        ({"matches": [[["a", "b"]] * (MAX_MATCHES + 1)]}, f"expected at most {MAX_MATCHES}"),
        ({"units": "a"}, "'units': expected a list"),
        ({"units": [""]}, "'units': expected a list"),
        ({"identifiers": [1]}, "'identifiers': expected a list"),
        ({"user_units": ["x"] * 65}, "'user_units': expected a list"),
        ({"field": ""}, "'field': expected a field name"),
        ({"field": "unit", "lines": 5}, "'field' lists every value"),
        ({"field": "unit", "follow": True}, "'field' lists every value"),
    ],
)
def test_request_refuses(args: dict[str, Any], error: str) -> None:
    """Bad selection keys are refused naming the key (never a traceback in the daemon)."""
    with pytest.raises(ValueError, match=error):
        QuerySpec.from_request(args)


# -- the filter against a naive one ---------------------------------------------

TS = "2026-11-27T20:47:40.123456Z"
TEXTS = ["web", "api", "42", "042", "-0", "0", "true", "null", "1.5", "", "wéb", 'we"b', "a\\b",
         "{}", "[]", "1e16", "42.0"]  # fmt: skip
VALUES = st.one_of(
    st.sampled_from(TEXTS),
    st.integers(-1, 50),
    st.sampled_from([True, False, None, 1.5, 42.0, 1e16, [1, "web"], {}, [], 'a,"app":1']),
    st.builds(lambda v: {"app": v}, st.sampled_from(TEXTS)),
)
NAMES = ["app", "pid", "unit", "slice", "user_unit", "fields.app", "fields.n", "fields.x\"app",
         "fields", "nosuch", "fields.", "msg"]  # fmt: skip
UNITS = ["a.service", "b.service", "c.scope", "user-1.slice", "a\u202e.service"]


@st.composite
def records(draw: st.DrawFn) -> dict[str, Any]:
    """Records as the daemon writes them, and as a hostile sender would shape fields."""
    rec: dict[str, Any] = {"ts": TS, "seq": draw(st.integers(1, 9)), "uid": 1000, "gid": 1000}
    rec["pid"] = draw(st.sampled_from([42, 7, "42"]))
    for key in ("unit", "slice", "user_unit", "user_slice"):
        if draw(st.booleans()):
            rec[key] = draw(st.sampled_from(UNITS))
    extra: dict[str, Any] = {"fac": "user", "sev": "info"}
    if draw(st.booleans()):
        extra["app"] = draw(VALUES)
    extra["msg"] = draw(st.sampled_from(['"app":"web"', "web", 'x,"app":"api"}']))
    if draw(st.booleans()):
        extra["fields"] = draw(
            st.dictionaries(st.sampled_from(["app", "n", 'x"app', "unit"]), VALUES, max_size=3)
        )
    keys = list(extra)
    if draw(st.booleans()):  # a daemon record's own key order: fields before app
        keys = draw(st.permutations(keys))
    rec.update((k, extra[k]) for k in keys)
    return rec


def _get(rec: dict[str, Any], name: str) -> tuple[bool, Any]:
    if name.startswith("fields.") and len(name) > len("fields."):
        f = rec.get("fields")
        key = name[len("fields.") :]
        return (isinstance(f, dict) and key in f), (f or {}).get(key) if isinstance(
            f, dict
        ) else None
    return name in rec, rec.get(name)


def _equal(value: Any, text: str) -> bool:
    if isinstance(value, str):
        return value == text
    if isinstance(value, int) and not isinstance(value, bool):
        return re.fullmatch(r"-?[0-9]+", text) is not None and int(text) == value
    return orjson.dumps(value).decode() == text


def _naive(rec: dict[str, Any], sel: Selection) -> bool:
    def group_ok(group: tuple[tuple[str, str], ...]) -> bool:
        names = {n for n, _ in group}
        for name in names:
            present, value = _get(rec, name)
            if not present or not any(_equal(value, t) for n, t in group if n == name):
                return False
        return True

    def globbed(keys: tuple[str, ...], patterns: tuple[str, ...]) -> bool:
        return any(
            isinstance(rec.get(k), str) and fnmatchcase(rec[k], p) for k in keys for p in patterns
        )

    if sel.matches and not any(group_ok(g) for g in sel.matches):
        return False
    if (sel.units or sel.user_units) and not (
        globbed(("unit", "slice"), sel.units)
        or globbed(("user_unit", "user_slice"), sel.user_units)
    ):
        return False
    return not sel.identifiers or rec.get("app") in sel.identifiers


TERMS = st.tuples(st.sampled_from(NAMES), st.sampled_from(TEXTS))
SELECTIONS = st.builds(
    Selection,
    matches=st.lists(st.lists(TERMS, min_size=1, max_size=3).map(tuple), max_size=3).map(tuple),
    units=st.lists(
        st.sampled_from(
            ["a", "a.service", "*.scope", "b*", "[ab].service", "user-1.slice", "a\u202e*"]
        ),
        max_size=2,
    ).map(lambda us: tuple(unit_pattern(u) for u in us)),
    user_units=st.lists(st.sampled_from(["c.scope", "*"]), max_size=1).map(tuple),
    identifiers=st.lists(st.sampled_from(["web", "42", "wéb", 'we"b']), max_size=2).map(tuple),
)


def _lines(recs: list[dict[str, Any]]) -> bytes:
    return b"".join(json_safe(orjson.dumps(r)) + b"\n" for r in recs)


@settings(max_examples=150, deadline=None)
@given(st.lists(records(), max_size=12), SELECTIONS)
def test_filter_agrees_with_naive_rules(recs: list[dict[str, Any]], sel: Selection) -> None:
    """Exactly the records journalctl's rules select pass: the raw prefilter loses none."""
    filt = LineFilter(QuerySpec(select=sel))
    got = [orjson.loads(x) for x in filt.filter_lines(_lines(recs))]
    assert got == [r for r in recs if _naive(r, sel)]


@settings(max_examples=150, deadline=None)
@given(st.lists(records(), max_size=40), st.sampled_from(NAMES), SELECTIONS)
def test_field_values_once_each(recs: list[dict[str, Any]], name: str, sel: Selection) -> None:
    """-F lets through one record per distinct value of the selection, and no other."""
    select = Selection(sel.matches, sel.units, sel.user_units, sel.identifiers, field=name)
    filt = LineFilter(QuerySpec(select=select))
    got: list[bytes] = []
    for part in range(4):  # four chunks: what one let through is remembered by the next
        got += filt.filter_lines(_lines(recs[part::4]))
    values = [orjson.dumps(_get(orjson.loads(x), name)[1]) for x in got]
    expected = {orjson.dumps(_get(r, name)[1]) for r in recs if _naive(r, sel) and _get(r, name)[0]}
    assert sorted(values) == sorted(expected)


def test_field_values_past_the_cap_pass_and_the_printer_drops_repeats() -> None:
    """Past its memory for -F values the daemon sends repeats; the client prints each once."""
    recs = [{"ts": TS, "seq": i, "app": f"app{i % 3}"} for i in range(12)]
    matcher = Matcher(Selection(field="app"), seen_bytes=len(b'"app0"'))
    passed = [r for r in recs if matcher.accepts(r)]
    assert [r["seq"] for r in passed] == [0, 1, 2, 4, 5, 7, 8, 10, 11]  # app0 remembered only
    show = value_printer("app")
    assert b"".join(show(orjson.dumps(r)) for r in passed) == b"app0\napp1\napp2\n"


def test_value_printer_escapes_what_a_terminal_would_obey() -> None:
    """-F prints plain text as it is, anything with control or bidi characters as JSON."""
    show = value_printer("fields.v")

    def one(value: Any) -> bytes:
        return show(orjson.dumps({"ts": TS, "fields": {"v": value}}))

    assert one("plain wörd") == "plain wörd\n".encode()
    assert one("\x1b[31mred") == b'"\\u001b[31mred"\n'
    assert one("a\u202eb") == b'"a\\u202eb"\n'
    assert one("x\x7f") == b'"x\\u007f"\n'
    assert one(42) == b"42\n"
    assert one({"k": "\u202e"}) == b'{"k":"\\u202e"}\n'
    assert one([1, "a"]) == b'[1,"a"]\n'
    assert one(42) == b""  # printed once
    assert show(orjson.dumps({"ts": TS})) == b""  # no such field: nothing
