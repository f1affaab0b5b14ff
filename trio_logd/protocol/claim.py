"""Relay claims: "this record is really from uid N" (SPEC §3, ``[identity] may_claim``).

A relay (a container runtime, a mail spooler) forwards other processes'
records over its own connection. It says whose record it is with one
RFC 5424 STRUCTURED-DATA element::

    <14>1 2026-11-27T10:00:00Z host app 42 - [logd-claim@32473 uid="1000" pid="42"] text

or, in any payload, with the same element as a key of an ``@cee:`` object::

    <14>app: @cee: {"logd-claim@32473": {"uid": 1000, "pid": 42}, "msg": "text"}

Both arrive in ``Message.fields`` under the SD-ID :data:`CLAIM_SD_ID`
(compared case-insensitively, as every name of ours: ``protocol/reserved.py``)
(RFC 5424 §6.3.2 "name@<private enterprise number>"; 32473 is the number
RFC 5612 reserves for documentation, so it can never collide with a real
vendor's SD-ID). Parameters:

- ``uid`` (required): the uid the record is filed with, ``0`` to ``4294967294``;
- ``gid`` (optional): its gid; else the uid's primary group, else ``65534``;
- ``pid`` (optional): the original process id; else ``0`` ("unknown", as the
  kernel reports a peer in another pid namespace).

Values are decimal ASCII digits (SD parameter strings) or JSON integers.
Anything else (another parameter, a repeated parameter, a sign, a leading
zero, an out-of-range number) makes the element not a claim: it then stays
in ``fields`` as sent, like any other structured data.

This module only reads the element. Whether the sender may claim is the
daemon's decision (``Config.may_claim_for`` on the kernel-reported writer);
for everyone else the element is never read and stays a claim.
"""

from __future__ import annotations

import re
from typing import Any, Final, NamedTuple

from trio_logd.protocol.message import Message
from trio_logd.protocol.reserved import reserved_name

__all__ = ["CLAIM_SD_ID", "Claim", "take_claim"]

#: The SD-ID (and ``@cee:`` key) of a relay's claim.
CLAIM_SD_ID: Final = "logd-claim@32473"

#: uid_t and gid_t are 32 bits and (uid_t)-1 means "no id" (setresuid(2)).
MAX_ID: Final = (1 << 32) - 2
#: pid_t is a signed 32-bit integer.
MAX_PID: Final = (1 << 31) - 1

_DIGITS: Final = re.compile(r"0|[1-9][0-9]{0,9}")
_PARAMS: Final = frozenset({"uid", "gid", "pid"})


class Claim(NamedTuple):
    """Whose record a relay says it forwards.

    Attributes:
        uid: the claimed uid.
        gid: the claimed gid, or ``None`` when not given.
        pid: the claimed pid, or ``None`` when not given.
    """

    uid: int
    gid: int | None
    pid: int | None


def _number(value: object, top: int) -> int | None:
    """A claim parameter as an int, or ``None`` when it is not a valid one."""
    if type(value) is int:
        return value if 0 <= value <= top else None
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        number = int(value)
        return number if number <= top else None
    return None


def take_claim(msg: Message) -> tuple[Claim, Message] | None:
    """Read a relay's claim from *msg*, and return the message without it.

    Args:
        msg: a parsed payload.

    Returns:
        ``(claim, msg)`` with the :data:`CLAIM_SD_ID` element removed from
        ``fields`` (``None`` when nothing else is left), or ``None`` when
        *msg* carries no well-formed claim (then *msg* is to be filed as is).
    """
    fields = msg.fields
    if not fields:
        return None
    # the element's name compared as collectors compare ours (protocol/reserved.py):
    # one claim element in whatever case; two spellings of it are no claim
    keys = [k for k in fields if reserved_name(k) == CLAIM_SD_ID]
    if len(keys) != 1:
        return None
    key = keys[0]
    element: Any = fields[key]
    if type(element) is not dict or "uid" not in element or not _PARAMS.issuperset(element):
        return None
    uid = _number(element["uid"], MAX_ID)
    gid = _number(element["gid"], MAX_ID) if "gid" in element else None
    pid = _number(element["pid"], MAX_PID) if "pid" in element else None
    if uid is None or (gid is None and "gid" in element) or (pid is None and "pid" in element):
        return None
    rest = {k: v for k, v in fields.items() if k != key}
    return Claim(uid, gid, pid), msg._replace(fields=rest or None)
