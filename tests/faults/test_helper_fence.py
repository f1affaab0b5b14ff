"""End to end: the store's helper is fenced: an old helper never races a new one, a hung
one never holds up acks or shutdown for longer than its deadline."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from collections.abc import Iterator

from tests._daemon import DaemonProcess, alive, poll, world
from trio_logd.client import LogdClient
from trio_logd.control_client import request_one
from trio_logd.server._helper import RESTART_DELAY, SYNC_DEADLINE
from trio_logd.store._compress import BUSY
from trio_logd.store.verify import verify_store

ROOT = os.geteuid()
SENT = re.compile(r"r(\d+) ")
#: big gzip files: compressing one takes long enough to catch a helper at it
BIG_FILES = 'max_file_bytes = 4194304\ncompress = "gzip"'


def _helper_pid(d: DaemonProcess) -> int:
    pid = request_one(d.control, "status", timeout=10)["helper"]["pid"]
    assert isinstance(pid, int)
    return pid


def _send_acked(d: DaemonProcess, first: int, n: int) -> None:
    """Send records first..first+n-1 (msg ``r<i> <padding>``); every one must be acked."""
    pad = os.urandom(200).hex()
    with LogdClient(d.socket, ack=True, app="fence", timeout=60, buffer_bytes=64 << 20) as client:
        assert all([client.emit(f"r{i} {pad}") for i in range(first, first + n)])
        assert client.flush(timeout=60)


def _sent(d: DaemonProcess) -> list[int]:
    """The numbers of the records ``_send_acked`` sent that are on disk, sorted."""
    return sorted(int(m[1]) for r in d.records(ROOT) if (m := SENT.match(r.get("msg", ""))))


def _tmp_files(d: DaemonProcess) -> list[str]:
    return [n for n in os.listdir(d.log_dir / str(ROOT)) if n.endswith(".tmp")]


def _catch_compressing(d: DaemonProcess, pid: int, timeout: float) -> list[str]:
    """Stop helper *pid* as soon as a compression's .tmp file appears; the names seen
    (none: *timeout* passed, or the daemon logged that a file is claimed by another)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and BUSY not in d.stderr():
        if tmp := _tmp_files(d):
            os.kill(pid, signal.SIGSTOP)
            return tmp
    return []


@contextlib.contextmanager
def _reaped(*pids: int) -> Iterator[None]:
    try:
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_an_old_helper_never_renames_a_new_helpers_file() -> None:
    """kill -9 the daemon alone while its helper compresses (the helper stopped to widen
    the window), restart, let the new helper start on the same file, wake the old one,
    then kill -9 the new daemon and its helper too: at the next start verify is clean and
    every acked record is there once."""
    n = 24_000
    with world() as root:
        a = DaemonProcess(root, store_extra=BIG_FILES).start()
        old = _helper_pid(a)
        with _reaped(old):
            _send_acked(a, 0, n)  # about two files and a half
            assert _catch_compressing(a, old, timeout=30), "no compression was seen"
            a.kill9()
            b = DaemonProcess(root, store_extra=BIG_FILES).start()
            new = _helper_pid(b)
            with _reaped(new):
                caught = _catch_compressing(b, new, timeout=8)
                if not caught:  # the new helper was refused the file the old one holds
                    assert f"compressing {ROOT}/" in b.stderr()
                    assert BUSY in b.stderr()
                os.kill(old, signal.SIGCONT)
                poll(lambda: not alive(old), timeout=10)  # it sees its daemon is gone
                if caught:  # the new helper's unfinished file is still its own
                    assert sorted(_tmp_files(b)) == sorted(caught)
                b.kill9()
                os.kill(new, signal.SIGKILL)
                poll(lambda: not alive(new), timeout=10)
        c = DaemonProcess(root, store_extra=BIG_FILES).start()
        try:
            assert _sent(c) == list(range(n))  # 0 acked lost, none twice
            seqs = [r["seq"] for r in c.records(ROOT)]
            assert seqs == sorted(set(seqs))
        finally:
            assert c.stop() == 0
        report = verify_store(c.log_dir)
        assert report.problems == []


def test_a_hung_helper_holds_acks_and_shutdown_for_one_deadline_at_most() -> None:
    """SIGSTOP the helper: an acked record is confirmed within the sync deadline (the hung
    helper is killed, the sync done in the daemon), a new helper is started; stop that one
    too and SIGTERM: the daemon exits 0 within the deadline, every record stored once."""
    with world() as root:
        d = DaemonProcess(root)
        d.config.write_text(d.config.read_text().replace('fsync = "never"', 'fsync = "batch"'))
        with d:
            _hang_twice(d)
        assert d.proc is not None
        assert d.proc.returncode == 0, d.stderr()
        assert _sent(d) == list(range(20))
        assert verify_store(d.log_dir).problems == []


def _hang_twice(d: DaemonProcess) -> None:
    """Stop the helper, send acked records, restart; stop the next one, SIGTERM."""
    first = _helper_pid(d)
    with _reaped(first):
        os.kill(first, signal.SIGSTOP)
        t0 = time.monotonic()
        _send_acked(d, 0, 10)
        waited = time.monotonic() - t0
        assert SYNC_DEADLINE - 0.5 < waited < SYNC_DEADLINE + 3
        poll(lambda: not alive(first), timeout=10)
        assert request_one(d.control, "status", timeout=10)["helper"]["hung"] == 1
        assert "helper_hung" in d.stderr()

        def restarted() -> bool:
            h = request_one(d.control, "status", timeout=10)["helper"]
            return h["starts"] == 2 and h["pid"] not in (None, first)

        poll(restarted, timeout=RESTART_DELAY + 10)
    second = _helper_pid(d)
    with _reaped(second):
        _send_acked(d, 10, 10)
        os.kill(second, signal.SIGSTOP)
        t0 = time.monotonic()
        assert d.stop(signal.SIGTERM) == 0, d.stderr()
        assert time.monotonic() - t0 < SYNC_DEADLINE + 5
        poll(lambda: not alive(second), timeout=10)
