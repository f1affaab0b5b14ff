"""``trio-logd send``: build RFC 5424 records and send them, like ``logger``."""

from __future__ import annotations

import argparse
import os
import pwd
import socket
import sys

from trio_logd.config import find_config
from trio_logd.errors import LogdError
from trio_logd.protocol.message import FACILITIES, SEVERITIES
from trio_logd.record import format_ts

__all__ = ["parse_priority", "send_messages"]


def parse_priority(text: str) -> int:
    """Parse ``facility.severity`` (either part optional) or a number 0..191.

    Raises:
        ValueError: with a message naming the bad part.
    """
    if text.isascii() and text.isdigit():
        value = int(text)
        if value > 191:
            msg = f"priority {text!r}: expected 0..191"
            raise ValueError(msg)
        return value
    fac_name, _, sev_name = text.rpartition(".")
    if not fac_name:
        fac_name, sev_name = ("user", sev_name) if sev_name in SEVERITIES else (sev_name, "notice")
    aliases = {"warn": "warning", "error": "err", "panic": "emerg", "security": "auth"}
    sev_name = aliases.get(sev_name, sev_name)
    fac_name = aliases.get(fac_name, fac_name)
    if fac_name not in FACILITIES:
        msg = f"priority {text!r}: unknown facility {fac_name!r}"
        raise ValueError(msg)
    if sev_name not in SEVERITIES:
        msg = f"priority {text!r}: unknown severity {sev_name!r}"
        raise ValueError(msg)
    return FACILITIES.index(fac_name) * 8 + SEVERITIES.index(sev_name)


def _frame(pri: int, tag: str, msg: str) -> bytes:
    import time

    host = socket.gethostname() or "-"
    payload = f"<{pri}>1 {format_ts(time.time())} {host} {tag} {os.getpid()} - - {msg}".encode(
        "utf-8", "replace"
    )
    return b"%d %s" % (len(payload), payload)


def send_messages(args: argparse.Namespace) -> int:
    """Send each MSG (or each stdin line) as one record; return an exit code."""
    try:
        pri = parse_priority(args.priority)
    except ValueError as exc:
        print(f"trio-logd send: {exc}", file=sys.stderr)
        return 2
    try:
        path = args.socket or os.path.abspath(find_config(args.config).daemon.socket)
    except LogdError as exc:
        print(f"trio-logd send: {exc}", file=sys.stderr)
        return 1
    try:
        tag = args.tag or pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        tag = str(os.getuid())
    messages = [" ".join(args.message)] if args.message else [ln.rstrip("\n") for ln in sys.stdin]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    s.settimeout(args.timeout)
    try:
        s.connect(path)
        s.sendall(b"".join(_frame(pri, tag, m) for m in messages))
    except OSError as exc:
        print(f"trio-logd send: {path}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    finally:
        s.close()
    return 0
