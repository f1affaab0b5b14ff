"""Trusted attribution with a real daemon: cgroup, unit/slice, user_unit/user_slice, login.

Writers are forked into cgroups of a private subtree of the host's cgroup v2
hierarchy (``tests/_cgroups.py``) and connect from there; the records must
carry what the kernel says about them, read through a pidfd, and a user's
own cgroup names must never pass for a system unit.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests._cgroups import CgroupTree
from tests._daemon import DaemonProcess, free_uids, poll, world
from trio_logd.peer import PeerCred, ProcessIdentity, read_process_identity, read_writer_identity

ATTRIBUTION_KEYS = ("cgroup", "unit", "slice", "user_unit", "user_slice", "loginuid", "session")


def _sender(path: str, msg: bytes, hold: int | None = None) -> None:
    """Send one record; with *hold* (a pipe's read end), stay alive until it is written to."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(path)
        s.sendall(b"<13>app: " + msg + b"\n")
        if hold is not None:
            os.read(hold, 1)


class Held:
    """Children that stay alive (their records attributed) until released and reaped."""

    def __init__(self) -> None:
        self.read_end, self._write_end = os.pipe()
        self.pids: list[int] = []

    def flood(
        self, cgroups: CgroupTree, name: str, n: int, path: str, uid: int, tag: str = ""
    ) -> None:
        """A child in system.slice/NAME.service sends *n* records at once, then is held."""
        send = functools.partial(_flood, path, tag or name, n, self.read_end)
        self.pids.append(cgroups.fork_in(f"system.slice/{name}.service", send, uid=uid))

    def release(self) -> list[int]:
        """Let every child exit; return their exit codes."""
        os.write(self._write_end, b"x" * len(self.pids))
        codes = [os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) for p in self.pids]
        os.close(self._write_end)
        os.close(self.read_end)
        return codes


def _attribution(record: dict[str, object]) -> dict[str, object]:
    return {k: record[k] for k in ATTRIBUTION_KEYS if k in record}


def test_system_unit_and_user_look_alike(daemon: DaemonProcess, cgroups: CgroupTree) -> None:
    """A writer in system.slice/demo.service has unit/slice; one in a user's subtree named
    like a system service has only user_unit/user_slice; cgroup is recorded for both."""
    (uid,) = free_uids(1)
    user_tree = f"user.slice/user-{uid}.slice/user@{uid}.service"
    cases = {
        b"system": ("system.slice/demo.service", {"unit": "demo.service", "slice": "system.slice"}),
        b"app": (
            f"{user_tree}/app.slice/fake.service",
            {"user_unit": "fake.service", "user_slice": "app.slice"},
        ),
        b"look-alike": (
            f"{user_tree}/system.slice/demo.service",
            {"user_unit": "demo.service", "user_slice": "system.slice"},
        ),
        b"no unit": ("plain", {}),
    }
    held = Held()
    for msg, (rel, _names) in cases.items():
        send = lambda m=msg: _sender(daemon.socket, m, held.read_end)  # noqa: E731
        held.pids.append(cgroups.fork_in(rel, send, uid=uid))
    records = {r["msg"]: r for r in daemon.wait_records(uid, len(cases))}
    assert held.release() == [0] * len(cases)
    for msg, (rel, names) in cases.items():
        assert _attribution(records[msg.decode()]) == {"cgroup": cgroups.path(rel), **names}


def test_login_uid_and_session(daemon: DaemonProcess, cgroups: CgroupTree) -> None:
    """A writer whose login uid was set (as pam_loginuid does) carries loginuid and session."""
    (uid,) = free_uids(1)
    rel = "user.slice/session-9.scope"
    held = Held()
    send = lambda: _sender(daemon.socket, b"logged in", held.read_end)  # noqa: E731
    held.pids.append(cgroups.fork_in(rel, send, uid=uid, loginuid=uid))
    (record,) = daemon.wait_records(uid, 1)
    assert held.release() == [0]
    assert record.get("loginuid") == uid, str(record)
    assert isinstance(record["session"], int)
    assert (record["unit"], record["slice"]) == ("session-9.scope", "user.slice")


def test_new_writer_gets_its_own_unit(daemon: DaemonProcess, cgroups: CgroupTree) -> None:
    """A connection opened in one unit and written by a child moved into another: the
    child's records carry the child's unit (read when the writer changed), not the opener's.
    Both run as root: only root moves processes between cgroups."""
    uid = 0
    tag = f"{os.getpid()}-{id(cgroups)}"
    r, w = os.pipe()
    cgroups.make("system.slice/other.service")

    def opener() -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(daemon.socket)
            s.sendall(f"<13>app: opener {tag}\n".encode())
            os.read(r, 1)  # after the opener's record is stored

            def child() -> None:
                s.sendall(f"<13>app: child {tag}\n".encode())
                os.read(r, 1)  # after the child's record is stored

            assert cgroups.run_in("system.slice/other.service", child) == 0
            s.sendall(f"<13>app: opener again {tag}\n".encode())

    def mine(rec: dict[str, object]) -> bool:
        return str(rec.get("msg", "")).endswith(tag)

    pid = cgroups.fork_in("system.slice/opener.service", opener, uid=uid)
    daemon.wait_records(uid, 1, where=mine)
    os.write(w, b"x")
    daemon.wait_records(uid, 2, where=mine)
    os.write(w, b"x")
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    records = {rec["msg"]: rec for rec in daemon.wait_records(uid, 3, where=mine)}
    assert records[f"opener {tag}"]["unit"] == "opener.service"
    assert records[f"opener again {tag}"]["unit"] == "opener.service"
    assert records[f"child {tag}"]["unit"] == "other.service"
    assert records[f"child {tag}"]["conn_pid"] == pid


