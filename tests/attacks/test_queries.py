"""Queries as an attack: answers left unread, costly greps, one uid's many queries.

Defined outcome (``[control]``, docs/security.md "Control plane / Queries"):
a query holds at most ``query_buffer_bytes`` of answer while its client does
not read (it is paused, its scan lets go of its files), so memory does not
grow with the store; a uid's scan steps run one at a time and a step that
ran over is followed by a pause, so another uid's ``-n 3`` and ``-f`` keep
their latency; a hang-up stops a query's work within a second; a ``--grep``
pattern whose RE2 program is too big is refused; a uid may have
``max_queries_per_uid`` queries open (root: no cap).

The attackers and bystanders are uids with no passwd entry and no process,
picked at run time.
"""

from __future__ import annotations

import os
import random
import socket
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest

from tests._daemon import DaemonProcess, first_answer, free_uids, poll
from tests.attacks._helpers import Bystander, fork_as, run_child
from tests.attacks.conftest import AttackRow, DaemonFactory
from trio_logd.control_client import ControlConnection, request_one
from trio_logd.protocol.control import decode_response, encode_request

pytestmark = pytest.mark.usefixtures("as_root")

CLK_TCK = os.sysconf("SC_CLK_TCK")
#: A stored line of a near-maximal record (max_message_bytes is 65536).
BIG_MSG = 60_000
#: The issue's figures: 16 unread queries may raise RSS by 64 MiB, and it is
#: back within 16 MiB of the start after the hang-up. A query's memory does
#: not grow with the store (that is the point), so the store is scaled down
#: (10 MiB, not 69) and the bounds are not.
UNREAD_QUERIES = 16
RSS_GROWTH_MIB = 64
RSS_RETURN_MIB = 16
#: Allowed (1 683 instructions), but RE2's DFA thrashes on text of these
#: letters: ~10 µs per byte, 0.3 s per 30 000-character record.
SLOW_GREP = "[a-z ]{1,140}[^d]{1,140}c"
SLOW_TEXT = "abefgh xyz0123"
#: The issue's pattern: 18 003 instructions, ~50 µs per byte: refused.
HUGE_GREP = ".{1,1000}.{1,1000}[cd]"


def _status_kib(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])
    raise AssertionError(f"no {key}")


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _cores(pid: int, seconds: float) -> float:
    """The daemon's CPU use over the next *seconds*, in cores."""
    c0, t0 = _cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return (_cpu_seconds(pid) - c0) / (time.monotonic() - t0)


def _queries(daemon: DaemonProcess) -> dict[str, int]:
    status: dict[str, int] = request_one(daemon.control, "status")["queries"]
    return status


def _log_as(daemon: DaemonProcess, uid: int, messages: Callable[[], list[bytes]]) -> None:
    def child() -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(daemon.socket)
        for msg in messages():
            s.sendall(b"<14>app: " + msg + b"\n")
        s.close()

    result = run_child(uid, child)
    assert result.rc == 0, result.err


