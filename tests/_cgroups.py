"""A private subtree of the host's cgroup v2 hierarchy, for attribution tests.

The tree's root is a slice of its own (``/trio-logd-test-PID-N.slice``), so
the paths below it read as on a systemd host: ``system.slice/demo.service``
under it names ``demo.service`` in ``system.slice``. Children are forked,
move themselves into a cgroup (``cgroup.procs``, as root), then run a body;
at the end every process left in the tree goes back to the test's own
cgroup and the directories are removed, deepest first.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.attacks._helpers import fork_as

__all__ = ["CgroupTree", "cgroup2_mount"]

_serial = itertools.count()


def cgroup2_mount() -> Path | None:
    """Where the cgroup v2 hierarchy is mounted (``/proc/self/mountinfo``), or ``None``."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            if fields[sep + 1] == "cgroup2":
                return Path(fields[4])
    return None


def _own_cgroup() -> str:
    with open("/proc/self/cgroup") as f:
        for line in f:
            if line.startswith("0::"):
                return line[3:].rstrip("\n")
    return "/"


def _write(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


class CgroupTree:
    """A private cgroup subtree; skips the test with a reason where none can be made."""

    def __init__(self) -> None:
        if os.geteuid() != 0:
            pytest.skip("needs root: creates cgroups and moves processes into them")
        mount = cgroup2_mount()
        if mount is None:
            pytest.skip("no cgroup v2 hierarchy mounted (/proc/self/mountinfo)")
        self.mount = mount
        self.home = mount / _own_cgroup().lstrip("/")
        self.name = f"/trio-logd-test-{os.getpid()}-{next(_serial)}.slice"
        self.root = mount / self.name.lstrip("/")
        try:
            self.root.mkdir()
        except OSError as exc:
            pytest.skip(f"cannot create a cgroup under {mount}: {exc}")
        self.made: list[Path] = [self.root]
        probe = self.make("probe.scope")
        if self.run_in("probe.scope", lambda: None) != 0:
            self.close()
            pytest.skip(f"cannot move a process into a cgroup under {mount} (cgroup.procs)")
        del probe

    def path(self, rel: str) -> str:
        """The cgroup path a process in *rel* has, as ``/proc/PID/cgroup`` shows it."""
        return f"{self.name}/{rel}"

    def make(self, rel: str) -> Path:
        """Create the cgroup *rel* (and its parents) under the tree's root."""
        d = self.root
        for part in rel.split("/"):
            d = d / part
            if not d.exists():
                d.mkdir()
                self.made.append(d)
        return d

    def fork_in(
        self,
        rel: str,
        body: Callable[[], None],
        *,
        uid: int | None = None,
        loginuid: int | None = None,
    ) -> int:
        """Fork a child that moves into *rel*, maybe sets its login uid and drops to *uid*,
        then runs *body*; exits 0 when all of it worked. Returns its pid (reap it)."""
        target = self.make(rel) / "cgroup.procs"

        def join() -> None:
            _write(target, b"0")
            if loginuid is not None:
                _write(Path("/proc/self/loginuid"), str(loginuid).encode())

        return fork_as(os.geteuid() if uid is None else uid, body, before=join)

    def run_in(self, rel: str, body: Callable[[], None], **kw: int | None) -> int:
        """``fork_in`` and wait: the child's exit code."""
        pid = self.fork_in(rel, body, **kw)
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status)

    def close(self) -> None:
        """Move what is left back to our own cgroup; remove the tree, deepest first."""
        for d in sorted(self.made, key=lambda p: len(p.parts), reverse=True):
            try:
                procs = (d / "cgroup.procs").read_text().split()
            except OSError:
                procs = []
            for p in procs:
                with contextlib.suppress(OSError):
                    _write(self.home / "cgroup.procs", p.encode())
            with contextlib.suppress(OSError):
                d.rmdir()
        self.made = []
