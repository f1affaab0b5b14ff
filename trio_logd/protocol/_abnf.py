# The syslog grammar (RFC 6587 framing, RFC 5424, RFC 3164 as really sent) as
# constants and regexes compiled at import.
#
# How this works: each rule is quoted from its RFC above the Python that
# implements it, and every place where we are more lenient (or stricter) than
# the RFC says so and why. Patterns are built from named string pieces, then
# compiled once at the bottom of each section.
#
# Payload patterns are *str* patterns: a payload is decoded from UTF-8 exactly
# once (invalid bytes become U+FFFD) and parsed as text. They never use \d, \s
# or \w, which match non-ASCII digits and spaces in str patterns: every class
# is spelled out, so '١' (ARABIC-INDIC DIGIT ONE) is never a digit here.
# Anchors are \Z, never $ (which also matches before a final "\n").

from __future__ import annotations

import re
from typing import Final

from trio_logd.protocol.rfc5424_writer import (
    APP_NAME_MAX,
    HOSTNAME_MAX,
    MSGID_MAX,
    PROCID_MAX,
    SD_NAME_CHAR,
)

__all__ = [
    "ASCII_DIGITS",
    "BOM",
    "MAX_OCTET_COUNT_DIGITS",
    "RFC3164_GLIBC",
    "RFC3164_PAYLOAD",
    "RFC5424_HEADER",
    "SD_ELEMENT",
    "SD_ESCAPE",
    "SD_PARAM",
]

# ---------------------------------------------------------------------------
# Framing: RFC 6587 §3.4
#
#   TCP-DATA = *SYSLOG-FRAME
#   SYSLOG-FRAME = MSG-LEN SP SYSLOG-MSG          ; octet-counting (§3.4.1)
#   MSG-LEN = NONZERO-DIGIT *DIGIT
#   NONZERO-DIGIT = %d49-57
#
#   SYSLOG-FRAME = SYSLOG-MSG TRAILER             ; non-transparent (§3.4.2)
#   TRAILER = LF / APP-DEFINED
#
# The framing code uses bytes.find / bytes.isdigit rather than a regex (it is
# the hot path, and bytes.isdigit is ASCII-only, unlike int() which accepts
# "+1", "1_0", " 1" and "١"). Deviations:
# - MSG-LEN may have leading zeros, and "0 " is a (empty, ignored) frame:
#   rsyslog accumulates digits the same way, and the value stays unambiguous.
# - MSG-LEN has at most MAX_OCTET_COUNT_DIGITS digits (SPEC §2): 10 digits
#   already count up to 9_999_999_999 bytes, far beyond any
#   max_message_bytes, so an 11th digit can only be garbage or a lie.
# - TRAILER is LF or NUL, whichever comes first: glibc syslog(3) and Python's
#   SysLogHandler end stream messages with NUL, util-linux logger with LF.
ASCII_DIGITS: Final = b"0123456789"
MAX_OCTET_COUNT_DIGITS: Final = 10  # SPEC §2: "more than 10 digits" is a lying count

# ---------------------------------------------------------------------------
# PRI: RFC 5424 §6.2.1 (same as RFC 3164 §4.1.1)
#
#   PRI    = "<" PRIVAL ">"
#   PRIVAL = 1*3DIGIT ; range 0 .. 191
#
# RFC 5424 forbids leading zeros ("<01>"); like rsyslog we accept them, since
# the value is unambiguous and at most 3 digits keep it bounded. The range
# check (<= 191) is done in Python by the caller. PRI starts both payload
# patterns below: one match per payload, not two.
_PRI = r"<(?P<pri>[0-9]{1,3})>"

# ---------------------------------------------------------------------------
# RFC 5424 §6
#
#   SYSLOG-MSG  = HEADER SP STRUCTURED-DATA [SP MSG]
#   HEADER      = PRI VERSION SP TIMESTAMP SP HOSTNAME
#                 SP APP-NAME SP PROCID SP MSGID
#   VERSION     = NONZERO-DIGIT 0*2DIGIT          ; we only know "1"
#   HOSTNAME    = NILVALUE / 1*255PRINTUSASCII
#   APP-NAME    = NILVALUE / 1*48PRINTUSASCII
#   PROCID      = NILVALUE / 1*128PRINTUSASCII
#   MSGID       = NILVALUE / 1*32PRINTUSASCII
#   NILVALUE    = "-"
#   PRINTUSASCII = %d33-126
#
# Deviation: header fields may also hold non-ASCII characters (never space or
# a control character): some senders put UTF-8 in APP-NAME, and refusing the
# whole header for it would lose every field. Lengths are in characters (the
# limits and PRINTUSASCII are rfc5424_writer's, shared with the writers).
_FIELD_CHAR = r"[^\x00-\x20\x7f-\x9f]"

