from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests._cgroups import CgroupTree
from tests._daemon import DaemonProcess, world


@pytest.fixture
def daemon() -> Iterator[DaemonProcess]:
    """A running daemon on a private world directory, stopped with SIGTERM (exit 0)."""
    with world() as root:
        d = DaemonProcess(root).start()
        try:
            yield d
        finally:
            if d.proc is not None and d.proc.poll() is None:
                rc = d.stop()
                assert rc == 0, f"daemon exited {rc}: {d.stderr()}"


@pytest.fixture
def as_root() -> None:
    """Skip unless running as root (tests that fork children with other uids)."""
    if os.geteuid() != 0:
        pytest.skip("needs root: forks children that setuid to other uids")


@pytest.fixture
def cgroups() -> Iterator[CgroupTree]:
    """A private cgroup subtree, removed afterwards (skips where none can be made)."""
    tree = CgroupTree()
    try:
        yield tree
    finally:
        tree.close()
