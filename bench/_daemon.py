"""Start a trio-logd daemon for a benchmark and sample its CPU and memory."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._cgroup import DAEMON_ENV, join, placement
from trio_logd.control_client import request_one
from trio_logd.errors import ConnectFailed

CLK_TCK = os.sysconf("SC_CLK_TCK")

BASE_TOML = """\
[daemon]
socket = "{root}/run/log.sock"
control_socket = "{root}/run/ctl.sock"
log_dir = "{root}/var/log"
{daemon}

[store]
max_file_bytes = {max_file_bytes}
max_bytes = 100000000000
keep_free_bytes = 1000000
{store}

[limits.default]
rate_messages = 100000000
burst_messages = 100000000
rate_bytes = 100000000000
burst_bytes = 100000000000
quota_bytes = 100000000000
max_connections = 100000
{limits}

{extra}
"""


def _children(pid: int) -> list[int]:
    """Live child processes of *pid* (the daemon's store helper)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(entry))
    return out


def _times(stat: Path) -> tuple[float, float]:
    """utime and stime in seconds from a ``/proc/…/stat`` file (0, 0: gone)."""
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def _own_cpu_path(stat: Path) -> float:
    return sum(_times(stat))


def _own_cpu(pid: int) -> float:
    return _own_cpu_path(Path(f"/proc/{pid}/stat"))


def cpu_parts(pid: int) -> dict[str, float]:
    """CPU seconds of the daemon's main thread, its other threads, and its children.

    The main thread runs trio (reading, parsing, encoding, limits, and the
    store's appends while they are quick); the others are trio's worker
    threads (appends once the disk pushes back, syncs); the children are
    the store helper. ``/proc/PID/stat`` counts threads that have exited,
    so the other threads' share is that minus the main thread's. ``system``
    is the kernel's part of all of them (it is not added again).
    """
    user, system = _times(Path(f"/proc/{pid}/stat"))
    main = _own_cpu_path(Path(f"/proc/{pid}/task/{pid}/stat"))
    children = [_times(Path(f"/proc/{c}/stat")) for c in _children(pid)]
    return {
        "main": main,
        "threads": user + system - main,
        "helper": sum(map(sum, children)),
        # the kernel's share (daemon and helper): writes, reads, page cache, fsync
        "system": system + sum(t[1] for t in children),
    }


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads) and of its live children.

    The daemon's children are its store helper (compression, spare files):
    its CPU is part of what a record costs.
    """
    return _own_cpu(pid) + sum(_own_cpu(c) for c in _children(pid))


def _status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def peak_rss_mib(pid: int) -> float:
    """Peak RSS of a process plus that of its live children (each one's own peak)."""
    return sum(_status_kib(p, "VmHWM:") for p in (pid, *_children(pid))) / 1024


def rss_mib(pid: int) -> float:
    """RSS of a process plus that of its live children."""
    return sum(_status_kib(p, "VmRSS:") for p in (pid, *_children(pid))) / 1024


class BenchDaemon:
    def __init__(
        self,
        *,
        daemon: str = "",
        store: str = "",
        limits: str = "",
        extra: str = "",
        max_file_bytes: int = 1 << 40,
    ) -> None:
        self.root = Path(
            tempfile.mkdtemp(prefix="trio-logd-bench-", dir=os.environ.get("BENCH_TMP"))
        )
        self.root.chmod(0o755)
        toml = BASE_TOML.format(
            root=self.root,
            daemon=daemon,
            store=store,
            limits=limits,
            extra=extra,
            max_file_bytes=max_file_bytes,
        )
        self.config = self.root / "logd.toml"
        self.config.write_text(toml)
        self.socket = str(self.root / "run" / "log.sock")
        self.control = str(self.root / "run" / "ctl.sock")
        self.log_dir = self.root / "var" / "log"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> BenchDaemon:
        cgroup = placement(DAEMON_ENV)
        # BENCH_DAEMON_PROFILE=FILE: the daemon under cProfile (its main thread), stats to FILE
        profile = os.environ.get("BENCH_DAEMON_PROFILE")
        python = [sys.executable, *(["-m", "cProfile", "-o", profile] if profile else [])]
        self.proc = subprocess.Popen(
            [*python, "-m", "trio_logd", "serve", "--config", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=open(self.root / "daemon.stderr", "wb"),
            preexec_fn=(lambda: join(cgroup)) if cgroup is not None else None,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                request_one(self.control, "status", timeout=1)
                break
            except ConnectFailed:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((self.root / "daemon.stderr").read_text()) from None
                time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(self.root, ignore_errors=True)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stats(self) -> dict[int, dict[str, Any]]:
        reply = request_one(self.control, "stats", timeout=10)
        return {u["uid"]: u for u in reply["uids"]}

    def wait_stored(
        self, uid: int, n: int, timeout: float = 300.0, interval: float = 0.005
    ) -> float:
        """Poll until *uid* has *n* records stored; return the time it happened."""
        deadline = time.monotonic() + timeout
        while True:
            u = self.stats().get(uid)
            if u is not None and u["stored"] >= n:
                return time.time()
            if time.monotonic() > deadline:
                msg = f"uid {uid}: {u}"
                raise TimeoutError(msg)
            time.sleep(interval)
