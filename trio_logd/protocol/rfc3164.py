"""RFC 3164 payloads, as real senders write them: ``<PRI>[TIMESTAMP ][HOST ][TAG: ]MSG``.

Lenient like rsyslog's pmrfc3164 and syslog-ng, checked against both on a
corpus of their own test messages (docs/parsing.md). What the common senders
put after PRI::

    glibc syslog(3)            Nov 27 20:47:40 myprog[123]: text
    util-linux logger -u SOCK  Nov 27 20:47:40 root: hello
    logger --rfc3164 (inet)    Nov 27 20:47:40 myhost root: hello
    SysLogHandler              message text          (ident="myapp: " adds a tag)
    classic relayed line       Nov 27 20:47:40 myhost sshd[1]: Accepted ...

Rules (the grammar and its deviations are in ``_abnf.py``):

- Without a valid PRI (missing, ``<>``, ``<192>``, ``<1999>``) the payload is
  ``user.notice`` and all of it is the message: no header is read, since
  without PRI "Note: x" is just text.
- TIMESTAMP is optional: BSD (``Nov 27 20:47:40``, month in any case) or
  RFC 3339, after any spaces, maybe followed by ``:``; kept as text in
  ``claimed_ts``.
- HOSTNAME is read only after a TIMESTAMP: the next word, unless that word
  is itself a TAG (``prog:``, ``prog[1]:``, glibc's lines, which carry no
  host). As RFC 3164 §5.4 reads ``<13>Feb  5 17:32:18 10.0.0.99 Use the
  BFG!``: host ``10.0.0.99``, no TAG. A host name is letters, digits and
  ``. _ - % @ /``, or an IPv6 address (``0002::``, ``fe80::1``).
- TAG (``app``) is up to 48 printable ASCII characters other than ``[``,
  ``]`` and ``:`` (``sshd(pam_unix)``, ``%PIX-7-710005``), not starting with
  ``@`` (so ``@cee:`` is no tag), an optional ``[PID]`` (``claimed_pid``: an
  int for 1 to 10 ASCII digits, else the text), then ``:`` and one optional
  space. Without a TIMESTAMP the ``:`` must be followed by a space or end
  the payload, so that ``http://...`` is not a tag; with one, it must not be
  followed by a second ``:`` (``std::``), and ``TAG[PID]`` followed by a
  space needs no ``:``. A word with neither ``[PID]`` nor ``:`` is never a
  TAG (rsyslog and syslog-ng disagree: docs/parsing.md). A message that
  itself starts with ``word: `` and was sent without a tag is ambiguous;
  like rsyslog we read a tag.
- The rest is MSG, kept exactly (control characters included); ``@cee:`` in
  it is read by :mod:`.cee`.
"""

from __future__ import annotations

from typing import Any

from trio_logd.protocol._abnf import RFC3164_GLIBC, RFC3164_PAYLOAD
from trio_logd.protocol.cee import CEE_COOKIE, parse_cee
from trio_logd.protocol.message import DEFAULT_FACILITY, DEFAULT_SEVERITY, Message
from trio_logd.protocol.rfc5424 import MAX_PRIVAL, PRI_NAMES

__all__ = ["parse_rfc3164"]

# tuple.__new__(Message, (...)) skips the Python-level NamedTuple.__new__:
# 0.14 us against 0.44 us per message (CPython 3.11). Every field must then be
# given, in order.
_new_message = tuple.__new__


def parse_rfc3164(text: str, *, truncated: bool = False) -> Message:
    """Parse an RFC 3164 payload, or any text at all. Never fails.

    Args:
        text: the whole payload, decoded.
        truncated: passed through to :attr:`Message.truncated`.

    Returns:
        The message; the parts of the header that are absent are ``None``.
    """
    m = RFC3164_GLIBC.match(text)
    if m is not None:
        pri, ts, app, pidnum = m.groups()
        host = pid = None
    else:
        m = RFC3164_PAYLOAD.match(text)
        if m is None:
            return _without_pri(text, truncated)
        pri, ts, host, app, pidnum, pid = m.groups()
    prival = int(pri)  # 1 to 3 ASCII digits: int() cannot fail
    if prival > MAX_PRIVAL:
        return _without_pri(text, truncated)
    fac, sev = PRI_NAMES[prival]
    msg = text[m.end() :]
    fields: dict[str, Any] | None = None
    if msg.startswith(CEE_COOKIE):
        cee = parse_cee(msg)
        if cee is not None:
            msg, fields = cee
    return _new_message(
        Message,
        (
            fac,
            sev,
            msg,
            app,
            host,
            None,
            pid if pidnum is None else int(pidnum),
            ts,
            fields or None,
            truncated,
        ),
    )


def _without_pri(text: str, truncated: bool) -> Message:
    """No valid PRI: user.notice, and the whole payload is the message."""
    fields: dict[str, Any] | None = None
    if text.startswith(CEE_COOKIE):
        cee = parse_cee(text)
        if cee is not None:
            text, fields = cee
    return Message(
        DEFAULT_FACILITY, DEFAULT_SEVERITY, text, fields=fields or None, truncated=truncated
    )
