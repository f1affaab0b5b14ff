"""Attackers and bystanders: children of other uids talking to a real daemon.

The attacker and the bystander are two ordinary uids found free on the host
(``tests._uids``: no passwd entry, no process): each a forked child that
drops to its uid, so the kernel, not the test, says who
they are. A :class:`Bystander` logs numbered records before, during and after
an attack; :meth:`Bystander.lost` counts on disk how many of them are
missing, which is the measured "records lost" of the attack table.
"""

from __future__ import annotations

import encodings.utf_8_sig  # noqa: F401  # see below
import io
import os
import select
import socket
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from tests._daemon import DaemonProcess

# Children that drop to another uid may be unable to read the Python install
# (root's home, 0700): what they import lazily (the config reader's
# utf-8-sig codec, the embedded defaults, logq's formatters) is done here.
from tests._uids import free_uids
from trio_logd.config import default_config
from trio_logd.query.output import make_formatter
from trio_logd.store.files import read_uid_records

default_config()
for _name in ("short", "verbose"):
    make_formatter(_name)(b'{"ts":"2026-11-27T20:47:40.123456Z","seq":1,"uid":0}')

ATTACKER, BYSTANDER, THIRD = free_uids(3)
#: What no line on disk or of ``logq -o short`` may hold raw: C0 controls
#: (LF only as the line end), DEL, C1, bidi controls, line/paragraph separators.
UNSAFE_CHARS = frozenset(
    [chr(c) for c in range(0x20) if c != 0x0A]
    + [chr(c) for c in range(0x7F, 0xA0)]
    + list("\u061c\u200e\u200f\u2028\u2029\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
)


def _drop_to(uid: int, gid: int) -> None:
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)


def fork_as(uid: int, body: Callable[[], None]) -> int:
    """Fork a child that drops to *uid* (gid the same), runs *body* and exits.

    Returns:
        The child's pid (the caller reaps it). The child exits 0 when *body*
        returns, 1 (after printing the traceback) when it raises.
    """
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            _drop_to(uid, uid)
            body()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    return pid


class Bystander:
    """Another uid's client logging numbered records around an attack.

    A child process (fork + setuid) that holds one connection and, on
    command, writes its next records (``bystander 0``, ``bystander 1`` …)
    one ``send`` each, or opens a new connection.

    Args:
        daemon: the daemon under attack.
        uid: the bystander's uid (and gid).
    """

    def __init__(self, daemon: DaemonProcess, uid: int = BYSTANDER) -> None:
        self.daemon = daemon
        self.uid = uid
        self.sent = 0
        cmd_r, cmd_w = os.pipe()
        rep_r, rep_w = os.pipe()

        def child() -> None:
            os.close(cmd_w)
            os.close(rep_r)
            _bystander_main(daemon.socket, cmd_r, rep_w)

        self.pid = fork_as(uid, child)
        os.close(cmd_r)
        os.close(rep_w)
        self._cmd = cmd_w
        self._rep = rep_r
        self._done = False
        self._call("connect")

    def _call(self, command: str, timeout: float = 30.0) -> None:
        os.write(self._cmd, command.encode() + b"\n")
        ready, _, _ = select.select([self._rep], [], [], timeout)
        assert ready, f"bystander: no answer to {command!r} within {timeout} s"
        answer = os.read(self._rep, 4096)
        assert answer == b"ok\n", f"bystander: {command!r} failed: {answer!r}"

    def send(self, n: int) -> None:
        """Write the next *n* records (returns once the last is written to the socket)."""
        self._call(f"send {n}")
        self.sent += n

    def reconnect(self) -> None:
        """Close the connection and open a new one (raises if the daemon refuses)."""
        self._call("connect")

    def close(self) -> None:
        """Close the connection and end the child."""
        if self._done:
            return
        self._done = True
        self._call("quit")
        os.close(self._cmd)
        os.close(self._rep)
        _, status = os.waitpid(self.pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "bystander child failed"

    def records(self) -> list[dict[str, Any]]:
        """The bystander uid's own (non-daemon) records on disk."""
        return [r for r in self.daemon.records(self.uid) if "event" not in r]

    def wait_stored(self, timeout: float = 15.0) -> None:
        """Wait until every record sent so far is on disk."""
        got = wait_records(self.daemon, self.uid, self.sent, timeout=timeout)
        assert len(got) == self.sent, f"bystander: {len(got)} of {self.sent} records stored"

    def lost(self, timeout: float = 15.0) -> int:
        """Records sent but not on disk, after waiting up to *timeout* s for them to arrive."""
        self.close()
        deadline = time.monotonic() + timeout
        while True:
            found = len(self.records())
            if found >= self.sent or time.monotonic() > deadline:
                return self.sent - found
            time.sleep(0.02)

    def assert_intact(self) -> None:
        """Every record in order, stamped with the bystander's uid, seq without a gap."""
        recs = self.records()
        assert [r["msg"] for r in recs] == [f"bystander {i}" for i in range(self.sent)]
        assert {(r["uid"], r["gid"]) for r in recs} == {(self.uid, self.uid)}
        assert_contiguous(self.daemon.records(self.uid))


def _bystander_main(path: str, cmd_fd: int, rep_fd: int) -> None:
    sock: socket.socket | None = None
    n = 0
    with os.fdopen(cmd_fd, "rb") as commands:
        for line in commands:
            word, _, arg = line.strip().partition(b" ")
            try:
                if word == b"connect":
                    if sock is not None:
                        sock.close()
                    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    sock.connect(path)
                elif word == b"send":
                    assert sock is not None
                    for i in range(n, n + int(arg)):
                        sock.sendall(b"<14>bystander: bystander %d\n" % i)
                    n += int(arg)
                elif word == b"quit":
                    if sock is not None:
                        sock.close()
                    os.write(rep_fd, b"ok\n")
                    return
            except OSError as exc:
                os.write(rep_fd, f"error {exc!r}\n".encode())
                continue
            os.write(rep_fd, b"ok\n")


def assert_contiguous(records: Sequence[dict[str, Any]]) -> None:
    """``seq`` of a uid's records (daemon records included) has no gap and no repeat."""
    seqs = [r["seq"] for r in records]
    if seqs:
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))


