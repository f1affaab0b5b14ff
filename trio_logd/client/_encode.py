"""Records to bytes on the wire: RFC 5424 payloads, octet-counted, fields as ``@cee:`` JSON.

How this works: one record is one RFC 6587 octet-counted frame (so a message
may hold LF, NUL, a whole traceback) whose payload is RFC 5424::

    <PRI>1 TIMESTAMP HOST APP PROCID MSGID - MSG
    <14>1 2024-05-01T12:00:00.123456Z web1 myapp.db 4242 - - @cee:{"msg":"slow query","ms":812}

Structured fields travel as a ``@cee:`` JSON object in MSG, not as RFC 5424
STRUCTURED-DATA, because JSON keeps their types (SD values are strings): the
daemon takes the object's ``"msg"`` as the text and the rest as ``fields``,
ints staying ints. A record without fields sends its text as is (unless the
text itself starts with ``@cee:`` or a BOM, which the daemon would read
differently: then it goes as ``@cee:{"msg": …}`` too).

Everything is decided once and cached (the ``<PRI>1 `` prefixes per
severity, ``HOST APP PROCID MSGID -`` per app, the timestamp per second), so
a record costs one ``orjson.dumps`` and two ``bytes`` formats. JSON never
fails: values orjson cannot write are written as their ``str()``, and a
structure it refuses (an int beyond 64 bits, a cycle, non-string keys, lone
surrogates, nesting deeper than the daemon accepts) is cleaned up and
written again. Nothing here raises on account of the values it is given.
"""

from __future__ import annotations

import itertools
import os
import socket
import sys
import time
import traceback
from collections.abc import Mapping
from typing import Any, Final

import orjson

from trio_logd.protocol.cee import MAX_DEPTH
from trio_logd.protocol.message import FACILITIES, SEVERITIES
from trio_logd.protocol.rfc5424_writer import APP_NAME_MAX, HOSTNAME_MAX, MSGID_MAX, header_field

__all__ = [
    "DELIVERY_FIELD",
    "FrameEncoder",
    "encode_record",
    "exception_fields",
    "facility_code",
    "level_severity",
    "program_name",
    "severity_code",
]

#: The field that makes resent records recognisable in acknowledged mode:
#: ``"<client id>:<n>"``, unique per record (see docs/client.md).
DELIVERY_FIELD: Final = "delivery_id"

#: Spellings accepted for severities beyond SPEC §3's keywords (as logger(1) does).
_SEVERITY_ALIASES: Final = {
    "warn": "warning", "error": "err", "critical": "crit", "fatal": "crit",
    "panic": "emerg", "emergency": "emerg", "exception": "err",
}  # fmt: skip

#: Header pieces cached per (app, msgid); beyond this the cache starts over
#: (logger names are few; this only bounds a program that invents them).
_CACHE_MAX: Final = 1024
#: A nested structure this deep (counting the record's object as 1) is cut:
#: the daemon reads ``@cee:`` objects only up to protocol.cee.MAX_DEPTH.
_DEPTH_LIMIT: Final = MAX_DEPTH - 2
_OPTIONS: Final = orjson.OPT_NON_STR_KEYS
_dumps: Final = orjson.dumps
#: The first characters of a text the daemon would read otherwise than as text
#: ("@cee:", a BOM): such a text is sent inside a @cee: object.
_REREAD: Final = frozenset({"@", "\ufeff"})
#: The fixed-width timestamp layout holds years up to 9999.
_YEAR_10000: Final = 253402300800.0
_INT64_MIN: Final = -(2**63)
_UINT64_MAX: Final = 2**64 - 1


def severity_code(severity: str | int) -> int:
    """Return the RFC 5424 code (0..7) of a severity name or code.

    Args:
        severity: ``emerg`` … ``debug`` (also ``warn``, ``error``,
            ``critical``, ``fatal``, …) or a code 0..7.

    Raises:
        ValueError: unknown name or code out of range.
    """
    if isinstance(severity, int):
        if 0 <= severity <= 7:
            return severity
        msg = f"severity {severity!r}: expected 0..7"
        raise ValueError(msg)
    name = _SEVERITY_ALIASES.get(severity.lower(), severity.lower())
    try:
        return SEVERITIES.index(name)
    except ValueError:
        msg = f"severity {severity!r}: expected one of {', '.join(SEVERITIES)}"
        raise ValueError(msg) from None