class _Attacker:
    """A child of *uid* that opens queries, reports, and hangs up on command.

    Use it as a context manager: leaving it hangs up (and reaps the child)
    if the test did not, so a failing test leaves no process behind.
    """

    def __init__(self, daemon: DaemonProcess, uid: int, requests: list[dict[str, Any]]) -> None:
        self.ready_r, ready_w = os.pipe()
        go_r, self.go_w = os.pipe()
        self.done = False

        def body() -> None:
            os.close(self.ready_r)
            os.close(self.go_w)
            socks = []
            for args in requests:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(daemon.control)
                s.sendall(encode_request("query", **args))
                socks.append(s)
            firsts = []
            for s in socks:  # the first line only: then it stops reading
                s.settimeout(10)
                firsts.append(first_answer(s))
            os.write(ready_w, b"\n".join(firsts) + b"\n\n")
            os.read(go_r, 1)  # hang up when told
            for s in socks:
                s.close()

        self.pid = fork_as(uid, body)
        os.close(ready_w)
        os.close(go_r)

    def first_lines(self) -> list[dict[str, Any]]:
        """Each query's first response line (read once, as the queries are open)."""
        data = b""
        with os.fdopen(self.ready_r, "rb") as f:
            while not data.endswith(b"\n\n"):
                chunk = f.read1(65536)
                assert chunk, "attacker child ended early"
                data += chunk
        return [decode_response(line) for line in data.strip().split(b"\n")]

    def hang_up(self) -> None:
        """Tell the child to close its connections; reap it."""
        self.done = True
        os.write(self.go_w, b"x")
        os.close(self.go_w)
        _, status = os.waitpid(self.pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "attacker child failed"

    def __enter__(self) -> _Attacker:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.done:
            self.done = True
            os.close(self.go_w)  # EOF: the child hangs up and exits
            os.waitpid(self.pid, 0)


def test_unread_queries_hold_their_share_not_their_answer(
    start_daemon: DaemonFactory, attack_report: AttackRow
) -> None:
    """16 unread lines:100000 queries over near-maximal records raise RSS by at most
    64 MiB (each pauses, its scan let go), and it comes back after the hang-up."""
    attacker, bystander_uid = free_uids(2)
    daemon = start_daemon(
        store_extra="max_file_bytes = 2097152",  # rotated, zstd-compressed files too
        extra=f"[control]\nmax_queries_per_uid = {UNREAD_QUERIES}\n",
    )
    records = 170  # 10 MiB of 60 KB records
    rng = random.Random(7)
    _log_as(
        daemon,
        attacker,
        lambda: [b"%06d " % i + rng.randbytes(BIG_MSG // 2).hex().encode() for i in range(records)],
    )
    daemon.wait_records(attacker, records, timeout=60)
    by = Bystander(daemon, bystander_uid)
    by.send(20)
    by.wait_stored()
    rss_before = _status_kib(daemon.pid, "VmRSS:") / 1024

    with _Attacker(daemon, attacker, [{"lines": 100_000}] * UNREAD_QUERIES) as queries:
        assert {r["type"] for r in queries.first_lines()} == {"ok"}
        poll(lambda: _queries(daemon)["paused"] == UNREAD_QUERIES, timeout=30)
        by.send(20)  # others log meanwhile
        by.wait_stored()
        status = request_one(daemon.control, "status")  # root is answered
        growth = _status_kib(daemon.pid, "VmHWM:") / 1024 - rss_before
        queries.hang_up()
    poll(lambda: _queries(daemon)["queries"] == 0, timeout=5)
    after = _status_kib(daemon.pid, "VmRSS:") / 1024 - rss_before
    lost = by.lost()
    attack_report.report(
        f"{UNREAD_QUERIES} unread lines:100000 queries over 60 KB records",
        f"paused, scans let go; RSS +{growth:.0f} MiB peak, {after:+.0f} MiB after hang-up",
        lost,
    )
    assert status["queries"] == {
        "queries": UNREAD_QUERIES,
        "followers": 0,
        "paused": UNREAD_QUERIES,
        "query_bytes": 0,  # a paused query holds no share: only the rest of one line
    }
    assert growth <= RSS_GROWTH_MIB, f"RSS grew by {growth:.1f} MiB"
    assert after <= RSS_RETURN_MIB, f"RSS still {after:.1f} MiB above the start"
    assert lost == 0
    by.assert_intact()
    assert daemon.proc is not None
    assert daemon.proc.poll() is None


def test_costly_greps_do_not_starve_others_and_stop_at_hang_up(
    start_daemon: DaemonFactory, attack_report: AttackRow
) -> None:
    """While one uid runs 4 costly greps, another uid's -n 3 and -f answer within 1 s;
    after the hang-up the daemon stops spending CPU within 2 s; the issue's pattern is refused."""
    attacker, quiet = free_uids(2)
    daemon = start_daemon()
    rng = random.Random(3)
    _log_as(
        daemon,
        attacker,
        lambda: [
            "".join(rng.choice(SLOW_TEXT) for _ in range(30_000)).encode() for _ in range(100)
        ],
    )
    _log_as(daemon, quiet, lambda: [b"quiet %d" % i for i in range(50)])
    daemon.wait_records(attacker, 100, timeout=60)
    daemon.wait_records(quiet, 50)

    slow = {"grep": SLOW_GREP, "case_sensitive": True}
    with _Attacker(daemon, attacker, [slow] * 4 + [{"grep": HUGE_GREP}]) as greps:
        *started, refused = greps.first_lines()
        busy = _cores(daemon.pid, 1.0)
        n3 = run_child(quiet, partial(_tail, daemon))
        f = run_child(quiet, partial(_follow, daemon))
        running = _queries(daemon)["queries"]
        hung_up = time.monotonic()
        greps.hang_up()
    poll(lambda: _queries(daemon)["queries"] == 0, timeout=5)
    cancelled = time.monotonic() - hung_up
    time.sleep(max(0.0, 2.0 - (time.monotonic() - hung_up)))
    idle = _cores(daemon.pid, 1.0)
    attack_report.report(
        "4 costly greps, then a hang-up; the issue's .{1,1000}.{1,1000}[cd]",
        f"others' -n 3 {n3.value and n3.value['seconds']:.2f} s, -f "
        f"{f.value and f.value['seconds']:.2f} s; cancelled in {cancelled:.2f} s; "
        f"CPU {busy:.2f} -> {idle:.2f} cores; the huge pattern refused",
        50 - len([r for r in daemon.records(quiet) if r.get("msg", "").startswith("quiet")]),
    )
    assert [r["type"] for r in started] == ["ok"] * 4
    assert (refused["type"], refused["code"]) == ("error", "invalid")
    assert "too complex" in refused["error"]
    assert n3.rc == 0, n3.err
    assert f.rc == 0, f.err
    assert running == 4
    # still running after seconds (cheap greps end in ms), and spending CPU (the
    # host may be busy: a low bar): otherwise the test would prove nothing
    assert busy > 0.05, "the greps were not running"
    assert n3.value["msgs"] == ["quiet 47", "quiet 48", "quiet 49"]
    assert n3.value["seconds"] < 1.0
    assert f.value == {"msg": "fresh", "seconds": f.value["seconds"]}
    assert f.value["seconds"] < 1.0
    assert cancelled < 1.0
    assert idle < 0.1, f"still {idle:.2f} cores 2 s after the hang-up"


def _tail(daemon: DaemonProcess) -> dict[str, Any]:
    """(In a child.) ``-n 3`` of the caller's records and the seconds it took."""
    start = time.monotonic()
    with ControlConnection(daemon.control, timeout=10) as conn:
        conn.send("query", lines=3)
        got = [r["record"]["msg"] for r in conn.responses() if r["type"] == "record"]
    return {"msgs": got, "seconds": time.monotonic() - start}


def _follow(daemon: DaemonProcess) -> dict[str, Any]:
    """(In a child.) ``-f``, a new record, and the seconds until the stream shows it."""
    with ControlConnection(daemon.control, timeout=10) as conn:
        conn.send("query", lines=0, follow=True)
        responses = conn.responses()
        assert next(responses)["type"] == "ok"
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(daemon.socket)
        start = time.monotonic()
        s.sendall(b"<14>app: fresh\n")
        for r in responses:
            if r["type"] == "record":
                return {"msg": r["record"]["msg"], "seconds": time.monotonic() - start}
    raise AssertionError("the follow stream ended")


def test_one_uid_may_have_max_queries_per_uid_open(
    start_daemon: DaemonFactory, attack_report: AttackRow
) -> None:
    """A uid's fifth query (the default cap is 4) is refused with code "limit"; root's is not."""
    (attacker,) = free_uids(1)
    daemon = start_daemon()
    _log_as(daemon, attacker, lambda: [b"x" * 60_000 for _ in range(40)])
    daemon.wait_records(attacker, 40, timeout=30)
    with _Attacker(daemon, attacker, [{"lines": 100_000}] * 5) as held:
        answers = held.first_lines()
        with ControlConnection(daemon.control, timeout=10) as conn:
            conn.send("query", uids=[attacker], lines=1)
            root = [r["type"] for r in conn.responses()]
        held.hang_up()
    attack_report.report(
        "5 queries of one uid (cap 4)",
        'the fifth refused: {"type":"error","code":"limit"}; root still served',
        0,
    )
    assert sorted(r["type"] for r in answers) == ["error"] + ["ok"] * 4
    refused = next(r for r in answers if r["type"] == "error")
    assert refused["code"] == "limit"
    assert "max_queries_per_uid" in refused["error"]
    assert root == ["ok", "record", "end"]
