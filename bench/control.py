"""``make bench`` scenario ``control``: queries as an attack (issue 14).

``control`` measures, over ``--runs`` runs (medians printed):

* **unread queries**: uid A stores 69 MiB of 60 KB records (1 150, the
  issue's hour-less figure), then opens 16 ``{"op":"query","lines":100000}``
  and reads nothing (``max_queries_per_uid = 16`` so that all 16 run). RSS
  before, the peak (VmHWM) while all 16 are paused, and RSS once it hung up.
  Required: growth <= 64 MiB, back within 16 MiB.
* **costly greps**: uid A stores 400 records of 30 000 characters on which
  ``[a-z ]{1,140}[^d]{1,140}c`` (case-sensitive, allowed) makes RE2's DFA
  thrash, and runs 4 such greps; meanwhile uid B (50 records) times its
  ``-n 3`` (5 times) and a ``-f`` that waits for B's new record (3 times).
  Then A hangs up: the seconds until the daemon's status shows no query,
  and the daemon's CPU (cores) in the second after +2 s. Required: B's
  latencies < 1 s, CPU ~0 after 2 s.

Needs root: A and B are forked children that setuid to uids with no passwd
entry and no process.
"""

from __future__ import annotations

import os
import random
import socket
import statistics
import time
from collections.abc import Callable
from typing import Any, Final

from bench._daemon import BenchDaemon, cpu_seconds
from tests._daemon import first_answer, free_uids
from tests.attacks._helpers import fork_as
from trio_logd.control_client import ControlConnection, request_one
from trio_logd.protocol.control import encode_request

__all__ = ["control"]

UNREAD: Final = 16
BIG_RECORDS: Final = 1150
BIG_MSG: Final = 60_000
SLOW_GREP: Final = "[a-z ]{1,140}[^d]{1,140}c"
SLOW_TEXT: Final = "abefgh xyz0123"
SLOW_RECORDS: Final = 400


def _as(uid: int, fn: Callable[[int], None]) -> tuple[int, int]:
    """Fork a child of *uid* running ``fn(write_fd)``; return (pid, read end of its pipe)."""
    r, w = os.pipe()

    def body() -> None:
        os.close(r)
        fn(w)

    pid = fork_as(uid, body)
    os.close(w)
    return pid, r


def _wait(pid: int) -> None:
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        msg = f"child {pid} failed"
        raise RuntimeError(msg)


def _log(path: str, uid: int, messages: Callable[[], list[bytes]]) -> None:
    def body(_w: int) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        for m in messages():
            s.sendall(b"<14>app: " + m + b"\n")
        s.close()

    pid, r = _as(uid, body)
    os.close(r)
    _wait(pid)


def _status_kib(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])
    return 0


def _rss(pid: int) -> float:
    """The daemon's own RSS (its helper process not included), MiB."""
    return _status_kib(pid, "VmRSS:") / 1024