def facility_code(facility: str | int) -> int:
    """Return the code (0..23) of a facility keyword (``user``, ``local0``, …) or code.

    Raises:
        ValueError: unknown keyword or code out of range.
    """
    if isinstance(facility, int):
        if 0 <= facility < len(FACILITIES):
            return facility
        msg = f"facility {facility!r}: expected 0..{len(FACILITIES) - 1}"
        raise ValueError(msg)
    try:
        return FACILITIES.index(facility.lower())
    except ValueError:
        msg = f"facility {facility!r}: expected one of {', '.join(FACILITIES)}"
        raise ValueError(msg) from None


def _level_severity(levelno: int) -> int:
    # logging levels: CRITICAL 50, ERROR 40, WARNING 30, (NOTICE 25), INFO 20, DEBUG 10
    if levelno >= 50:
        return 2  # crit
    if levelno >= 40:
        return 3  # err
    if levelno >= 30:
        return 4  # warning
    if levelno >= 25:
        return 5  # notice: the level some libraries add between INFO and WARNING
    if levelno >= 20:
        return 6  # info
    return 7  # debug


_LEVELS: Final = tuple(_level_severity(n) for n in range(61))


def level_severity(levelno: int) -> int:
    """Map a ``logging`` level number to a severity code.

    ``CRITICAL`` → crit, ``ERROR`` → err, ``WARNING`` → warning, 25 → notice,
    ``INFO`` → info, ``DEBUG`` and below → debug; levels in between go to the
    next lower standard level's severity (45 → err).
    """
    if 0 <= levelno <= 60:
        return _LEVELS[levelno]
    return _level_severity(levelno)


def program_name() -> str:
    """The running program's name (``sys.argv[0]``'s base name), or ``python``."""
    argv = getattr(sys, "argv", None) or [""]
    name = os.path.basename(str(argv[0])) if argv[0] else ""
    return name or "python"


def _header_field(text: str | None, limit: int) -> bytes:
    """A header field as RFC 5424 wants it (``rfc5424_writer.header_field``), as bytes."""
    return header_field(text, limit).encode("ascii")


def _text(value: object) -> str:
    """``str(value)``, whatever it takes (a broken ``__str__`` is not our caller's problem)."""
    try:
        return str(value)
    except Exception:
        try:
            return repr(value)
        except Exception:
            return f"<unprintable {type(value).__name__}>"


def _default(value: Any) -> Any:
    """orjson's fallback: bytes as text, sets as lists, anything else as its ``str()``."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, (set, frozenset)):
        return list(value)
    return _text(value)


def _clean(value: Any, depth: int) -> Any:
    """A JSON-safe copy of *value*: the slow path, only after orjson refused."""
    t = type(value)
    if value is None or t is bool or t is float:
        return value
    if t is int:
        return value if _INT64_MIN <= value <= _UINT64_MAX else str(value)
    if t is str:
        return value.encode("utf-8", "replace").decode("utf-8")  # lone surrogates -> '?'
    if depth >= _DEPTH_LIMIT:
        return _text(value)
    if isinstance(value, Mapping):
        return {_clean_key(k): _clean(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_clean(v, depth + 1) for v in value]
    try:
        _dumps(value, default=_default, option=_OPTIONS)
    except Exception:
        return _text(value)
    return value  # datetime, UUID, enum, dataclass…: orjson writes them itself


def _clean_key(key: object) -> str:
    return _clean(key, 0) if type(key) is str else _text(key)


def _too_deep(body: bytes) -> bool:
    """Whether *body* nests deeper than the daemon reads (brackets counted at C speed first)."""
    if body.count(b"{") + body.count(b"[") <= _DEPTH_LIMIT:
        return False
    depth = deepest = 0
    in_string = escaped = False
    for byte in body:  # rare: only bodies with many brackets get here
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x7B, 0x5B):
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x7D, 0x5D):
            depth -= 1
    return deepest > _DEPTH_LIMIT


def dumps_object(obj: dict[str, Any]) -> bytes:
    """Encode a record's ``@cee:`` object as JSON. Never raises."""
    try:
        body = _dumps(obj, default=_default, option=_OPTIONS)
        if not _too_deep(body):
            return body
    except Exception:
        pass
    try:
        return _dumps(_clean(obj, 0), default=_default, option=_OPTIONS)
    except Exception as exc:  # cannot happen with _clean's output; and yet never raise
        return _dumps({"msg": _text(obj.get("msg")), "fields_error": _text(exc)})


