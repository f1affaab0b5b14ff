"""``logq``: read records, from the daemon (authorized by the kernel) or a directory.

Parses the arguments into a ``QuerySpec`` (times, user names and priorities
are resolved here, in the caller's time zone and user database), then makes
one call: a ``query`` on the control socket, or a ``Scanner`` over
``--directory``. Exit codes: 0 success, 1 failure (refused, no daemon,
unreadable store: the message says why), 2 bad usage.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import sys
import time

from trio_logd import __version__
from trio_logd.cli import _position
from trio_logd.cli._exit import run_guarded
from trio_logd.errors import ConnectFailed, LogdError, ParseError, StoreError
from trio_logd.query.modes import FORMATS

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up, below)
if TYPE_CHECKING:
    import argparse
    import subprocess
    from collections.abc import Iterator, Sequence
    from typing import IO, Final

    from trio_logd.control_client import ControlConnection
    from trio_logd.query.boots import Boot
    from trio_logd.query.cursor import CursorRequest
    from trio_logd.query.filters import QuerySpec
    from trio_logd.query.matches import Selection
    from trio_logd.store.verify import Report

# Start-up budget (tests/cli/test_startup.py, bench/startup.py): at module level
# import only what every path needs (not even argparse: ``build_parser``
# imports it); the control client, the query layer, orjson and anything else
# heavy are imported in the function of the path that uses them, and an
# option's module only when the option is given (re2 for --grep, the cursor
# and boot modules for their options).

__all__ = ["build_parser", "main"]

EXIT_OK: Final = 0
EXIT_FAIL: Final = 1
EXIT_USAGE: Final = 2
#: ``-f`` without ``-n`` shows this many records first, as journalctl does.
FOLLOW_LINES: Final = 10
#: journalctl's default for less(1): quit at the end of one screen (F), pass
#: colours (R), no screen clearing (X), long prompt (M), exit on Ctrl-C (K).
LESS_DEFAULT: Final = "FRXMK"
_RECORD_HEAD: Final = b'{"type":"record","record":'


class _Usage(Exception):
    """A bad argument: exit 2 with the message."""


def _err(msg: str) -> None:
    print(f"logq: {msg}", file=sys.stderr)


# --------------------------------------------------------------------------- arguments


def _uid(text: str) -> int:
    from trio_logd.identity import MAX_UID

    if text.isascii() and text.isdigit():
        uid = int(text)
        if uid > MAX_UID:
            msg = f"--uid {text}: expected a uid 0..{MAX_UID} or a user name"
            raise _Usage(msg)
        return uid
    try:
        return pwd.getpwnam(text).pw_uid
    except KeyError:
        msg = f"--uid {text!r}: no such user (expected a uid or a user name)"
        raise _Usage(msg) from None


def _lines(text: str) -> int | None:
    from trio_logd.query.filters import MAX_LINES

    if text == "all":
        return None
    if not (text.isascii() and text.isdigit()) or int(text) > MAX_LINES:
        msg = f"--lines {text!r}: expected a number 0..{MAX_LINES} or 'all'"
        raise _Usage(msg)
    return int(text)


def _yes_no(text: str) -> bool:
    low = text.lower()
    if low in ("yes", "true", "1", "on"):
        return True
    if low in ("no", "false", "0", "off"):
        return False
    msg = f"--case-sensitive={text}: expected yes or no"
    raise _Usage(msg)


def spec_from_args(args: argparse.Namespace, *, now: float | None = None) -> QuerySpec:
    """Build the query from parsed arguments (user names, times and priorities resolved).

    Raises:
        _Usage: a bad value, with the message to print.
    """
    from trio_logd.query.filters import QuerySpec, parse_priority

    now = time.time() if now is None else now
    try:
        since = until = None
        if args.since or args.until:  # the time parser only when a time is given
            from trio_logd.query.timespec import parse_time, ts_bound

            since = ts_bound(parse_time(args.since, now=now)) if args.since else None
            until = ts_bound(parse_time(args.until, now=now)) if args.until else None
        priority = parse_priority(args.priority) if args.priority else None
    except ValueError as exc:
        raise _Usage(str(exc)) from None
    pids: list[int] = []
    for p in args.pid or ():
        if not (p.isascii() and p.isdigit()) or int(p) >= 1 << 31:
            msg = f"--pid {p!r}: expected a process id"
            raise _Usage(msg)
        pids.append(int(p))
    lines = _lines(args.lines) if args.lines is not None else None
    if args.follow and args.lines is None and since is None:
        lines = FOLLOW_LINES
    if args.all and args.uid:
        msg = "--all and --uid: give one or the other"
        raise _Usage(msg)
    select = selection_from_args(args)
    if select.field is not None and (args.follow or args.lines is not None):
        msg = "--field lists every value of the selection once: it cannot be used with -n or -f"
        raise _Usage(msg)
    try:
        return QuerySpec(
            uids=tuple(dict.fromkeys(_uid(u) for u in args.uid or ())),
            all_uids=args.all,
            pids=tuple(dict.fromkeys(pids)),
            since=since,
            until=until,
            priority=priority,
            grep=args.grep,
            case_sensitive=None if args.case_sensitive is None else _yes_no(args.case_sensitive),
            lines=lines,
            follow=args.follow,
            select=select,
        )
    except ValueError as exc:
        raise _Usage(str(exc)) from None


def selection_from_args(args: argparse.Namespace) -> Selection:
    """The matches, units, identifiers and ``-F`` field of the arguments.

    A positional word that is a path and no match (``logq /usr/sbin/sshd``)
    means ``exe=`` that path, resolved, as in journalctl.

    Raises:
        _Usage: a word that is not ``FIELD=VALUE``, ``+`` or a path.
    """
    from trio_logd.query.matches import Selection, parse_matches, unit_pattern

    words = [
        f"exe={os.path.realpath(w)}" if w.startswith("/") and "=" not in w else w
        for w in args.matches
    ]
    try:
        groups = parse_matches(words)
        return Selection.from_request(
            Selection(
                matches=groups,
                units=tuple(unit_pattern(u) for u in args.unit or ()),
                user_units=tuple(unit_pattern(u) for u in args.user_unit or ()),
                identifiers=tuple(args.identifier or ()),
                field=args.field,
            ).to_request()
        )
    except ValueError as exc:
        raise _Usage(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    """The ``logq`` argument parser."""
    from trio_logd.cli._parser import ArgumentParser

    p = ArgumentParser(
        prog="logq",
        description=(
            "Read trio-logd records: your own, or every uid's if you are root or in an "
            "[access] readers group. Online through the daemon, or offline with --directory."
        ),
    )
    p.add_argument("--version", action="version", version=f"logq (trio-logd) {__version__}")
    sel = p.add_argument_group("which records")
    sel.add_argument(
        "--uid", action="append", metavar="UID|USER",
        help="records of this uid (default: your own); repeat for several",
    )  # fmt: skip
    sel.add_argument("--all", action="store_true", help="records of every uid (readers, root)")
    sel.add_argument("--pid", action="append", metavar="PID", help="records of this pid; repeat")
    sel.add_argument(
        "matches", nargs="*", metavar="FIELD=VALUE",
        help=(
            "records whose FIELD (a record field, or fields.NAME for a sender's) is VALUE; "
            "the same field again: either value; different fields: both; '+' between "
            "groups: either group"
        ),
    )  # fmt: skip
    sel.add_argument(
        "-u", "--unit", action="append", metavar="UNIT",
        help="records of this systemd unit or slice (a glob; NAME means NAME.service); repeat",
    )  # fmt: skip
    sel.add_argument(
        "--user-unit", action="append", metavar="UNIT",
        help="records of this unit of a user's own systemd (a glob); repeat",
    )  # fmt: skip
    sel.add_argument(
        "-t", "--identifier", action="append", metavar="APP",
        help="records whose sender claimed this app name (syslog tag); repeat",
    )  # fmt: skip
    sel.add_argument(
        "-S", "--since", metavar="T",
        help="at or after T: 2026-11-27, '2026-11-27 21:47', 21:47, -1h, today, yesterday, @EPOCH",
    )  # fmt: skip
    sel.add_argument("-U", "--until", metavar="T", help="at or before T (same forms)")
    sel.add_argument(
        "-p", "--priority", metavar="PRIO",
        help="severity PRIO and more severe (err = emerg..err), or a range PRIO..PRIO",
    )  # fmt: skip
    sel.add_argument(
        "-g", "--grep", metavar="RE",
        help="messages matching RE (RE2 syntax; case-insensitive if RE is all lower case)",
    )  # fmt: skip
    sel.add_argument(
        "--case-sensitive", nargs="?", const="yes", metavar="yes|no",
        help="match --grep with (or without) case, whatever RE looks like",
    )  # fmt: skip
    sel.add_argument(
        "-n", "--lines", nargs="?", const=str(FOLLOW_LINES), metavar="N",
        help=f"only the last N records (default N: {FOLLOW_LINES}; 'all')",
    )  # fmt: skip
    sel.add_argument(
        "-f", "--follow", action="store_true",
        help=f"then wait for new records (after the last {FOLLOW_LINES} unless -n or --since)",
    )  # fmt: skip
    out = p.add_argument_group("output")
    out.add_argument(
        "-o", "--output", choices=FORMATS, default="short",
        help="short (syslog-like lines; short-iso, short-precise: other times), cat (messages "
        "only), json (records as stored), json-pretty, verbose (every field)",
    )  # fmt: skip
    out.add_argument("--no-pager", action="store_true", help="never pipe output into a pager")
    out.add_argument(
        "-F", "--field", metavar="FIELD",
        help="print each value FIELD takes in the selection, once (not records)",
    )  # fmt: skip
    out.add_argument(
        "--disk-usage", action="store_true",
        help="print the disk space your records take (every uid's for readers and root)",
    )  # fmt: skip
    out.add_argument(
        "--stats", action="store_true", help="at the end, print what the query read, on stderr"
    )
    src = p.add_argument_group("where")
    src.add_argument(
        "-D", "--directory", metavar="DIR",
        help="read the store under DIR directly, without the daemon (the log_dir)",
    )  # fmt: skip
    src.add_argument("--config", metavar="FILE", help="config file (default: discovered)")
    src.add_argument("--socket", metavar="PATH", help="the daemon's control socket")
    p.add_argument(
        "--verify", action="store_true",
        help=(
            "check the store's hash chains and seals (offline: the files under --directory "
            "or the config's log_dir); exit 1 naming every record changed, removed, moved, "
            "added or cut off and every file missing. With --uid: only those uids."
        ),
    )  # fmt: skip
    _position.add_arguments(p)
    return p


# --------------------------------------------------------------------------- output


class _Sink:
    """Standard output, or a pager when it is a terminal (like journalctl)."""

    def __init__(self, *, pager: bool) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self.out: IO[bytes] = sys.stdout.buffer
        if pager:
            self._start_pager()

    def _start_pager(self) -> None:
        command = os.environ.get("PAGER", "less")
        if not command.strip() or command.strip() == "cat":
            return
        env = dict(os.environ)
        env.setdefault("LESS", LESS_DEFAULT)
        try:
            import shlex  # only with a pager: see the start-up note above
            import subprocess

            self._proc = subprocess.Popen(shlex.split(command), stdin=subprocess.PIPE, env=env)
        except (OSError, ValueError):
            return  # no such pager: print directly
        assert self._proc.stdin is not None
        self.out = self._proc.stdin

    def close(self) -> None:
        with contextlib.suppress(BrokenPipeError):
            self.out.flush()
        if self._proc is not None:
            with contextlib.suppress(BrokenPipeError):
                self.out.close()
            # the pager owns the terminal until it exits; Ctrl-C is for it
            old = signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                self._proc.wait()
            finally:
                signal.signal(signal.SIGINT, old)


def _colour_wanted() -> bool:
    return (
        sys.stdout.isatty()
        and "NO_COLOR" not in os.environ
        and os.environ.get("TERM", "") != "dumb"
    )


# --------------------------------------------------------------------------- the two ways


def _control_path(args: argparse.Namespace) -> str:
    if args.socket:
        return str(args.socket)
    from trio_logd.locate import configured_path

    return configured_path(args.config, "control_socket")


def _run_online(
    args: argparse.Namespace, spec: QuerySpec, sink: _Sink, out: _position.RecordOutput
) -> int:
    from trio_logd.client import PeerRefused, socket_origin
    from trio_logd.control_client import ControlConnection
    from trio_logd.protocol.control import decode_response

    path = _control_path(args)
    try:
        conn = ControlConnection(path, timeout=None)
    except PeerRefused:
        raise
    except ConnectFailed as exc:
        if args.socket or os.path.lexists(path):
            raise
        # nothing there: say where the path came from (a config not found?)
        msg = f"{exc}: is the daemon running? ({socket_origin(args.config, 'control_socket')})"
        raise ConnectFailed(msg) from exc
    damaged = 0
    with conn:
        head = len(_RECORD_HEAD)
        for raw in _answer(conn, spec, out.request):
            if raw.startswith(_RECORD_HEAD):
                if not out(raw[head:-1]):
                    return EXIT_OK  # -n N after a cursor: enough (hanging up ends the query)
                continue
            reply = decode_response(raw)
            kind = reply["type"]
            if kind == "error":
                _err(str(reply.get("error")))
                return EXIT_FAIL
            if kind in ("ok", "stores"):  # store identities, for the cursor
                out.stores(_stores(reply.get("stores")))
            elif kind == "damaged":
                damaged += 1
                sink.out.flush()
                _warn_damaged(str(reply.get("file")), str(reply.get("error")))
            elif kind == "missed" and not args.quiet:
                sink.out.flush()
                _err(
                    f"{reply.get('count')} records skipped: "
                    "this reader fell behind and its buffer in the daemon was full"
                )
            elif kind == "end":
                if args.stats:
                    _print_stats(reply)
                return EXIT_FAIL if damaged else EXIT_OK
    if spec.follow:
        if not args.quiet:
            _err("the daemon ended the stream (it is stopping)")
    else:
        _err("the daemon closed the connection before the end of the answer")
    return EXIT_FAIL


def _stores(value: object) -> dict[int, int]:
    """The ``ok`` line's ``stores`` (uid -> store identity, for cursors); {} if absent."""
    if not isinstance(value, dict):
        return {}
    out: dict[int, int] = {}
    for uid, ident in value.items():
        if isinstance(uid, str) and uid.isascii() and uid.isdigit() and type(ident) is int:
            out[int(uid)] = ident
    return out


