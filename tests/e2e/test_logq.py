"""End to end: logq against a real daemon, as several uids; --directory offline."""

from __future__ import annotations

# logq runs in forked children that drop to other uids, which cannot read the
# interpreter's own directory: load now what it would load lazily.
import encodings.utf_8_sig  # noqa: F401  # tomllib reads the config with it
import io
import os
import pty
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

import trio_logd.cli.logq as logq
from tests._daemon import PYTHON, DaemonProcess, poll, run_as, world
from tests._uids import free_uids
from trio_logd.control_client import ControlConnection, request_one

ROOT = os.geteuid()
#: Two uids without a passwd entry, found free on this host.
ALICE, BOB = free_uids(2)
#: The refusal's hint, from the default [access] readers.
MAY = "(root and members of the [access] readers groups may: adm)"
ADM_GID = 4  # "adm": a group listed in the default [access] readers

pytestmark = pytest.mark.usefixtures("as_root")


def _warm_up() -> None:
    """Load what logq loads lazily (the embedded defaults, formatters) in this process."""
    from trio_logd.config import default_config
    from trio_logd.query.output import make_formatter

    default_config()
    for name in ("short", "verbose"):
        make_formatter(name)(b'{"ts":"2026-11-27T20:47:40.123456Z","seq":1,"uid":0}')


_warm_up()


@dataclass
class Result:
    rc: int
    out: str
    err: str

    def records(self) -> list[dict[str, Any]]:
        return [orjson.loads(x) for x in self.out.splitlines()]


def logq_as(uid: int, gid: int, *argv: str, groups: tuple[int, ...] = ()) -> Result:
    """Run ``logq ARGV`` in a forked child with *uid*/*gid*/*groups* (no exec needed)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        pid = os.fork()
        if pid == 0:  # child
            code = 99
            try:
                os.dup2(out.fileno(), 1)
                os.dup2(err.fileno(), 2)
                sys.stdout = io.TextIOWrapper(open(1, "wb", closefd=False), write_through=True)  # noqa: SIM115
                sys.stderr = io.TextIOWrapper(open(2, "wb", closefd=False), write_through=True)  # noqa: SIM115
                os.setgroups(list(groups))
                os.setgid(gid)
                os.setuid(uid)
                code = logq.main(list(argv))
                sys.stdout.flush()
                sys.stderr.flush()
            except BaseException as exc:
                os.write(2, repr(exc).encode())
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        out.seek(0)
        err.seek(0)
        return Result(os.waitstatus_to_exitcode(status), out.read().decode(), err.read().decode())


def send_as(d: DaemonProcess, uid: int, *frames: bytes) -> None:
    """Send frames (LF added) as *uid* from a forked child."""

    def child() -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(d.socket)
        s.sendall(b"".join(f + b"\n" for f in frames))
        s.close()

    if uid == ROOT:
        child()
    else:
        run_as(uid, uid, child)


def user_records(d: DaemonProcess, uid: int, n: int) -> list[dict[str, Any]]:
    return d.wait_records(uid, n)


@pytest.fixture
def two_users(daemon: DaemonProcess) -> DaemonProcess:
    """alice and bob (two free uids) have logged three records each."""
    send_as(daemon, ALICE, b"<11>alice one", b"<14>alice two", b"<15>alice three")
    send_as(daemon, BOB, b"<11>bob one", b"<14>bob two", b"<15>bob three")
    user_records(daemon, ALICE, 3)
    user_records(daemon, BOB, 3)
    return daemon


def msgs(result: Result) -> list[str]:
    assert result.rc == 0, result.err
    return [r["msg"] for r in result.records()]


def cfg(d: DaemonProcess) -> tuple[str, str]:
    return ("--config", str(d.config))


# --------------------------------------------------------------------------- authorization


def test_a_user_reads_own_records_only(two_users: DaemonProcess) -> None:
    """Without --uid, bob gets bob's records, and none of alice's."""
    r = logq_as(BOB, BOB, "-o", "json", *cfg(two_users))
    assert msgs(r) == ["bob one", "bob two", "bob three"]
    assert {rec["uid"] for rec in r.records()} == {BOB}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--uid", str(ALICE)), f"uid {BOB} may not read uid {ALICE}"),
        (("--uid", str(BOB), "--uid", "0"), f"uid {BOB} may not read uid 0 (root)"),
        (("--all",), f"uid {BOB} may not read all uids"),
    ],
)
def test_others_records_are_refused(
    two_users: DaemonProcess, argv: tuple[str, ...], message: str
) -> None:
    """Asking for another uid exits 1 naming who may not read what, and who may."""
    r = logq_as(BOB, BOB, *argv, *cfg(two_users))
    assert (r.rc, r.out, r.err) == (1, "", f"logq: permission denied: {message} {MAY}\n")


def test_reader_group_member_reads_others(two_users: DaemonProcess) -> None:
    """bob in group adm (a supplementary group, from SO_PEERGROUPS) reads alice's and all."""
    r = logq_as(BOB, BOB, "--uid", str(ALICE), "-o", "json", *cfg(two_users), groups=(ADM_GID,))
    assert msgs(r) == ["alice one", "alice two", "alice three"]
    r = logq_as(BOB, BOB, "--all", "-o", "json", *cfg(two_users), groups=(ADM_GID,))
    assert {(rec["uid"], rec["msg"]) for rec in r.records()} >= {
        (ALICE, "alice one"),
        (BOB, "bob one"),
    }