def exception_fields(exc_info: Any) -> dict[str, str]:
    """Fields for an exception: ``exc_type`` (qualified name) and ``exception`` (traceback).

    Args:
        exc_info: ``(type, value, traceback)`` as ``sys.exc_info()`` gives,
            an exception instance, or ``True`` for the one being handled.

    Returns:
        ``{}`` when there is no exception.
    """
    if exc_info is True:
        exc_info = sys.exc_info()
    if isinstance(exc_info, BaseException):
        exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
    if not isinstance(exc_info, tuple) or len(exc_info) != 3 or exc_info[0] is None:
        return {}
    etype, value, tb = exc_info
    try:
        text = "".join(traceback.format_exception(etype, value, tb)).rstrip("\n")
    except Exception:
        text = _text(value)
    module = getattr(etype, "__module__", "")
    name = getattr(etype, "__qualname__", _text(etype))
    qualified = name if module in ("builtins", "", None) else f"{module}.{name}"
    return {"exc_type": qualified, "exception": text}


def _new_client_id() -> str:
    # 64 random bits: ids of different clients (and forked children) never meet
    return os.urandom(8).hex() + ":"


class FrameEncoder:
    """Builds the frames of one client (thread-safe: only atomic cache updates).

    Args:
        facility: facility keyword or code of every record.
        default_app: APP-NAME when a record names none.
        hostname: HOSTNAME (``socket.gethostname()`` by default).
        delivery_ids: add :data:`DELIVERY_FIELD` to every record
            (acknowledged mode).

    Raises:
        ValueError: unknown facility.
    """

    __slots__ = (
        "_counter", "_delivery", "_headers", "_host", "_msgid_headers", "_pid", "_prefixes",
        "_ts", "default_app", "facility",
    )  # fmt: skip

    def __init__(
        self,
        *,
        facility: str | int = "user",
        default_app: str | None = None,
        hostname: str | None = None,
        delivery_ids: bool = False,
    ) -> None:
        self.facility = facility_code(facility)
        self.default_app = default_app or program_name()
        self._host = _header_field(hostname or socket.gethostname(), HOSTNAME_MAX)
        self._prefixes = tuple(b"<%d>1 " % (self.facility * 8 + sev) for sev in range(8))
        self._ts: tuple[int, bytes] = (-1, b"")
        self._headers: dict[str | None, bytes] = {}
        self._msgid_headers: dict[tuple[str | None, str], bytes] = {}
        self._pid = os.getpid()
        self._delivery = _new_client_id() if delivery_ids else None
        self._counter = itertools.count(1)

    def new_identity(self) -> None:
        """Start a new client id (and pid): after ``fork()``, the child's records are its own."""
        self._pid = os.getpid()
        self._headers = {}
        self._msgid_headers = {}
        self._counter = itertools.count(1)
        if self._delivery is not None:
            self._delivery = _new_client_id()

    @property
    def client_id(self) -> str | None:
        """The client id in :data:`DELIVERY_FIELD` values, or ``None`` when not added."""
        return self._delivery[:-1] if self._delivery is not None else None

    def timestamp(self, t: float) -> bytes:
        """RFC 3339 UTC with microseconds, as :meth:`encode` writes it."""
        sec, prefix = self._second(t)
        return b"%s.%06dZ" % (prefix, int((t - sec) * 1e6))

    def _second(self, t: float) -> tuple[int, bytes]:
        """``(second, "YYYY-MM-DDTHH:MM:SS")`` for *t*, cached: one tuple, replaced atomically."""
        cached = self._ts
        sec = int(t)
        if cached[0] != sec:
            if not 0 <= t < _YEAR_10000:  # the layout is fixed-width: keep it so
                t = time.time()
                sec = int(t)
            cached = (sec, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)).encode())
            self._ts = cached
        return cached

    def header(self, app: str | None, msgid: str | None = None) -> bytes:
        """`` HOST APP PROCID MSGID - `` for *app* (the default when ``None``), cached."""
        cache: dict[Any, bytes] = self._headers if msgid is None else self._msgid_headers
        key = app if msgid is None else (app, msgid)
        got = cache.get(key)
        if got is None:
            if len(cache) >= _CACHE_MAX:
                cache.clear()
            got = b" %s %s %d %s - " % (
                self._host,
                _header_field(app or self.default_app, APP_NAME_MAX),
                self._pid,
                _header_field(msgid, MSGID_MAX),
            )
            cache[key] = got
        return got

    def encode(
        self,
        severity: int,
        msg: str,
        fields: Mapping[str, Any] | None = None,
        app: str | None = None,
        msgid: str | None = None,
        ts: float | None = None,
        facility: int | None = None,
    ) -> bytes:
        """Encode one record as an octet-counted frame.

        Args:
            severity: code 0..7 (:func:`severity_code`).
            msg: the text.
            fields: structured fields (JSON types kept; others as ``str()``).
                A field named ``msg`` is sent as ``msg_`` (``msg`` is the text).
            app: APP-NAME (the encoder's default when ``None``).
            msgid: MSGID, or ``None``.
            ts: the record's time (epoch seconds); now when ``None``.
            facility: a facility code for this record only.

        Returns:
            The frame, ready to write.
        """
        if ts is None:
            ts = time.time()
        cached = self._ts
        sec = int(ts)
        if cached[0] != sec:
            cached = self._second(ts)
            sec = cached[0]
            if ts < sec or ts >= sec + 1:
                ts = sec  # _second replaced a time out of range
        head = self._headers.get(app) if msgid is None else None
        if head is None:
            head = self.header(app, msgid)
        if fields or self._delivery is not None:
            body = self._cee(msg, fields)
        elif msg[:1] in _REREAD:
            body = b"@cee:" + dumps_object({"msg": msg})
        else:
            body = msg.encode("utf-8", "replace")
        prefix = (
            self._prefixes[severity] if facility is None else b"<%d>1 " % (facility * 8 + severity)
        )
        # <PRI>1 + YYYY-MM-DDTHH:MM:SS (19) + .uuuuuuZ (8) + header + body
        return b"%d %s%s.%06dZ%s%s" % (
            len(prefix) + 27 + len(head) + len(body),
            prefix,
            cached[1],
            int((ts - sec) * 1e6),
            head,
            body,
        )

    def _cee(self, msg: str, fields: Mapping[str, Any] | None) -> bytes:
        obj: dict[str, Any] = {"msg": msg}
        if fields:
            obj.update(fields)
            if "msg" in fields:
                obj["msg_"] = fields["msg"]
                obj["msg"] = msg
        delivery = self._delivery
        if delivery is not None:
            obj[DELIVERY_FIELD] = delivery + str(next(self._counter))
        return b"@cee:" + dumps_object(obj)


def encode_record(
    encoder: FrameEncoder,
    msg: object,
    severity: str | int,
    fields: Mapping[str, Any] | None,
    app: str | None,
    msgid: str | None,
    ts: float | None,
) -> bytes:
    """A client's ``emit`` arguments to a frame, leniently.

    An unknown *severity* is sent as ``notice`` with the given value in the
    field ``severity`` (a typo must not lose the record, nor raise into the
    application); *msg* is made a ``str``.
    """
    try:
        sev = severity_code(severity)
    except (ValueError, AttributeError, TypeError):
        sev = 5
        fields = {**(fields or {}), "severity": _text(severity)}
    return encoder.encode(sev, msg if type(msg) is str else _text(msg), fields, app, msgid, ts)