def _signal_and_wait(ready: int, fd: int) -> None:
    os.write(ready, b"x")
    os.read(fd, 1)


def _set_last_pid(pid: int) -> None:
    fd = os.open("/proc/sys/kernel/ns_last_pid", os.O_WRONLY)
    try:
        os.write(fd, str(pid - 1).encode())
    finally:
        os.close(fd)


def test_recycled_pid_never_gets_another_unit(cgroups: CgroupTree, tmp_path: Path) -> None:
    """The connecting process exits and its pid is taken by a process in another unit
    before the daemon looks: the pidfd check leaves every attribution field out."""
    path = str(tmp_path / "s.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as lst:
        lst.bind(path)
        lst.listen()
        r, w = os.pipe()
        ready_r, ready_w = os.pipe()
        for _attempt in range(20):  # other processes on the host may take the pid first
            gone = cgroups.fork_in("system.slice/gone.service", lambda: _sender(path, b"x"))
            os.waitpid(gone, 0)
            srv, _ = lst.accept()
            try:
                _set_last_pid(gone)
            except OSError as exc:
                pytest.skip(f"cannot choose the next pid (ns_last_pid): {exc}")
            hold = functools.partial(_signal_and_wait, ready_w, r)
            reuser = cgroups.fork_in("system.slice/reuser.service", hold)
            os.read(ready_r, 1)  # it is in its cgroup
            if reuser == gone:
                break
            os.write(w, b"x")
            os.waitpid(reuser, 0)
            srv.close()
        else:
            pytest.skip("the host's other processes kept taking the chosen pid")
        try:
            with srv:
                ident = read_process_identity(srv, gone)
            assert ident == ProcessIdentity(None, None)
            # the writer-change path checks the uid too: another uid on the pid gives nothing
            other = PeerCred(gone, 12345, 12345)
            assert read_writer_identity(other) == ProcessIdentity(None, None)
            # (the reuser is the live owner of the pid: it is what /proc shows now)
            mine = read_writer_identity(PeerCred(reuser, 0, 0))
            assert mine.attribution.unit == "reuser.service"
        finally:
            os.write(w, b"x")
            os.waitpid(reuser, 0)


UNIT_LIMITS = """
[limits.unit."noisy*.service"]
rate_messages = 50
burst_messages = 50
"""


def _flood(path: str, tag: str, n: int, hold: int) -> None:
    """Send *n* records in one go, then stay until released (so the pidfd check holds)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(path)
        s.sendall(b"".join(f"<13>app: {tag} {i}\n".encode() for i in range(n)))
        os.read(hold, 1)


def _stats(d: DaemonProcess) -> dict[str, Any]:
    out = subprocess.run(d.command("stats", "--json"), capture_output=True, check=True)
    stats: dict[str, Any] = json.loads(out.stdout)
    return stats


def _units(d: DaemonProcess) -> dict[str, dict[str, Any]]:
    return {item["unit"]: item for item in _stats(d)["units"]}


def test_unit_limits_spare_the_neighbour(cgroups: CgroupTree) -> None:
    """Two units under one uid, one flooding past its [limits.unit] rate: the other's records
    are all stored; the drops are the flooder's, in stats --json, the metrics and a
    suppressed record that names the unit; a reload limits the other unit live."""
    (uid,) = free_uids(1)
    with world() as root, DaemonProcess(root, extra=UNIT_LIMITS) as d:
        held = Held()
        held.flood(cgroups, "noisy", 2000, d.socket, uid)
        held.flood(cgroups, "quiet", 200, d.socket, uid)

        def settled() -> dict[str, dict[str, Any]] | None:
            units = _units(d)
            noisy, quiet = units["noisy.service"], units["quiet.service"]
            done = noisy["records"] + noisy["dropped"]["rate"] == 2000
            return units if done and quiet["records"] == 200 else None

        units = poll(settled, timeout=30)
        assert held.release() == [0, 0]
        noisy, quiet = units["noisy.service"], units["quiet.service"]
        assert quiet["dropped"] == dict.fromkeys(quiet["dropped"], 0)
        assert 50 <= noisy["records"] < 2000
        stored = d.wait_records(uid, 200 + noisy["records"])
        assert sum(r["msg"].startswith("quiet") for r in stored) == 200
        assert {r["unit"] for r in stored} == {"noisy.service", "quiet.service"}
        metrics = subprocess.run(d.command("metrics"), capture_output=True, text=True, check=True)
        assert (
            'trio_logd_unit_dropped_records_total{unit="noisy.service",reason="rate"} '
            f"{noisy['dropped']['rate']}"
        ) in metrics.stdout
        (report,) = d.wait_records(uid, 1, timeout=20, where=lambda r: r.get("event") is not None)
        assert (report["event"], report["reason"], report["unit"], report["count"]) == (
            "suppressed", "rate", "noisy.service", noisy["dropped"]["rate"],
        )  # fmt: skip

        # reload: the quiet unit gets a table of its own, in force for its next records
        d.config.write_text(
            d.config.read_text() + '\n[limits.unit."quiet.service"]\nrate_messages = 10\n'
        )
        subprocess.run(d.command("reload"), capture_output=True, check=True)
        again = Held()
        again.flood(cgroups, "quiet", 200, d.socket, uid, tag="again")
        poll(lambda: sum(_units(d)["quiet.service"]["dropped"].values()) > 0, timeout=30)
        assert again.release() == [0]
