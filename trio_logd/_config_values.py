"""Reading one table of the config: its values, each through a parser (``trio_logd.config``).

How this works: a ``_Table`` hands out one key's value at a time, through the
parser named for it; a parser raises ``_Invalid(reason)`` and the table turns
that into ``ConfigError(file, "[table] key", reason)``. ``_check_names``
walks the whole file against the schema first (unknown tables and keys, with
the closest spelling).
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final, TypeGuard, TypeVar

from trio_logd._units import parse_duration, parse_size
from trio_logd.config import (
    _KEY_HOMES,
    _UID_ONLY,
    MAX_INT,
    MAX_SECONDS,
    MAX_UID,
    _Schema,
)
from trio_logd.errors import ConfigError

_T = TypeVar("_T")
_Parser = Callable[[object], _T]

_BARE_KEY: Final = re.compile(r"[A-Za-z0-9_-]+")
_UID_NAME: Final = re.compile(r"0|[1-9][0-9]{0,9}")
_OCTAL_MODE: Final = re.compile(r"(?:0o?)?([0-7]{1,4})")
#: User and group names: systemd's "relaxed" rule (no control characters, no
#: ``:`` or ``/``, no leading or trailing space, not all digits, not ``.`` or
#: ``..``), so that names from LDAP/sssd (``john@example.com``, ``domain
#: users``) are accepted.
_NAME: Final = re.compile(r"(?!\d+\Z)(?!\.\.?\Z)(?! )(?!.* \Z)[^:/\x00-\x1f\x7f]{1,256}")
_CLAIM: Final = re.compile(r"(user|group|uid):(.*)", re.DOTALL)
_FORWARD_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
#: ``host:port``, ``[v6]:port``; the host part is checked loosely (a name or an
#: IPv4 address: the resolver has the last word).
_ADDRESS: Final = re.compile(
    r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9_.-]+)):(?P<port>[0-9]{1,5})"
)

# --------------------------------------------------------------------------- reading tables


class _Invalid(Exception):
    """A parser refused a value; the message is the reason after ``[table] key: ``."""


@dataclass(frozen=True, slots=True)
class _Ctx:
    """What every table of one load shares.

    *errors* is ``None`` for a normal load (the first error is raised). For
    :func:`load_all_errors` it collects them: a bad value is recorded and
    replaced by its default, a table that still fails is recorded and replaced
    by its defaults (or left out), and reading goes on.
    """

    file: str
    base_dir: str
    errors: list[ConfigError] | None = None

    def attempt(self, read: Callable[[], _T], fallback: Callable[[], _T]) -> _T:
        """``read()``; when collecting errors, record its error and return ``fallback()``."""
        if self.errors is None:
            return read()
        try:
            return read()
        except ConfigError as exc:
            self.errors.append(exc)
            return fallback()


class _Table:
    """One TOML table being read: parses values and names them in errors.

    *label* names an element of an array of tables (``[[forward]] #2``).
    """

    __slots__ = ("_ctx", "_defaults", "_label", "_path", "_raw")

    def __init__(
        self,
        ctx: _Ctx,
        path: tuple[str, ...],
        raw: Mapping[str, object],
        label: str | None = None,
        defaults: Mapping[str, object] | None = None,
    ) -> None:
        self._ctx = ctx
        self._path = path
        self._raw = raw
        self._label = label
        self._defaults: Mapping[str, object] = defaults or {}

    @property
    def ctx(self) -> _Ctx:
        return self._ctx

    @property
    def raw(self) -> Mapping[str, object]:
        """The table as parsed from TOML (merged over the defaults)."""
        return self._raw

    @property
    def name(self) -> str:
        """``[limits.uid.1000]``; empty for the top level."""
        if self._label is not None:
            return self._label
        return _table_name(self._path) if self._path else ""

    def where(self, key: str) -> str:
        """``[daemon] socket`` (or ``socket`` at the top level)."""
        return f"{self.name} {_toml_key(key)}" if self.name else _toml_key(key)

    def error(self, reason: str, key: str | None = None) -> ConfigError:
        """A ``ConfigError`` about *key* of this table, or the table itself."""
        return ConfigError(self._ctx.file, self.name if key is None else self.where(key), reason)

    def get(self, key: str, parse: _Parser[_T]) -> _T:
        """The parsed value of a key every merged table has (from the defaults)."""
        if key not in self._raw:
            reason = "missing"
            raise self.error(reason, key)
        return self._parse(key, parse)

    def get_optional(self, key: str, parse: _Parser[_T]) -> _T | None:
        """The parsed value of *key*, or ``None`` when the table leaves it out."""
        if key not in self._raw:
            return None
        errors = self._ctx.errors
        if errors is not None and key not in self._defaults:
            try:
                return self._parse(key, parse)
            except ConfigError as exc:  # collecting: record it, go on as if left out
                errors.append(exc)
                return None
        return self._parse(key, parse)

    def _parse(self, key: str, parse: _Parser[_T]) -> _T:
        try:
            return parse(self._raw[key])
        except _Invalid as exc:
            error = self.error(str(exc), key)
        if self._ctx.errors is None or key not in self._defaults:
            raise error
        self._ctx.errors.append(error)  # collecting: record it, go on with the default
        try:
            return parse(self._defaults[key])
        except _Invalid:
            raise error from None

    def table(self, key: str) -> _Table:
        """The sub-table *key* (empty when absent)."""
        value = self._raw.get(key, {})
        if not isinstance(value, dict):
            reason = f"expected a table, got {_show(value)}"
            raise self.error(reason, key)
        below = self._defaults.get(key)
        defaults = below if isinstance(below, dict) else None
        return _Table(self._ctx, (*self._path, key), value, defaults=defaults)

    def subtables(self, key: str) -> list[tuple[str, _Table]]:
        """The tables inside sub-table *key*, as ``(name, table)`` in file order."""
        parent = self.table(key)
        return [(name, parent.table(name)) for name in parent._raw]


def _check_names(
    raw: Mapping[str, object],
    schema: _Schema,
    path: tuple[str, ...],
    file: str,
    errors: list[ConfigError] | None = None,
) -> None:
    """Fail on the first table or key of *raw* that *schema* does not know.

    Runs over the whole file before any value is parsed, so that a misspelt
    key is reported rather than the errors its absence causes. Types are left
    to the readers (``[daemon.socket]`` is "expected a path, got a table").
    With *errors*, every unknown name is appended there instead.
    """

    def fail(exc: ConfigError) -> None:
        if errors is None:
            raise exc
        errors.append(exc)

    for key, value in raw.items():
        if isinstance(schema, tuple):  # a table of keys
            if key not in schema:
                fail(_unknown(key, value, schema, path, file))
            continue
        sub = schema.get(key, schema.get("*"))  # a table of tables
        if sub is None:
            fail(_unknown(key, value, [k for k in schema if k != "*"], path, file))
            continue
        if isinstance(value, dict):
            _check_names(value, sub, (*path, key), file, errors)
        elif isinstance(value, list) and isinstance(sub, tuple):  # an array of tables
            for i, item in enumerate(value, 1):
                if not isinstance(item, dict):
                    continue
                found: list[ConfigError] = []
                try:
                    _check_names(
                        item, sub, (*path, key), file, found if errors is not None else None
                    )
                except ConfigError as first:
                    found.append(first)
                for error in found:  # name the element: [[forward]] #2 nme
                    where = error.key.replace(_table_name((*path, key)), _element_label(key, i), 1)
                    fail(ConfigError(file, where, error.reason))


def _unknown(
    key: str, value: object, known: Iterable[str], path: tuple[str, ...], file: str
) -> ConfigError:
    if len(path) == 3 and path[:2] == ("limits", "unit") and key in _UID_ONLY:
        # a near miss among the unit's keys (quota_bytes -> burst_bytes) would mislead
        where = f"{_table_name(path)} {_toml_key(key)}"
        reason = (
            "a uid's key, not a unit's: quotas stay per uid, and a unit over its rate "
            "is treated as its uid's on_rate says; set it in [limits.default], "
            "[limits.uid.N], [limits.user.NAME] or [limits.group.NAME]"
        )
        return ConfigError(file, where, reason)
    close = difflib.get_close_matches(key, list(known), n=1)
    if isinstance(value, dict):
        hint = f" (did you mean {_table_name((*path, close[0]))}?)" if close else ""
        return ConfigError(file, _table_name((*path, key)), f"unknown table{hint}")
    hint = f" (did you mean {_toml_key(close[0])}?)" if close else _elsewhere(key, path)
    where = f"{_table_name(path)} {_toml_key(key)}" if path else _toml_key(key)
    return ConfigError(file, where, f"unknown key{hint}")


def _elsewhere(key: str, path: tuple[str, ...]) -> str:
    """`` (did you mean [limits.default] rate_messages?)`` when another table has *key*."""

    def shared(home: tuple[str, ...]) -> int:
        count = 0
        for mine, theirs in zip(home, path, strict=False):
            if mine != theirs:
                break
            count += 1
        return count

    homes = [home for home, keys in _KEY_HOMES if key in keys]
    if not homes:
        return ""
    # nearest first: [limits] max_connections is [limits.default]'s, not [daemon]'s
    home = max(homes, key=shared)
    return f" (did you mean {_table_name(home)} {_toml_key(key)}?)"


def _toml_key(key: str) -> str:
    """*key* as TOML would write it: bare when it can be, quoted otherwise."""
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False)


def _table_name(path: tuple[str, ...]) -> str:
    return "[" + ".".join(_toml_key(p) for p in path) + "]"


def _element_label(key: str, index: int) -> str:
    """``[[forward]] #2``: the *index*-th (from 1) table of the array *key*."""
    return f"[[{_toml_key(key)}]] #{index}"


def _show(value: object) -> str:
    """*value* as the file spelled it, short enough for one line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 80 else text[:76] + '..."'
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return f"a {type(value).__name__}"  # TOML dates and times


# --------------------------------------------------------------------------- value parsers


def _is_int(value: object) -> TypeGuard[int]:
    # TOML true/false arrive as bool, a subclass of int: never a number here.
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_int(value: object) -> int:
    if _is_int(value) and 0 < value <= MAX_INT:
        return value
    msg = f"expected a positive integer, got {_show(value)}"
    raise _Invalid(msg)


def _non_negative_int(value: object) -> int:
    if _is_int(value) and 0 <= value <= MAX_INT:
        return value
    msg = f"expected an integer >= 0, got {_show(value)}"
    raise _Invalid(msg)


def _size(*, minimum: int) -> _Parser[int]:
    what = "a positive number of bytes" if minimum > 0 else "a number of bytes >= 0"

    def parse(value: object) -> int:
        detail = ""
        if isinstance(value, str | int) and not isinstance(value, bool):
            try:
                size = parse_size(value)
            except ValueError as exc:
                if isinstance(value, str) and not str(exc).startswith("cannot read"):
                    detail = f": {exc}"
            else:
                if minimum <= size <= MAX_INT:
                    return size
        msg = f'expected {what} (an integer, or a string like "16MiB"), got {_show(value)}{detail}'
        raise _Invalid(msg)

    return parse


def _duration(value: object) -> float:
    detail = ""
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            if isinstance(value, str) and not str(exc).startswith("cannot read"):
                detail = f": {exc}"
        else:
            if seconds <= MAX_SECONDS:
                return seconds
            detail = ": longer than 100 years"
    msg = (
        'expected a duration (seconds, or a string like "45s", "30m", "12h", "1d", "2w"), '
        f"got {_show(value)}{detail}"
    )
    raise _Invalid(msg)


def _choice(options: tuple[_T, ...]) -> _Parser[_T]:
    def parse(value: object) -> _T:
        for option in options:
            if value == option and isinstance(value, str):
                return option
        listed = ", ".join(json.dumps(o) for o in options)
        msg = f"expected one of {listed}, got {_show(value)}"
        raise _Invalid(msg)

    return parse


def _path(base_dir: str) -> _Parser[str]:
    def parse(value: object) -> str:
        if not isinstance(value, str) or not value or "\x00" in value:
            msg = f"expected a non-empty path, got {_show(value)}"
            raise _Invalid(msg)
        return os.path.normpath(os.path.join(base_dir, value))

    return parse


def _optional_path(base_dir: str) -> _Parser[str | None]:
    resolve = _path(base_dir)

    def parse(value: object) -> str | None:
        if value == "":
            return None
        if not isinstance(value, str):
            msg = f'expected a path, or "" for none, got {_show(value)}'
            raise _Invalid(msg)
        return resolve(value)

    return parse


def _mode(value: object) -> int:
    if _is_int(value) and 0 <= value <= 0o777:
        return value
    hint = ""
    if _is_int(value) and re.fullmatch(r"[0-7]{3,4}", str(value)):
        hint = f" (a decimal number; write 0o{value} for octal)"
    if isinstance(value, str) and (match := _OCTAL_MODE.fullmatch(value)):
        mode = int(match.group(1), 8)
        if mode <= 0o777:
            return mode
    msg = f'expected permission bits like 0o666 or "0666", got {_show(value)}{hint}'
    raise _Invalid(msg)


def _name(kind: str) -> _Parser[str]:
    def parse(value: object) -> str:
        if isinstance(value, str) and _NAME.fullmatch(value):
            return value
        msg = f"expected a {kind} name, got {_show(value)}"
        raise _Invalid(msg)

    return parse


def _group_names(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        msg = f'expected an array of group names (like ["adm"]), got {_show(value)}'
        raise _Invalid(msg)
    return tuple(_name("group")(item) for item in value)


def _parse_claim(entry: str) -> tuple[str, str]:
    """Split ``"user:NAME"``, ``"uid:N"`` or ``"group:NAME"``; ``ValueError`` otherwise."""
    match = _CLAIM.fullmatch(entry)
    if match is not None:
        kind, name = match.groups()
        if kind == "uid":
            if _UID_NAME.fullmatch(name) and int(name) <= MAX_UID:
                return kind, name
        elif _NAME.fullmatch(name):
            return kind, name
    msg = f'expected "user:NAME", "uid:N" or "group:NAME", got {_show(entry)}'
    raise ValueError(msg)


def _split_address(address: str) -> tuple[str, int]:
    """``"HOST:PORT"`` (``"[::1]:PORT"`` for IPv6) -> ``(host, port)``; ``ValueError`` otherwise."""
    match = _ADDRESS.fullmatch(address)
    if match is None:
        like = '(like "logs.example.com:6514" or "[::1]:6514")'
        msg = f'expected "HOST:PORT" {like}, got {_show(address)}'
        raise ValueError(msg)
    host = match["v6"] or match["host"]
    port = int(match["port"])
    if not 0 < port <= 65535:
        msg = f"expected a port from 1 to 65535, got {port} in {_show(address)}"
        raise ValueError(msg)
    if match["v6"] is not None:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            msg = f"{host!r} is not an IPv6 address in {_show(address)}"
            raise ValueError(msg) from None
    return host, port


def _claims(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        msg = f'expected an array like ["user:NAME", "uid:N", "group:NAME"], got {_show(value)}'
        raise _Invalid(msg)
    for entry in value:
        if not isinstance(entry, str):
            msg = f'expected "user:NAME", "uid:N" or "group:NAME", got {_show(entry)}'
            raise _Invalid(msg)
        try:
            _parse_claim(entry)
        except ValueError as exc:
            raise _Invalid(str(exc)) from None
    return tuple(value)