def _answer(
    conn: ControlConnection, spec: QuerySpec, position: CursorRequest | None
) -> Iterator[bytes]:
    """Send the query and yield the answer's lines; socket errors become ConnectFailed."""
    where = position.to_request() if position is not None else {}
    try:
        conn.send("query", **spec.to_request(), **where)
        yield from conn.raw_lines()
    except OSError as exc:
        msg = f"{conn.path}: lost the connection to the daemon: {exc.strerror or exc}"
        raise ConnectFailed(msg) from exc


def _run_offline(
    args: argparse.Namespace, spec: QuerySpec, sink: _Sink, out: _position.RecordOutput
) -> int:
    if spec.follow:
        msg = "--follow reads live records from the daemon; it cannot be used with --directory"
        raise _Usage(msg)
    from trio_logd.query.scanner import query_scanner

    uids = None if spec.all_uids else list(spec.uids or (os.getuid(),))
    position = out.request
    scanner = query_scanner(args.directory, uids, spec)
    if position is not None and position.cursor is not None:
        from trio_logd.query.cursor import place

        place(scanner, position.cursor, inclusive=position.inclusive)
    if position is not None and position.stores:
        out.stores(scanner.store_ids())
    count = 0
    batches = scanner.batches()
    try:
        for batch in batches:
            for line in batch:
                count += 1
                if not out(line):
                    break
            else:
                continue
            break
    finally:
        batches.close()
    if args.stats:
        _print_stats({"records": count, **scanner.stats.as_dict()})
    if scanner.stats.damaged:
        sink.out.flush()
        for d in scanner.stats.damaged:
            _warn_damaged(d.path, d.reason)
        return EXIT_FAIL
    return EXIT_OK