def test_reader_as_primary_group(two_users: DaemonProcess) -> None:
    """A primary gid of adm counts too (SO_PEERCRED's gid)."""
    r = logq_as(BOB, ADM_GID, "--uid", str(ALICE), "-o", "json", *cfg(two_users))
    assert msgs(r) == ["alice one", "alice two", "alice three"]


def test_root_reads_everything_merged_by_ts(two_users: DaemonProcess) -> None:
    """root's --all has every uid (the daemon's own too), in ts order."""
    r = logq_as(ROOT, 0, "--all", "-o", "json", *cfg(two_users))
    recs = r.records()
    assert [x["ts"] for x in recs] == sorted(x["ts"] for x in recs)
    assert {x["uid"] for x in recs} == {ROOT, ALICE, BOB}
    both = logq_as(ROOT, 0, "--uid", str(ALICE), "--uid", "bob" if _has_user("bob") else str(BOB),
                   "-o", "json", *cfg(two_users))  # fmt: skip
    assert sorted(msgs(both)) == sorted(
        ["alice one", "alice two", "alice three", "bob one", "bob two", "bob three"]
    )


def _has_user(name: str) -> bool:
    import pwd

    try:
        return pwd.getpwnam(name).pw_uid == BOB
    except KeyError:
        return False


def test_no_argument_reaches_another_uids_files(two_users: DaemonProcess) -> None:
    """Path-like or negative uids are refused; raw requests too; the store dir is closed."""
    for bad in (f"../{ALICE}", f"{ALICE}/..", "-1", f"{ALICE} ", f"./{BOB}"):
        r = logq_as(BOB, BOB, "--uid", bad, *cfg(two_users))
        assert (r.rc, r.out) == (2, ""), bad
        assert "no such user" in r.err or "expected a uid" in r.err
    bad_uids: list[list[object]] = [[f"../{ALICE}"], [-1], [float(ALICE)], [str(ALICE)], [True]]
    for uids in bad_uids:

        def raw(uids: list[object] = uids) -> None:
            with ControlConnection(two_users.control) as conn:
                conn.send("query", uids=uids)
                (reply,) = list(conn.responses())
                assert (reply["type"], reply["code"]) == ("error", "invalid"), reply

        run_as(BOB, BOB, raw)
    r = logq_as(
        BOB, BOB, "--directory", str(two_users.log_dir), "--uid", str(ALICE), *cfg(two_users)
    )
    assert (r.rc, r.out) == (1, "")
    assert "Permission denied" in r.err


# --------------------------------------------------------------------------- grep safety


