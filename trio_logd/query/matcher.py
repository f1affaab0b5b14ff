"""The matcher of a :class:`~trio_logd.query.matches.Selection`: on raw record lines first.

How this works: a :class:`Matcher` applies a selection in up to three steps,
cheapest first, as ``query.filters`` does for its own filters:

1. :meth:`Matcher.candidate`, on a whole chunk or a line: it can only hold a
   selected record if it holds, for every field of some group, one of the
   encodings the values take on disk (``"pid":42,``, ``"app":"web"``). A
   record line is compact JSON written by orjson, which writes printable
   ASCII other than ``"`` and ``\\`` unchanged; a value with any other
   character is looked for by its key alone. So this only rejects what the
   exact test would reject too;
2. :meth:`Matcher.decide`, on a line: a top-level field is found by its key
   when no ``{`` comes before it but the line's first (so it is not inside a
   nested object) and a ``,`` or ``{`` just before; its raw value runs to
   the next ``,"`` and is compared with the encodings that equal the match
   values, without decoding. Whatever cannot be told so (a ``fields.NAME``,
   a value with escapes) is left to
3. :meth:`Matcher.accepts`, on the decoded record: the exact test.

``-F``: the matcher remembers the values it has let through (their JSON
encoding, up to :data:`FIELD_SEEN_BYTES`) and rejects a record whose value is
among them, so the daemon sends one record per distinct value; past the cap
it sends repeats and the client (``value_printer``) drops them. Whole chunks
are sifted (:meth:`Matcher.pick`): every value under the field's key is
found with one regular expression, or, cheaper, the key's occurrences are
counted against those of the commonest values already let through; only
lines with a new value are tested. A raw value equal to a remembered
encoding is that value: JSON values are self-delimiting, so a complete
value cannot be the start of a longer one.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any, Final, Literal

import orjson

from trio_logd.query.matches import (
    FIELDS_PREFIX,
    GLOB_CHARS,
    INTEGER,
    Selection,
    key_of,
    lookup,
    printable_ascii,
    value_test,
)

if TYPE_CHECKING:  # the store's type, not its import (the query CLIs' start-up)
    from trio_logd.store.scan import UnitTest

__all__ = ["FIELD_SEEN_BYTES", "FIELD_SEEN_VALUES", "Matcher", "unit_test"]

#: Bytes of distinct ``-F`` values the daemon remembers per query; past it,
#: repeats go to the client, which drops them.
FIELD_SEEN_BYTES: Final = 4 << 20
#: Distinct ``-F`` values remembered per query (a set entry costs ~100 bytes).
FIELD_SEEN_VALUES: Final = 65_536

#: ``-F``: values whose needles are counted in a chunk before a regex scan of it.
_COMMON_VALUES: Final = 8


def _needles(name: str, text: str) -> tuple[bytes, ...]:
    """Byte strings one of which a line holds if field *name* can equal *text*.

    Empty: no safe needle (the key itself has characters orjson may escape).
    """
    key = key_of(name)
    if not printable_ascii(key):
        return ()
    head = b'"%s":' % key.encode()
    if not printable_ascii(text):
        return (head,)
    if INTEGER.match(text):
        n = b"%d" % int(text)
        return (head + n + b",", head + n + b"}", head + b'"%s"' % text.encode())
    return (head + b'"%s"' % text.encode(), head + text.encode())


def _glob_needles(keys: Sequence[str], pattern: str) -> tuple[bytes, ...]:
    """Needles for a unit glob: each key followed by the pattern's literal head."""
    cut = min((pattern.find(c) for c in GLOB_CHARS if c in pattern), default=len(pattern))
    head = pattern[:cut]
    if not printable_ascii(head):
        return tuple(b'"%s":"' % k.encode() for k in keys)
    tail = b'"' if cut == len(pattern) else b""
    return tuple(b'"%s":"%s%s' % (k.encode(), head.encode(), tail) for k in keys)


def _has(line: bytes, alternatives: tuple[bytes, ...]) -> bool:
    return any(a in line for a in alternatives)


# --------------------------------------------------------------------------- raw decisions


