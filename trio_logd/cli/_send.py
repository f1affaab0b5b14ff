"""``trio-logd send``: send records like ``logger``, through the client shim.

Records go out as RFC 5424 octet-counted frames (``trio_logd.client``); with
``--ack`` the command returns only once the daemon confirmed every record
stored, and exits non-zero otherwise.
"""

from __future__ import annotations

import argparse
import os
import pwd
import sys
from collections.abc import Iterable

from trio_logd.client import ClientStatistics, LogdClient, default_socket_path, socket_origin
from trio_logd.errors import LogdError
from trio_logd.protocol.message import FACILITIES, SEVERITIES

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


def send_messages(args: argparse.Namespace) -> int:
    """Send each MSG (or each stdin line) as one record; return an exit code.

    Exit 0 once every record is delivered within ``--timeout`` of the end
    of input: written to the daemon, or with ``--ack`` confirmed stored.
    While stdin outruns the daemon, reading waits (up to ``--timeout`` at a
    time) rather than drop. Exit 1 otherwise, with
    the reason on stderr (daemon unreachable, socket served by an untrusted
    uid, records dropped by the daemon's limits, no confirmation in time);
    2 for a bad priority.
    """
    try:
        pri = parse_priority(args.priority)
    except ValueError as exc:
        print(f"trio-logd send: {exc}", file=sys.stderr)
        return 2
    try:
        path = args.socket or default_socket_path(args.config)
        origin = "" if args.socket else f" ({socket_origin(args.config)})"
    except LogdError as exc:
        print(f"trio-logd send: {exc}", file=sys.stderr)
        return 1
    if not os.path.lexists(path):  # no daemon there: say so now rather than wait --timeout
        print(
            f"trio-logd send: {path}: no such socket: is the daemon running?{origin}",
            file=sys.stderr,
        )
        return 1
    try:
        tag = args.tag or pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        tag = str(os.getuid())
    problems: list[BaseException] = []
    client = LogdClient(
        path, app=tag, facility=pri >> 3, timeout=args.timeout, ack=args.ack,
        on_error=problems.append,
    )  # fmt: skip
    try:
        lines: Iterable[str] = (
            [" ".join(args.message)] if args.message else (ln.rstrip("\n") for ln in sys.stdin)
        )
        for line in lines:
            if not client.emit(line, severity=pri & 7):
                # the buffer is full (a long stdin): wait for room rather than drop
                client.flush(args.timeout)
                client.emit(line, severity=pri & 7)
        delivered = client.flush(args.timeout)
        stats = client.statistics()
    finally:
        client.close(0)
    failure = _failure(args, path, delivered, stats, problems)
    if failure:
        print(f"trio-logd send: {path}: {failure}", file=sys.stderr)
        return 1
    return 0


def _failure(
    args: argparse.Namespace,
    path: str,
    delivered: bool,
    stats: ClientStatistics,
    problems: list[BaseException],
) -> str | None:
    """Why not everything was delivered, or ``None``."""
    if problems:
        return str(problems[0]).removeprefix(f"{path}: ")
    dropped = sum(stats.daemon_dropped.values())
    if dropped:
        reasons = ", ".join(sorted(stats.daemon_dropped))
        return f"{dropped} of {stats.accepted} records dropped by the daemon ({reasons})"
    if stats.dropped:
        return f"{stats.dropped} records dropped: the client's buffer was full"
    if not delivered:
        done = "confirmed stored" if args.ack else "sent"
        why = f": {stats.last_error.removeprefix(f'{path}: ')}" if stats.last_error else ""
        missing = stats.accepted - stats.delivered
        return f"{missing} of {stats.accepted} records not {done} within {args.timeout:g} s{why}"
    return None
