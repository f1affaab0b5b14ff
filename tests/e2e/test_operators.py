"""End to end: stats, metrics and top against a real daemon and real senders."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import pwd
import re
import select
import signal
import struct
import subprocess
import termios
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests._daemon import PYTHON, DaemonProcess, poll, run_as, world
from tests._uids import free_uids
from trio_logd.control_client import request_one

ROOT = os.geteuid()
#: Two uids without a passwd entry (found free on this host), and one with.
ONE, TWO = free_uids(2)
NAMED = min((e for e in pwd.getpwall() if e.pw_uid != 0), key=lambda e: e.pw_uid, default=None)

QUOTAS = f"""
[limits.uid.{TWO}]
quota_bytes = "3MiB"

[limits.user.{NAMED.pw_name if NAMED else "nobody-here"}]
quota_bytes = "5MiB"
"""


def _run(d: DaemonProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(d.command(*args), capture_output=True, text=True, timeout=30)


def _stats(d: DaemonProcess) -> dict[str, Any]:
    out = _run(d, "stats", "--json")
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def _by_uid(stats: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {item["uid"]: item for item in stats["uids"]}


def _sender(d: DaemonProcess, frames: list[bytes], conns: int = 1) -> None:
    """Send *frames* over *conns* connections (round-robin), then close them."""
    socks = [d.connect() for _ in range(conns)]
    for i, frame in enumerate(frames):
        socks[i % conns].sendall(frame)
    for s in socks:
        s.close()


def _disk(d: DaemonProcess, uid: int) -> int:
    return sum(p.stat().st_size for p in (d.log_dir / str(uid)).iterdir() if p.is_file())


def _disk_agrees(d: DaemonProcess, uid: int) -> bool:
    return bool(_by_uid(_stats(d))[uid]["disk_bytes"] == _disk(d, uid))


@pytest.mark.usefixtures("as_root")
def test_stats_counts_exactly_what_each_uid_sent() -> None:
    """Several uids send known frames: stats --json reports their records and bytes exactly."""
    if NAMED is None:
        pytest.skip("no user besides root in the passwd database")
    named = NAMED.pw_uid
    plan = {
        named: [b"<13>named says %d\n" % i for i in range(7)],
        ONE: [b"<14>one-%d\n" % i for i in range(120)],
        TWO: [b"x" * 500 + b"\n" for _ in range(33)],
    }
    with world() as root, DaemonProcess(root, extra=QUOTAS) as d:
        for uid, frames in plan.items():
            run_as(uid, uid, functools.partial(_sender, d, frames, conns=3))

        def settled() -> dict[int, dict[str, Any]] | None:
            items = _by_uid(_stats(d))
            done = all(
                uid in items
                and items[uid]["stored"] == len(frames)
                and items[uid]["connections"] == 0
                for uid, frames in plan.items()
            )
            return items if done else None

        items = poll(settled)
        for uid, frames in plan.items():
            got = items[uid]
            # the payload is each frame without its LF delimiter
            assert (got["records"], got["bytes"]) == (len(frames), sum(len(f) - 1 for f in frames))
            assert got["dropped"] == {}
            assert got["last_drop"] is None
            # the hash chain's block is written once a second: compare once it is
            poll(functools.partial(_disk_agrees, d, uid))
        assert items[named]["user"] == NAMED.pw_name
        assert items[ONE]["user"] is None
        assert {uid: items[uid]["quota_bytes"] for uid in plan} == {
            named: 5 << 20,  # [limits.user.NAME]
            ONE: 128 << 20,  # the embedded default
            TWO: 3 << 20,  # [limits.uid.TWO]
        }
        # daemon records (the `started` record of the daemon's uid) are not counted
        assert items[ROOT]["records"] == 0
        assert items[ROOT]["stored"] >= 1
        totals = _stats(d)["daemon"]
        assert totals["records"] == sum(len(f) for f in plan.values())
        assert totals["connections"] == 0


@pytest.mark.usefixtures("as_root")
def test_stats_of_others_only_for_readers() -> None:
    """A uid outside [access] readers/admins sees its own row only; root sees every uid."""
    with world() as root, DaemonProcess(root) as d:
        run_as(ONE, ONE, lambda: _sender(d, [b"<13>mine\n"]))
        run_as(TWO, TWO, lambda: _sender(d, [b"<13>theirs\n"]))
        poll(lambda: {ONE, TWO} <= set(_by_uid(_stats(d))))

        def as_one() -> None:
            reply = request_one(d.control, "stats")
            assert [item["uid"] for item in reply["uids"]] == [ONE]
            assert reply["daemon"]["records"] == 2  # totals still cover everyone
            text = request_one(d.control, "metrics")["text"]
            assert f'uid="{TWO}"' not in text
            assert f'trio_logd_records_total{{uid="{ONE}"}} 1' in text

        run_as(ONE, ONE, as_one)
        assert {ONE, TWO} <= set(_by_uid(_stats(d)))


def test_stats_table_and_metrics_agree(daemon: DaemonProcess) -> None:
    """`stats` prints a table with the uid's row; `metrics` parses and carries the same counts."""
    _sender(daemon, [b"<13>m%d\n" % i for i in range(25)])
    poll(lambda: _by_uid(_stats(daemon)).get(ROOT, {}).get("records") == 25)
    table = _run(daemon, "stats")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].startswith(f"trio-logd 0.1.0 pid {daemon.pid}, up ")
    assert lines[2].split()[:3] == ["UID", "USER", "CONN"]
    row = lines[3].split()
    assert row[0] == str(ROOT)
    assert row[5] == "25"  # RECORDS

    before = _by_uid(_stats(daemon))[ROOT]
    out = _run(daemon, "metrics")
    assert out.returncode == 0, out.stderr
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(out.stdout)
        for s in family.samples
    }
    uid = (("uid", str(ROOT)),)
    stats = _by_uid(_stats(daemon))[ROOT]
    assert values[("trio_logd_records_total", uid)] == 25
    assert values[("trio_logd_bytes_total", uid)] == stats["bytes"]
    # the hash chain's block is written once a second: disk use may grow meanwhile
    assert before["disk_bytes"] <= values[("trio_logd_disk_bytes", uid)] <= stats["disk_bytes"]
    assert values[("trio_logd_quota_bytes", uid)] == stats["quota_bytes"]
    assert values[("trio_logd_connections", uid)] == 0
    assert values[("trio_logd_dropped_records_total", (("reason", "rate"), *uid))] == 0
    assert values[("trio_logd_store_errors_total", ())] == 0
    assert values[("trio_logd_uptime_seconds", ())] > 0


