"""Helpers for the limits end-to-end tests: children of other uids, stats, config rewrites."""

from __future__ import annotations

import contextlib
import io
import os
import socket
import subprocess
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from tests._daemon import DaemonProcess, config_text, poll
from trio_logd.cli.daemon import main
from trio_logd.config import default_config
from trio_logd.control_client import request_one

__all__ = [
    "Holder",
    "background_as",
    "cli_as",
    "payloads",
    "rewrite_config",
    "send_as",
    "uid_stats",
]


def uid_stats(d: DaemonProcess, uid: int) -> dict[str, Any]:
    """``stats`` of *uid* (``{}`` when the daemon has not seen it)."""
    for item in request_one(d.control, "stats")["uids"]:
        if item["uid"] == uid:
            return dict(item)
    return {}


def payloads(n: int, tag: str, *, size: int = 0) -> list[bytes]:
    """*n* LF-framed records ``<13>tag i``, padded to *size* bytes when given."""
    out = []
    for i in range(n):
        text = f"<13>{tag} {i} "
        out.append((text + "x" * max(0, size - len(text) - 1)).encode() + b"\n")
    return out


def _drop_to(uid: int, gid: int, groups: Sequence[int]) -> None:
    os.setgroups(list(groups))
    os.setgid(gid)
    os.setuid(uid)


def send_as(
    d: DaemonProcess, uid: int, records: Sequence[bytes], *, conns: int = 1, gid: int | None = None
) -> None:
    """Fork a child as *uid* that sends *records* round-robin over *conns* connections."""
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            _drop_to(uid, uid if gid is None else gid, ())
            socks = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(conns)]
            for s in socks:
                s.connect(d.socket)
            for i in range(conns):
                socks[i].sendall(b"".join(records[i::conns]))
            for s in socks:
                s.close()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, f"sender as uid {uid} failed"


@contextlib.contextmanager
def background_as(uid: int, fn: Callable[[], None]) -> Iterator[Callable[[], None]]:
    """Run *fn* in a child as *uid* while the block runs; the yielded callable joins it.

    Raises:
        AssertionError: the child failed (at join, or on leaving the block).
    """
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            _drop_to(uid, uid, ())
            fn()
            code = 0
        finally:
            os._exit(code)
    joined = False

    def join() -> None:
        nonlocal joined
        if not joined:
            joined = True
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0, f"child as uid {uid} failed"

    try:
        yield join
    finally:
        if not joined:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
            os.waitpid(pid, 0)


class Holder:
    """A child as another uid that opens ingest connections on command and keeps them open.

    Args:
        d: the daemon.
        uid, gid: whom the child becomes.
        groups: its supplementary groups (seen by the daemon via SO_PEERGROUPS).
    """

    def __init__(self, d: DaemonProcess, uid: int, gid: int, groups: Sequence[int] = ()) -> None:
        self.d = d
        self.uid = uid
        cmd_r, self._cmd = os.pipe()
        self._res, res_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # child
            code = 1
            try:
                os.close(self._cmd)
                os.close(self._res)
                _drop_to(uid, gid, groups)
                self._serve(cmd_r, res_w)
                code = 0
            finally:
                os._exit(code)
        os.close(cmd_r)
        os.close(res_w)

    def _serve(self, cmd_r: int, res_w: int) -> None:
        socks: list[socket.socket] = []
        while cmd := os.read(cmd_r, 1):
            if cmd == b"o":  # open one more connection
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(self.d.socket)
                socks.append(s)
                os.write(res_w, b"k")
            elif cmd == b"e":  # what does the newest connection read?
                s = socks[-1]
                s.settimeout(10)
                try:
                    answer = b"E" if s.recv(1) == b"" else b"D"
                except ConnectionResetError:
                    answer = b"R"
                except TimeoutError:
                    answer = b"T"
                os.write(res_w, answer)
            elif cmd == b"c":  # close the oldest
                socks.pop(0).close()
                os.write(res_w, b"k")
            elif cmd == b"s":  # send one record on the newest
                socks[-1].sendall(b"<13>held connection says hi\n")
                os.write(res_w, b"k")
            elif cmd == b"q":  # quit (other children may hold our pipe: no EOF to wait for)
                return

    def _ask(self, cmd: bytes) -> bytes:
        os.write(self._cmd, cmd)
        return os.read(self._res, 1)

    def open(self) -> None:
        """Open one more connection (the daemon may accept or refuse it)."""
        assert self._ask(b"o") == b"k"

    def newest_reads(self) -> str:
        """What a read on the newest connection gives: EOF, DATA, RESET or TIMEOUT."""
        return {b"E": "EOF", b"D": "DATA", b"R": "RESET", b"T": "TIMEOUT"}[self._ask(b"e")]

    def close_oldest(self) -> None:
        """Close the oldest connection."""
        assert self._ask(b"c") == b"k"

    def send(self) -> None:
        """Send one record on the newest connection."""
        assert self._ask(b"s") == b"k"

    def open_and_settle(self) -> bool:
        """Open a connection and wait until the daemon counted or refused it: ``True`` if open."""
        before = uid_stats(self.d, self.uid)
        opened = before.get("connections", 0)
        refused = before.get("dropped", {}).get("connections", 0)
        self.open()

        def settled() -> str | None:
            now = uid_stats(self.d, self.uid)
            if now.get("connections", 0) > opened:
                return "open"
            if now.get("dropped", {}).get("connections", 0) > refused:
                return "refused"
            return None

        return bool(poll(settled) == "open")

    def stop(self) -> None:
        """Close everything and reap the child."""
        os.write(self._cmd, b"q")
        os.close(self._cmd)
        _, status = os.waitpid(self.pid, 0)
        os.close(self._res)
        assert os.waitstatus_to_exitcode(status) == 0, f"holder as uid {self.uid} failed"


def rewrite_config(d: DaemonProcess, **parts: str) -> None:
    """Rewrite *d*'s config file (same sockets and log_dir) with other extra TOML."""
    d.config.write_text(config_text(d.root, **parts))


def cli_as(
    d: DaemonProcess, uid: int, *args: str, groups: Sequence[int] = ()
) -> subprocess.CompletedProcess[str]:
    """Run ``trio-logd ARGS --config …`` as *uid*: root as a subprocess; another uid in a
    forked child that calls the CLI's ``main`` (the interpreter may not be reachable by
    other uids, e.g. under a 0700 home directory)."""
    cmd = d.command(*args)
    if uid == os.geteuid() and not groups:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    # warm what the CLI loads lazily: the interpreter's own modules may be
    # unreadable for the other uid
    default_config()
    "".encode("utf-8-sig")
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 99
        try:
            _drop_to(uid, uid, groups)
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main(cmd[3:])
            os.write(out_w, out.getvalue().encode())
            os.write(err_w, err.getvalue().encode())
        except BaseException:
            os.write(err_w, traceback.format_exc().encode())
        finally:
            os._exit(code)
    os.close(out_w)
    os.close(err_w)
    _, status = os.waitpid(pid, 0)
    stdout, stderr = _read_all(out_r), _read_all(err_r)
    return subprocess.CompletedProcess(cmd, os.waitstatus_to_exitcode(status), stdout, stderr)


def _read_all(fd: int) -> str:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks).decode()