def test_pathological_grep_returns_promptly_and_daemon_keeps_serving(daemon: DaemonProcess) -> None:
    """(a+)+$ over a long record and 20 000 others: quick, and status answers meanwhile."""
    long = b"<14>" + b"a" * 60000 + b"b"
    send_as(
        daemon, ROOT, long, *(b"<14>aaaaaaaaaaaaaaaaaaaaaaaaaaaaab %d" % i for i in range(20000))
    )
    daemon.wait_records(ROOT, 20001)
    t0 = time.monotonic()
    with ControlConnection(daemon.control, timeout=30) as conn:
        conn.send("query", grep="(a+)+$")
        replies = conn.responses()
        assert next(replies)["type"] == "ok"
        s0 = time.monotonic()
        status = request_one(daemon.control, "status", timeout=5)
        status_latency = time.monotonic() - s0
        rest = list(replies)
    elapsed = time.monotonic() - t0
    assert status["type"] == "ok"
    assert status_latency < 1.0
    assert rest[-1]["type"] == "end"
    assert [x for x in rest if x["type"] == "record"] == []
    assert elapsed < 10.0


# --------------------------------------------------------------------------- filters, outputs


@pytest.fixture
def mixed(daemon: DaemonProcess) -> tuple[DaemonProcess, list[dict[str, Any]]]:
    """Records of root from two pids, all severities, some ERROR texts."""
    frames = [
        b"<%d>1 - host app%d - - - msg %d %s"
        % (8 + i % 8, i % 2, i, b"ERROR disk" if i % 5 == 0 else b"fine")
        for i in range(40)
    ]
    send_as(daemon, ROOT, *frames[:20])
    t = threading.Thread(target=send_as, args=(daemon, ROOT, *frames[20:]))
    t.start()
    t.join()
    recs = daemon.wait_records(ROOT, 40)
    return daemon, recs


def _json(d: DaemonProcess, *argv: str) -> list[dict[str, Any]]:
    r = logq_as(ROOT, 0, "-o", "json", *argv, *cfg(d))
    assert r.rc == 0, r.err
    return r.records()


SEVS = ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"]


def test_every_filter(mixed: tuple[DaemonProcess, list[dict[str, Any]]]) -> None:
    """--pid, -p, -p range, --grep (smart case), -n, --since/--until select as documented."""
    d, recs = mixed
    everything = d.records(ROOT)
    pid = recs[0]["pid"]
    assert _json(d, "--pid", str(pid)) == [r for r in everything if r["pid"] == pid]
    assert _json(d, "-p", "err") == [r for r in everything if SEVS.index(r["sev"]) <= 3]
    assert _json(d, "-p", "info..warning") == [
        r for r in everything if 4 <= SEVS.index(r["sev"]) <= 6
    ]
    errors = [r for r in everything if "ERROR" in r["msg"]]
    assert len(errors) == 8
    assert _json(d, "--grep", "error d") == errors
    assert _json(d, "--grep", "Error") == []
    assert _json(d, "--grep", "Error", "--case-sensitive=no") == errors
    assert _json(d, "--grep", r"msg \d+ ERROR") == errors
    assert _json(d, "-n", "3") == everything[-3:]
    assert _json(d, "-n", "3", "--grep", "error") == errors[-3:]
    mid = everything[20]["ts"]
    since = _epoch(mid)
    assert _json(d, "--since", f"@{since}") == [r for r in everything if r["ts"] >= mid]
    assert _json(d, "--until", f"@{since}") == [r for r in everything if r["ts"] <= mid]
    assert _json(d, "--since", "-1h", "--until", "+1h") == everything
    assert _json(d, "--since", "tomorrow") == []


