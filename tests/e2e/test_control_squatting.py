"""The CLIs check who serves the control socket before talking to it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._daemon import world
from tests._uids import free_uids

#: A uid (and gid) without a passwd or group entry, found free on this host.
(SQUATTER,) = free_uids(1)


@pytest.fixture
def squatted(as_root: None) -> Iterator[Path]:
    """A control-socket path in a root-owned sticky directory, served by another uid's process."""
    with world() as root:
        shared = root / "tmp"
        shared.mkdir()
        shared.chmod(0o1777)  # like /tmp: root owns it, anyone can create
        path = shared / "ctl.sock"
        ready_r, ready_w = os.pipe()
        stop_r, stop_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the squatter
            code = 1
            try:
                os.close(stop_w)  # or the read below never sees EOF
                os.close(ready_r)
                os.setgroups([])
                os.setgid(SQUATTER)
                os.setuid(SQUATTER)
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.bind(str(path))
                s.listen()
                os.write(ready_w, b"x")
                os.read(stop_r, 1)
                code = 0
            finally:
                os._exit(code)
        os.close(ready_w)
        os.close(stop_r)
        assert os.read(ready_r, 1) == b"x"
        try:
            yield path
        finally:
            os.close(stop_w)
            os.waitpid(pid, 0)


def test_logq_refuses_a_control_socket_served_by_another_uid(squatted: Path) -> None:
    """logq --socket on a path served by another uid (not root, not the dir's owner) refuses."""
    out = subprocess.run(
        [sys.executable, "-m", "trio_logd.cli.logq", "--socket", str(squatted), "-n", "1"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert out.returncode == 1
    assert f"{squatted}: served by uid {SQUATTER}" in out.stderr
    assert "expected uid 0" in out.stderr
    assert out.stdout == ""


def test_status_names_the_squatter(squatted: Path) -> None:
    """trio-logd status does not mistake a squatter for the daemon: it names its uid, exit 1."""
    out = subprocess.run(
        [sys.executable, "-m", "trio_logd", "status", "--control-socket", str(squatted)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert out.returncode == 1
    assert f"served by uid {SQUATTER}" in out.stderr