#   TIMESTAMP      = NILVALUE / FULL-DATE "T" FULL-TIME
#   FULL-DATE      = DATE-FULLYEAR "-" DATE-MONTH "-" DATE-MDAY
#   DATE-FULLYEAR  = 4DIGIT
#   DATE-MONTH     = 2DIGIT  ; 01-12
#   DATE-MDAY      = 2DIGIT  ; 01-28, 01-29, 01-30, 01-31 based on month/year
#   FULL-TIME      = PARTIAL-TIME TIME-OFFSET
#   PARTIAL-TIME   = TIME-HOUR ":" TIME-MINUTE ":" TIME-SECOND [TIME-SECFRAC]
#   TIME-SECFRAC   = "." 1*6DIGIT
#   TIME-OFFSET    = "Z" / TIME-NUMOFFSET
#   TIME-NUMOFFSET = ("+" / "-") TIME-HOUR ":" TIME-MINUTE
#
# The timestamp is only a claim kept as text (claimed_ts), so field ranges are
# not checked, only the shape. Deviations, as RFC 3339 §5.6 and rsyslog allow:
# lowercase "t"/"z", and up to 9 fraction digits (nanosecond clocks); and, as
# rsyslog and syslog-ng both read it (their test suites send it), no
# TIME-OFFSET at all ("2009-10-16T11:51:56"): refusing it would make the whole
# header the message.
_RFC3339_TIMESTAMP = (
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}"
    r"(?:\.[0-9]{1,9})?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})?"
)

# Each field must end at a space (or the end of the
# payload, which only MSGID may reach: STRUCTURED-DATA is then taken as absent,
# a leniency for senders that stop after the header). A field longer than its
# RFC limit makes the whole header fail, and the payload is parsed as RFC 3164
# instead, which keeps every byte in the message. The capture groups are
# exactly pri, ts, host, app, procid, msgid, in that order (read with
# m.groups()).
RFC5424_HEADER: Final = re.compile(
    rf"{_PRI}1 "
    rf"(?P<ts>-|{_RFC3339_TIMESTAMP}) "
    rf"(?P<host>{_FIELD_CHAR}{{1,{HOSTNAME_MAX}}}) "
    rf"(?P<app>{_FIELD_CHAR}{{1,{APP_NAME_MAX}}}) "
    rf"(?P<procid>{_FIELD_CHAR}{{1,{PROCID_MAX}}}) "
    rf"(?P<msgid>{_FIELD_CHAR}{{1,{MSGID_MAX}}})"
    r"(?= |\Z)"
)

# RFC 5424 §6.3
#
#   STRUCTURED-DATA = NILVALUE / 1*SD-ELEMENT
#   SD-ELEMENT      = "[" SD-ID *(SP SD-PARAM) "]"
#   SD-PARAM        = PARAM-NAME "=" %d34 PARAM-VALUE %d34
#   SD-ID           = SD-NAME
#   PARAM-NAME      = SD-NAME
#   PARAM-VALUE     = UTF-8-STRING ; characters '"', '\' and ']' MUST be escaped.
#   SD-NAME         = 1*32PRINTUSASCII ; except '=', SP, ']', %d34 (")
#
# Deviations: no 32-character limit on SD-NAME (rsyslog has none either; the
# frame length bounds it), and an unescaped ']' inside a quoted PARAM-VALUE is
# accepted (the closing quote is unambiguous). A '\' before any other
# character stays a backslash (RFC 5424 §6.3.3). The value pattern is the
# unrolled-loop form of ("[^"\\]" / "\" any)*, which never backtracks.
_SD_NAME = rf"{SD_NAME_CHAR}+"
_PARAM_VALUE = r'[^"\\]*(?:\\.[^"\\]*)*'
SD_ELEMENT: Final = re.compile(
    rf'\[(?P<id>{_SD_NAME})(?P<params>(?: {_SD_NAME}="{_PARAM_VALUE}")*)\]',
    re.DOTALL,
)
SD_PARAM: Final = re.compile(rf' (?P<name>{_SD_NAME})="(?P<value>{_PARAM_VALUE})"', re.DOTALL)
SD_ESCAPE: Final = re.compile(r'\\(["\\\]])')