def _epoch(ts: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def test_outputs(mixed: tuple[DaemonProcess, list[dict[str, Any]]]) -> None:
    """json is the stored line; short one line per record; verbose every field."""
    d, _ = mixed
    stored = (d.log_dir / str(ROOT) / "current.jsonl").read_text().splitlines()
    r = logq_as(ROOT, 0, "-o", "json", "-n", "2", *cfg(d))
    assert r.out.splitlines() == stored[-2:]
    last = orjson.loads(stored[-1])
    r = logq_as(ROOT, 0, "-n", "1", *cfg(d))
    assert r.out.endswith(f" uid={ROOT} {last['app']}[{last['pid']}]: {last['msg']}\n")
    assert len(r.out.splitlines()) == 1
    r = logq_as(ROOT, 0, "-o", "verbose", "-n", "1", *cfg(d))
    assert f"    msg={last['msg']}\n" in r.out
    assert f"    seq={last['seq']}\n" in r.out
    assert f"    host={last['host']}\n" in r.out


def test_escape_sequences_do_not_reach_the_terminal(daemon: DaemonProcess) -> None:
    """A record with ESC, CSI and bidi controls prints them escaped."""
    send_as(daemon, ROOT, "<14>\x1b]0;pwned\x07\x1b[2J\u202egnp.exe".encode())
    daemon.wait_records(ROOT, 1)
    r = logq_as(ROOT, 0, "-n", "1", *cfg(daemon))
    assert r.out.endswith("\\x1b]0;pwned\\x07\\x1b[2J\\u202egnp.exe\n")
    assert "\x1b" not in r.out


def test_pager_and_colour_on_a_terminal(daemon: DaemonProcess, tmp_path: Path) -> None:
    """On a tty, output goes through $PAGER, coloured by severity; --no-pager bypasses it."""
    send_as(daemon, ROOT, b"<11>an error")
    daemon.wait_records(ROOT, 1)
    paged = tmp_path / "paged"
    env = {**os.environ, "PAGER": f"sh -c 'cat > {paged}'", "TERM": "xterm"}
    env.pop("NO_COLOR", None)
    out = _on_pty([PYTHON, "-m", "trio_logd.cli.logq", "-n", "1", *cfg(daemon)], env)
    assert out == b""
    assert paged.read_bytes().endswith(b"\x1b[0;31man error\x1b[0m\n")
    out = _on_pty([PYTHON, "-m", "trio_logd.cli.logq", "-n", "1", "--no-pager", *cfg(daemon)], env)
    assert out.endswith(b"\x1b[0;31man error\x1b[0m\r\n")


def _on_pty(argv: list[str], env: dict[str, str]) -> bytes:
    master, slave = pty.openpty()
    with subprocess.Popen(argv, stdout=slave, stderr=subprocess.PIPE, env=env) as p:
        os.close(slave)
        chunks = []
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the other end closed
                break
            if not data:
                break
            chunks.append(data)
        os.close(master)
        _, err = p.communicate(timeout=30)
        assert p.returncode == 0, err
    return b"".join(chunks)


# --------------------------------------------------------------------------- follow


class _Lines:
    """A subprocess's stdout lines, read by a thread; wait_for polls with a deadline."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.lines: list[bytes] = []
        self._proc = proc
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for ln in self._proc.stdout:
            self.lines.append(ln)

    def wait_for(self, needle: bytes, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(needle in ln for ln in self.lines):
                return time.monotonic()
            select.select([], [], [], 0.005)
        msg = f"{needle!r} not seen within {timeout} s: {self.lines[-5:]}"
        raise AssertionError(msg)


@pytest.fixture
def follower(daemon: DaemonProcess) -> Iterator[tuple[DaemonProcess, _Lines]]:
    """`logq -f -n 1 -o json` running, its first (historic) record seen."""
    send_as(daemon, ROOT, b"<14>before follow")
    daemon.wait_records(ROOT, 1)
    with subprocess.Popen(
        [PYTHON, "-m", "trio_logd.cli.logq", "-f", "-n", "1", "-o", "json", *cfg(daemon)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    ) as proc:
        lines = _Lines(proc)
        try:
            lines.wait_for(b"before follow", 20)
            yield daemon, lines
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def test_follow_shows_a_new_record_within_a_second(follower: tuple[DaemonProcess, _Lines]) -> None:
    """A record sent after `logq -f` started appears within one second."""
    d, lines = follower
    t0 = time.monotonic()
    send_as(d, ROOT, b"<14>live record")
    seen = lines.wait_for(b"live record", 5)
    assert seen - t0 < 1.0
    assert [orjson.loads(x)["msg"] for x in lines.lines] == ["before follow", "live record"]


def test_follow_of_another_uid_is_refused(daemon: DaemonProcess) -> None:
    """-f is authorized like any query."""
    r = logq_as(BOB, BOB, "-f", "--uid", str(ALICE), *cfg(daemon))
    assert (r.rc, r.err) == (
        1,
        f"logq: permission denied: uid {BOB} may not read uid {ALICE} {MAY}\n",
    )


def test_slow_follower_is_told_what_it_missed(daemon: DaemonProcess) -> None:
    """A follower that does not read loses records beyond its buffer and gets the count."""
    with ControlConnection(daemon.control, timeout=30) as conn:
        conn.send("query", follow=True, lines=0)
        replies = conn.responses()
        assert next(replies)["type"] == "ok"
        total = 40000
        frames = [b"<14>" + b"x" * 200 + b" %d" % i for i in range(total)]
        send_as(daemon, ROOT, *frames)
        poll(lambda: _stored(daemon) >= total + 1, timeout=60)
        got = missed = 0
        conn.settimeout(2)  # the stream never ends by itself
        try:
            for reply in replies:
                if reply["type"] == "record":
                    got += 1
                elif reply["type"] == "missed":
                    missed += reply["count"]
                if got + missed >= total:
                    break
        except TimeoutError:
            pass
    assert missed > 0
    assert got + missed == total


def _stored(d: DaemonProcess) -> int:
    reply = request_one(d.control, "stats")
    return sum(u["stored"] for u in reply["uids"] if u["uid"] == ROOT)


# --------------------------------------------------------------------------- offline


def test_directory_returns_the_same_records_as_the_daemon(two_users: DaemonProcess) -> None:
    """--directory (offline) equals the online query, filter for filter."""
    d = two_users
    send_as(d, ALICE, *(b"<%d>alice more %d" % (8 + i % 8, i) for i in range(50)))
    d.wait_records(ALICE, 53)
    for argv in (
        ("--all",),
        ("--uid", str(ALICE)),
        ("--all", "-n", "7"),
        ("--all", "--grep", "more [1-3]"),
        ("--uid", str(ALICE), "-p", "warning"),
    ):
        online = logq_as(ROOT, 0, "-o", "json", *argv, *cfg(d))
        offline = logq_as(ROOT, 0, "-o", "json", "--directory", str(d.log_dir), *argv)
        assert online.rc == offline.rc == 0, (online.err, offline.err)
        assert online.out == offline.out, argv
        assert online.out


def test_directory_after_the_daemon_stopped(two_users: DaemonProcess) -> None:
    """Offline reading works with no daemon at all; -f does not."""
    assert two_users.stop() == 0
    r = logq_as(ROOT, 0, "-o", "json", "--directory", str(two_users.log_dir), "--uid", str(BOB))
    assert msgs(r) == ["bob one", "bob two", "bob three"]
    r = logq_as(ROOT, 0, "-f", "--directory", str(two_users.log_dir))
    assert r.rc == 2
    assert "cannot be used with --directory" in r.err


# --------------------------------------------------------------------------- errors


def test_no_daemon_and_bad_usage() -> None:
    """No daemon: exit 1 naming the socket; a bad time: exit 2; --verify without a store:
    exit 1 naming the directory."""
    with world() as root:
        d = DaemonProcess(root)
        r = logq_as(ROOT, 0, *cfg(d))
        assert (r.rc, r.out) == (1, "")
        assert f"cannot connect to the control socket {d.control}" in r.err
        r = logq_as(ROOT, 0, "--since", "the other day", *cfg(d))
        assert r.rc == 2
        assert "invalid time 'the other day'" in r.err
        r = logq_as(ROOT, 0, "--verify", *cfg(d))
        assert (r.rc, r.err) == (
            1,
            f"logq: cannot list {d.log_dir}: No such file or directory\n",
        )