def _warn_damaged(path: str, reason: str) -> None:
    """A file the query passed over (after what it could read of it), on stderr."""
    _err(f"warning: {path}: damaged: {reason}; records after the damage are not shown")


def _print_stats(figures: dict[str, object]) -> None:
    keys = ("records", "files_opened", "files_skipped", "bytes_read")
    _err("read: " + ", ".join(f"{k}={figures.get(k)}" for k in keys))


#: What ``--verify`` and ``--disk-usage`` take besides themselves; every other
#: option selects, orders or shows records, which they do not do: it is refused,
#: named (docs/logq.md).
_VERIFY_TAKES: Final = frozenset(
    {"verify", "uid", "all", "directory", "config", "output", "no_pager"}
)
_DISK_USAGE_TAKES: Final = frozenset(
    {"disk_usage", "uid", "all", "directory", "config", "socket", "output", "no_pager"}
)
_ONE_FIGURE_OUTPUTS: Final = ("short", "json")


def _refuse_others(args: argparse.Namespace, option: str, takes: frozenset[str], what: str) -> None:
    """Refuse what *option* would otherwise ignore, naming the first such option.

    Raises:
        _Usage: an option that selects or shows records, or an output other than text or json.
    """
    defaults = vars(build_parser().parse_args([]))
    for dest, value in vars(args).items():
        if dest in takes or value == defaults.get(dest):
            continue
        if dest == "matches":
            msg = f"{option} {what}: it takes no FIELD=VALUE matches ({' '.join(value)})"
        else:
            msg = f"{option} {what}: it cannot be used with --{dest.replace('_', '-')}"
        raise _Usage(msg)
    if args.output not in _ONE_FIGURE_OUTPUTS:
        msg = f"{option} prints its findings as text or json: not -o {args.output}"
        raise _Usage(msg)
    if args.all and args.uid:
        msg = "--all and --uid: give one or the other"
        raise _Usage(msg)


