"""QuerySpec validation, priorities, the grep literal and LineFilter against a naive filter."""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest
import re2  # type: ignore[import-untyped]
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.query._store import T0, Rec, line
from trio_logd.query.filters import (
    MAX_GREP_CHARS,
    MAX_GREP_PROGRAM,
    LineFilter,
    QuerySpec,
    compile_grep,
    parse_priority,
    required_literal,
)
from trio_logd.query.timespec import ts_bound
from trio_logd.record import format_ts, line_seq

# -- priorities ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("err", (0, 3)),
        ("3", (0, 3)),
        ("error", (0, 3)),
        ("warn", (0, 4)),
        ("debug", (0, 7)),
        ("emerg", (0, 0)),
        ("warning..err", (3, 4)),
        ("err..warning", (3, 4)),
        ("2..6", (2, 6)),
        ("..crit", (0, 2)),
        ("notice..", (5, 7)),
        ("INFO", (0, 6)),
    ],
)
def test_parse_priority_like_journalctl(text: str, expected: tuple[int, int]) -> None:
    """One severity means it and everything more severe; a range is inclusive, either order."""
    assert parse_priority(text) == expected


@pytest.mark.parametrize("text", ["8", "loud", "err..loud", "-1", ""])
def test_parse_priority_refuses_unknown(text: str) -> None:
    """An unknown name or number is refused with the list of names."""
    with pytest.raises(ValueError, match="expected one of emerg, alert"):
        parse_priority(text)


# -- QuerySpec ----------------------------------------------------------------


def test_spec_round_trips_through_the_request() -> None:
    """to_request / from_request are inverse for every field."""
    spec = QuerySpec(
        uids=(1000, 1001),
        pids=(42,),
        since="2026-11-27T20:00:00.000000Z",
        until="2026-11-27T21:00:00.000000Z",
        priority=(0, 3),
        grep="fail",
        case_sensitive=True,
        lines=10,
        follow=True,
    )
    assert QuerySpec.from_request(spec.to_request()) == spec
    assert QuerySpec.from_request({}) == QuerySpec()
    assert QuerySpec.from_request({"all": True}) == QuerySpec(all_uids=True)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"uid": 1000}, "unknown argument 'uid'"),
        ({"uids": 1000}, "expected a list"),
        ({"uids": [-1]}, "expected integers 0..4294967294, got -1"),
        ({"uids": [True]}, "expected integers"),
        ({"uids": ["1000"]}, "expected integers"),
        ({"uids": ["../1000"]}, "expected integers"),
        ({"uids": [2**32]}, "expected integers"),
        ({"uids": [1], "all": True}, "either 'uids' or 'all'"),
        ({"all": "yes"}, "expected true or false"),
        ({"pids": [1.5]}, "expected integers"),
        ({"since": "yesterday"}, "expected YYYY-MM-DDTHH:MM:SS.ffffffZ"),
        ({"since": 12}, "expected a time string"),
        ({"priority": [3]}, "expected [most, least]"),
        ({"priority": [4, 3]}, "expected [most, least]"),
        ({"priority": [0, 8]}, "expected [most, least]"),
        ({"grep": "(a"}, "invalid --grep pattern '(a': missing )"),
        ({"grep": "(a)\\1"}, "invalid --grep pattern"),
        ({"grep": "x" * (MAX_GREP_CHARS + 1)}, "characters long"),
        ({"grep": 5}, "expected a string"),
        ({"lines": -1}, "expected 0..100000"),
        ({"lines": "10"}, "expected an integer"),
        ({"follow": 1}, "expected true or false"),
    ],
)
def test_spec_refuses_bad_requests_naming_the_key(args: dict[str, Any], message: str) -> None:
    """Every bad argument is a ValueError that names it; nothing is coerced."""
    with pytest.raises(ValueError, match=re.escape(message)):
        QuerySpec.from_request(args)


