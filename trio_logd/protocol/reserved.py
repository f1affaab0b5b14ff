"""The names that are ours: which SD-IDs and ``@cee:`` keys a sender may not use as sent.

How this works: the daemon's structured data lives under SD-IDs of the form
``logd…@32473`` (``logd@32473`` for the trusted element, ``logd-claim@32473``
for relay claims, ``logd-claims@32473`` and ``logd-fields@32473`` on the
wire). Collectors do not all compare names as RFC 5424 §6.3.2 says (case
sensitive): rsyslog's ``mmpstrucdata`` lowercases SD-IDs by default
(``sd_name.lowercase="on"``), and a PEN may carry sub-identifiers
(``logd@32473.1``). So a name is ours when, lowercased, it starts with
``logd`` and names the enterprise number 32473, with or without
sub-identifiers: ``LOGD@32473``, ``Logd-Claim@32473``, ``logdx@32473.7``.
Which of ours it is, is decided on the lowercased name
(:func:`reserved_name`).

Two consumers use this one rule: the ingest path (``protocol/claim.py``
finds a relay's claim element by it) and the forwarder
(``forward/rfc5424.py``: a sender's element or ``@cee:`` key under a
reserved name never reaches the wire as an element of its own).

The message text is the other place a collector reads structure from:
rsyslog's ``mmjsonparse`` reads a MSG that starts with ``@cee:`` (after
leading blanks) as JSON. A record's ``msg`` that still starts so was, by
construction, not read as structured by the daemon (it would be in
``fields`` then), so :func:`inert_text` makes sure no collector reads it as
structured either.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["RESERVED_PEN", "inert_text", "is_reserved", "reads_as_cee", "reserved_name"]

#: RFC 5612's Private Enterprise Number for documentation, which our SD-IDs use.
RESERVED_PEN: Final = "32473"

#: Lowercased: ``logd``, anything without ``@``, ``@32473``, optional ``.N`` sub-identifiers.
_RESERVED: Final = re.compile(r"logd[^@]*@32473(?:\.[0-9]*)*")
#: The CEE cookie, as collectors look for it: after leading ASCII blanks (C ``isspace``).
_CEE_START: Final = re.compile(r"[ \t\n\v\f\r]*@cee:")
#: What an inert ``@cee:`` text starts with: a backslash, as if escaping the cookie.
_INERT_PREFIX: Final = "\\"


def reserved_name(name: str) -> str | None:
    """Return *name* lowercased when it is one of ours (``logd…@32473``), else ``None``.

    Args:
        name: an SD-ID or an ``@cee:`` key, as the sender wrote it.

    Returns:
        The lowercased name, to compare with ``logd@32473``,
        ``logd-claim@32473`` …; ``None`` when no collector could take it
        for one of ours.
    """
    if "@" not in name:  # the common case: IANA names, ordinary @cee keys
        return None
    folded = name.lower()
    return folded if _RESERVED.fullmatch(folded) else None


def is_reserved(name: str) -> bool:
    """Whether *name* is, compared as collectors compare, one of our SD-IDs."""
    return reserved_name(name) is not None


def reads_as_cee(text: str) -> bool:
    """Whether a collector (rsyslog's ``mmjsonparse``) would read MSG *text* as ``@cee:`` JSON."""
    return "@cee:" in text and _CEE_START.match(text) is not None


def inert_text(text: str) -> str:
    """*text*, changed only as far as needed so that no collector reads it as ``@cee:`` JSON.

    Args:
        text: a record's ``msg`` (which the daemon did not read as structured).

    Returns:
        *text* itself, or, when it would be read as ``@cee:``, *text* with a
        backslash in front (``\\@cee: {…}``).
    """
    if reads_as_cee(text):
        return _INERT_PREFIX + text
    return text