def run_verify(args: argparse.Namespace) -> int:
    """``logq --verify``: check the store's chains; exit 1 if anything was changed."""
    _refuse_others(
        args,
        "--verify",
        _VERIFY_TAKES,
        "checks every record of the uids asked (select them with --uid)",
    )
    import orjson

    from trio_logd.locate import configured_path
    from trio_logd.store.verify import verify_store

    directory = args.directory or configured_path(args.config, "log_dir")
    uids = list(dict.fromkeys(_uid(u) for u in args.uid)) if args.uid else None
    try:
        report = verify_store(directory, uids)
    except StoreError as exc:
        hint = ""
        if "Permission denied" in str(exc):
            hint = " (the store is private to the daemon's user: run as root or as that user)"
        msg = f"{exc}{hint}"
        raise StoreError(msg) from exc
    out = sys.stdout
    if args.output == "json":
        for f in report.findings:
            out.write(orjson.dumps(f.as_dict()).decode() + "\n")
        summary = {
            "ok": not report.problems,
            "problems": len(report.problems),
            "notes": len(report.findings) - len(report.problems),
            "uids": report.uids,
            "files": report.files,
            "records": report.records,
        }
        out.write(orjson.dumps(summary).decode() + "\n")
    else:
        for f in report.findings:
            out.write(("" if f.problem else "note: ") + f.describe() + "\n")
        out.write(_verify_summary(report, directory) + "\n")
    out.flush()
    return EXIT_FAIL if report.problems else EXIT_OK


