"""The control socket under attack: connection floods, descriptor exhaustion, the wrong socket.

Defined outcomes: a uid holds at most ``[control] max_connections_per_uid``
control connections; each further one gets one JSON ``error`` line naming
the limit and is closed, never left hanging; a silent one is closed after
``first_byte_timeout``. Connections numbered in the daemon's last
descriptors (``_fdlimit.FdReserve``) are refused for ordinary uids, so
however many a uid opens, the daemon keeps descriptors for the store and for
root: it stays up, root's ``trio-logd status`` answers, and other uids'
records are all stored. A control client pointed at the ingest socket waits
for a greeting that never comes, sends nothing there, and says so.

The attackers are uids with no passwd entry and no process (``free_uids``),
so that nothing else on the host counts against their caps.
"""

from __future__ import annotations

import os
import resource
import select
import socket
import subprocess
import time
from typing import Any

import orjson
import pytest

from tests._daemon import PYTHON, DaemonProcess
from tests.attacks._helpers import Bystander, fork_as, free_uids
from tests.attacks.conftest import AttackRow, DaemonFactory
from trio_logd.control_client import request_one
from trio_logd.protocol.control import GREETING

pytestmark = pytest.mark.usefixtures("as_root")

#: the daemon's descriptor limit (soft = hard): reached by one uid in seconds
DAEMON_NOFILE = 256
#: ingest connections the attacker tries to hold (its per-uid cap is higher)
INGEST_FLOOD = 320
#: seconds the attacker keeps reopening control connections
CHURN_SECONDS = 3.0
CONTROL = """\
[control]
max_connections = 64
max_connections_per_uid = 4
connection_headroom = 8
first_byte_timeout = "1s"
request_timeout = "3s"
"""


def _low_nofile() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (DAEMON_NOFILE, DAEMON_NOFILE))


def _first_line(s: socket.socket, timeout: float) -> bytes | None:
    """The first line the daemon sends; ``None`` if none comes within *timeout* (a hang)."""
    s.settimeout(timeout)
    data = b""
    try:
        while b"\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                return data
            data += chunk
    except TimeoutError:
        return None
    except ConnectionResetError:
        return data
    return data.split(b"\n", 1)[0] + b"\n"


def _control_attack(path: str, ingest: str, report_fd: int, go_fd: int) -> None:
    """The attacker: over its control cap, a flood of ingest connections, then churn."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    out: dict[str, Any] = {"greeted": 0, "refusals": [], "hangs": 0, "other": []}

    def control_once(held: list[socket.socket]) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        try:
            s.connect(path)
        except OSError as exc:
            out["other"].append(f"connect: {exc!r}")
            s.close()
            return
        line = _first_line(s, 5.0)
        if line is None:
            out["hangs"] += 1
            s.close()
        elif line == GREETING:
            out["greeted"] += 1
            held.append(s)  # idle: the daemon closes it after first_byte_timeout
        else:
            try:
                out["refusals"].append(orjson.loads(line))
            except orjson.JSONDecodeError:
                out["other"].append(repr(line))
            s.close()

    held: list[socket.socket] = []
    for _ in range(12):  # 3x the per-uid cap, before anything else
        control_once(held)
    flood = []
    for _ in range(INGEST_FLOOD):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(ingest)
        except OSError:
            s.close()
            continue
        flood.append(s)
    os.write(report_fd, b"flooding\n")
    os.read(go_fd, 1)  # the parent measures while we churn
    end = time.monotonic() + CHURN_SECONDS
    while time.monotonic() < end:
        control_once(held)
        if len(held) > 8:  # keep reopening: drop the oldest idle ones
            for s in held[:4]:
                s.close()
            del held[:4]
    held_ingest = 0
    for s in flood:  # the daemon closed the refused ones (EOF), kept the rest
        s.setblocking(False)
        try:
            if s.recv(1) == b"":
                continue
        except BlockingIOError:
            held_ingest += 1
        except OSError:
            continue
    out["held_ingest"] = held_ingest
    os.write(report_fd, orjson.dumps(out) + b"\n")
    for s in held + flood:
        s.close()


def _timed_status(daemon: DaemonProcess) -> float:
    start = time.monotonic()
    reply = request_one(daemon.control, "status", timeout=10)
    assert reply["type"] == "ok", reply
    return time.monotonic() - start


def test_control_flood_and_fd_exhaustion(
    start_daemon: DaemonFactory, attack_report: AttackRow
) -> None:
    """A uid far over its control cap, churning idle connections and flooding ingest toward
    EMFILE: refused with JSON, root's status answers, another uid loses nothing."""
    attacker, bystander_uid = free_uids(2)
    daemon = start_daemon(
        limits_extra="max_connections = 2000",
        extra=CONTROL,
        preexec_fn=_low_nofile,
    )
    by = Bystander(daemon, bystander_uid)
    by.send(20)
    by.wait_stored()
    report_r, report_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = fork_as(attacker, lambda: _control_attack(daemon.control, daemon.socket, report_w, go_r))
    os.close(report_w)
    os.close(go_r)
    reports = os.fdopen(report_r, "rb")
    ready, _, _ = select.select([reports], [], [], 60)
    assert ready, "the attacker did not start"
    assert reports.readline() == b"flooding\n"
    os.write(go_w, b"g")
    latencies = []
    deadline = time.monotonic() + CHURN_SECONDS
    while time.monotonic() < deadline:
        latencies.append(_timed_status(daemon))
        by.send(10)
        time.sleep(0.1)
    ready, _, _ = select.select([reports], [], [], 60)
    assert ready, "the attacker did not finish"
    seen = orjson.loads(reports.readline())
    reports.close()
    os.close(go_w)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "attacker child failed"
    by.send(10)
    lost = by.lost()
    stats = request_one(daemon.control, "stats", timeout=10)
    limits = sorted({r.get("limit") for r in seen["refusals"]})
    attack_report.report(
        "one uid over its control cap, churning, flooding ingest toward EMFILE",
        f"{len(seen['refusals'])} refused with JSON ({', '.join(limits)}), 0 hangs; "
        f"ingest held {seen['held_ingest']} of {INGEST_FLOOD}; root's status "
        f"<= {max(latencies):.2f} s",
        lost,
    )
    assert daemon.proc is not None
    assert daemon.proc.poll() is None, daemon.stderr()
    assert (seen["hangs"], seen["other"]) == (0, [])
    assert seen["refusals"], seen
    assert {r["type"] for r in seen["refusals"]} == {"error"}
    assert {r["code"] for r in seen["refusals"]} == {"too_many_connections"}
    assert "max_connections_per_uid" in limits
    assert set(limits) <= {"max_connections_per_uid", "max_connections", "fd_reserve"}
    assert seen["held_ingest"] < INGEST_FLOOD  # the reserve, not the per-uid cap, stopped it
    assert latencies
    assert max(latencies) < 3.0, latencies
    assert lost == 0
    by.assert_intact()
    assert stats["fds"]["limit"] == DAEMON_NOFILE
    assert stats["fds"]["refused"].get("ingest", 0) > 0, stats["fds"]
    assert stats["control"]["refused"].get("max_connections_per_uid", 0) > 0, stats["control"]
    metrics = request_one(daemon.control, "metrics", timeout=10)
    assert "trio_logd_fd_reserve_refused_connections_total" in str(metrics)


