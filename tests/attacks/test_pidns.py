"""pid forgery inside one's own pid namespace (``unshare -Urpf``): the record says so.

After ``unshare -Urpf`` an unprivileged user owns a user namespace and a pid
namespace, so she has CAP_SYS_ADMIN over that pid namespace and the kernel
lets her put the pid of another of *her own* processes in that namespace in
``SCM_CREDENTIALS``. Defined outcome: the uid and gid stay the kernel's (hers:
they cannot be forged); the pid is the one she named, a process of hers; and
the record carries the trusted ``pidns: true``, read through a pidfd, which
says the writer is in another pid namespace than the daemon, where such a
pid is only as good as that namespace's owner. A writer in the daemon's pid
namespace gets no ``pidns``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tests._daemon import DaemonProcess
from tests.attacks._helpers import ATTACKER, Bystander, send_as, wait_records
from tests.attacks.conftest import AttackRow

pytestmark = pytest.mark.usefixtures("as_root")

UNSHARE = shutil.which("unshare") or "/usr/bin/unshare"
SYSTEM_PYTHON = "/usr/bin/python3"  # a child of another uid may not reach the venv's

#: Runs as pid 1 of a new pid namespace: forks another process of its own,
#: then writes one record naming that process's pid and one as itself. Both
#: stay alive until stdin ends: the daemon looks at a writer's namespace when
#: it reads the bytes, and one that is gone by then cannot be verified.
FORGER = r"""
import json, os, socket, struct, sys

def host_pid():
    with open("/proc/self/status") as f:  # the host's /proc: NSpid = host pid, our pid
        for line in f:
            if line.startswith("NSpid:"):
                return [int(x) for x in line.split()[1:]]

r, w = os.pipe()
hold_r, hold_w = os.pipe()
kid = os.fork()
if kid == 0:
    os.close(hold_w)
    os.write(w, json.dumps(host_pid()).encode())
    os.read(hold_r, 1)
    os._exit(0)
kid_pids = json.loads(os.read(r, 4096))
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
forged = struct.pack("iII", kid, os.getuid(), os.getgid())
s.sendmsg([b"<14>forger: as my other process\n"],
          [(socket.SOL_SOCKET, socket.SCM_CREDENTIALS, forged)])
s.sendmsg([b"<14>forger: as myself\n"])
print(json.dumps({"me": host_pid(), "kid": kid_pids}), flush=True)
sys.stdin.read()
s.close()
os.close(hold_w)
os.waitpid(kid, 0)
"""


def _as_attacker() -> None:
    os.setgroups([])
    os.setgid(ATTACKER)
    os.setuid(ATTACKER)


class Forger:
    """``unshare -Urpf`` as the attacker, running :data:`FORGER` until :meth:`release`."""

    def __init__(self, daemon: DaemonProcess) -> None:
        self.proc = subprocess.Popen(
            [UNSHARE, "-Urpf", SYSTEM_PYTHON, "-c", FORGER, daemon.socket],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=_as_attacker,  # exec'd after: only the system python is needed
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, self.proc.stderr.read() if self.proc.stderr else b""
        #: host and namespace pids of the forger and of its other process
        self.pids: dict[str, list[int]] = json.loads(line)

    def release(self) -> None:
        """Let both processes exit; they must exit 0."""
        _out, err = self.proc.communicate(timeout=30)
        assert self.proc.returncode == 0, err


def test_pid_named_inside_own_pid_namespace_is_flagged(
    daemon: DaemonProcess, attack_report: AttackRow
) -> None:
    """unshare -Urpf, then SCM_CREDENTIALS naming another own process: uid kept, pidns: true."""
    by = Bystander(daemon)
    by.send(3)
    forger = Forger(daemon)
    try:
        recs = wait_records(daemon, ATTACKER, 2)
    finally:
        forger.release()
    pids = forger.pids
    plain = send_as(daemon, ATTACKER, [b"<14>plain: outside\n"])
    by.send(3)
    recs = wait_records(daemon, ATTACKER, 3)
    lost = 3 - len(recs) + by.lost()
    attack_report.report(
        "unshare -Urpf: SCM_CREDENTIALS naming another own process's pid",
        "uid/gid the kernel's; pid of her own process; pidns: true on the record",
        lost,
    )
    me_host, me_ns = pids["me"]
    kid_host, kid_ns = pids["kid"]
    assert (me_ns, kid_ns) == (1, 2)  # pid 1 of its namespace, and its child
    forged, own, outside = recs
    assert forged["msg"] == "as my other process"
    assert (forged["uid"], forged["gid"], forged["pid"]) == (ATTACKER, ATTACKER, kid_host)
    assert forged["pidns"] is True
    assert (forged["conn_uid"], forged["conn_pid"]) == (ATTACKER, me_host)
    assert (own["msg"], own["pid"], own["pidns"]) == ("as myself", me_host, True)
    assert (own["uid"], own["gid"]) == (ATTACKER, ATTACKER)
    assert (outside["msg"], outside["pid"]) == ("outside", plain["pid"])
    assert "pidns" not in outside  # the daemon's own pid namespace
    assert lost == 0
    by.assert_intact()