def _raw_top(line: bytes, key: bytes) -> bytes | Literal[False] | None:
    """The raw value of top-level key *key* (``b'"app":'``) in *line*, without decoding.

    Returns:
        ``False`` when the line has no such key anywhere (so not at the top
        level either); the value's bytes when the first occurrence is
        provably a top-level key (no ``{`` before it but the line's first,
        and a ``,`` or ``{`` just before); ``None`` when that cannot be told
        so cheaply. The bytes run to the next ``,"`` (or the closing brace):
        the whole value for a string (whose quotes are all escaped inside),
        number or literal; a cut piece of an object or array, which no
        accepted encoding equals.
    """
    pos = line.find(key)
    if pos < 0:
        return False
    if pos < 1 or line[pos - 1] not in b",{" or line.find(b"{", 1, pos) >= 0:
        return None
    start = pos + len(key)
    end = line.find(b',"', start)
    return line[start:end] if end >= 0 else line[start:-1]


_FLOAT: Final = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?\Z")


def _accepted(texts: Sequence[str]) -> frozenset[bytes] | None:
    """The raw encodings a top-level value equal to one of *texts* takes on disk.

    ``None`` when some text cannot be decided on raw bytes (not printable
    ASCII, or spelled like an object or array): the record is decoded then.
    """
    out: set[bytes] = set()
    for text in texts:
        if not printable_ascii(text) or text.startswith(("{", "[")):
            return None
        out.add(b'"%s"' % text.encode())
        if INTEGER.match(text):
            out.add(b"%d" % int(text))
        elif text in ("true", "false", "null") or _FLOAT.match(text):
            out.add(text.encode())
    return frozenset(out)


def _both(a: bool | None, b: bool | None) -> bool | None:
    """Three-valued AND (``None``: not known without decoding)."""
    if a is False or b is False:
        return False
    return None if a is None or b is None else True


def _either(a: bool | None, b: bool | None) -> bool | None:
    """Three-valued OR."""
    if a or b:
        return True
    return None if a is None or b is None else False


#: One field of a group, for raw decisions: the needles one of which a line
#: must hold (empty: no prefilter), the top-level key (``b""``: nested or
#: unsafe) and the raw values that equal (``None``: decode to tell).
_RawTerm = tuple[tuple[bytes, ...], bytes, frozenset[bytes] | None]


def _raw_term(name: str, texts: Sequence[str]) -> _RawTerm:
    alts = [_needles(name, t) for t in texts]
    needles = tuple(a for alt in alts for a in alt) if all(alts) else ()
    top = not name.startswith(FIELDS_PREFIX) and printable_ascii(name)
    if not top:
        return needles, b"", None
    return needles, b'"%s":' % name.encode(), _accepted(texts)


def _group_verdict(line: bytes, terms: Sequence[_RawTerm]) -> bool | None:
    verdict: bool | None = True
    for needles, key, accepted in terms:
        if needles and not any(n in line for n in needles):
            return False
        if accepted is None:
            verdict = None
            continue
        raw = _raw_top(line, key)
        if raw is None:
            verdict = None
        elif raw is False or raw not in accepted:
            return False
    return verdict


def _glob_verdict(line: bytes, keys: Sequence[bytes], patterns: Sequence[str]) -> bool | None:
    """Whether a top-level string under one of *keys* matches one of the globs."""
    verdict: bool | None = False
    for key in keys:
        raw = _raw_top(line, key)
        if raw is False:
            continue
        if raw is None or (raw[:1] == b'"' and b"\\" in raw):
            verdict = None  # not provably top-level, or escapes: decode to tell
            continue
        if raw[:1] != b'"' or len(raw) < 2:  # a number, literal, object: not a name
            continue
        text = raw[1:-1].decode("utf-8", "replace")
        if any(fnmatchcase(text, p) for p in patterns):
            return True
    return verdict


# --------------------------------------------------------------------------- the matcher


_Getter = Callable[[Mapping[str, Any]], tuple[bool, Any]]