def test_metrics_endpoint_and_textfile() -> None:
    """[metrics] listen serves GET /metrics on loopback; the textfile is kept up to date."""
    with world() as root:
        textfile = root / "textfile" / "trio_logd.prom"
        textfile.parent.mkdir()
        extra = f'[metrics]\nlisten = "127.0.0.1:0"\ntextfile = "{textfile}"\ninterval = 1\n'
        with DaemonProcess(root, extra=extra) as d:
            status = json.loads(_run(d, "status", "--json").stdout)
            assert status["metrics"]["textfile"] == str(textfile)
            host, port = status["metrics"]["listen"].rsplit(":", 1)
            assert host == "127.0.0.1"
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
                assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
                names = {f.name for f in text_string_to_metric_families(resp.read().decode())}
            assert "trio_logd_uptime_seconds" in names
            assert "trio_logd_uptime_seconds" in textfile.read_text()  # written before READY

            _sender(d, [b"<13>counted\n"] * 3)
            line = f'trio_logd_records_total{{uid="{ROOT}"}} 3'
            poll(lambda: line in textfile.read_text(), timeout=10)
            assert sorted(p.name for p in textfile.parent.iterdir()) == ["trio_logd.prom"]


def _screen_text(raw: bytes) -> str:
    """Terminal output with escape sequences replaced by spaces."""
    text = raw.decode("utf-8", "replace")
    return re.sub(r"\x1b(\[[0-9;?]*[A-Za-z]|[()][0-9A-Za-z]|[=>78])", " ", text)