def _poll(pred: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            msg = f"not within {timeout} s"
            raise TimeoutError(msg)
        time.sleep(0.01)


def _open_queries(control: str, requests: list[dict[str, Any]]) -> Callable[[int], None]:
    """A child body: open the queries, read their first line, say so, wait, hang up."""

    def body(w: int) -> None:
        socks = []
        for args in requests:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(control)
            s.sendall(encode_request("query", **args))
            socks.append(s)
        for s in socks:
            first_answer(s)
        os.write(w, b"r")
        time.sleep(3600)  # until killed: the hang-up

    return body


def _queries(d: BenchDaemon) -> dict[str, int]:
    status: dict[str, int] = request_one(d.control, "status")["queries"]
    return status


def _unread_run() -> dict[str, float]:
    a = free_uids(1, start=53_000)[0]
    with BenchDaemon(
        max_file_bytes=16 << 20, extra=f"[control]\nmax_queries_per_uid = {UNREAD}\n"
    ) as d:
        rng = random.Random(1)
        _log(
            d.socket,
            a,
            lambda: [
                b"%06d " % i + rng.randbytes(BIG_MSG // 2).hex().encode()
                for i in range(BIG_RECORDS)
            ],
        )
        d.wait_stored(a, BIG_RECORDS)
        time.sleep(1)
        before = _rss(d.pid)
        peak = before
        pid, r = _as(a, _open_queries(d.control, [{"lines": 100_000}] * UNREAD))
        os.read(r, 1)
        deadline = time.monotonic() + 60
        while _queries(d)["paused"] < UNREAD:  # sampled every 10 ms: the peak
            peak = max(peak, _rss(d.pid))
            if time.monotonic() > deadline:
                msg = f"{UNREAD} queries not paused within 60 s: {_queries(d)}"
                raise TimeoutError(msg)
            time.sleep(0.01)
        peak = max(peak, _rss(d.pid))
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        os.close(r)
        _poll(lambda: _queries(d)["queries"] == 0, 10)
        after = _rss(d.pid)
    return {"rss_before_mib": before, "growth_mib": peak - before, "after_mib": after - before}


def _tail(control: str) -> float:
    start = time.monotonic()
    with ControlConnection(control, timeout=30) as conn:
        conn.send("query", lines=3)
        n = sum(1 for r in conn.responses() if r["type"] == "record")
    assert n == 3
    return time.monotonic() - start


def _follow(control: str, ingest: str) -> float:
    with ControlConnection(control, timeout=30) as conn:
        conn.send("query", lines=0, follow=True)
        responses = conn.responses()
        assert next(responses)["type"] == "ok"
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(ingest)
        start = time.monotonic()
        s.sendall(b"<14>app: fresh\n")
        for r in responses:
            if r["type"] == "record":
                return time.monotonic() - start
    msg = "follow ended"
    raise RuntimeError(msg)


def _measure_as(uid: int, fn: Callable[[], float]) -> float:
    def body(w: int) -> None:
        os.write(w, repr(fn()).encode())

    pid, r = _as(uid, body)
    with os.fdopen(r, "rb") as f:
        value = float(f.read())
    _wait(pid)
    return value


def _greps_run() -> dict[str, float]:
    a, b = free_uids(2, start=53_000)
    with BenchDaemon() as d:
        rng = random.Random(3)
        _log(
            d.socket,
            a,
            lambda: [
                "".join(rng.choice(SLOW_TEXT) for _ in range(30_000)).encode()
                for _ in range(SLOW_RECORDS)
            ],
        )
        _log(d.socket, b, lambda: [b"quiet %d" % i for i in range(50)])
        d.wait_stored(a, SLOW_RECORDS)
        d.wait_stored(b, 50)
        slow = {"grep": SLOW_GREP, "case_sensitive": True}
        pid, r = _as(a, _open_queries(d.control, [slow] * 4))
        os.read(r, 1)
        c0, t0 = cpu_seconds(d.pid), time.monotonic()
        tails = [_measure_as(b, lambda: _tail(d.control)) for _ in range(5)]
        follows = [_measure_as(b, lambda: _follow(d.control, d.socket)) for _ in range(3)]
        busy = (cpu_seconds(d.pid) - c0) / (time.monotonic() - t0)
        running = _queries(d)["queries"]
        hung_up = time.monotonic()
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        os.close(r)
        _poll(lambda: _queries(d)["queries"] == 0, 30)
        cancelled = time.monotonic() - hung_up
        time.sleep(max(0.0, 2.0 - (time.monotonic() - hung_up)))
        c0, t0 = cpu_seconds(d.pid), time.monotonic()
        time.sleep(1.0)
        idle = (cpu_seconds(d.pid) - c0) / (time.monotonic() - t0)
    if running != 4:
        msg = f"{running} greps running, expected 4"
        raise RuntimeError(msg)
    return {
        "quiet_n3_s": statistics.median(tails),
        "quiet_n3_max_s": max(tails),
        "quiet_follow_s": statistics.median(follows),
        "quiet_follow_max_s": max(follows),
        "cpu_during_cores": busy,
        "cancelled_s": cancelled,
        "cpu_after_2s_cores": idle,
    }


def control(runs: int = 3) -> dict[str, Any]:
    """The figures above, medians over *runs* runs."""
    unread = [_unread_run() for _ in range(runs)]
    greps = [_greps_run() for _ in range(runs)]
    out: dict[str, Any] = {"runs": runs}
    for rows in (unread, greps):
        for key in rows[0]:
            out[key] = statistics.median(r[key] for r in rows)
    print(f"control: {UNREAD} unread lines:100000 queries over {BIG_RECORDS} records of 60 KB")
    print(f"  RSS before                     {out['rss_before_mib']:.1f} MiB")
    print(f"  growth (peak)                  {out['growth_mib']:.1f} MiB   required <= 64")
    print(f"  after hang-up                  {out['after_mib']:+.1f} MiB   required <= 16")
    print(f"control: 4 costly greps of uid A ({SLOW_RECORDS} records of 30 000 chars)")
    print(
        f"  uid B -n 3                     {out['quiet_n3_s']:.3f} s "
        f"(max {out['quiet_n3_max_s']:.3f})"
    )
    print(
        f"  uid B -f, new record           {out['quiet_follow_s']:.3f} s "
        f"(max {out['quiet_follow_max_s']:.3f})"
    )
    print(f"  daemon CPU during              {out['cpu_during_cores']:.2f} cores")
    print(f"  cancelled after hang-up        {out['cancelled_s']:.3f} s")
    print(f"  daemon CPU 2-3 s after         {out['cpu_after_2s_cores']:.2f} cores")
    return out


SCENARIOS = {"control": control}
