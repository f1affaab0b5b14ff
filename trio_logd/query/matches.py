"""Field matches, units, identifiers and ``-F`` values: journalctl's selection, on record lines.

How this works: a :class:`Selection` is the validated form of what ``logq``
selects beyond time, pid, priority and ``--grep``, as journalctl spells it:

* positional ``FIELD=VALUE`` matches, in groups separated by ``+``: within a
  group the same field given several times is OR, different fields are AND;
  the groups are OR (``sd_journal_add_disjunction``);
* ``-u/--unit`` and ``--user-unit`` patterns (OR, all of them together, as
  journalctl adds them in one term), on the trusted ``unit``/``slice`` and
  ``user_unit``/``user_slice`` fields;
* ``-t/--identifier`` (OR) on the claimed ``app``;
* ``-F/--field``: the distinct values of one field.

These terms are AND (``sd_journal_add_conjunction``); ``query.matcher``
applies them to record lines.

Values compare as journalctl's do, typed: a record's string equals the text;
an integer equals a text that is an integer (``pid=042`` is pid 42); any
other value (``true``, ``null``, a float, an object) equals its compact JSON
spelling. A field the record does not have matches nothing, as does a field
nobody has ever heard of: that is not an error. ``fields.NAME`` names a
sender's field (everything after ``fields.`` is the key, dots included).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson

__all__ = [
    "FIELDS_PREFIX",
    "GLOB_CHARS",
    "INTEGER",
    "MAX_MATCHES",
    "MAX_NAME_CHARS",
    "MAX_PATTERNS",
    "MAX_VALUE_CHARS",
    "Selection",
    "field_value",
    "key_of",
    "lookup",
    "parse_matches",
    "printable_ascii",
    "unit_pattern",
    "value_printer",
    "value_test",
]

#: Terms of all ``FIELD=VALUE`` groups together: a request stays well under
#: ``protocol.control.MAX_REQUEST_BYTES`` and each line's test is bounded.
MAX_MATCHES: Final = 256
#: Unit, user unit and identifier patterns, each kind.
MAX_PATTERNS: Final = 64
#: A field name, unit pattern or identifier.
MAX_NAME_CHARS: Final = 256
#: A match's value (the request line is 64 KiB at most).
MAX_VALUE_CHARS: Final = 4096
#: systemd's unit type suffixes (``unit_type_from_string``).
_UNIT_SUFFIXES: Final = (
    ".service", ".socket", ".target", ".device", ".mount", ".automount", ".swap", ".timer",
    ".path", ".slice", ".scope",
)  # fmt: skip
GLOB_CHARS: Final = "*?["
INTEGER: Final = re.compile(r"-?[0-9]{1,30}\Z")
FIELDS_PREFIX: Final = "fields."

Groups = tuple[tuple[tuple[str, str], ...], ...]


def printable_ascii(text: str) -> bool:
    """Written by orjson byte for byte (no escape): printable ASCII but ``"`` and ``\\``."""
    return text.isascii() and text.isprintable() and '"' not in text and "\\" not in text


# --------------------------------------------------------------------------- the CLI's words


def parse_matches(words: Sequence[str]) -> Groups:
    """Parse ``logq``'s positional arguments: ``FIELD=VALUE`` terms, ``+`` between groups.

    Returns:
        The groups, each a tuple of ``(field, value)`` in the order given.

    Raises:
        ValueError: a word that is not ``FIELD=VALUE`` or ``+``, or a ``+``
            with no match on one side; the message names the word.
    """
    groups: list[tuple[tuple[str, str], ...]] = []
    current: list[tuple[str, str]] = []
    for word in words:
        if word == "+":
            if not current:
                msg = "'+' must stand between two matches (FIELD=VALUE + FIELD=VALUE)"
                raise ValueError(msg)
            groups.append(tuple(current))
            current = []
            continue
        name, eq, value = word.partition("=")
        if not eq or not name:
            msg = (
                f"invalid match {word[:80]!r}: expected FIELD=VALUE (a record field such as "
                f"pid=42 or app=sshd, or fields.NAME=VALUE for a sender's field)"
            )
            raise ValueError(msg)
        current.append((name, value))
    if current:
        groups.append(tuple(current))
    elif groups:
        msg = "'+' must stand between two matches (FIELD=VALUE + FIELD=VALUE)"
        raise ValueError(msg)
    return tuple(groups)