#   MSG      = MSG-ANY / MSG-UTF8
#   MSG-UTF8 = BOM UTF-8-STRING
#   BOM      = %xEF.BB.BF
BOM: Final = "\ufeff"

# ---------------------------------------------------------------------------
# RFC 3164 §4.1, as real senders write it
#
#   TIMESTAMP = Mmm SP dd SP hh:mm:ss    ; §4.1.2, dd space-padded ("Nov  7")
#
# Deviations, all accepted by rsyslog's pmrfc3164 and syslog-ng: an unpadded
# day ("Nov 7"), fraction digits after the seconds, a year after the day
# ("Nov 27 2024 20:47:40", some network gear), month names in any case
# ("AUG 10", rsyslog's parsertest corpus), a ':' right after the timestamp
# ("May 21 2017 00:00:00: %ASA-4-...", Cisco ASA), and an RFC 3339 timestamp
# instead of the BSD one (rsyslog, syslog-ng with ts-format(iso)). The glibc
# pattern below spells the month names as RFC 3164 does (case-sensitive: a
# case-insensitive group costs a quarter of its match time); the others go to
# RFC3164_PAYLOAD, which takes any case.
_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_BSD_TIMESTAMP = (
    r"(?i:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) +[0-9]{1,2}(?: [0-9]{4})?"
    r" [0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?"
)

#   HOSTNAME: §4.1.2 "The HOSTNAME field will contain only the hostname, the
#   IPv4 address, or the IPv6 address of the originator [...] MUST NOT
#   contain any embedded spaces"
#
# A host name of RFC 1123 letters, digits, '-', plus what real senders put
# there ('.', '_', '%', '@', '/': rsyslog's tests have "host@x", "%bzorp",
# "host/name"), or an IPv6 address (hex digits, '.' and at least two ':',
# "0002::", "fe80::1", "::ffff:10.0.0.1"). Otherwise ':' is never part of a
# host name, so "root: hi: x" is TAG "root", not host "root:" and TAG "hi".
# An IPv6 address is tried first, without the "not a TAG" test below: "0::1"
# starts like TAG "0" (an address never ends in a single ':', a TAG does).
_HOSTNAME = rf"[A-Za-z0-9._%@/-]{{1,{HOSTNAME_MAX}}}+"
_IPV6_HOST = rf"(?=[0-9A-Fa-f.]*+:[0-9A-Fa-f.]*+:)[0-9A-Fa-f:.]{{2,{HOSTNAME_MAX}}}+(?<![^:]:)"

#   TAG: §4.1.3 "The TAG is a string of ABNF alphanumeric characters that
#   MUST NOT exceed 32 characters. Any non-alphanumeric character will
#   terminate the TAG field and will be assumed to be the starting portion
#   of the CONTENT field." In practice: "prog[pid]: " or "prog: ".
#
# Deviations, as rsyslog and syslog-ng read real senders: up to 48
# characters (RFC 5424 APP-NAME), and any printable ASCII character but '[',
# ']' and ':' ("sshd(pam_unix)", "%PIX-7-710005",
# "postfix/smtpd", "python3.11", "user@1000"); '@' not first, so that
# "@cee: {...}" (the CEE cookie, see cee.py) is never read as a tag. '[PID]'
# and ':' end it. Non-ASCII characters are not taken: no sender's program
# name needs them, and a tag is shown beside other fields, where a
# right-to-left override (U+202E) would disguise them. The bracketed PID is any run of up to 128
# characters other than ']', space or control (RFC 5424 PROCID length); 1 to
# 10 ASCII digits are captured apart (pidnum), so the parser makes an int
# without testing the text again (see rfc5424.claimed_pid).
# _PLAIN_TAG is the subset the glibc pattern and the fast path take: ASCII,
# without '"' and '\' (the fast path copies it into JSON unescaped).
_TAG = (
    r"[\x21-\x39\x3b-\x3f\x41-\x5a\x5c\x5e-\x7e]"
    rf"[\x21-\x39\x3b-\x5a\x5c\x5e-\x7e]{{0,{APP_NAME_MAX - 1}}}+"
)
_PLAIN_TAG = rf"[A-Za-z0-9_./+-][A-Za-z0-9_./@+-]{{0,{APP_NAME_MAX - 1}}}+"
_PID = rf"[^\]\x00-\x20\x7f]{{1,{PROCID_MAX}}}+"
_PIDNUM = r"[0-9]{1,10}+"

