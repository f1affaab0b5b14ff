"""RFC 5424 payloads: ``<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD [SP MSG]``.

Every field is a claim of the sender and is kept as sent: NILVALUE (``-``)
becomes ``None``, TIMESTAMP is kept as text (``claimed_ts``), PROCID becomes an
``int`` when it is a plain ASCII number. STRUCTURED-DATA becomes
``fields = {SD-ID: {PARAM-NAME: value}}`` with the ``\\"``, ``\\\\`` and ``\\]``
escapes undone. Decisions where RFC 5424 leaves us a choice:

- A PARAM-NAME repeated inside one element gives a list of its values, in
  order (RFC 5424 §6.3.3 allows repeating a parameter).
- A repeated SD-ID (which §6.3.2 forbids) is merged into one element, its
  parameters added as above: nothing the sender wrote is dropped.
- Malformed STRUCTURED-DATA (or none where it is required) keeps the header
  fields and makes everything after MSGID the message, with no fields.
- A payload that is not RFC 5424 (``<13>1 garbage``, an invalid PRI) is not
  this parser's: :func:`parse_rfc5424` returns ``None`` and the caller parses
  it as RFC 3164.
- A UTF-8 BOM at the start of MSG is removed (§6.4).
- ``@cee:`` in MSG is read as in RFC 3164 payloads (:mod:`.cee`); its keys go
  beside the SD-IDs in ``fields`` and win on a collision (the application's
  own structured fields are the more specific claim).
"""

from __future__ import annotations

from typing import Any, Final

from trio_logd.protocol._abnf import BOM, RFC5424_HEADER, SD_ELEMENT, SD_ESCAPE, SD_PARAM
from trio_logd.protocol.cee import CEE_COOKIE, parse_cee
from trio_logd.protocol.message import FACILITIES, SEVERITIES, Message

__all__ = ["MAX_PID_DIGITS", "MAX_PRIVAL", "PRI_NAMES", "claimed_pid", "parse_rfc5424"]

#: RFC 5424 §6.2.1: PRIVAL = facility * 8 + severity, facilities 0..23.
MAX_PRIVAL: Final = 191

#: (facility, severity) keywords for every valid PRIVAL, by PRIVAL.
PRI_NAMES: Final = tuple((FACILITIES[p >> 3], SEVERITIES[p & 7]) for p in range(MAX_PRIVAL + 1))

#: A PROCID / [pid] of at most this many ASCII digits becomes an int: Linux
#: pids are below 2**22 (pid_max), and 10 digits stay far inside the signed
#: 64-bit integers the record's JSON can hold. Longer numbers stay text.
MAX_PID_DIGITS: Final = 10

# tuple.__new__(Message, (...)) skips the Python-level NamedTuple.__new__:
# 0.14 us against 0.44 us per message (CPython 3.11). Every field must then be
# given, in order.
_new_message = tuple.__new__


def claimed_pid(procid: str) -> int | str:
    """Return *procid* as an ``int`` if it is 1 to 10 ASCII digits, else as is.

    Args:
        procid: PROCID (RFC 5424) or the ``[pid]`` of an RFC 3164 TAG.

    Returns:
        The number, or the text unchanged (``str.isdigit`` alone would also
        accept non-ASCII digits such as '١').
    """
    if len(procid) <= MAX_PID_DIGITS and procid.isascii() and procid.isdigit():
        return int(procid)
    return procid


def parse_rfc5424(text: str, *, truncated: bool = False) -> Message | None:
    """Parse an RFC 5424 payload: ``<PRI>1 TIMESTAMP HOSTNAME ...``.

    Args:
        text: the whole payload, decoded.
        truncated: passed through to :attr:`Message.truncated`.

    Returns:
        The message, or ``None`` if *text* does not start with a valid PRI
        and an RFC 5424 header (then parse it as RFC 3164).
    """
    m = RFC5424_HEADER.match(text)
    if m is None:
        return None
    pri, ts, host, app, procid, msgid = m.groups()
    prival = int(pri)  # 1 to 3 ASCII digits: int() cannot fail
    if prival > MAX_PRIVAL:
        return None
    fac, sev = PRI_NAMES[prival]
    fields: dict[str, Any] | None = None
    n = len(text)
    i = m.end() + 1  # after the SP that ends MSGID
    if i >= n:
        msg = ""  # no STRUCTURED-DATA at all: lenient, as if NILVALUE
    elif text[i] == "-":
        if i + 1 == n:
            msg = ""
        elif text[i + 1] == " ":
            msg = text[i + 2 :]
        else:
            msg = text[i:]  # "-foo": not NILVALUE, so not STRUCTURED-DATA
    elif text[i] == "[":
        fields, end = _parse_sd(text, i)
        if end == n:
            msg = ""
        elif end > i and text[end] == " ":
            msg = text[end + 1 :]
        else:
            fields = None  # malformed: everything after MSGID is the message
            msg = text[i:]
    else:
        msg = text[i:]
    if msg.startswith(BOM):
        msg = msg[1:]
    if msg.startswith(CEE_COOKIE):
        cee = parse_cee(msg)
        if cee is not None:
            msg, extra = cee
            fields = {**fields, **extra} if fields else extra
    return _new_message(
        Message,
        (
            fac,
            sev,
            msg,
            None if app == "-" else app,
            None if host == "-" else host,
            None if msgid == "-" else msgid,
            None if procid == "-" else claimed_pid(procid),
            None if ts == "-" else ts,
            fields or None,
            truncated,
        ),
    )


def _parse_sd(text: str, start: int) -> tuple[dict[str, Any] | None, int]:
    """Parse SD-ELEMENTs from text[start]; return (fields or None, end index)."""
    sd: dict[str, Any] = {}  # SD-ID -> {PARAM-NAME: str | list[str]}
    pos = start
    while (element := SD_ELEMENT.match(text, pos)) is not None:
        params: dict[str, str | list[str]] = sd.setdefault(element["id"], {})
        # findall: (name, value) tuples built in C, no match objects.
        for name, value in SD_PARAM.findall(text, *element.span("params")):
            if "\\" in value:
                value = SD_ESCAPE.sub(r"\1", value)
            old = params.get(name)
            if old is None:
                params[name] = value
            elif isinstance(old, list):
                old.append(value)
            else:
                params[name] = [old, value]
        pos = element.end()
    if pos == start:
        return None, start
    return sd, pos