def _verify_summary(report: Report, directory: str) -> str:
    checked = (
        f"{_count(report.uids, 'uid')}, {_count(report.files, 'file')}, "
        f"{_count(report.records, 'record')} in {directory}"
    )
    notes = len(report.findings) - len(report.problems)
    if report.problems:
        uids = sorted({f.uid for f in report.problems})
        return (
            f"FAILED: {_count(len(report.problems), 'problem')} "
            f"(uid {', '.join(map(str, uids))}); checked {checked}"
        )
    return f"OK: {checked}: every chain intact" + (f" ({_count(notes, 'note')})" if notes else "")


def run_disk_usage(args: argparse.Namespace) -> int:
    """``logq --disk-usage``: the bytes of the caller's files, or every uid's (readers, root)."""
    _refuse_others(
        args,
        "--disk-usage",
        _DISK_USAGE_TAKES,
        "counts every file of the uids asked (select them with --uid)",
    )
    if args.directory is not None:
        from trio_logd.store.usage import disk_usage  # only this path needs it

        uids = None if args.all else list(dict.fromkeys(_uid(u) for u in args.uid or ()))
        usage = disk_usage(args.directory, uids or (None if args.all else [os.getuid()]))
    else:
        from trio_logd.control_client import request_one

        path = _control_path(args)
        wanted = list(dict.fromkeys(_uid(u) for u in args.uid or ()))
        reply = (
            request_one(path, "disk_usage", uids=wanted)
            if wanted
            else request_one(path, "disk_usage")
        )
        if reply.get("type") != "ok":
            _err(str(reply.get("error")))
            return EXIT_FAIL
        usage = {int(uid): int(n) for uid, n in reply["uids"]}
    out = sys.stdout
    if args.output == "json":
        total = sum(usage.values())
        items = [{"uid": uid, "bytes": n} for uid, n in sorted(usage.items())]
        import json  # integers only: the same bytes as orjson's, without its start-up

        out.write(json.dumps({"uids": items, "total": total}, separators=(",", ":")) + "\n")
    else:
        out.write(usage_line(usage) + "\n")
    out.flush()
    return EXIT_OK


def usage_line(usage: dict[int, int]) -> str:
    """``--disk-usage``'s sentence, as journalctl's ("… take up 1.2G in the file system.")."""
    total = _size(sum(usage.values()))
    if len(usage) == 1:
        (uid,) = usage
        return f"Records of uid {uid} take up {total} in the file system."
    return f"Records of {_count(len(usage), 'uid')} take up {total} in the file system."