def test_re2_is_linear_on_a_pathological_pattern() -> None:
    """(a+)+$ against a long run of a's and a b answers at once (no backtracking)."""
    regex, _ = compile_grep("(a+)+$", None)
    assert regex.search("a" * 1_000_000 + "b") is None


@pytest.mark.parametrize(
    "pattern", [".{1,1000}.{1,1000}[cd]", "[^c]{1,300}[^d]{1,300}c", r"\pL{1,50}x"]
)
def test_a_pattern_compiling_to_a_big_program_is_refused(pattern: str) -> None:
    """Past MAX_GREP_PROGRAM instructions (RE2's cost per byte grows with them): refused."""
    with pytest.raises(ValueError, match=r"too complex: it compiles to \d+ RE2 instructions"):
        compile_grep(pattern, None)
    with pytest.raises(ValueError, match="too complex"):
        QuerySpec.from_request({"grep": pattern})


@pytest.mark.parametrize(
    "pattern", ["disk (full|error)", "(?i)econnreset", r"\pL+ failed", ".{1,100}[cd]", "(a+)+$"]
)
def test_everyday_patterns_fit_the_program_cap(pattern: str) -> None:
    """Ordinary patterns, and costly-but-bounded ones, compile well within the cap."""
    regex, _ = compile_grep(pattern, None)
    assert regex.programsize <= MAX_GREP_PROGRAM


def test_re2_memory_budget_is_passed_on() -> None:
    """regex_memory_bytes becomes RE2's max_mem; the filter matches the same either way."""
    small, _ = compile_grep("fail", None, max_mem=1 << 20)
    assert small.options.max_mem == 1 << 20
    filt = LineFilter(QuerySpec(grep="ab+c"), regex_memory_bytes=1 << 20)
    chunk = line(1000, 1, Rec(T0, "xabbbcx")) + line(1000, 2, Rec(T0, "ac"))
    assert [line_seq(ln) for ln in filt.filter_lines(chunk)] == [1]


def test_smart_case() -> None:
    """All lower case ignores case; an upper-case letter or the flag makes it exact."""
    assert compile_grep("fail", None)[0].search("FAIL") is not None
    assert compile_grep("Fail", None)[0].search("FAIL") is None
    assert compile_grep("fail", True)[0].search("FAIL") is None
    assert compile_grep("FAIL", False)[0].search("fail") is not None


# -- the required literal -----------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "ignore_case", "expected"),
    [
        ("ECONNRESET", False, b"ECONNRESET"),
        ("econnreset", True, b"econnre"),  # s folds from U+017F: not a safe letter
        ("error: .* failed", True, b"error: "),
        ("ab?cd", False, b"cd"),
        ("abc+d", False, b"abc"),
        ("x{2,3}yz", False, b"yz"),
        ("x{0,3}yz", False, b"yz"),
        ("[abc]def", False, b"def"),
        ("(foo)bar", False, b"bar"),
        (r"disk\.full", False, b"disk.full"),
        ("disk full", True, b" full"),  # k folds from U+212A: not a safe letter
        ("sessions", True, b"ion"),
        ('say "hi"', False, b"say "),
        ("(a+)+$", False, None),
        ("foo|bar", False, None),
        ("(?i)foo", False, None),
        (r"\x41BC", False, None),
        (r"\Qa|b\E", False, None),
        ("é", False, None),
        (".*", False, None),
    ],
)
def test_required_literal_examples(pattern: str, ignore_case: bool, expected: bytes | None) -> None:
    """The longest run of plain characters matched once each, or None when unsure."""
    assert required_literal(pattern, ignore_case=ignore_case) == expected


_ALPHABET = st.sampled_from(list('abkKsS ."\\\n\u212a\u017f\u00e9|*+?()[]{}^$'))