@dataclass
class ChildResult:
    """What a child run by :func:`run_child` said and returned."""

    rc: int
    out: str
    err: str
    value: Any


def run_child(
    uid: int, fn: Callable[[], Any], *, gid: int | None = None, timeout: float = 60.0
) -> ChildResult:
    """Fork; the child drops to *uid* (and *gid*, default the same), runs *fn*, and exits.

    Returns:
        Its exit status (``fn``'s result when an int, else 0; 99 when it
        raised), what it wrote on stdout and stderr, and ``fn``'s result sent
        back as JSON (when it is not an int).
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            code = 99
            try:
                os.close(r)
                os.dup2(out.fileno(), 1)
                os.dup2(err.fileno(), 2)
                sys.stdout = io.TextIOWrapper(open(1, "wb", closefd=False), write_through=True)  # noqa: SIM115
                sys.stderr = io.TextIOWrapper(open(2, "wb", closefd=False), write_through=True)  # noqa: SIM115
                if uid != os.geteuid():
                    _drop_to(uid, uid if gid is None else gid)
                value = fn()
                code = value if isinstance(value, int) else 0
                os.write(w, orjson.dumps(None if isinstance(value, int) else value))
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        os.close(w)
        with os.fdopen(r, "rb") as pipe:
            deadline = time.monotonic() + timeout
            chunks = []
            while data := _read_until(pipe, deadline):
                chunks.append(data)
        _, status = os.waitpid(pid, 0)
        out.seek(0)
        err.seek(0)
        raw = b"".join(chunks)
        return ChildResult(
            os.waitstatus_to_exitcode(status),
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
            orjson.loads(raw) if raw else None,
        )


def _read_until(pipe: io.BufferedReader, deadline: float) -> bytes:
    ready, _, _ = select.select([pipe], [], [], max(0.0, deadline - time.monotonic()))
    assert ready, "child did not finish in time"
    return pipe.read1(65536)


def send_as(
    daemon: DaemonProcess, uid: int, chunks: Iterable[bytes], *, expect_close: bool = False
) -> dict[str, Any]:
    """Connect as *uid*, send *chunks*, then see whether the daemon closes the connection.

    Returns:
        ``{"pid": the sender's pid, "closed": the daemon closed first}``.
    """
    data = list(chunks)

    def child() -> dict[str, Any]:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(daemon.socket)
        closed = False
        try:
            for chunk in data:
                s.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            closed = True
        if expect_close and not closed:
            s.settimeout(10)
            try:
                closed = s.recv(1) == b""
            except OSError:
                closed = True
        s.close()
        return {"pid": os.getpid(), "closed": closed}

    result = run_child(uid, child)
    assert result.rc == 0, result.err
    value: dict[str, Any] = result.value
    return value


def wait_records(
    daemon: DaemonProcess,
    uid: int,
    n: int,
    *,
    where: Callable[[dict[str, Any]], bool] = lambda r: "event" not in r,
    timeout: float = 10.0,
) -> list[dict[str, Any]]:
    """Records of *uid* matching *where* once there are *n* (or all there are after *timeout*)."""
    deadline = time.monotonic() + timeout
    while True:
        recs = [r for r in daemon.records(uid) if where(r)]
        if len(recs) >= n or time.monotonic() > deadline:
            return recs
        time.sleep(0.02)


def store_lines(log_dir: Path) -> list[tuple[int, bytes]]:
    """Every stored line, of every uid and file (rotated files decompressed): (uid, line)."""
    out: list[tuple[int, bytes]] = []
    for entry in sorted(os.listdir(log_dir)):
        if entry.isdigit():
            out.extend((int(entry), line) for line in read_uid_records(log_dir, int(entry)))
    return out


def assert_store_is_one_record_per_line(log_dir: Path) -> int:
    """Every file under *log_dir* holds one JSON object per line, with nothing unsafe raw.

    Checks each current file byte for byte (rotated ones through the reader):
    its lines are JSON objects, as many as ``str.splitlines`` sees, and none
    holds a control, bidi or separator character raw.

    Returns:
        The number of records checked.
    """
    checked = 0
    for uid_dir in sorted(p for p in log_dir.iterdir() if p.name.isdigit()):
        current = uid_dir / "current.jsonl"
        if current.exists():
            raw = current.read_bytes()
            assert raw.endswith(b"\n")
            text = raw.decode("utf-8")  # strict: the store writes valid UTF-8
            lines = raw.split(b"\n")[:-1]
            assert len(text.splitlines()) == len(lines), f"{current}: a line splits"
            assert not UNSAFE_CHARS.intersection(text.replace("\n", "")), current
            for line in lines:
                assert isinstance(orjson.loads(line), dict)
            checked += len(lines)
    for _uid, line in store_lines(log_dir):
        assert isinstance(orjson.loads(line), dict)
        assert not UNSAFE_CHARS.intersection(line.decode())
    return checked


__all__ = [
    "ATTACKER",
    "BYSTANDER",
    "UNSAFE_CHARS",
    "Bystander",
    "ChildResult",
    "assert_contiguous",
    "assert_store_is_one_record_per_line",
    "fork_as",
    "free_uids",
    "run_child",
    "send_as",
    "store_lines",
    "wait_records",
]
