"""End to end: the control socket as pid file, status, peer, signals, restarts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from tests._daemon import DaemonProcess, poll, world

ROOT = os.geteuid()


def _run(d: DaemonProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(d.command(*args), capture_output=True, text=True, timeout=30)


def test_status_reports_the_pid_from_so_peercred(daemon: DaemonProcess) -> None:
    """`trio-logd status` says running, with the daemon's pid and its sockets."""
    out = _run(daemon, "status")
    assert out.returncode == 0, out.stderr
    assert f"trio-logd is running (pid {daemon.pid}" in out.stdout
    assert daemon.socket in out.stdout
    js = json.loads(_run(daemon, "status", "--json").stdout)
    assert (js["running"], js["pid"], js["sockets"]["socket"]) == (True, daemon.pid, daemon.socket)


def test_status_when_not_running_exits_3() -> None:
    """`status` with nothing listening says so and exits 3."""
    with world() as root:
        d = DaemonProcess(root)
        out = _run(d, "status")
        assert out.returncode == 3
        assert "not running" in out.stdout


def test_peer_names_whoever_serves_a_socket(daemon: DaemonProcess) -> None:
    """`trio-logd peer SOCKET` prints the daemon's pid/uid/gid for either socket."""
    for path in (daemon.socket, daemon.control):
        out = subprocess.run(
            [sys.executable, "-m", "trio_logd", "peer", path, "--json"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout) == {"pid": daemon.pid, "uid": ROOT, "gid": os.getegid()}


def test_peer_on_a_dead_socket_fails_clearly() -> None:
    """`peer` on a path nobody serves exits 1 with the reason."""
    with world() as root:
        out = subprocess.run(
            [sys.executable, "-m", "trio_logd", "peer", str(root / "nope.sock")],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert out.returncode == 1
        assert "nope.sock" in out.stderr


def test_second_instance_is_refused_naming_the_pid(daemon: DaemonProcess) -> None:
    """A second daemon on the same control socket exits non-zero: already running (pid N)."""
    out = subprocess.run(
        [sys.executable, "-m", "trio_logd", "serve", "--config", str(daemon.config)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert out.returncode != 0
    assert f"already running (pid {daemon.pid})" in out.stderr
    assert _run(daemon, "status").returncode == 0  # the first one is untouched


def test_kill9_leaves_a_stale_socket_that_is_replaced_and_seq_continues() -> None:
    """After kill -9 the stale control socket is replaced on start and seq goes on."""
    with world() as root:
        d = DaemonProcess(root).start()
        s = d.connect()
        s.sendall(b"<13>before crash\n")
        s.close()
        before = d.wait_records(ROOT, 1)
        d.kill9()
        assert os.path.exists(d.control)
        assert _run(d, "status").returncode == 3
        d.start()
        s = d.connect()
        s.sendall(b"<13>after restart\n")
        s.close()
        recs = d.wait_records(ROOT, 2)
        assert [r["msg"] for r in recs] == ["before crash", "after restart"]
        seqs = [r["seq"] for r in d.records(ROOT)]
        assert seqs == sorted(set(seqs))  # strictly increasing, no reuse
        assert recs[1]["seq"] > before[0]["seq"]
        assert d.stop() == 0


def test_sigterm_stores_everything_received_and_exits_0() -> None:
    """Records already sent when SIGTERM arrives are stored; exit status 0; sockets removed."""
    with world() as root:
        d = DaemonProcess(root).start()
        s = d.connect()
        n = 2000
        s.sendall(b"".join(b"<13>msg %d\n" % i for i in range(n)))
        assert d.stop(signal.SIGTERM) == 0
        s.close()
        msgs = [r["msg"] for r in d.records(ROOT) if "event" not in r]
        assert msgs == [f"msg {i}" for i in range(n)]
        assert not os.path.exists(d.control)
        assert not os.path.exists(d.socket)


def test_sigint_also_stops_cleanly() -> None:
    """SIGINT is a clean shutdown too."""
    with world() as root:
        d = DaemonProcess(root).start()
        assert d.stop(signal.SIGINT) == 0


def test_started_record_is_filed_under_the_daemon_uid(daemon: DaemonProcess) -> None:
    """The daemon files a `started` record under its own uid with its pid."""
    (rec,) = daemon.wait_records(ROOT, 1, where=lambda r: r.get("event") == "started")
    assert (rec["uid"], rec["pid"], rec["app"]) == (ROOT, daemon.pid, "trio-logd")


def test_send_command_delivers(daemon: DaemonProcess) -> None:
    """`trio-logd send -p local0.err -t mytag MSG` lands as a record."""
    out = _run(daemon, "send", "-p", "local0.err", "-t", "mytag", "hello", "there")
    assert out.returncode == 0, out.stderr
    (rec,) = daemon.wait_records(ROOT, 1)
    assert (rec["fac"], rec["sev"], rec["app"], rec["msg"]) == (
        "local0",
        "err",
        "mytag",
        "hello there",
    )


def test_ingest_socket_is_world_writable(daemon: DaemonProcess) -> None:
    """The ingest socket is mode 0666 by default; the log dir is private."""
    assert os.stat(daemon.socket).st_mode & 0o777 == 0o666
    assert os.stat(daemon.log_dir).st_mode & 0o777 == 0o700


def test_connection_idle_clients_do_not_block_shutdown() -> None:
    """Idle open connections do not keep the daemon from stopping promptly."""
    with world() as root:
        d = DaemonProcess(root).start()
        conns = [d.connect() for _ in range(20)]
        poll(lambda: json.loads(_run(d, "status", "--json").stdout)["connections"] == 20)
        assert d.stop(timeout=15) == 0
        for c in conns:
            c.close()
