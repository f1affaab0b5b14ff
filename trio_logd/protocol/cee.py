"""``@cee:`` structured fields in MSG (the CEE / lumberjack convention).

A MSG that starts with ``@cee:`` (then optional whitespace) followed by a JSON
object carries structured fields, as rsyslog's mmjsonparse reads it::

    @cee: {"msg": "disk almost full", "path": "/var", "free": 1024}

gives ``msg = "disk almost full"`` and ``fields = {"path": "/var", "free": 1024}``.
Fields keep their JSON types. Keys such as ``uid``, ``pid``, ``ts`` or ``seq``
stay inside ``fields``: they are claims, and the record builder never reads
them.

Anything else (not JSON, trailing text after the object, a JSON value that is
not an object, nesting deeper than :data:`MAX_DEPTH`) is not structured: the
text stays the message, with no fields. That is a defined outcome, never an
exception. The cookie is matched exactly (``@cee:``, as rsyslog does). A
``"msg"`` that is not a string stays in the fields (and the text is ``""``).
Parsers turn an empty object into no fields (``None``); in an RFC 5424
payload the object's keys sit beside the SD-IDs and win on a collision.

JSON is read with orjson, the encoder the store writes with: every value that
comes out (integers up to 64 bits, larger ones become floats; no NaN; no lone
surrogates) can be written back.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

__all__ = ["CEE_COOKIE", "MAX_DEPTH", "parse_cee"]

#: The prefix that marks a CEE payload (CEE Log Syntax, "cookie").
CEE_COOKIE: Final = "@cee:"

#: Deepest nesting accepted, counting the object itself as 1. orjson.loads
#: accepts up to 1024 levels but orjson.dumps refuses more than about 254
#: ("Recursion limit reached"), and the record nests fields two levels deeper:
#: an object the store could not write must not get that far. json-c (behind
#: rsyslog's mmjsonparse) stops at 32; real structured logs stay far below 64.
MAX_DEPTH: Final = 64


def parse_cee(msg: str) -> tuple[str, dict[str, Any]] | None:
    """Read the ``@cee:`` JSON object at the start of *msg*, if there is one.

    Args:
        msg: the MSG part of a payload (already decoded).

    Returns:
        ``(text, fields)``: *text* is the object's ``"msg"`` value when that
        is a string (and it is then removed from *fields*), else ``""``;
        *fields* is the rest of the object (JSON values: ``Any``). ``None``
        when *msg* holds no valid ``@cee:`` object.
    """
    if not msg.startswith(CEE_COOKIE):
        return None
    body = msg[len(CEE_COOKIE) :]
    try:
        # JSON allows whitespace before the value: that covers "@cee: {...}".
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if type(obj) is not dict:
        return None
    # Counting brackets over-estimates the depth (brackets inside strings
    # count too) at C speed; only a payload with many of them gets walked.
    if body.count("{") + body.count("[") > MAX_DEPTH and _deeper_than(obj, MAX_DEPTH):
        return None
    text = obj.get("msg")
    if isinstance(text, str):
        del obj["msg"]
    else:
        text = ""
    return text, obj


def _deeper_than(obj: dict[str, Any], limit: int) -> bool:
    """Whether *obj* nests more than *limit* containers deep (iterative: no recursion)."""
    # Values are JSON: dict, list, str, int, float, bool, None.
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            return True
        children = value.values() if type(value) is dict else value
        stack.extend((child, depth + 1) for child in children if type(child) in (dict, list))
    return False
