"""Run a real ``trio-logd serve`` process for end-to-end tests.

The daemon gets a private world under a fresh directory (mode 0755, so that
children that drop to other uids can reach its sockets): ``run/`` for sockets,
``var/log`` for the store, ``logd.toml`` for the config. Readiness is polled
on the control socket with a deadline, never slept for.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from tests._uids import free_uids
from trio_logd.control_client import request_one
from trio_logd.errors import ConnectFailed
from trio_logd.protocol.control import GREETING

__all__ = [
    "DaemonProcess",
    "alive",
    "config_text",
    "first_answer",
    "free_uids",
    "poll",
    "run_as",
    "world",
]

PYTHON = sys.executable
STARTUP_TIMEOUT = 20.0


def poll(predicate: Callable[[], Any], *, timeout: float = 10.0, interval: float = 0.01) -> Any:
    """Call *predicate* until it returns something truthy; fail after *timeout*.

    A ``KeyError``/``IndexError`` from *predicate* counts as "not yet" (a uid
    the daemon has not seen, a record not stored yet); at the deadline the
    last one is the failure's cause.
    """
    deadline = time.monotonic() + timeout
    while True:
        missing: LookupError | None = None
        try:
            value = predicate()
        except LookupError as exc:
            value, missing = None, exc
        if value:
            return value
        if time.monotonic() > deadline:
            msg = f"condition not met within {timeout} s: {predicate}"
            raise AssertionError(msg) from missing
        time.sleep(interval)


def alive(pid: int) -> bool:
    """Process *pid* exists and is not a zombie (it need not be our child)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


@contextlib.contextmanager
def world() -> Iterator[Path]:
    """A fresh directory reachable by every uid (0755), removed afterwards."""
    d = Path(tempfile.mkdtemp(prefix="trio-logd-test-"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


DEFAULT_TOML = """\
[daemon]
socket = "{root}/run/log.sock"
control_socket = "{root}/run/ctl.sock"
log_dir = "{root}/var/log"
{daemon_extra}

[store]
fsync = "never"
{store_extra}

[limits.default]
rate_messages = 1000000
burst_messages = 1000000
rate_bytes = 1000000000
burst_bytes = 1000000000
{limits_extra}

{extra}
"""


def config_text(
    root: Path,
    *,
    daemon_extra: str = "",
    store_extra: str = "",
    limits_extra: str = "",
    extra: str = "",
) -> str:
    """The test config of a world at *root*, with extra TOML lines for each table.

    ``keep_free_bytes`` is 0 unless *store_extra* sets it: the embedded 256 MiB
    would make a test depend on the host's free space (``pressure_min_age``
    then drops records).
    """
    if "keep_free_bytes" not in store_extra:
        store_extra += "\nkeep_free_bytes = 0"
    return DEFAULT_TOML.format(
        root=root,
        daemon_extra=daemon_extra,
        store_extra=store_extra,
        limits_extra=limits_extra,
        extra=extra,
    )


class DaemonProcess:
    """A ``trio-logd serve`` subprocess on a private world directory.

    Args:
        root: the world directory.
        daemon_extra, store_extra, limits_extra, extra: TOML lines added to
            ``[daemon]``, ``[store]``, ``[limits.default]`` and the end.
    """

    def __init__(
        self,
        root: Path,
        *,
        daemon_extra: str = "",
        store_extra: str = "",
        limits_extra: str = "",
        extra: str = "",
    ) -> None:
        self.root = root
        self.config = root / "logd.toml"
        self.socket = str(root / "run" / "log.sock")
        self.control = str(root / "run" / "ctl.sock")
        self.log_dir = root / "var" / "log"
        self.config.write_text(
            config_text(
                root,
                daemon_extra=daemon_extra,
                store_extra=store_extra,
                limits_extra=limits_extra,
                extra=extra,
            )
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.stderr_path = root / "daemon.stderr"

    # -- life cycle -------------------------------------------------------

    def command(self, *args: str) -> list[str]:
        """A ``trio-logd`` command line using this daemon's config."""
        return [PYTHON, "-m", "trio_logd", *args, "--config", str(self.config)]

    def start(
        self,
        *,
        wait: bool = True,
        preexec_fn: Callable[[], None] | None = None,
        env: dict[str, str] | None = None,
    ) -> DaemonProcess:
        """Start the daemon and (by default) wait until its control socket answers.

        Args:
            wait: poll the control socket until the daemon answers.
            preexec_fn: run in the child before the daemon (e.g. lower a limit).
            env: the daemon's environment (default: ours).
        """
        with open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(
                [PYTHON, "-m", "trio_logd", "serve", "--config", str(self.config)],
                stdout=subprocess.DEVNULL,
                stderr=err,
                cwd=self.root,
                preexec_fn=preexec_fn,
                env=env,
            )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self) -> None:
        """Poll the control socket until it answers with our process's pid."""
        assert self.proc is not None

        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                msg = f"daemon exited with {self.proc.returncode}: {self.stderr()}"
                raise AssertionError(msg)
            try:
                reply = request_one(self.control, "status", timeout=2)
            except ConnectFailed:
                return False
            return bool(reply["_server"].pid == self.proc.pid)

        poll(ready, timeout=STARTUP_TIMEOUT)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Signal the daemon and wait; return its exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def kill9(self) -> None:
        """``kill -9`` the daemon and reap it."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stderr(self) -> str:
        """What the daemon wrote on stderr so far."""
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self) -> DaemonProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.stop()

    # -- records ----------------------------------------------------------

    def records(self, uid: int) -> list[dict[str, Any]]:
        """Every record on disk for *uid*, in file order (rotated files included)."""
        from trio_logd.store.files import read_uid_records

        return [orjson.loads(line) for line in read_uid_records(self.log_dir, uid)]

    def wait_records(
        self,
        uid: int,
        n: int,
        *,
        timeout: float = 10.0,
        where: Callable[[dict[str, Any]], bool] = lambda r: "event" not in r,
    ) -> list[dict[str, Any]]:
        """Poll until at least *n* records (matching *where*) of *uid* are on disk."""

        def enough() -> list[dict[str, Any]] | None:
            recs = [r for r in self.records(uid) if where(r)]
            return recs if len(recs) >= n else None

        result: list[dict[str, Any]] = poll(enough, timeout=timeout)
        return result

    def connect(self) -> socket.socket:
        """A stream connection to the ingest socket."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(self.socket)
        return s


def run_as(uid: int, gid: int, fn: Callable[[], None], *, groups: Sequence[int] = ()) -> None:
    """Fork; the child drops to *uid*/*gid* (and supplementary *groups*), runs *fn* and exits.

    Raises:
        AssertionError: the child failed.
    """
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            os.setgroups(list(groups))
            os.setgid(gid)
            os.setuid(uid)
            fn()
            code = 0
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, f"child as uid {uid} failed"


def first_answer(sock: socket.socket) -> bytes:
    """The first line a raw control connection gets after the server's greeting.

    Reads at most what it needs (4 KiB at a time); ``b""`` at EOF before one.
    """
    buf = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            return b""
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            if line + b"\n" != GREETING:
                return line
