"""End to end: the store's helper process (compression, spare files, syncs).

It is a child of the daemon, does its work, is replaced when it dies without
a record being lost, and never outlives the daemon (clean stop or kill -9).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests._daemon import DaemonProcess, alive, poll, world
from trio_logd.control_client import request_one
from trio_logd.store._layout import RotatedName

ROOT = os.geteuid()
ROTATING = 'max_file_bytes = 65536\ncompress = "zstd"'


@contextlib.contextmanager
def _daemon(**kw: str) -> Iterator[DaemonProcess]:
    with world() as root, DaemonProcess(root, **kw) as d:
        yield d


def _helper(d: DaemonProcess) -> dict[str, Any]:
    reply = request_one(d.control, "status", timeout=10)
    helper: dict[str, Any] = reply["helper"]
    return helper


def _ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _send(d: DaemonProcess, msgs: list[str]) -> None:
    with contextlib.closing(d.connect()) as s:
        s.sendall(b"".join(b"<13>%s\n" % m.encode() for m in msgs))


def _all_compressed(d: DaemonProcess, at_least: int) -> bool:
    names = [RotatedName.parse(x) for x in os.listdir(d.log_dir / str(ROOT))]
    rotated = [x for x in names if x is not None]
    return len(rotated) >= at_least and all(x.suffix == ".zst" for x in rotated)


def test_the_helper_is_a_child_that_compresses_and_ends_with_the_daemon() -> None:
    """status names the helper, a child of the daemon; rotated files are compressed and no
    current file had to be created by a rotation; after a clean stop the helper is gone."""
    with _daemon(store_extra=ROTATING) as d:
        helper = _helper(d)
        pid = helper["pid"]
        assert isinstance(pid, int)
        assert _ppid(pid) == d.pid
        assert helper["starts"] == 1
        out = subprocess.run(d.command("status"), capture_output=True, text=True, check=True)
        assert f"helper:         pid {pid} (starts: 1)" in out.stdout
        _send(d, [f"record {i:05d} " + "x" * 200 for i in range(3000)])
        d.wait_records(ROOT, 3000, timeout=30)
        poll(lambda: _all_compressed(d, 8), timeout=30)
        assert d.stop() == 0
        poll(lambda: not alive(pid), timeout=10)


def test_a_killed_helper_is_replaced_and_no_record_is_lost() -> None:
    """kill -9 the helper while a client streams: every record lands once, rotated files
    are still compressed (in the daemon's thread, then by a new helper), and a new helper
    runs after the restart delay."""
    n = 20_000
    with _daemon(store_extra=ROTATING) as d:
        first = _helper(d)["pid"]
        msgs = [f"record {i:05d}" for i in range(n)]
        killed = threading.Event()

        def stream() -> None:
            with contextlib.closing(d.connect()) as s:
                for k in range(0, n, 500):
                    s.sendall(b"".join(b"<13>%s\n" % m.encode() for m in msgs[k : k + 500]))
                    if k == n // 2:
                        os.kill(first, signal.SIGKILL)
                        killed.set()

        t = threading.Thread(target=stream)
        t.start()
        t.join()
        assert killed.is_set()
        recs = d.wait_records(ROOT, n, timeout=60)
        got = [r["msg"] for r in recs if "event" not in r]
        assert got == msgs
        seqs = [r["seq"] for r in d.records(ROOT)]
        assert seqs == list(range(1, len(seqs) + 1))
        # reaped (no zombie is left behind), once the new helper has started

        def replaced() -> bool:
            h = _helper(d)
            return h["starts"] >= 2 and h["pid"] not in (None, first) and alive(h["pid"])

        poll(replaced, timeout=30)  # the next request after RESTART_DELAY starts one
        poll(lambda: not Path(f"/proc/{first}").exists(), timeout=10)
        _send(d, [f"after {i:05d} " + "x" * 200 for i in range(1000)])
        d.wait_records(ROOT, n + 1000, timeout=30)
        poll(lambda: _all_compressed(d, 10), timeout=30)
        assert "helper_lost" in d.stderr()
        assert d.stop() == 0


def test_the_helper_exits_when_the_daemon_is_killed() -> None:
    """kill -9 the daemon: its helper reads end-of-file and exits (no orphan is left)."""
    with _daemon(store_extra=ROTATING) as d:
        pid = _helper(d)["pid"]
        d.kill9()
        poll(lambda: not alive(pid), timeout=10)