def unit_pattern(name: str) -> str:
    """journalctl's unit name for ``-u NAME``: ``.service`` added when it names no type.

    A glob (``*``, ``?``, ``[``) is kept as it is, so ``ssh*`` matches
    ``sshd.service`` and ``ssh.socket``, as ``unit_name_mangle`` does with
    ``UNIT_NAME_MANGLE_GLOB``.
    """
    if any(c in name for c in GLOB_CHARS) or name.endswith(_UNIT_SUFFIXES):
        return name
    return name + ".service"


# --------------------------------------------------------------------------- the request


def _names(args: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = args.get(key)
    if value is None:
        return ()
    if (
        not isinstance(value, list)
        or len(value) > MAX_PATTERNS
        or not all(isinstance(v, str) and 0 < len(v) <= MAX_NAME_CHARS for v in value)
    ):
        msg = (
            f"query {key!r}: expected a list of at most {MAX_PATTERNS} names of 1.."
            f"{MAX_NAME_CHARS} characters, got {value!r:.80}"
        )
        raise ValueError(msg)
    return tuple(dict.fromkeys(value))


def _groups(args: Mapping[str, Any]) -> Groups:
    value = args.get("matches")
    if value is None:
        return ()
    bad = f"query 'matches': expected a list of groups of [field, value] pairs, got {value!r:.80}"
    if not isinstance(value, list):
        raise ValueError(bad)
    out: list[tuple[tuple[str, str], ...]] = []
    count = 0
    for group in value:
        if not isinstance(group, list) or not group:
            raise ValueError(bad)
        terms: list[tuple[str, str]] = []
        for term in group:
            if not (
                isinstance(term, list)
                and len(term) == 2
                and all(isinstance(t, str) for t in term)
                and 0 < len(term[0]) <= MAX_NAME_CHARS
                and len(term[1]) <= MAX_VALUE_CHARS
            ):
                msg = (
                    f"query 'matches': expected [field, value] with a field of 1.."
                    f"{MAX_NAME_CHARS} and a value of at most {MAX_VALUE_CHARS} characters, "
                    f"got {term!r:.80}"
                )
                raise ValueError(msg)
            terms.append((term[0], term[1]))
        count += len(terms)
        out.append(tuple(terms))
    if count > MAX_MATCHES:
        msg = f"query 'matches': {count} terms, expected at most {MAX_MATCHES}"
        raise ValueError(msg)
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Selection:
    """Field matches, units, identifiers and the ``-F`` field of a query.

    Attributes:
        matches: groups of ``(field, value)``: OR of groups, in a group OR of
            one field's values and AND across fields.
        units: ``-u`` patterns (already through :func:`unit_pattern`).
        user_units: ``--user-unit`` patterns (likewise).
        identifiers: ``-t`` values, compared with the claimed ``app``.
        field: ``-F``: send one record per distinct value of this field.
    """

    #: The ``query`` request keys of a selection.
    KEYS = frozenset({"matches", "units", "user_units", "identifiers", "field"})

    matches: Groups = ()
    units: tuple[str, ...] = ()
    user_units: tuple[str, ...] = ()
    identifiers: tuple[str, ...] = ()
    field: str | None = None

    @property
    def empty(self) -> bool:
        """Nothing to select by (every record passes)."""
        return (
            not (self.matches or self.units or self.user_units or self.identifiers)
            and self.field is None
        )

    @classmethod
    def from_request(cls, args: Mapping[str, Any]) -> Selection:
        """Validate the selection keys of a ``query`` request (others are ignored).

        Raises:
            ValueError: a bad value; the message names the key.
        """
        field = args.get("field")
        if field is not None and not (isinstance(field, str) and 0 < len(field) <= MAX_NAME_CHARS):
            msg = f"query 'field': expected a field name of 1..{MAX_NAME_CHARS} characters"
            raise ValueError(msg)
        return cls(
            matches=_groups(args),
            units=_names(args, "units"),
            user_units=_names(args, "user_units"),
            identifiers=_names(args, "identifiers"),
            field=field,
        )

    def to_request(self) -> dict[str, Any]:
        """The request keys of this selection (unset ones left out)."""
        out: dict[str, Any] = {}
        if self.matches:
            out["matches"] = [[list(term) for term in group] for group in self.matches]
        for key in ("units", "user_units", "identifiers"):
            if getattr(self, key):
                out[key] = list(getattr(self, key))
        if self.field is not None:
            out["field"] = self.field
        return out


# --------------------------------------------------------------------------- values


def lookup(name: str) -> Callable[[Mapping[str, Any]], tuple[bool, Any]]:
    """A getter of field *name* in a decoded record: ``(present, value)``."""
    if name.startswith(FIELDS_PREFIX) and len(name) > len(FIELDS_PREFIX):
        key = name[len(FIELDS_PREFIX) :]

        def nested(record: Mapping[str, Any]) -> tuple[bool, Any]:
            fields = record.get("fields")
            if isinstance(fields, dict) and key in fields:
                return True, fields[key]
            return False, None

        return nested

    def top(record: Mapping[str, Any]) -> tuple[bool, Any]:
        return (True, record[name]) if name in record else (False, None)

    return top


def field_value(record: Mapping[str, Any], name: str) -> tuple[bool, Any]:
    """``(present, value)`` of field *name* (``fields.NAME`` for a sender's) in *record*."""
    return lookup(name)(record)


def key_of(name: str) -> str:
    """The JSON key that holds field *name* on disk."""
    if name.startswith(FIELDS_PREFIX) and len(name) > len(FIELDS_PREFIX):
        return name[len(FIELDS_PREFIX) :]
    return name


def value_test(text: str) -> Callable[[Any], bool]:
    """The test of one match value against a record's value (see the module doc)."""
    spelled = text.encode()
    number = int(text) if INTEGER.match(text) else None

    def test(value: Any) -> bool:
        if isinstance(value, str):
            return value == text
        if isinstance(value, int) and not isinstance(value, bool):
            return value == number
        return orjson.dumps(value) == spelled

    return test


# --------------------------------------------------------------------------- -F's output


def _ascii_json(value: Any) -> bytes:
    """*value* as JSON in ASCII: every non-ASCII character and DEL escaped (rare: lazy import)."""
    import json

    return json.dumps(value, separators=(",", ":")).replace("\x7f", "\\u007f").encode()


def value_printer(name: str) -> Callable[[bytes], bytes]:
    """``logq -F NAME``'s formatter: a record line in, its value's line out (once per value).

    A string is printed as it is unless it holds a control character (then as
    JSON, escaped: a sender's value never reaches the terminal raw); any other
    value as JSON. A record without the field, or whose value prints as one
    printed before (the integer 1 and the string "1"), gives ``b""``.
    """
    get = lookup(name)
    seen: set[bytes] = set()

    def show(line: bytes) -> bytes:
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            return b""
        present, value = get(record) if isinstance(record, dict) else (False, None)
        if not present:
            return b""
        encoded = orjson.dumps(value)
        if isinstance(value, str) and value.isprintable():
            out = value.encode("utf-8", "replace") + b"\n"
        elif encoded.isascii() and b"\x7f" not in encoded:
            out = encoded + b"\n"
        else:
            out = _ascii_json(value) + b"\n"
        if out in seen:  # the integer 1 and the string "1" print alike: once
            return b""
        seen.add(out)
        return out

    return show
