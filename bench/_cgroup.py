"""Optional placement of the bench's daemon and writers in cgroup v2 cgroups.

Attribution writes ``cgroup`` into every record, and ``unit``/``slice`` when
the writer's cgroup names a unit; where the bench runs decides what a record
carries. Two environment variables place the processes, each a path under the
cgroup v2 mount (found in ``/proc/self/mounts``), created when missing:

    BENCH_WRITER_CGROUP=trio-bench.slice/system.slice/bench.service
    BENCH_DAEMON_CGROUP=trio-bench.slice/daemon.service
    BENCH_WRITER_CGROUP=/            # the root cgroup

The load generator's children join the writers' cgroup before they connect
(so the daemon reads it at accept); the daemon joins its own before it
starts. Unset (the default, ``make bench``), everything runs in the bench's
own cgroup. Set but impossible (not root, no cgroup v2): the run stops with
the reason rather than measure another placement than asked.

Compare attribution's cost with the daemon in the same place on both sides:
``bench/ab_cgroup.sh`` does, for writers in the root cgroup and in a unit.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DAEMON_ENV", "WRITER_ENV", "join", "placement"]

#: Where the daemon runs (a path under the cgroup v2 mount).
DAEMON_ENV = "BENCH_DAEMON_CGROUP"
#: Where the load generator's writers run.
WRITER_ENV = "BENCH_WRITER_CGROUP"


def _mount() -> Path | None:
    """The cgroup v2 mount point (the first ``cgroup2`` in ``/proc/self/mounts``)."""
    with open("/proc/self/mounts") as f:
        found = [where for _, where, kind, *_ in map(str.split, f) if kind == "cgroup2"]
    return Path(found[0]) if found else None


def _problem(rel: str, mount: Path | None) -> str | None:
    """Why no process can be placed in *rel* under *mount* (``None``: it can)."""
    if mount is None:
        return "no cgroup v2 hierarchy mounted (/proc/self/mounts)"
    if ".." in rel.split("/"):
        return f"a path under {mount} without '..'"
    try:
        (mount / rel).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"cannot create the cgroup under {mount}: {exc}"
    if not os.access(mount / rel / "cgroup.procs", os.W_OK):
        return f"cannot move processes into {mount / rel} (needs root)"
    return None


def placement(env: str) -> Path | None:
    """The cgroup directory *env* names, created if missing; ``None`` when unset.

    Raises:
        SystemExit: *env* is set but no process can be placed there.
    """
    raw = os.environ.get(env, "")
    if not raw:
        return None
    rel = raw.strip("/")
    mount = _mount()
    problem = _problem(rel, mount)
    if problem is not None or mount is None:
        msg = f"{env}={raw}: {problem}"
        raise SystemExit(msg)
    return mount / rel


def join(path: Path | None) -> None:
    """Move the calling process into the cgroup at *path* (nothing when ``None``)."""
    if path is None:
        return
    fd = os.open(path / "cgroup.procs", os.O_WRONLY)
    try:
        os.write(fd, b"0")
    finally:
        os.close(fd)
