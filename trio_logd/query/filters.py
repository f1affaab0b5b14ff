"""What a query asks for, and the filter that answers it on raw record lines.

How this works: a :class:`QuerySpec` is the validated form of a query request
(the same object for the daemon and for ``logq --directory``, so both give
the same records). A :class:`LineFilter` applies it to *chunks* of record
lines as they are on disk, cheapest test first:

1. time: every line starts with ``{"ts":"<27 characters>"`` (see
   ``record.encode_line``), so the bounds are compared as bytes at a fixed
   offset, without decoding;
2. necessary substrings: ``"pid":N``, ``"sev":"err"`` and, for ``--grep``, a
   literal that every match must contain (:func:`required_literal`). With a
   grep literal the chunk is searched with ``bytes.find`` and only lines
   around the hits are looked at, so a scan costs little more than a memory
   search;
3. exact: the candidate line is decoded and pid, severity and the regular
   expression (on ``msg``) are checked on the values.

Step 2 only ever rejects lines that step 3 would reject too: a literal is
used only if the JSON encoding leaves it unchanged (printable ASCII other
than ``"`` and ``\\``) and, when matching ignores case, only letters whose
case folding stays within ASCII (not ``k`` or ``s``: U+212A KELVIN SIGN and
U+017F LONG S fold to them).

``--grep`` uses RE2 (``google-re2``): matching takes time linear in the text.
The factor is the pattern's: when RE2's DFA outgrows its memory budget
(``[control] regex_memory_bytes``) it falls back to its NFA, whose cost per
byte grows with the compiled program (``.{1,1000}.{1,1000}[cd]``: 18 003
instructions, ~50 µs per byte). So a pattern is capped in length
(:data:`MAX_GREP_CHARS`) and its program in size (:data:`MAX_GREP_PROGRAM`),
which bounds the time one record's search can take; a scan between records
stops at once when its query is cancelled (:meth:`LineFilter.cancel`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import orjson

from trio_logd.identity import MAX_UID
from trio_logd.protocol.message import SEVERITIES
from trio_logd.query.matches import Selection
from trio_logd.record import TS_AT

if TYPE_CHECKING:
    from trio_logd.store.scan import UnitTest

# logq's start-up (tests/cli/test_startup.py): a client builds a QuerySpec for
# every query; re2 (for --grep), the matcher and the time parser are imported
# by the functions that use them, once per query, never per record.

__all__ = [
    "MAX_GREP_CHARS",
    "MAX_GREP_PROGRAM",
    "MAX_LINES",
    "MAX_PIDS",
    "MAX_UIDS",
    "RE2_MAX_MEM",
    "LineFilter",
    "QuerySpec",
    "compile_grep",
    "parse_priority",
    "required_literal",
]

#: Longest ``--grep`` pattern: RE2's worst case is O(text x pattern), so the
#: pattern's length bounds the work per record (a record is at most 16 MiB).
MAX_GREP_CHARS: Final = 4096
#: RE2's memory budget for one compiled pattern (its default is 8 MiB; the
#: daemon passes ``[control] regex_memory_bytes``).
RE2_MAX_MEM: Final = 8 << 20
#: Largest RE2 program (instructions) a ``--grep`` pattern may compile to.
#: When the DFA thrashes, RE2 costs up to ~9 ns per instruction and byte
#: (measured on a loaded 2-core host: ``[a-z ]{1,140}[^d]{1,140}c``, 1 683
#: instructions, 7-15 µs/byte; 18 003, 56 µs/byte), so at this size one
#: 64 KiB message is searched in about a second at worst, whatever the
#: pattern; ``\pL`` alone is ~1 200, ``(?i)econnreset`` 16.
MAX_GREP_PROGRAM: Final = 2000
#: ``-n`` keeps the last N matching lines in memory until it has them all.
MAX_LINES: Final = 100_000
MAX_UIDS: Final = 4096
MAX_PIDS: Final = 4096
#: Largest pid Linux hands out (PID_MAX_LIMIT, 2^22), with room.
_MAX_PID: Final = (1 << 31) - 1

_SEV_ALIASES: Final = {"warn": "warning", "error": "err", "panic": "emerg"}
_SEV_CODE: Final = {name: code for code, name in enumerate(SEVERITIES)}
_DEFAULT_SEV: Final = "notice"


# --------------------------------------------------------------------------- priority


def _severity(text: str, whole: str) -> int:
    t = text.strip().lower()
    if t.isascii() and t.isdigit() and int(t) < len(SEVERITIES):
        return int(t)
    code = _SEV_CODE.get(_SEV_ALIASES.get(t, t))
    if code is None:
        names = ", ".join(SEVERITIES)
        msg = f"invalid priority {whole!r}: expected one of {names} or 0..7"
        raise ValueError(msg)
    return code


def parse_priority(text: str) -> tuple[int, int]:
    """Parse ``-p``: one severity (it and everything more severe) or a range.

    As in journalctl: ``err`` means ``emerg..err``; ``warning..err`` (either
    order, numbers or names) means exactly those; an open end (``..err``,
    ``notice..``) stretches to ``emerg`` or ``debug``.

    Returns:
        ``(most_severe, least_severe)`` codes, 0 (emerg) to 7 (debug).

    Raises:
        ValueError: an unknown name or number.
    """
    if ".." in text:
        lo_text, _, hi_text = text.partition("..")
        lo = _severity(lo_text, text) if lo_text.strip() else 0
        hi = _severity(hi_text, text) if hi_text.strip() else len(SEVERITIES) - 1
        return (min(lo, hi), max(lo, hi))
    return (0, _severity(text, text))


# --------------------------------------------------------------------------- grep


def _is_upper_present(pattern: str) -> bool:
    # journalctl's "smart case": a pattern with an upper-case letter is case-sensitive
    return any(c.isupper() for c in pattern)


def compile_grep(
    pattern: str, case_sensitive: bool | None, *, max_mem: int = RE2_MAX_MEM
) -> tuple[Any, bool]:
    """Compile a ``--grep`` pattern with RE2.

    Args:
        pattern: the regular expression (RE2 syntax: no backreferences or
            lookaround).
        case_sensitive: ``None`` for journalctl's rule: case-sensitive only
            when the pattern has an upper-case letter.
        max_mem: RE2's memory budget (``max_mem``) for the compiled pattern.

    Returns:
        ``(regex, ignore_case)``; the regex is RE2's compiled object
        (untyped: google-re2 has no stubs).

    Raises:
        ValueError: too long, too complex (its program is over
            :data:`MAX_GREP_PROGRAM` instructions), or not a valid RE2
            pattern (the message quotes RE2's reason).
    """
    if len(pattern) > MAX_GREP_CHARS:
        msg = f"--grep pattern is {len(pattern)} characters long: expected at most {MAX_GREP_CHARS}"
        raise ValueError(msg)
    ignore_case = not _is_upper_present(pattern) if case_sensitive is None else not case_sensitive
    import re2  # type: ignore[import-untyped]  # google-re2 ships no type hints

    options = re2.Options()
    options.log_errors = False
    options.max_mem = max_mem
    options.case_sensitive = not ignore_case
    try:
        regex = re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        msg = f"invalid --grep pattern {pattern[:80]!r}: {reason}"
        raise ValueError(msg) from None
    size = regex.programsize
    if size > MAX_GREP_PROGRAM:
        msg = (
            f"--grep pattern {pattern[:80]!r} is too complex: it compiles to {size} RE2 "
            f"instructions, expected at most {MAX_GREP_PROGRAM} (use fewer or smaller "
            f"counted repetitions such as {{1,1000}})"
        )
        raise ValueError(msg)
    return regex, ignore_case


def _literal_safe(ch: str, ignore_case: bool) -> bool:
    # Bytes a JSON encoder writes unchanged: printable ASCII except " and \
    if not (" " <= ch <= "~") or ch in '"\\':
        return False
    return not (ignore_case and ch.lower() in "ks")


def _skip_class(p: str, i: int) -> int:
    """Index after the character class starting at ``p[i] == '['``; -1 if unclosed."""
    j = i + 1
    if j < len(p) and p[j] == "^":
        j += 1
    if j < len(p) and p[j] == "]":
        j += 1
    while j < len(p):
        if p[j] == "\\":
            j += 2
        elif p.startswith("[:", j):
            k = p.find(":]", j + 2)
            if k < 0:
                return -1
            j = k + 2
        elif p[j] == "]":
            return j + 1
        else:
            j += 1
    return -1


def _skip_group(p: str, i: int) -> int:
    """Index after the group starting at ``p[i] == '('``; -1 if unbalanced."""
    depth = 0
    j = i
    while j < len(p):
        c = p[j]
        if c == "\\":
            j += 2
            continue
        if c == "[":
            j = _skip_class(p, j)
            if j < 0:
                return -1
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return j + 1
        j += 1
    return -1


def _quantifier(p: str, i: int) -> tuple[int, int] | None:
    """``(minimum, index after)`` of a quantifier at *i*, or ``None``."""
    if i >= len(p):
        return None
    c = p[i]
    if c in "*?":
        return 0, i + 1
    if c == "+":
        return 1, i + 1
    if c == "{":
        k = p.find("}", i)
        body = p[i + 1 : k] if k > 0 else ""
        lo, _, hi = body.partition(",")
        if lo.isascii() and lo.isdigit() and (not hi or (hi.isascii() and hi.isdigit())):
            return int(lo), k + 1
    return None


#: Escapes that stand for one character class or a zero-width assertion.
_CLASS_ESCAPES: Final = frozenset("dDsSwWbBAzC")


def required_literal(pattern: str, *, ignore_case: bool) -> bytes | None:
    """The longest literal every match of *pattern* must contain, as on disk.

    Only the top level of the pattern is read: a run of plain characters,
    each matched exactly once, in sequence. Anything this simple reader does
    not fully understand (alternation at the top, flag groups ``(?…``, most
    escapes) gives ``None``, which only costs speed, never a record.

    Args:
        pattern: an RE2 pattern that compiles.
        ignore_case: matching ignores case; the literal is then lower case
            and must be searched for in lower-cased text.

    Returns:
        The literal, encoded as it appears in a record line, or ``None``.
    """
    if "(?" in pattern:
        return None
    runs: list[str] = []
    cur: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        literal: str | None = None
        if c == "|" or c == ")":
            return None
        if c == "\\":
            if i + 1 >= n:
                return None
            d = pattern[i + 1]
            if d.isascii() and d.isalnum():
                if d in _CLASS_ESCAPES:
                    i += 2
                elif d in "pP":
                    if pattern.startswith("{", i + 2):
                        k = pattern.find("}", i + 2)
                        if k < 0:
                            return None
                        i = k + 1
                    else:
                        i += 3
                else:  # \n \t \x.. \Q..\E octal...: give up rather than decode them
                    return None
            else:
                literal = d
                i += 2
        elif c == "[":
            i = _skip_class(pattern, i)
            if i < 0:
                return None
        elif c == "(":
            i = _skip_group(pattern, i)
            if i < 0:
                return None
        elif c in "*+?":
            return None
        else:
            if c not in ".^${":
                literal = c
            i += 1
        if literal is not None and not _literal_safe(literal, ignore_case):
            literal = None
        q = _quantifier(pattern, i)
        if q is not None:
            minimum, i = q
            if i < n and pattern[i] == "?":  # lazy
                i += 1
            if literal is not None and minimum >= 1:
                cur.append(literal)
            if cur:
                runs.append("".join(cur))
                cur = []
        elif literal is not None:
            cur.append(literal)
        elif cur:
            runs.append("".join(cur))
            cur = []
    if cur:
        runs.append("".join(cur))
    if not runs:
        return None
    best = max(runs, key=len).encode("ascii")
    return best.lower() if ignore_case else best


# --------------------------------------------------------------------------- the spec


def _int_list(args: Mapping[str, Any], key: str, maximum: int, most: int) -> tuple[int, ...]:
    value = args.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > most:
        msg = f"query {key!r}: expected a list of at most {most} integers, got {value!r:.80}"
        raise ValueError(msg)
    out: list[int] = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= maximum:
            msg = f"query {key!r}: expected integers 0..{maximum}, got {v!r:.80}"
            raise ValueError(msg)
        out.append(v)
    return tuple(dict.fromkeys(out))


def _ts_arg(args: Mapping[str, Any], key: str) -> str | None:
    value = args.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        msg = f"query {key!r}: expected a time string, got {value!r:.80}"
        raise ValueError(msg)
    from trio_logd.query.timespec import ts_to_epoch

    try:
        ts_to_epoch(value)
    except ValueError as exc:
        msg = f"query {key!r}: {exc}"
        raise ValueError(msg) from None
    return value


def _bool_arg(args: Mapping[str, Any], key: str) -> bool | None:
    value = args.get(key)
    if value is not None and not isinstance(value, bool):
        msg = f"query {key!r}: expected true or false, got {value!r:.80}"
        raise ValueError(msg)
    return value


_KEYS: Final = frozenset(
    {"uids", "all", "pids", "since", "until", "priority", "grep", "case_sensitive", "lines",
     "follow"}
) | Selection.KEYS  # fmt: skip


@dataclass(frozen=True, slots=True)
class QuerySpec:
    """A validated query: which records, how many, and whether to follow.

    Attributes:
        uids: the uids to read; empty means the caller's own.
        all_uids: read every uid (readers and root only).
        pids: keep records whose kernel ``pid`` is one of these (empty: any).
        since: keep records with ``ts`` at or after this (record ``ts`` form).
        until: keep records with ``ts`` at or before this.
        priority: ``(most_severe, least_severe)`` severity codes to keep.
        grep: an RE2 pattern searched for in ``msg``.
        case_sensitive: ``None`` for journalctl's smart case.
        lines: only the last N matching records (then live ones, if following).
        follow: keep the stream open and send new matching records.
        select: field matches, units, identifiers and ``-F`` (``query.matches``).
    """

    uids: tuple[int, ...] = ()
    all_uids: bool = False
    pids: tuple[int, ...] = ()
    since: str | None = None
    until: str | None = None
    priority: tuple[int, int] | None = None
    grep: str | None = None
    case_sensitive: bool | None = None
    lines: int | None = None
    follow: bool = False
    select: Selection = field(default_factory=Selection)

    def __post_init__(self) -> None:
        if self.select.field is not None and (self.lines is not None or self.follow):
            msg = "query 'field' lists every value of the selection: not with 'lines' or 'follow'"
            raise ValueError(msg)
        if self.all_uids and self.uids:
            msg = "query: give either 'uids' or 'all', not both"
            raise ValueError(msg)
        if self.lines is not None and not 0 <= self.lines <= MAX_LINES:
            msg = f"query 'lines': expected 0..{MAX_LINES}, got {self.lines}"
            raise ValueError(msg)
        if self.priority is not None:
            lo, hi = self.priority
            if not 0 <= lo <= hi < len(SEVERITIES):
                msg = f"query 'priority': expected [most, least] severe, 0..7, got {[lo, hi]}"
                raise ValueError(msg)
        if self.grep is not None:
            compile_grep(self.grep, self.case_sensitive)

    @classmethod
    def from_request(cls, args: Mapping[str, Any]) -> QuerySpec:
        """Validate the arguments of a ``query`` request (``protocol.control``).

        Raises:
            ValueError: an unknown key or a bad value; the message names the key.
        """
        unknown = sorted(set(args) - _KEYS)
        if unknown:
            msg = f"query: unknown argument {unknown[0]!r}: expected some of {sorted(_KEYS)}"
            raise ValueError(msg)
        priority = args.get("priority")
        if priority is not None:
            if not (
                isinstance(priority, list)
                and len(priority) == 2
                and all(type(p) is int for p in priority)
            ):
                msg = f"query 'priority': expected [most, least] severe, got {priority!r:.80}"
                raise ValueError(msg)
            priority = (priority[0], priority[1])
        grep = args.get("grep")
        if grep is not None and not isinstance(grep, str):
            msg = f"query 'grep': expected a string, got {grep!r:.80}"
            raise ValueError(msg)
        lines = args.get("lines")
        if lines is not None and (isinstance(lines, bool) or not isinstance(lines, int)):
            msg = f"query 'lines': expected an integer, got {lines!r:.80}"
            raise ValueError(msg)
        return cls(
            uids=_int_list(args, "uids", MAX_UID, MAX_UIDS),
            all_uids=bool(_bool_arg(args, "all")),
            pids=_int_list(args, "pids", _MAX_PID, MAX_PIDS),
            since=_ts_arg(args, "since"),
            until=_ts_arg(args, "until"),
            priority=priority,
            grep=grep,
            case_sensitive=_bool_arg(args, "case_sensitive"),
            lines=lines,
            follow=bool(_bool_arg(args, "follow")),
            select=Selection.from_request(args),
        )

    def to_request(self) -> dict[str, Any]:
        """The arguments of the ``query`` request for this spec (unset ones left out)."""
        out: dict[str, Any] = {}
        if self.uids:
            out["uids"] = list(self.uids)
        if self.all_uids:
            out["all"] = True
        if self.pids:
            out["pids"] = list(self.pids)
        for key in ("since", "until", "grep", "case_sensitive", "lines"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.priority is not None:
            out["priority"] = list(self.priority)
        if self.follow:
            out["follow"] = True
        out.update(self.select.to_request())
        return out


# --------------------------------------------------------------------------- the filter


class LineFilter:
    """Applies a :class:`QuerySpec`'s record filters to raw record lines.

    Args:
        spec: the query.
        regex_memory_bytes: RE2's memory budget for ``--grep``.

    Attributes:
        since_epoch, until_epoch: the time bounds in epoch seconds (or
            ``None``), to skip whole files by the time span in their names.
        unreadable: lines seen so far that were not JSON objects.
        cancelled: :meth:`cancel` was called: every line is rejected.
    """

    def __init__(self, spec: QuerySpec, *, regex_memory_bytes: int = RE2_MAX_MEM) -> None:
        from trio_logd.query.matcher import Matcher, unit_test
        from trio_logd.query.timespec import ts_to_epoch

        self._lo = spec.since.encode() if spec.since is not None else None
        self._hi = spec.until.encode() if spec.until is not None else None
        self.since_epoch = ts_to_epoch(spec.since) if spec.since is not None else None
        self.until_epoch = ts_to_epoch(spec.until) if spec.until is not None else None
        self._pids = frozenset(spec.pids)
        self._sevs: frozenset[str] | None = None
        must: list[tuple[bytes, ...]] = []
        if self._pids:
            must.append(tuple(b'"pid":%d' % p for p in self._pids))
        if spec.priority is not None:
            lo, hi = spec.priority
            self._sevs = frozenset(SEVERITIES[lo : hi + 1])
            if _DEFAULT_SEV not in self._sevs:  # a record without "sev" is a notice
                must.append(tuple(b'"sev":"%s"' % s.encode() for s in sorted(self._sevs)))
        self._regex: Any = None
        self._needle: bytes | None = None
        self._ignore_case = False
        if spec.grep is not None:
            self._regex, self._ignore_case = compile_grep(
                spec.grep, spec.case_sensitive, max_mem=regex_memory_bytes
            )
            self._needle = required_literal(spec.grep, ignore_case=self._ignore_case)
        self._must = tuple(must)
        self._select = None if spec.select.empty else Matcher(spec.select)
        self._unit_test = unit_test(spec.select)
        self._decode_others = bool(self._pids or self._sevs is not None or self._regex is not None)
        self._decode = self._decode_others or self._select is not None
        self.unreadable = 0
        self.cancelled = False

    def cancel(self) -> None:
        """Reject every line from now on, so that a filter running in another
        thread ends its chunk at once (the query it serves was cancelled)."""
        self.cancelled = True

    @property
    def decodes(self) -> bool:
        """True when lines are decoded one by one (pid, priority or ``--grep``):
        a scan then filters small pieces, so that a step ends on time."""
        return self._decode_others or (self._select is not None and not self._select.by_chunk)

    @property
    def selects_all(self) -> bool:
        """True when the filter keeps every record (no time, pid, priority or grep)."""
        return not self._decode and self._lo is None and self._hi is None

    def accepts(self, record: Mapping[str, Any]) -> bool:
        """The exact test on a decoded record (time not included: see ``filter_lines``)."""
        if self._pids and record.get("pid") not in self._pids:
            return False
        if self._sevs is not None and record.get("sev", _DEFAULT_SEV) not in self._sevs:
            return False
        if self._regex is not None:
            msg = record.get("msg")
            if not isinstance(msg, str) or self._regex.search(msg) is None:
                return False
        return self._select is None or self._select.accepts(record)

    def _check(self, line: bytes) -> bool:
        if not line or self.cancelled:
            return False
        ts = line[TS_AT]
        if (self._lo is not None and ts < self._lo) or (self._hi is not None and ts > self._hi):
            return False
        for alternatives in self._must:
            if not any(a in line for a in alternatives):
                return False
        select = self._select
        if select is not None:
            verdict = select.decide(line)
            if verdict is False or (verdict and not self._decode_others):
                return bool(verdict)
        if not self._decode:
            return True
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            self.unreadable += 1
            return False
        if not isinstance(obj, dict):
            self.unreadable += 1
            return False
        return self.accepts(obj)

    def filter_lines(self, chunk: bytes) -> list[bytes]:
        """Return the matching lines (without LF) of *chunk*, in order.

        Args:
            chunk: complete record lines, each ending in LF.
        """
        picked = self._select.pick(chunk, self._check) if self._select is not None else None
        if picked is not None:
            return picked
        if self._needle is not None:
            return self._filter_by_needle(chunk, self._needle)
        lines = chunk.split(b"\n")
        lines.pop()  # after the last LF
        if self.selects_all:
            return [line for line in lines if line]
        check = self._check
        return [line for line in lines if check(line)]

    def _filter_by_needle(self, chunk: bytes, needle: bytes) -> list[bytes]:
        hay = chunk.lower() if self._ignore_case else chunk
        find, rfind, check = hay.find, chunk.rfind, self._check
        out: list[bytes] = []
        pos = 0
        while True:
            hit = find(needle, pos)
            if hit < 0:
                return out
            nl = rfind(b"\n", pos, hit)
            start = nl + 1 if nl >= 0 else pos
            end = chunk.find(b"\n", hit)
            if end < 0:  # not a complete line: cannot happen for a well-formed chunk
                return out
            line = chunk[start:end]
            if check(line):
                out.append(line)
            pos = end + 1

    def file_may_match(self, first_time: float, last_time: float) -> bool:
        """Whether a file whose records lie in ``[first_time, last_time]`` can hold a match."""
        if self.since_epoch is not None and last_time < self.since_epoch:
            return False
        return self.until_epoch is None or first_time <= self.until_epoch

    @property
    def unit_test(self) -> UnitTest | None:
        """Whether a file whose unit summary lists these names can hold a match
        (``matcher.unit_test``); ``None`` when the query selects by no unit."""
        return self._unit_test
