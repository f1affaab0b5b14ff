"""The control-socket protocol, sans-IO.

How this works: the control socket speaks JSON Lines both ways. A client
sends exactly one request line, a JSON object with an ``op`` key and that
operation's arguments::

    {"op": "status"}
    {"op": "query", "uids": [1000], "lines": 100}

The server speaks first: as soon as it has accepted a connection it writes
one greeting line, :data:`GREETING` (``{"type":"hello","logd":"control","v":1}``),
or, when the connection is over a limit, one ``error`` line (``code``
``too_many_connections``, ``limit`` naming the key) and closes. A client
sends nothing before it has read the greeting: so a client pointed at a
socket that is not a control socket (the ingest socket, which never speaks
first) sends nothing there and gives up after its deadline, and no request
line is ever filed as a record (docs/architecture.md).

The server answers each request with one or more lines. Every line is a JSON
object with a ``type`` key:

* ``{"type": "ok", ...}`` - the request's result (or the header of a stream);
* ``{"type": "error", "error": "...", "code": "..."}`` - refused or failed;
  ``code`` is ``denied``, ``invalid``, ``unknown_op``, ``failed``,
  ``too_many_connections`` (with ``limit``: the ``[control]`` key, or
  ``fd_reserve`` when the daemon is short of file descriptors) or
  ``timeout`` (with ``limit``: ``first_byte_timeout`` or ``request_timeout``);
* ``{"type": "record", "record": {...}}`` - one record of a query stream,
  the stored line embedded byte for byte (a client may slice it out);
* ``{"type": "missed", "count": N}`` - a follower fell behind and N records
  were skipped;
* ``{"type": "stores", "stores": {"UID": N, …}}`` - in a follow stream
  that asked for ``stores``: the store identities of uids first seen now;
* ``{"type": "damaged", "file": "...", "error": "..."}`` - a query passed
  over a damaged file (after the records it could read of it), before
  ``end`` (or before the live records of a follow stream);
* ``{"type": "end", ...}`` - the end of a stream.

``query`` (``docs/logq.md`` has the whole contract) takes ``uids`` (a list
of integers; default the caller's own) or ``all: true``, ``pids``,
``since``/``until`` (record-form UTC times, ``2026-11-27T20:47:40.000000Z``,
inclusive), ``priority`` (``[most, least]`` severe, 0..7), ``grep`` (RE2, on
``msg``), ``case_sensitive`` (``null`` for smart case), ``lines`` (the last
N), ``follow``, ``cursor`` or ``after_cursor`` (a cursor's text,
``query.cursor``; not with ``lines``), ``stores`` (true: the ``ok`` line
carries each uid's store identity, for the client's cursors) and
journalctl's selection: ``matches``, ``units``, ``user_units``,
``identifiers`` and ``field`` (``query.matches``). It answers ``ok`` (with
the ``uids`` read, or ``"all"``), then ``record`` lines in ``seq`` order per
uid and ``ts`` order across uids, then ``end`` (with ``records``,
``files_opened``, ``files_skipped``, ``bytes_read``); a follow stream sends
no ``end`` but more ``record`` lines and, when it fell behind, ``missed``.
An error after ``ok`` (an unreadable file) ends the stream with an
``error`` line. The client must not shut down its sending side while it
reads a stream: the server takes EOF as the end of the query.

``boots`` (no arguments; any caller) answers ``ok`` with ``boots``: the
kernel boots the daemon ran in, oldest first, each ``boot_id``, ``first``
and ``last`` (``ts`` of the daemon's own records: ``query.boots``).

``disk_usage`` takes ``uids`` (optional, as ``query``'s, and authorized the
same way) and answers ``ok`` with ``uids`` (``[uid, bytes]`` pairs: by
default the caller's own, or every uid for root and readers) and ``total``.

Requests are authorized by the caller's ``SO_PEERCRED`` (and
``SO_PEERGROUPS``), never by anything in the request. A request line longer
than :data:`MAX_REQUEST_BYTES` is refused.
"""

from __future__ import annotations

import json
from typing import Any, Final, NamedTuple

from trio_logd.errors import ParseError, excerpt

# The client's side (requests out, answers in) uses the standard library's
# json: answers are small, and orjson's import (about 15 ms with what it
# pulls in) would be most of ``trio-logd status``'s start-up. The server's
# side (requests in, answers out) keeps orjson, imported in its functions.

