"""End to end: one daemon owns a store, and a second signal never cuts its shutdown short."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import orjson
import pytest

from tests._daemon import PYTHON, DaemonProcess, poll, world
from trio_logd.control_client import request_one
from trio_logd.server._helper import SYNC_DEADLINE
from trio_logd.store._owner import LOCK_NAME
from trio_logd.store.verify import verify_store

ROOT = os.geteuid()


def _send(d: DaemonProcess, n: int, tag: str) -> None:
    with contextlib.closing(d.connect()) as s:
        s.sendall(b"".join(b"<13>%s %d\n" % (tag.encode(), i) for i in range(n)))


def _files(log_dir: Path) -> dict[str, int]:
    """The uid's files and the sizes of its record files (its own chain grows once a pass)."""
    d = log_dir / str(ROOT)
    return {p.name: p.stat().st_size if ".jsonl" in p.name else 0 for p in d.iterdir()}


def test_a_second_daemon_on_the_same_log_dir_exits_naming_the_first() -> None:
    """A second daemon with other sockets whose log_dir reaches the first's store (here
    through a symlinked parent) exits 1 with "log_dir ... is in use by pid N", writes
    nothing, leaves the first serving; logq --directory reads the store beside it."""
    with world() as root, world() as other:
        first = DaemonProcess(root).start()
        try:
            _send(first, 100, "first")
            first.wait_records(ROOT, 100)
            before = _files(first.log_dir)
            (other / "alias").symlink_to(root / "var")
            second = DaemonProcess(other)
            text = second.config.read_text()
            second.config.write_text(
                text.replace(f'log_dir = "{other}/var/log"', f'log_dir = "{other}/alias/log"')
            )
            second.start(wait=False)
            assert second.proc is not None
            assert second.proc.wait(timeout=30) == 1
            err = second.stderr()
            assert f"log_dir {other}/alias/log is in use by pid {first.pid}" in err, err
            assert not os.path.exists(second.socket)
            assert not os.path.exists(second.control)
            assert _files(first.log_dir) == before
            assert (first.log_dir / LOCK_NAME).read_text().strip() == str(first.pid)
            _send(first, 100, "after")
            recs = first.wait_records(ROOT, 200)
            assert [r["seq"] for r in first.records(ROOT)] == list(
                range(1, len(first.records(ROOT)) + 1)
            )
            assert len(recs) == 200
            out = subprocess.run(
                [PYTHON, "-m", "trio_logd.cli.logq", "--directory", str(first.log_dir),
                 "--uid", str(ROOT), "-o", "json", "-n", "500"],
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            assert out.returncode == 0, out.stderr
            got = [orjson.loads(x) for x in out.stdout.splitlines()]
            assert len([r for r in got if "event" not in r]) == 200
        finally:
            assert first.stop() == 0
        assert verify_store(first.log_dir).problems == []


@pytest.mark.parametrize("gap", [0.0, 0.05, 0.2])
def test_a_second_sigterm_during_shutdown_does_not_abort_it(gap: float) -> None:
    """SIGTERM twice (as GNU timeout does; *gap* seconds apart) while the daemon drains a
    backlog: exit 0, every record sent before is stored, "stopped" logged, sockets gone."""
    n = 20_000
    with world() as root:
        d = DaemonProcess(root).start()
        assert d.proc is not None
        _send(d, n, "msg")
        d.proc.send_signal(signal.SIGTERM)
        time.sleep(gap)  # the second signal's delay (what is tested), not a synchronisation
        d.proc.send_signal(signal.SIGTERM)
        assert d.proc.wait(timeout=60) == 0, d.stderr()
        msgs = [r["msg"] for r in d.records(ROOT) if "event" not in r]
        assert len(msgs) == n
        assert msgs == [f"msg {i}" for i in range(n)]
        assert "stopped" in d.stderr()
        assert "shutdown_forced" not in d.stderr()
        assert not os.path.exists(d.socket)
        assert not os.path.exists(d.control)
        assert verify_store(d.log_dir).problems == []


def test_a_third_signal_forces_the_exit_and_the_next_start_recovers() -> None:
    """While a shutdown waits (its helper stopped), a third SIGTERM ends the daemon at once
    (exit 1, "shutdown_forced"); the next start recovers the store: every record kept."""
    with world() as root:
        d = DaemonProcess(root).start()
        assert d.proc is not None
        _send(d, 1000, "msg")
        d.wait_records(ROOT, 1000)
        helper = request_one(d.control, "status", timeout=10)["helper"]["pid"]
        os.kill(helper, signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            # one at a time: signals that arrive together are delivered as one
            d.proc.send_signal(signal.SIGTERM)
            poll(lambda: '"stopping"' in d.stderr())
            d.proc.send_signal(signal.SIGTERM)
            poll(lambda: "shutdown_in_progress" in d.stderr())
            d.proc.send_signal(signal.SIGTERM)
            assert d.proc.wait(timeout=30) == 1
            assert time.monotonic() - t0 < SYNC_DEADLINE
            assert "shutdown_forced" in d.stderr()
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(helper, signal.SIGKILL)
        d.start()
        msgs = [r["msg"] for r in d.records(ROOT) if "event" not in r]
        assert msgs == [f"msg {i}" for i in range(1000)]
        assert d.stop() == 0
        assert verify_store(d.log_dir).problems == []