class Matcher:
    """Applies a :class:`Selection` to record lines and records.

    Args:
        selection: what to select.
        seen_bytes: ``-F``: bytes of distinct values to remember (and
            :data:`FIELD_SEEN_VALUES` values at most); past them, repeats pass.
    """

    def __init__(self, selection: Selection, *, seen_bytes: int = FIELD_SEEN_BYTES) -> None:
        # per group, per field: the field's getter and its values' tests
        self._groups: list[list[tuple[_Getter, list[Callable[[Any], bool]]]]] = []
        self._raw_groups: list[list[_RawTerm]] = []
        for group in selection.matches:
            by_field: dict[str, list[str]] = {}
            for name, text in group:
                by_field.setdefault(name, []).append(text)
            self._groups.append(
                [(lookup(n), [value_test(t) for t in texts]) for n, texts in by_field.items()]
            )
            self._raw_groups.append([_raw_term(n, texts) for n, texts in by_field.items()])
        self._units = selection.units
        self._user_units = selection.user_units
        self._identifiers = frozenset(selection.identifiers)
        self._apps = _accepted(selection.identifiers) if selection.identifiers else None
        must: list[tuple[bytes, ...]] = []
        if self._units or self._user_units:
            units = [n for u in self._units for n in _glob_needles(("unit", "slice"), u)]
            units += [
                n for u in self._user_units for n in _glob_needles(("user_unit", "user_slice"), u)
            ]
            must.append(tuple(units))
        if self._identifiers:
            apps = [_needles("app", i) for i in selection.identifiers]
            if all(apps):
                must.append(tuple(a for alt in apps for a in alt))
        self._must = tuple(must)
        self._get_field = lookup(selection.field) if selection.field is not None else None
        self._field_key = b""
        self._field_values: re.Pattern[bytes] | None = None
        if selection.field is not None:
            key = key_of(selection.field)
            if printable_ascii(key) and ":" not in key:  # a key cannot overlap itself
                self._field_key = b'"%s":' % key.encode()
                # every value under that key anywhere in a chunk: a string, or up to , } or "
                self._field_values = re.compile(
                    re.escape(self._field_key) + rb'("(?:[^"\\]|\\.)*"|[^,}"]*)'
                )
        self._seen: set[bytes] = set()
        self._seen_room = seen_bytes
        #: needles of the values let through that were commonest in the last chunk
        self._common: list[tuple[bytes, ...]] = []

    @property
    def by_chunk(self) -> bool:
        """``-F`` of a field found by key: whole chunks are sifted (:meth:`pick`), the
        few lines left decoded."""
        return self._field_values is not None

    def candidate(self, data: bytes) -> bool:
        """Whether *data* (one line, or a chunk of lines) may hold a selected record.

        Only the raw bytes are looked at; ``False`` is certain, ``True`` is not.
        """
        for alternatives in self._must:
            if not _has(data, alternatives):
                return False
        if self._raw_groups and not any(
            all(not needles or _has(data, needles) for needles, _, _ in group)
            for group in self._raw_groups
        ):
            return False
        if self._field_key:
            return self._field_key in data
        return True

    def pick(self, chunk: bytes, check: Callable[[bytes], bool]) -> list[bytes] | None:
        """The selected lines of *chunk* (complete lines), or ``None``: test each line.

        ``[]`` when the chunk holds none (:meth:`candidate`). For ``-F``, only
        lines that hold, under the field's key, a value not let through yet
        are tested (with *check*, the whole filter): a line whose value was
        let through holds that value's encoding under the key, and every
        value under the key is found by one regular expression over the
        whole chunk, so the other lines are dropped without looking at each;
        once a line with a new value passes, the others with it are skipped.
        Cheaper still, when the key occurs in the chunk exactly as often as
        the commonest values let through follow it (``"app":"web"``,
        ``"pid":42,``), the chunk holds nothing new.
        """
        if not self.candidate(chunk):
            return []
        if self._field_values is None:
            return None
        key = self._field_key
        if self._common:
            total = chunk.count(key)
            for needles in self._common:
                total -= sum(map(chunk.count, needles))
                if not total:
                    return []
        counts = Counter(self._field_values.findall(chunk))
        # a string's closing quote ends it; a number needs the , or } after it
        self._common = [
            (key + raw,) if raw[-1:] == b'"' else (key + raw + b",", key + raw + b"}")
            for raw, _ in counts.most_common(_COMMON_VALUES)
            if raw in self._seen
        ]
        new = set(counts)
        new.difference_update(self._seen)
        if not new:
            return []
        tested: set[int] = set()
        passed: list[tuple[int, bytes]] = []
        for raw in new:
            needle = key + raw
            at = chunk.find(needle)
            while at >= 0 and raw not in self._seen:
                start = chunk.rfind(b"\n", 0, at) + 1
                end = chunk.find(b"\n", at)
                if start not in tested:
                    tested.add(start)
                    line = chunk[start:end]
                    if check(line):
                        passed.append((start, line))
                at = chunk.find(needle, end)
        return [line for _, line in sorted(passed)]

    def decide(self, line: bytes) -> bool | None:
        """Whether *line* is selected, from its raw bytes: ``None`` when it must be decoded."""
        verdict: bool | None = True
        if self._raw_groups:
            groups: bool | None = False
            for terms in self._raw_groups:
                groups = _either(groups, _group_verdict(line, terms))
                if groups:
                    break
            if groups is False:
                return False
            verdict = groups
        if self._units or self._user_units:
            units = _either(
                _glob_verdict(line, (b'"unit":', b'"slice":'), self._units)
                if self._units
                else False,
                _glob_verdict(line, (b'"user_unit":', b'"user_slice":'), self._user_units)
                if self._user_units
                else False,
            )
            verdict = _both(verdict, units)
            if verdict is False:
                return False
        if self._identifiers:
            app: bool | None = None
            if self._apps is not None:
                raw = _raw_top(line, b'"app":')
                app = None if raw is None else raw is not False and raw in self._apps
            verdict = _both(verdict, app)
            if verdict is False:
                return False
        if self._get_field is not None:
            raw = _raw_top(line, self._field_key) if self._field_key else None
            if raw is False or (raw and raw in self._seen):
                return False
            return None  # a new value: decoded, to remember it
        return verdict

    def accepts(self, record: Mapping[str, Any]) -> bool:
        """The exact test on a decoded record; for ``-F``, a new value only (remembered)."""
        if self._groups and not any(self._group_accepts(g, record) for g in self._groups):
            return False
        if (self._units or self._user_units) and not self._unit_accepts(record):
            return False
        if self._identifiers:
            app = record.get("app")
            if not isinstance(app, str) or app not in self._identifiers:
                return False
        if self._get_field is not None:
            return self._new_value(record)
        return True

    @staticmethod
    def _group_accepts(
        group: list[tuple[_Getter, list[Callable[[Any], bool]]]], record: Mapping[str, Any]
    ) -> bool:
        for get, tests in group:
            present, value = get(record)
            if not present or not any(t(value) for t in tests):
                return False
        return True

    def _unit_accepts(self, record: Mapping[str, Any]) -> bool:
        return _globbed(record, ("unit", "slice"), self._units) or _globbed(
            record, ("user_unit", "user_slice"), self._user_units
        )

    def _new_value(self, record: Mapping[str, Any]) -> bool:
        assert self._get_field is not None
        present, value = self._get_field(record)
        if not present:
            return False
        encoded = orjson.dumps(value)
        if encoded in self._seen:
            return False
        if len(self._seen) < FIELD_SEEN_VALUES and len(encoded) <= self._seen_room:
            self._seen.add(encoded)
            self._seen_room -= len(encoded)
        return True