def _client_outputs(daemon: DaemonProcess) -> list[subprocess.CompletedProcess[bytes]]:
    """Every control client pointed at the ingest socket, all at once."""
    ingest = daemon.socket
    cfg = ["--config", str(daemon.config)]
    commands = [
        [PYTHON, "-m", "trio_logd.cli.logq", "--no-pager", "--socket", ingest, *cfg],
        [PYTHON, "-m", "trio_logd", "status", "--control-socket", ingest, *cfg],
        [PYTHON, "-m", "trio_logd", "stats", "--control-socket", ingest, *cfg],
        [PYTHON, "-m", "trio_logd", "reload", "--control-socket", ingest, "--timeout", "1", *cfg],
    ]
    procs = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for argv in commands
    ]
    out = []
    for argv, p in zip(commands, procs, strict=True):
        stdout, stderr = p.communicate(timeout=30)
        out.append(subprocess.CompletedProcess(argv, p.returncode, stdout, stderr))
    return out


def test_control_client_on_the_ingest_socket(
    daemon: DaemonProcess, attack_report: AttackRow
) -> None:
    """logq and trio-logd status/stats/reload on the ingest socket fail within their
    timeout with one clear line; the daemon files nothing from them."""
    start = time.monotonic()
    results = _client_outputs(daemon)
    took = time.monotonic() - start
    # the clients have exited: whatever they had sent would be filed by now
    filed = [r for r in daemon.records(0) if r.get("event") in (None, "protocol_error")]
    attack_report.report(
        "logq / trio-logd status, stats, reload --socket <the ingest socket>",
        f"each exits 1 within {took:.1f} s: not a trio-logd control socket; nothing filed",
        0,
    )
    for r in results:
        err = r.stderr.decode()
        assert r.returncode == 1, (r.args, err)
        assert r.stdout == b"", (r.args, r.stdout)
        assert "Traceback" not in err, err
        assert err.count("\n") == 1, err
        assert f"{daemon.socket} is not a trio-logd control socket (no greeting within" in err
    assert took < 15.0
    assert filed == []  # no record, no protocol_error
    stats = request_one(daemon.control, "stats", timeout=10)
    assert all(u["records"] == 0 for u in stats["uids"]), stats["uids"]
