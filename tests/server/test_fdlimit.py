"""The daemon raises its soft RLIMIT_NOFILE at start; connections keep off a reserve."""

from __future__ import annotations

import errno
import json
import os
import resource
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from trio_logd.server._fdlimit import (
    FdCounters,
    FdReserve,
    out_of_fds,
    raise_nofile_limit,
)


def in_child_with_soft_limit_64(body: Callable[[], object]) -> Any:
    """Run *body* in a forked child whose soft RLIMIT_NOFILE is 64; its JSON result."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
            os.write(w, json.dumps(body()).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    out = os.read(r, 4096).decode()
    os.close(r)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return json.loads(out)


def test_soft_limit_is_raised_to_the_hard_limit() -> None:
    """A process started with soft 64 ends with soft == hard, and says what it was."""

    def body() -> object:  # lower the soft limit (done), then raise it as the daemon does
        got = raise_nofile_limit()
        now = resource.getrlimit(resource.RLIMIT_NOFILE)
        return [list(got), list(now), resource.getrlimit(resource.RLIMIT_NOFILE)[1]]

    got, now, hard = in_child_with_soft_limit_64(body)
    if hard == resource.RLIM_INFINITY:
        assert (got[0], got[1]) == (64, now[0])
        assert now[0] > 64
    else:
        assert (got, now) == ([64, hard, hard], [hard, hard])


def test_reserve_keeps_the_last_descriptors_from_connections() -> None:
    """Ordinary connections stop at soft - reserve, root's and admins' at soft - reserve/2."""
    reserve = FdReserve(1024, 256)
    assert (reserve.ordinary, reserve.privileged) == (768, 896)
    assert [reserve.admits(fd) for fd in (767, 768)] == [True, False]
    assert [reserve.admits(fd, privileged=True) for fd in (895, 896)] == [True, False]


def test_reserve_is_at_most_a_quarter_of_a_small_limit() -> None:
    """With soft 128 the reserve is 32: connections still get most descriptors."""
    reserve = FdReserve(128, 256)
    assert (reserve.reserve, reserve.ordinary, reserve.privileged) == (32, 96, 112)


def test_counters_snapshot_and_shortage_errors() -> None:
    """Refusals and EMFILE/ENFILE errors are counted by where."""
    counters = FdCounters(FdReserve(400, 100))
    counters.note_refused("ingest")
    counters.note_refused("ingest")
    counters.note_exhausted("store")
    assert counters.snapshot() == {
        "limit": 400,
        "reserve": 100,
        "refused": {"ingest": 2},
        "exhausted": {"store": 1},
    }


def test_out_of_fds_finds_emfile_through_causes_and_groups() -> None:
    """EMFILE/ENFILE is found as the error, its cause, its context or in a group; others not."""
    emfile = OSError(errno.EMFILE, "Too many open files")
    wrapped = RuntimeError("cannot connect")
    wrapped.__cause__ = ExceptionGroup("attempts", [OSError(errno.ECONNREFUSED, "x"), emfile])
    assert out_of_fds(emfile)
    assert out_of_fds(OSError(errno.ENFILE, "File table overflow"))
    assert out_of_fds(wrapped)
    assert not out_of_fds(OSError(errno.ECONNREFUSED, "refused"))
    assert not out_of_fds(RuntimeError("no errno"))
    assert not out_of_fds(None)


_HELPER_WITHOUT_FDS = """
import json, os, resource, trio
from trio_logd.server._helper import StoreHelper
seen = []
helper = StoreHelper(on_fd_shortage=lambda: seen.append(1))
top = max(int(fd) for fd in os.listdir("/proc/self/fd"))
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (top + 17, hard))
held = []
try:
    while True:
        held.append(os.open("/dev/null", os.O_RDONLY))
except OSError:
    pass
for fd in held[:5]:  # trio's run takes 3 (epoll, its wake-up pair); the pairs need 6
    os.close(fd)
started = trio.run(helper.start)
for fd in held[5:]:
    os.close(fd)
print(json.dumps([started, len(seen)]))
"""


def test_a_helper_start_without_descriptors_is_counted() -> None:
    """A store helper that cannot make its socket pairs (EMFILE) says so once and starts none."""
    # a fresh interpreter: its descriptors are few and known (pytest's are neither)
    done = subprocess.run(
        [sys.executable, "-c", _HELPER_WITHOUT_FDS],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    started, counted = json.loads(done.stdout.splitlines()[-1])  # after the daemon's log line
    assert (started, counted) == (False, 1)
