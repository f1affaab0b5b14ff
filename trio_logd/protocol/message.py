"""What a syslog payload says: the sender's claims, parsed but not trusted.

A :class:`Message` is the result of parsing one frame. Everything in it comes
from the sender: the daemon stamps kernel credentials beside it, never from it.
"""

from __future__ import annotations

from typing import Any, Final, NamedTuple

__all__ = [
    "DEFAULT_FACILITY",
    "DEFAULT_SEVERITY",
    "FACILITIES",
    "SEVERITIES",
    "Message",
]

#: RFC 5424 §6.2.1 table 2, index = severity code.
SEVERITIES: Final = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")

#: RFC 5424 §6.2.1 table 1 with the keywords of syslog.conf(5), index =
#: facility code. Codes 12-15 have no keyword in glibc and the peers differ:
#: rsyslog says ntp, audit, alert, clock (RFC 5424's "log audit", "log
#: alert", "clock daemon"); syslog-ng says ntp, security, console,
#: solaris-cron. We keep syslog-ng's: they are what stored records carry (a
#: rename would split one facility in two across an upgrade, in queries
#: too), and rsyslog's "alert" would also be a severity keyword. The
#: differential tests compare facility codes, not names (docs/parsing.md).
FACILITIES: Final = (
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news",
    "uucp", "cron", "authpriv", "ftp", "ntp", "security", "console", "solaris-cron",
    "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
)  # fmt: skip

#: A payload without ``<PRI>`` is ``user.notice`` (RFC 3164 §4.3.3).
DEFAULT_FACILITY: Final = "user"
DEFAULT_SEVERITY: Final = "notice"


class Message(NamedTuple):
    """One parsed syslog payload: every field is a claim of the sender.

    A ``NamedTuple`` rather than a frozen dataclass because one is built per
    record on the hot path, and a frozen slotted dataclass costs about five
    times as much to construct (1.6 us against 0.33 us, measured on CPython
    3.11 with 10 fields).

    Attributes:
        fac: facility keyword (``FACILITIES``).
        sev: severity keyword (``SEVERITIES``).
        msg: the text, decoded as UTF-8 with replacement characters.
        app: APP-NAME (5424) or TAG (3164), if any.
        host: HOSTNAME, if any.
        msgid: MSGID (5424 only), if any.
        claimed_pid: PROCID (5424) or ``[pid]`` of the TAG (3164): an ``int``
            when it is plain ASCII digits, the text otherwise.
        claimed_ts: the header's timestamp text, as sent.
        fields: structured data: the ``@cee:`` object and/or the RFC 5424
            SD-ELEMENTs (``{SD-ID: {PARAM-NAME: value}}``), or ``None``.
        truncated: the frame was cut at ``max_message_bytes``.
    """

    fac: str
    sev: str
    msg: str
    app: str | None = None
    host: str | None = None
    msgid: str | None = None
    claimed_pid: int | str | None = None
    claimed_ts: str | None = None
    fields: dict[str, Any] | None = None
    truncated: bool = False
