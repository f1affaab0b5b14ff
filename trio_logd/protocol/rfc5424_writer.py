"""RFC 5424's limits and character classes, and the writer of its messages.

How this works: the parser (:mod:`.rfc5424`, its patterns in ``_abnf.py``)
and everything that writes RFC 5424 (the client's encoder, the forwarder)
or checks a value that will be written as part of it (the configuration's
``hostname``) take the grammar from here, so each limit is stated once.
This module compiles only a few small patterns, so the client and the
configuration import it without the parser's.

The writer mends rather than refuses: a header field that is not
PRINTUSASCII has its other characters replaced by ``_`` and is cut to its
length (:func:`header_field`); an SD-NAME likewise (:func:`sd_name`); a
PARAM-VALUE has ``"``, ``\\`` and ``]`` escaped (:func:`escape_param_value`).
So whatever it is given, :func:`format_message` writes a message that
:func:`~trio_logd.protocol.rfc5424.parse_rfc5424` reads back field for field.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

__all__ = [
    "APP_NAME_MAX",
    "HOSTNAME_MAX",
    "MIN_MESSAGE_OCTETS",
    "MSGID_MAX",
    "NILVALUE",
    "PRINTUSASCII",
    "PROCID_MAX",
    "SD_NAME_CHAR",
    "SD_NAME_MAX",
    "escape_param_value",
    "format_message",
    "header_field",
    "is_hostname",
    "is_sd_name",
    "sd_element",
    "sd_name",
]

#: §6.1: a receiver MUST accept messages of this many octets.
MIN_MESSAGE_OCTETS: Final = 480
#: §6: HOSTNAME = NILVALUE / 1*255PRINTUSASCII
HOSTNAME_MAX: Final = 255
#: §6: APP-NAME = NILVALUE / 1*48PRINTUSASCII
APP_NAME_MAX: Final = 48
#: §6: PROCID = NILVALUE / 1*128PRINTUSASCII
PROCID_MAX: Final = 128
#: §6: MSGID = NILVALUE / 1*32PRINTUSASCII
MSGID_MAX: Final = 32
#: §6.3.3: SD-NAME = 1*32PRINTUSASCII except '=', SP, ']', %d34 (")
SD_NAME_MAX: Final = 32
#: §6: NILVALUE = "-"
NILVALUE: Final = "-"
#: §6: PRINTUSASCII = %d33-126, as a regular expression class.
PRINTUSASCII: Final = r"[\x21-\x7e]"
#: §6.3.3: a character of an SD-NAME (PRINTUSASCII but '=', SP, ']', '"').
SD_NAME_CHAR: Final = r"[\x21\x23-\x3c\x3e-\x5c\x5e-\x7e]"

_PRINTUSASCII: Final = re.compile(f"{PRINTUSASCII}+")
_NOT_PRINTUSASCII: Final = re.compile(PRINTUSASCII.replace("[", "[^", 1))
_SD_NAME: Final = re.compile(f"{SD_NAME_CHAR}{{1,{SD_NAME_MAX}}}")
_NOT_SD_NAME_CHAR: Final = re.compile(SD_NAME_CHAR.replace("[", "[^", 1))


def is_hostname(text: str) -> bool:
    """Whether *text* is a HOSTNAME as §6 has it (1 to 255 PRINTUSASCII)."""
    return len(text) <= HOSTNAME_MAX and _PRINTUSASCII.fullmatch(text) is not None


def header_field(text: object, limit: int) -> str:
    """A header field (HOSTNAME, APP-NAME, PROCID, MSGID) as §6 wants it, or ``-``.

    Characters other than PRINTUSASCII become ``_``; the result is cut to
    *limit* characters. Anything but a non-empty ``str`` is NILVALUE.
    """
    if not isinstance(text, str) or not text:
        return NILVALUE
    if _NOT_PRINTUSASCII.search(text) is not None:
        text = _NOT_PRINTUSASCII.sub("_", text)
    return text[:limit]


def is_sd_name(name: str) -> bool:
    """Whether *name* is an SD-NAME (an SD-ID or PARAM-NAME) as §6.3.3 has it."""
    return _SD_NAME.fullmatch(name) is not None


def sd_name(name: str) -> str:
    """*name* as a valid SD-NAME: other characters become ``_``, cut at 32."""
    if _SD_NAME.fullmatch(name):
        return name
    return _NOT_SD_NAME_CHAR.sub("_", name)[:SD_NAME_MAX] or "_"


def escape_param_value(text: str) -> str:
    """§6.3.3: escape ``"``, ``\\`` and ``]`` in a PARAM-VALUE."""
    if '"' in text or "\\" in text or "]" in text:
        return text.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")
    return text


def sd_element(sd_id: str, params: Iterable[tuple[str, str]]) -> str:
    """``[SD-ID PARAM-NAME="PARAM-VALUE" …]``: values escaped, names as given (valid ones)."""
    body = "".join(f' {name}="{escape_param_value(value)}"' for name, value in params)
    return f"[{sd_id}{body}]"


def format_message(
    prival: int,
    timestamp: str | None,
    hostname: str | None,
    app_name: str | None,
    procid: str | int | None,
    msgid: str | None,
    structured_data: str | None = None,
    msg: str | None = None,
) -> str:
    """One RFC 5424 SYSLOG-MSG: ``<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD [SP MSG]``.

    Args:
        prival: facility * 8 + severity (0..191).
        timestamp: an RFC 3339 time, or ``None`` (NILVALUE).
        hostname: mended with :func:`header_field` (``None``: NILVALUE).
        app_name: likewise.
        procid: likewise (an int as its digits).
        msgid: likewise.
        structured_data: SD-ELEMENTs as :func:`sd_element` writes them, or
            ``None``/``""`` (NILVALUE).
        msg: the MSG, or ``None``/``""`` for none (MSG-ANY: no BOM is added;
            a MSG that starts with a BOM or ``@cee:`` is read otherwise by
            receivers, see ``reserved.inert_text``).

    Returns:
        The message text (to be encoded as UTF-8), not framed.
    """
    pid = str(procid) if isinstance(procid, int) else procid
    body = f" {msg}" if msg else ""
    return (
        f"<{prival}>1 {timestamp or NILVALUE} {header_field(hostname, HOSTNAME_MAX)} "
        f"{header_field(app_name, APP_NAME_MAX)} {header_field(pid, PROCID_MAX)} "
        f"{header_field(msgid, MSGID_MAX)} {structured_data or NILVALUE}{body}"
    )