def _size(n: int) -> str:
    """Bytes as journalctl's ``format_bytes`` shows them: 512B, 1.5K, 3.0M (powers of 1024)."""
    if n < 1024:
        return f"{n}B"
    value = float(n)
    for unit in "KMGTPE":
        value /= 1024
        if value < 1024 or unit == "E":
            return f"{value:.1f}{unit}"
    raise AssertionError  # the loop returns at "E"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _boots(args: argparse.Namespace) -> list[Boot]:
    """The daemon's boots: from the daemon (``boots``), or its records under --directory."""
    if args.directory is not None:
        from trio_logd.query.boots import daemon_uid, read_boots

        damaged: list[StoreError] = []
        boots = read_boots(args.directory, daemon_uid(args.directory), damaged)
        for d in damaged:  # the boots in them are not listed
            _err(f"warning: {d}")
        return boots
    from trio_logd.control_client import request_one
    from trio_logd.query.boots import boots_from_answer

    reply = request_one(_control_path(args), "boots")
    if reply.get("type") != "ok":
        raise ConnectFailed(str(reply.get("error", reply)))
    try:
        return boots_from_answer(reply.get("boots"))
    except ValueError as exc:
        msg = f"unexpected answer from the daemon: {exc}"
        raise ParseError(msg) from None


def run(args: argparse.Namespace) -> int:
    """Run the query *args* asks for; return the exit code."""
    if args.verify:
        return run_verify(args)
    if args.disk_usage:
        return run_disk_usage(args)
    spec = spec_from_args(args)
    try:
        plan, spec = _position.plan(args, spec)
        if args.list_boots or args.boot is not None:
            boots = _boots(args)
            if args.list_boots:
                sys.stdout.buffer.write(_position.format_boots(boots, args.output))
                return EXIT_OK
            spec = _position.narrow_to_boot(spec, boots, args.boot)
    except ValueError as exc:
        raise _Usage(str(exc)) from None
    tty = sys.stdout.isatty()
    if spec.select.field is not None:
        from trio_logd.query.matches import value_printer

        fmt = value_printer(spec.select.field)
    else:
        from trio_logd.query.output import make_formatter

        fmt = make_formatter(
            args.output,
            colour=_colour_wanted(),
            fields=plan.fields,
            uid_column=not args.no_hostname,
        )
    sink = _Sink(pager=tty and not args.no_pager and not spec.follow)
    out = _position.RecordOutput(sink.out.write, fmt, plan, sink.out.flush if spec.follow else None)
    if spec.follow and plan.cursor_file is not None:  # SIGTERM too writes the cursor file
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        try:
            if args.directory is not None:
                return _run_offline(args, spec, sink, out)
            return _run_online(args, spec, sink, out)
        finally:
            out.finish()
    except BrokenPipeError:
        # the reader (head, the pager) is gone: stop quietly, like cat
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_OK
    finally:
        sink.close()


#: Options whose value may start with "-" (``--since -1h``), which argparse
#: would otherwise take for an option.
_DASH_VALUES: Final = frozenset({"--since", "-S", "--until", "-U", "--grep", "-g"})


def _join_dash_values(argv: Sequence[str]) -> list[str]:
    out: list[str] = []
    it = iter(argv)
    for arg in it:
        if arg in _DASH_VALUES:
            value = next(it, None)
            if value is not None:
                sep = "=" if arg.startswith("--") else ""
                out.append(f"{arg}{sep}{value}")
                continue
        out.append(arg)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``logq``."""
    return run_guarded("logq", lambda: _main(argv))


def _main(argv: Sequence[str] | None) -> int:
    words = _join_dash_values(sys.argv[1:] if argv is None else argv)
    # matches may stand between options (logq -u sshd _PID=1 -n 5), as journalctl takes them
    args = build_parser().parse_intermixed_args(words)
    try:
        return run(args)
    except _Usage as exc:
        _err(str(exc))
        return EXIT_USAGE
    except ParseError as exc:
        _err(f"unexpected answer from the daemon: {exc}")
        return EXIT_FAIL
    except LogdError as exc:
        _err(str(exc))
        return EXIT_FAIL
    except KeyboardInterrupt:
        return EXIT_OK if args.follow else 130


if __name__ == "__main__":
    sys.exit(main())