@contextlib.contextmanager
def _top_on_pty(
    daemon: DaemonProcess, columns: int, interval: str, *, ctrl_c: bool = False
) -> Iterator[tuple[int, int]]:
    """`trio-logd top` on a pseudo-terminal of 30 x *columns*; yields the master fd and its pid.

    The size comes from the terminal only (no LINES/COLUMNS), as for a user, so a
    resize reaches it. On leaving, `q` must end it with exit 0 (with *ctrl_c*: SIGINT,
    exit 130).
    """
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("LINES", "COLUMNS")}
    proc = subprocess.Popen(
        [PYTHON, "-m", "trio_logd", "top", "-d", interval, "--config", str(daemon.config)],
        stdin=slave, stdout=slave, stderr=slave, env={**env, "TERM": "xterm"},
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as in a terminal
    )  # fmt: skip
    os.close(slave)
    try:
        yield master, proc.pid
        if ctrl_c:
            proc.send_signal(signal.SIGINT)
        else:
            os.write(master, b"q")
        assert proc.wait(timeout=10) == (130 if ctrl_c else 0)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


def _read_until(master: int, pattern: re.Pattern[str]) -> str:
    """Read the terminal until *pattern* is on it (escape sequences as spaces)."""
    seen = b""
    deadline = time.monotonic() + 20
    while not pattern.search(_screen_text(seen)):
        assert time.monotonic() < deadline, f"not on screen: {_screen_text(seen)!r}"
        ready, _, _ = select.select([master], [], [], 1)
        if ready:
            seen += os.read(master, 65536)
    return _screen_text(seen)


def test_top_renders_in_a_terminal_and_quits_on_q(daemon: DaemonProcess) -> None:
    """`top` in a pseudo-terminal shows the header and a row for the uid; q exits 0,
    Ctrl-C 130."""
    _sender(daemon, [b"<13>hello top\n"] * 4)
    poll(lambda: _by_uid(_stats(daemon)).get(ROOT, {}).get("records") == 4)
    # curses moves the cursor rather than writing newlines: look for the cells in order
    row = re.compile(rf"USER.*(?<![\d.]){ROOT}\s+root\s+0\s+\S+\s+\S+\s+4\s+52B\s", re.S)
    with _top_on_pty(daemon, 160, "0.2") as (master, _):
        screen = _read_until(master, row)
    assert "trio-logd 0.1.0 pid" in screen
    with _top_on_pty(daemon, 160, "0.2", ctrl_c=True) as (master, _):  # Ctrl-C: 130
        _read_until(master, row)


def test_top_fits_the_terminal_and_follows_a_resize(daemon: DaemonProcess) -> None:
    """`top` at 160 columns shows every column; resized to 80 (SIGWINCH) it redraws at the
    new width (at once, or at the latest with the next frame): without 1MIN and RECORDS,
    but with USE, DROPS and LAST DROP."""
    _sender(daemon, [b"<13>hello top\n"] * 2)
    poll(lambda: _by_uid(_stats(daemon)).get(ROOT, {}).get("records") == 2)
    with _top_on_pty(daemon, 160, "1") as (master, pid):
        # the whole first frame, down to the row's last cell (USE, DROPS, LAST DROP)
        _read_until(master, re.compile(r"REC/S\s+1MIN\s+RECORDS\s+BYTES.*%\s+-\s+-", re.S))
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 80, 0, 0))
        os.kill(pid, signal.SIGWINCH)  # what the terminal's resize sends
        _read_until(master, re.compile(r"REC/S\s+BYTES\s+DISK/QUOTA\s+USE\s+DROPS\s+LAST DROP"))


def test_top_refuses_without_a_terminal(daemon: DaemonProcess) -> None:
    """`top` with output to a pipe says to use `stats` and exits 2."""
    out = _run(daemon, "top")
    assert out.returncode == 2
    assert "use `trio-logd stats` in scripts" in out.stderr


def test_stats_when_not_running_fails_clearly() -> None:
    """`stats` with no daemon exits 1 and names the control socket."""
    with world() as root:
        d = DaemonProcess(root)
        for cmd in ("stats", "metrics"):
            out = _run(d, cmd)
            assert out.returncode == 1
            assert f"cannot connect to the control socket {d.control}" in out.stderr
            assert "Traceback" not in out.stderr
