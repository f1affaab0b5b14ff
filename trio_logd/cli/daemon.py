"""``trio-logd``: run the daemon and talk to it.

Each subcommand parses its arguments and makes one call; the work is done in
the package. Exit codes: 0 success, 1 failure (the message says why), 2 bad
usage, 3 ``status``: not running.
"""

from __future__ import annotations

import argparse
import errno
import grp
import json
import os
import pwd
import stat
import sys
import time

from trio_logd import __version__
from trio_logd.cli._exit import run_guarded
from trio_logd.cli._parser import ArgumentParser
from trio_logd.errors import (
    ConfigError,
    ConnectFailed,
    ControlRefused,
    DaemonBusy,
    LogdError,
    NotControlSocket,
)
from trio_logd.locate import (
    CONFIG_ENV_VAR,
    SYSTEM_CONFIG_PATH,
    configured_path,
    find_config_path,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (the CLIs' start-up)
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Final

    from trio_logd.config import Config

# Start-up budget (tests/cli/test_startup.py, bench/startup.py): the control
# commands (status, stats, reload...) import neither trio, structlog, the
# server nor the config schema; a command that needs one imports it in its
# own function, and so do the commands that need the control client or
# SO_PEERCRED (``--help`` imports neither).

__all__ = ["main"]

EXIT_OK: Final = 0
EXIT_FAIL: Final = 1
EXIT_USAGE: Final = 2
#: LSB init-script convention for "program is not running".
EXIT_NOT_RUNNING: Final = 3


def _err(msg: str) -> None:
    print(f"trio-logd: {msg}", file=sys.stderr)


def _config(args: argparse.Namespace) -> Config:
    from trio_logd.config import find_config

    return find_config(getattr(args, "config", None))


def _control_path(args: argparse.Namespace) -> str:
    explicit = getattr(args, "control_socket", None)
    if explicit:
        return str(explicit)
    return configured_path(getattr(args, "config", None), "control_socket")


# -- serve ------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the daemon in the foreground."""
    import trio

    from trio_logd._logging import configure_logging
    from trio_logd.server import AlreadyRunning, serve

    try:
        config = _config(args)
    except ConfigError as exc:
        _err(str(exc))
        return EXIT_FAIL
    configure_logging(getattr(config.daemon, "log_level", "info"))

    async def run() -> None:
        # the CLI owns the main thread, so the daemon handles its signals itself
        await serve(config, handle_signals=True)

    try:
        trio.run(run)
    except AlreadyRunning as exc:
        _err(str(exc))
        return EXIT_FAIL
    except LogdError as exc:
        _err(str(exc))
        return EXIT_FAIL
    except OSError as exc:
        _err(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "))
        return EXIT_FAIL
    return EXIT_OK


# -- status -----------------------------------------------------------------


def _fmt_duration(seconds: float) -> str:
    s = int(seconds)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    parts = [f"{d}d"] if d else []
    if d or h:
        parts.append(f"{h}h")
    if d or h or m:
        parts.append(f"{m}m")
    parts.append(f"{s}s")
    return " ".join(parts)


def cmd_status(args: argparse.Namespace) -> int:
    """Report whether the daemon runs, its pid (from SO_PEERCRED), uptime and sockets."""
    from trio_logd.client import PeerRefused, socket_origin
    from trio_logd.control_client import request_one
    from trio_logd.peer import probe_socket

    try:
        path = _control_path(args)
    except ConfigError as exc:
        _err(str(exc))
        return EXIT_FAIL
    try:
        reply = request_one(path, "status")
    except (PeerRefused, DaemonBusy, NotControlSocket, ControlRefused) as exc:
        # someone else serves the path, or a daemon runs but cannot answer now: say so
        _err(str(exc))
        return EXIT_FAIL
    except ConnectFailed:
        try:
            stale = os.path.exists(path) and probe_socket(path) is None
        except OSError:  # EACCES, or a backlog that filled up meanwhile: not known to be stale
            stale = False
        why = f"stale socket {path}" if stale else f"no daemon answers on {path}"
        if not os.path.lexists(path) and not args.control_socket:
            why += f"; {socket_origin(args.config, 'control_socket')}"
        if args.json:
            print(json.dumps({"running": False, "control_socket": path, "reason": why}))
        else:
            print(f"trio-logd is not running ({why})")
        return EXIT_NOT_RUNNING
    server = reply.pop("_server")
    if reply.get("type") != "ok":
        _err(str(reply.get("error")))
        return EXIT_FAIL
    reply.pop("type")
    # the pid comes from the kernel (SO_PEERCRED of the control socket), not from the reply
    reply["pid"] = server.pid
    reply["uid"] = server.uid
    if args.json:
        print(json.dumps({"running": True, **reply}))
        return EXIT_OK
    print(f"trio-logd is running (pid {server.pid}, uid {server.uid})")
    print(f"  version:        {reply.get('version')}")
    print(f"  uptime:         {_fmt_duration(float(reply.get('uptime', 0)))}")
    started = reply.get("started")
    if isinstance(started, (int, float)):
        print(f"  since:          {time.strftime('%Y-%m-%d %H:%M:%S %Z', time.localtime(started))}")
    print(f"  config:         {reply.get('config') or '(embedded defaults)'}")
    for name, p in (reply.get("sockets") or {}).items():
        print(f"  {name + ':':<15} {p}")
    print(f"  log_dir:        {reply.get('log_dir')}")
    print(f"  connections:    {reply.get('connections')}")
    control = reply.get("control") or {}
    if control:
        refused = ", ".join(f"{k} {v}" for k, v in sorted((control.get("refused") or {}).items()))
        print(
            f"  control:        {control.get('connections')} of {control.get('max_connections')} "
            f"connections open" + (f"; refused: {refused}" if refused else "")
        )
    fds = reply.get("fds") or {}
    parts = [
        f"{what}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        for what, counts in (
            ("refused at the reserve", fds.get("refused") or {}),
            ("out of descriptors", fds.get("exhausted") or {}),
        )
        if counts
    ]
    if parts:
        print(
            f"  fds:            limit {fds.get('limit')}, reserve {fds.get('reserve')}; "
            + "; ".join(parts)
        )
    helper = reply.get("helper") or {}
    if helper:
        running = f"pid {helper['pid']}" if helper.get("pid") else "not running"
        hung = f", killed hung: {helper['hung']}" if helper.get("hung") else ""
        print(f"  helper:         {running} (starts: {helper.get('starts', 0)}{hung})")
    store = reply.get("store") or {}
    if store.get("compress_pending"):
        print(f"  waiting for compression: {store['compress_pending']} files")
    if store.get("held"):
        print(f"  refusing new records: {store['held']}")
    for warning in reply.get("warnings") or []:
        print(f"  warning:        {warning}")
    for uid, why in (reply.get("refused_uids") or {}).items():
        print(f"  refused:        uid {uid}: {why}")
    from trio_logd.cli._forward import render_forward_lines

    for line in render_forward_lines(reply.get("forward") or []):
        print(line)
    return EXIT_OK


# -- reload -----------------------------------------------------------------


def cmd_reload(args: argparse.Namespace) -> int:
    """Ask the daemon to re-read its config file; print what changed."""
    from trio_logd.control_client import request_one

    try:
        # the file we would find the control socket in is the one being reloaded:
        # check all of it (the loader), not only the socket's path
        path = getattr(args, "control_socket", None) or os.path.abspath(
            _config(args).daemon.control_socket
        )
    except ConfigError as exc:
        _err(f"reload refused, nothing sent to the daemon: {exc}")
        return EXIT_FAIL
    try:
        reply = request_one(path, "reload", timeout=args.timeout)
    except (ControlRefused, DaemonBusy, NotControlSocket) as exc:
        _err(str(exc))
        return EXIT_FAIL
    except ConnectFailed as exc:
        _err(f"{exc} (is the daemon running?)")
        return EXIT_FAIL
    except OSError as exc:  # a timeout or a reset while waiting for the answer
        _err(f"{path}: no answer to reload: {exc.strerror or exc}")
        return EXIT_FAIL
    reply.pop("_server", None)
    if reply.get("type") != "ok":
        _err(str(reply.get("error")))
        return EXIT_FAIL
    applied: list[str] = reply.get("applied") or []
    restart: list[str] = reply.get("restart_required") or []
    if args.json:
        print(json.dumps({k: v for k, v in reply.items() if k != "type"}))
        return EXIT_OK
    if not applied and not restart:
        print(f"reloaded {reply.get('config')}: no changes")
    else:
        print(f"reloaded {reply.get('config')}")
    for key in applied:
        print(f"  applied: {key}")
    for key in restart:
        print(f"  needs a restart (still the old value): {key}")
    return EXIT_OK


# -- peer -------------------------------------------------------------------


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return "?"


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return "?"


def _peer_failure(path: str, exc: OSError) -> str:
    """Why nobody could be asked on *path*, in the words of what *path* is."""
    try:
        st = os.stat(path)
    except OSError:
        return str(exc.strerror or exc)
    if not stat.S_ISSOCK(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "a regular file"
        if not stat.S_ISDIR(st.st_mode) and not stat.S_ISREG(st.st_mode):
            kind = "a special file"
        return f"not a socket ({kind})"
    if exc.errno == errno.ECONNREFUSED:
        return "a socket nobody listens on (stale: its server is gone)"
    if exc.errno == errno.EPROTOTYPE:
        return "not a stream socket (a datagram socket has no server to name)"
    return str(exc.strerror or exc)


def cmd_peer(args: argparse.Namespace) -> int:
    """Print pid/uid/gid of whoever serves a Unix stream socket."""
    import socket

    from trio_logd.peer import read_peer_cred

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    s.settimeout(5)
    try:
        s.connect(args.socket)
        cred = read_peer_cred(s)
    except OSError as exc:
        _err(f"{args.socket}: {_peer_failure(args.socket, exc)}")
        return EXIT_FAIL
    finally:
        s.close()
    if args.json:
        print(json.dumps({"pid": cred.pid, "uid": cred.uid, "gid": cred.gid}))
    else:
        print(
            f"pid={cred.pid} uid={cred.uid}({_user(cred.uid)}) gid={cred.gid}({_group(cred.gid)})"
        )
    return EXIT_OK


# -- check-config -----------------------------------------------------------


def cmd_check_config(args: argparse.Namespace) -> int:
    """Validate the config every command finds (or FILE); report every error in it."""
    if args.file is not None and args.config is not None and args.file != args.config:
        _err(f"check-config: FILE {args.file!r} and --config {args.config!r}: give one")
        return EXIT_USAGE
    from trio_logd.config import default_config, load, load_all_errors

    path = find_config_path(args.file if args.file is not None else args.config)
    if path is None:
        default_config()
        print(
            f"no config file ({CONFIG_ENV_VAR} is unset and {SYSTEM_CONFIG_PATH} does not "
            "exist): the embedded defaults are in use, and they are valid"
        )
    else:
        errors = load_all_errors(path)
        if errors:
            for exc in errors:
                _err(str(exc))
            _err(f"{path}: {len(errors)} error{'s' if len(errors) > 1 else ''}")
            return EXIT_FAIL
        config = load(path)
    if path is None:  # the defaults keep everything under the current directory
        return EXIT_OK
    for warning in config_warnings(config):
        _err(f"warning: {warning}")
    print(f"{path}: OK")
    return EXIT_OK


def config_warnings(config: Config) -> list[str]:
    """What is valid in *config* but likely a mistake on this host."""
    warnings = []
    log_dir = config.daemon.log_dir
    parent = os.path.dirname(log_dir)
    if not os.path.isdir(log_dir) and not os.path.isdir(parent):
        missing = [parent]
        while not os.path.isdir(os.path.dirname(missing[-1])):
            missing.append(os.path.dirname(missing[-1]))
        warnings.append(
            f"[daemon] log_dir {log_dir!r}: its parent {parent!r} does not exist; "
            f"the daemon would create {', '.join(reversed(missing))} (a typo?)"
        )
    return warnings


# -- stats, top, metrics ----------------------------------------------------


def cmd_stats(args: argparse.Namespace) -> int:
    """Per-uid figures: a table, or one JSON object."""
    from trio_logd.cli._stats import show_stats

    return show_stats(_control_path(args), as_json=args.json)


def cmd_top(args: argparse.Namespace) -> int:
    """The stats table, refreshed in place until q."""
    from trio_logd.cli._top import run_top

    return run_top(_control_path(args), args.interval)


def cmd_metrics(args: argparse.Namespace) -> int:
    """The figures in Prometheus text format."""
    from trio_logd.cli._stats import show_metrics

    return show_metrics(_control_path(args))


# -- send -------------------------------------------------------------------


def cmd_send(args: argparse.Namespace) -> int:
    """Send records, like ``logger``."""
    from trio_logd.cli._send import send_messages

    return send_messages(args)


# -- parser -----------------------------------------------------------------


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.1 <= value <= 3600:
        msg = f"expected seconds between 0.1 and 3600, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def build_parser() -> argparse.ArgumentParser:
    """The ``trio-logd`` argument parser."""
    # `trio-logd --config FILE CMD` and `trio-logd CMD --config FILE` mean the
    # same (SPEC §9): the subcommands' copy of --config has no default, so an
    # absent one leaves the top-level value in place instead of resetting it.
    config_help = (
        f"config file (default: ${CONFIG_ENV_VAR}, else {SYSTEM_CONFIG_PATH} if it exists, "
        "else the embedded defaults)"
    )
    common = ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS, help=config_help)
    p = ArgumentParser(
        prog="trio-logd",
        description="An authenticated, syslog-style logging daemon. Without a COMMAND: serve.",
    )
    p.add_argument("--config", metavar="FILE", help=config_help)
    p.add_argument("--version", action="version", version=f"trio-logd {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    sp = sub.add_parser("serve", parents=[common], help="run the daemon in the foreground")
    sp.set_defaults(func=cmd_serve)

    sp = sub.add_parser("status", parents=[common], help="is it running: pid, uptime, sockets")
    sp.add_argument("--control-socket", metavar="PATH", help="control socket to ask")
    sp.add_argument("--json", action="store_true", help="print one JSON object")
    sp.set_defaults(func=cmd_status)

    sp = sub.add_parser(
        "reload", parents=[common], help="re-read the config file (root and [access] admins)"
    )
    sp.add_argument("--control-socket", metavar="PATH", help="control socket to ask")
    sp.add_argument("--json", action="store_true", help="print one JSON object")
    sp.add_argument("--timeout", type=float, default=60.0, help="seconds to wait (default 60)")
    sp.set_defaults(func=cmd_reload)

    sp = sub.add_parser("stats", parents=[common], help="per-uid rates, bytes, quota, drops")
    sp.add_argument("--control-socket", metavar="PATH", help="control socket to ask")
    sp.add_argument("--json", action="store_true", help="print one JSON object")
    sp.set_defaults(func=cmd_stats)

    sp = sub.add_parser("top", parents=[common], help="live view of stats (q quits)")
    sp.add_argument("--control-socket", metavar="PATH", help="control socket to ask")
    sp.add_argument(
        "-d", "--interval", type=_positive_seconds, default=2.0, metavar="SECONDS",
        help="seconds between refreshes (default 2)",
    )  # fmt: skip
    sp.set_defaults(func=cmd_top)

    sp = sub.add_parser("metrics", parents=[common], help="the figures in Prometheus text format")
    sp.add_argument("--control-socket", metavar="PATH", help="control socket to ask")
    sp.set_defaults(func=cmd_metrics)

    sp = sub.add_parser("peer", help="print pid/uid/gid of whoever serves SOCKET")
    sp.add_argument("socket", metavar="SOCKET")
    sp.add_argument("--json", action="store_true", help="print one JSON object")
    sp.set_defaults(func=cmd_peer)

    sp = sub.add_parser(
        "check-config", parents=[common],
        help="validate a config file (default: the one every command finds)",
    )  # fmt: skip
    sp.add_argument("file", metavar="FILE", nargs="?", help="the file (same as --config FILE)")
    sp.set_defaults(func=cmd_check_config)

    sp = sub.add_parser("send", parents=[common], help="send records, like logger")
    sp.add_argument("--socket", metavar="PATH", help="ingest socket (default: from the config)")
    sp.add_argument(
        "-p", "--priority", default="user.notice", metavar="PRIO",
        help="facility.severity or a number (default user.notice)",
    )  # fmt: skip
    sp.add_argument("-t", "--tag", metavar="TAG", help="app name (default: your user name)")
    sp.add_argument(
        "--ack", action="store_true", help="wait until the daemon confirms the records are stored"
    )
    sp.add_argument("--timeout", type=float, default=10.0, help="seconds to wait (default 10)")
    sp.add_argument("message", nargs="*", metavar="MSG", help="the message (default: stdin lines)")
    sp.set_defaults(func=cmd_send)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``trio-logd``."""
    return run_guarded("trio-logd", lambda: _run(argv))


def _run(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:  # no subcommand: serve
        func = cmd_serve
    try:
        rc: int = func(args)
    except LogdError as exc:  # ConfigError included: the message names file, key and reason
        _err(str(exc))
        return EXIT_FAIL
    return rc


if __name__ == "__main__":
    sys.exit(main())