# PRI, then the header, every part of it optional:
# - TIMESTAMP (after any spaces: "<167> Mar  7 ..."), an optional ':', then
#   spaces (or the end of the payload);
# - HOSTNAME, only after a TIMESTAMP: the word after it (RFC 3164 §4.1.2 and
#   §5.4 example 2, "<13>Feb  5 17:32:18 10.0.0.99 Use the BFG!" has HOSTNAME
#   10.0.0.99 and no TAG) unless that word is itself a TAG ("prog:",
#   "prog[1]:", glibc's syslog(3), which sends no HOSTNAME);
# - TAG, optional [PID], ":", then one optional space. Without a timestamp the
#   ":" must be followed by a space (or the end): "<14>myapp: text" has a tag,
#   "<14>http://example.com is down" has none. With a timestamp, a second ':'
#   right after it still means "no tag" ("std::vector ..."), and "TAG[PID]"
#   followed by a space or the end is a TAG without the ':' (§4.1.3: '['
#   ends a TAG). A word without '[PID]' or ':' is never a TAG (rsyslog and
#   syslog-ng take it as one after a HOSTNAME; it is the message's first word).
# HOSTNAME, TAG and PID use possessive quantifiers ({m,n}+, Python 3.11): none
# of them can contain what follows it, so giving back characters could never
# help a match, only cost time (a third of it on a glibc line).
# The capture groups are exactly pri, ts, host, app, pidnum, pid, in that
# order: the parser reads them with m.groups(). At most one of pidnum and pid
# is set. The pattern matches whenever PRI does.
# The glibc syslog(3) line, "<PRI>Mmm dd hh:mm:ss TAG[PID]: ", by far the most
# common payload, matched first by a pattern without alternatives for the
# optional parts: 1.3 us against 2.2 us for RFC3164_PAYLOAD on a 120-byte
# line (CPython 3.11). It accepts a subset of what RFC3164_PAYLOAD accepts and
# gives the same groups where it matches (no host: a host name must be
# followed by a space, and a TAG here is followed by '[' or ':'; an IPv6
# host, "0:0::1 ", is excluded by a look-ahead); anything else falls
# through to RFC3164_PAYLOAD. tests/protocol/test_parse_properties.py checks
# the equivalence. Groups: pri, ts, app, pidnum.
RFC3164_GLIBC: Final = re.compile(
    rf"{_PRI}"
    rf"(?P<ts>{_MONTH} [ 0-9][0-9]"
    r" [0-9]{2}:[0-9]{2}:[0-9]{2}) "
    rf"(?!{_IPV6_HOST}(?: |\Z))(?P<app>{_PLAIN_TAG})(?:\[(?P<pidnum>{_PIDNUM})\])?:(?!:) ?"
)

RFC3164_PAYLOAD: Final = re.compile(
    rf"{_PRI}"
    rf"(?: *+(?P<ts>{_BSD_TIMESTAMP}|{_RFC3339_TIMESTAMP}):?(?: +|\Z)"
    rf"(?:(?P<host>{_IPV6_HOST}(?= |\Z)|(?!{_TAG}(?:\[{_PID}\])?:(?!:)){_HOSTNAME})(?: +|\Z))?)?"
    rf"(?:(?P<app>{_TAG})(?:\[(?:(?P<pidnum>{_PIDNUM})|(?P<pid>{_PID}))\])?"
    r"(?::(?(ts)(?!:) ?|(?: |\Z))|(?(ts)(?<=\])(?: |\Z)|(?!))))?"
)
