"""A unit's drops still unreported at a restart (full disk) keep their unit after it.

A writer in ``system.slice/noisy.service`` floods past its ``[limits.unit]``
rate while the disk is full, so the ``suppressed`` record cannot be stored;
the daemon stops (its counts go to ``log_dir/.drops``) and starts again: the
unit's ``stats`` show the drops of the run before, and once there is room the
report names the unit.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import socket
import subprocess
from typing import Any

from tests._cgroups import CgroupTree
from tests._daemon import DaemonProcess, poll
from tests._uids import free_uids
from tests.faults._store import daemon_on
from tests.faults.conftest import SmallFs

UNIT_LIMITS = """
[limits.unit."noisy*.service"]
rate_messages = 20
burst_messages = 20
"""
SENT = 300


def _flood(path: str, n: int, hold: int) -> None:
    """Send *n* records in one go, then stay until released (the pidfd check holds)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(path)
        s.sendall(b"".join(b"<13>app: flood %d\n" % i for i in range(n)))
        os.read(hold, 1)


def _units(d: DaemonProcess) -> dict[str, dict[str, Any]]:
    out = subprocess.run(d.command("stats", "--json"), capture_output=True, check=True)
    return {item["unit"]: item for item in json.loads(out.stdout)["units"]}


def test_a_units_pending_drops_keep_their_unit_across_a_restart(small_fs: SmallFs) -> None:
    """Rate drops of a unit pending at a stop on a full disk: after the restart, stats show
    them for the unit, and the suppressed record filed once there is room names it."""
    (uid,) = free_uids(1)
    d = daemon_on(small_fs, extra=UNIT_LIMITS)
    r, w = os.pipe()
    try:
        with contextlib.closing(CgroupTree()) as cgroups, d:
            small_fs.fill()
            child = cgroups.fork_in(
                "system.slice/noisy.service", functools.partial(_flood, d.socket, SENT, r), uid=uid
            )

            def settled() -> dict[str, Any] | None:
                noisy = _units(d).get("noisy.service")
                done = noisy is not None and noisy["records"] + noisy["dropped"]["rate"] == SENT
                return noisy if done else None

            noisy = poll(settled, timeout=30)
            os.write(w, b"x")
            assert os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]) == 0
        dropped = noisy["dropped"]["rate"]
        assert dropped >= SENT - 2 * 20  # the burst, and a token or so of refill
        assert not [rec for rec in d.records(uid) if rec.get("event") == "suppressed"]
        with d:  # still full: the run before's counts are the unit's again
            assert _units(d)["noisy.service"]["dropped"]["rate"] == dropped
            small_fs.free()
            (report,) = d.wait_records(
                uid, 1, timeout=20, where=lambda rec: rec.get("reason") == "rate"
            )
    finally:
        os.close(r)
        os.close(w)
    assert (report["event"], report["unit"], report["count"]) == (
        "suppressed", "noisy.service", dropped,
    )  # fmt: skip