#: The fields a rotated file's unit summary lists (``store._unitindex.KEYS``).
_SUMMARY_KEYS: Final = frozenset({"unit", "slice", "user_unit", "user_slice"})


def unit_test(selection: Selection) -> UnitTest | None:
    """The test of a rotated file's unit summary for *selection*; ``None`` when
    no summary can rule a file out (the selection names no unit).

    A file may hold a match only if a name in its summary matches a ``-u`` /
    ``--user-unit`` pattern (when there are any) and, when every ``+`` group
    of matches has a ``unit``/``slice``/``user_unit``/``user_slice`` term,
    some group has each such field's summary holding one of its values. The
    summary lists only strings (a file with another value has none), and a
    string equals a match's text exactly (``matches.value_test``).
    """
    units, user_units = selection.units, selection.user_units
    needs: list[dict[str, frozenset[str]]] = []
    for group in selection.matches:
        need: dict[str, set[str]] = {}
        for name, text in group:
            if name in _SUMMARY_KEYS:
                need.setdefault(name, set()).add(text)
        needs.append({k: frozenset(v) for k, v in need.items()})
    by_groups = bool(needs) and all(needs)
    if not (units or user_units or by_groups):
        return None
    empty: frozenset[str] = frozenset()

    def test(names: Mapping[str, frozenset[str]]) -> bool:
        if (units or user_units) and not (
            _any_globbed(names, ("unit", "slice"), units)
            or _any_globbed(names, ("user_unit", "user_slice"), user_units)
        ):
            return False
        if by_groups:
            return any(all(names.get(f, empty) & v for f, v in need.items()) for need in needs)
        return True

    return test


def _any_globbed(
    names: Mapping[str, frozenset[str]], keys: Iterable[str], patterns: Sequence[str]
) -> bool:
    return any(fnmatchcase(n, p) for k in keys for n in names.get(k, ()) for p in patterns)


def _globbed(record: Mapping[str, Any], keys: Iterable[str], patterns: Sequence[str]) -> bool:
    for key in keys:
        value = record.get(key)
        if isinstance(value, str) and any(fnmatchcase(value, p) for p in patterns):
            return True
    return False