@settings(max_examples=400, deadline=None)
@given(
    pattern=st.text(_ALPHABET, min_size=1, max_size=8),
    msg=st.text(_ALPHABET, max_size=20),
    ignore_case=st.booleans(),
)
def test_required_literal_is_necessary(pattern: str, msg: str, ignore_case: bool) -> None:
    """Whenever RE2 finds the pattern in msg, the stored line contains the literal."""
    try:
        regex, _ = compile_grep(pattern, not ignore_case)
    except ValueError:
        return
    literal = required_literal(pattern, ignore_case=ignore_case)
    if literal is None or regex.search(msg) is None:
        return
    stored = orjson.dumps({"msg": msg})
    assert literal in (stored.lower() if ignore_case else stored)


# -- LineFilter ---------------------------------------------------------------

MSGS = ["disk full", "ECONNRESET by peer", "all good", 'quote " and \\ here', "Über\tweird", ""]
SEVS = ["emerg", "err", "warning", "notice", "info", "debug"]


def _lines(n: int) -> list[bytes]:
    return [
        line(1000, i + 1, Rec(T0 + i, MSGS[i % len(MSGS)], SEVS[i % len(SEVS)], pid=10 + i % 3))
        for i in range(n)
    ]


def _naive(spec: QuerySpec, lines: list[bytes]) -> list[bytes]:
    out = []
    regex = compile_grep(spec.grep, spec.case_sensitive)[0] if spec.grep is not None else None
    for ln in lines:
        rec = orjson.loads(ln)
        if spec.since is not None and rec["ts"] < spec.since:
            continue
        if spec.until is not None and rec["ts"] > spec.until:
            continue
        if spec.pids and rec["pid"] not in spec.pids:
            continue
        if spec.priority is not None:
            code = SEVS_ALL.index(rec.get("sev", "notice"))
            if not spec.priority[0] <= code <= spec.priority[1]:
                continue
        if regex is not None and regex.search(rec["msg"]) is None:
            continue
        out.append(ln.rstrip(b"\n"))
    return out


SEVS_ALL = ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"]


@settings(max_examples=200, deadline=None)
@given(
    since=st.none() | st.integers(0, 40),
    until=st.none() | st.integers(0, 40),
    pids=st.sets(st.integers(9, 13), max_size=2),
    priority=st.none() | st.tuples(st.integers(0, 7), st.integers(0, 7)).map(sorted),
    grep=st.none() | st.sampled_from(["full", "ECONN", "econn", "good|full", '"', "é|ü", "^$"]),
)
def test_line_filter_equals_the_naive_filter(
    since: int | None,
    until: int | None,
    pids: set[int],
    priority: list[int] | None,
    grep: str | None,
) -> None:
    """On a chunk, filter_lines keeps exactly what decoding every record would keep."""
    spec = QuerySpec(
        since=None if since is None else ts_bound(T0 + since),
        until=None if until is None else ts_bound(T0 + until),
        pids=tuple(sorted(pids)),
        priority=None if priority is None else (priority[0], priority[1]),
        grep=grep,
    )
    lines = _lines(36)
    assert LineFilter(spec).filter_lines(b"".join(lines)) == _naive(spec, lines)


def test_filter_counts_unreadable_lines_and_skips_them() -> None:
    """A line that is not JSON is never returned by a decoding filter, and is counted."""
    good = _lines(1)[0]
    chunk = b'{"ts":"' + format_ts(T0).encode() + b'","seq":9,"pid":10,garbage}\n' + good
    filt = LineFilter(QuerySpec(pids=(10,)))
    assert filt.filter_lines(chunk) == [good.rstrip(b"\n")]
    assert filt.unreadable == 1


def test_file_span_selection() -> None:
    """A file can match only if its span overlaps [since, until]."""
    filt = LineFilter(QuerySpec(since=ts_bound(100.0), until=ts_bound(200.0)))
    assert [filt.file_may_match(a, b) for a, b in [(0, 99), (0, 100), (150, 160), (200, 300)]] == [
        False,
        True,
        True,
        True,
    ]
    assert filt.file_may_match(201, 300) is False
    assert LineFilter(QuerySpec()).file_may_match(0, 1) is True


def test_re2_module_is_google_re2() -> None:
    """The engine is RE2 (linear time), not the backtracking re module."""
    assert hasattr(re2, "Options")