__all__ = [
    "GREETING",
    "MAX_REQUEST_BYTES",
    "NEED_DATA",
    "LineReader",
    "Request",
    "decode_request",
    "decode_response",
    "encode_request",
    "encode_response",
    "is_greeting",
]

#: Requests are small (a query's filters); 64 KiB leaves room for a long regex.
MAX_REQUEST_BYTES: Final = 65536
#: The server's first line on every accepted control connection. It starts
#: with ``{``, which no syslog client sends first, and a client waits for it
#: before sending anything (see the module doc).
GREETING: Final = b'{"type":"hello","logd":"control","v":1}\n'


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


#: Returned by :meth:`LineReader.next_line` when no complete line is buffered.
NEED_DATA: Final = _NeedData()


class Request(NamedTuple):
    """A decoded control request: the operation and its arguments."""

    op: str
    args: dict[str, Any]


def encode_request(op: str, **args: Any) -> bytes:
    """Return the request line for *op* with *args* (``None`` values left out)."""
    obj = {"op": op, **{k: v for k, v in args.items() if v is not None}}
    try:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
    except UnicodeEncodeError:
        # a lone surrogate (an argument that was not UTF-8): sent escaped, which
        # the daemon refuses as an invalid request, with a message
        return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def decode_request(line: bytes) -> Request:
    """Decode one request line.

    Raises:
        ParseError: not a JSON object with a string ``op``.
    """
    import orjson

    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        msg = f"invalid control request {excerpt(line)}: expected one JSON object per line"
        raise ParseError(msg, excerpt=excerpt(line)) from exc
    if not isinstance(obj, dict) or not isinstance(obj.get("op"), str):
        msg = f"invalid control request {excerpt(line)}: expected an object with a string 'op'"
        raise ParseError(msg, excerpt=excerpt(line))
    op = obj.pop("op")
    return Request(op, obj)


def is_greeting(obj: dict[str, Any]) -> bool:
    """Whether a decoded line is the control server's greeting (any version)."""
    return obj.get("type") == "hello" and obj.get("logd") == "control"


def encode_response(kind: str, **fields: Any) -> bytes:
    """Return one response line of *kind* (``ok``, ``error``, ``record`` …)."""
    import orjson

    return orjson.dumps({"type": kind, **fields}) + b"\n"


def _no_constant(name: str) -> object:
    msg = f"{name} is not JSON"  # json accepts NaN and Infinity; the daemon never sends them
    raise ValueError(msg)


def decode_response(line: bytes) -> dict[str, Any]:
    """Decode one response line.

    Raises:
        ParseError: not a JSON object with a string ``type``.
    """
    try:
        obj = json.loads(line, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:  # not JSON, not UTF-8, nested too deep
        msg = f"invalid control response {excerpt(line)}"
        raise ParseError(msg, excerpt=excerpt(line)) from exc
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        msg = f"invalid control response {excerpt(line)}: expected an object with a 'type'"
        raise ParseError(msg, excerpt=excerpt(line))
    return obj


class LineReader:
    """Split a byte stream into LF-terminated lines, with a bound on line length.

    Args:
        max_line: the longest line accepted (without its LF).
    """

    def __init__(self, max_line: int = MAX_REQUEST_BYTES) -> None:
        self._buf = bytearray()
        self._searched = 0
        self._max = max_line
        self.eof = False

    def receive_data(self, data: bytes) -> None:
        """Add bytes; ``b""`` means EOF."""
        if not data:
            self.eof = True
        self._buf += data

    def next_line(self) -> bytes | _NeedData:
        """Return the next line (without LF) or ``NEED_DATA``.

        Raises:
            ParseError: a line is longer than ``max_line``, or the stream
                ended in the middle of a line.
        """
        i = self._buf.find(b"\n", self._searched)
        if i < 0:
            self._searched = len(self._buf)
            if len(self._buf) > self._max:
                msg = f"control line longer than {self._max} bytes"
                raise ParseError(msg, excerpt=excerpt(self._buf))
            if self.eof and self._buf:
                msg = f"control stream ended inside a line {excerpt(self._buf)}"
                raise ParseError(msg, excerpt=excerpt(self._buf))
            return NEED_DATA
        line = bytes(self._buf[:i])
        del self._buf[: i + 1]
        self._searched = 0
        if len(line) > self._max:
            msg = f"control line longer than {self._max} bytes"
            raise ParseError(msg, excerpt=excerpt(line))
        return line
