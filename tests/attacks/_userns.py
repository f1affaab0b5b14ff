"""Rootless-container attackers: a user's subordinate uids, mapped as ``newuidmap`` maps them.

:class:`SubordinateHolder` forks a child that drops to the owner's uid and
creates a user namespace (``unshare(CLONE_NEWUSER)``); the test, as root,
then writes the child's ``uid_map`` and ``gid_map`` as ``newuidmap`` and
``newgidmap`` would from ``/etc/subuid`` and ``/etc/subgid``: namespace id 0
is the owner, ids 1… are her subordinate range. The child forks one process
per namespace uid 1…n, each ``setuid`` to it (the kernel then reports
``base + k - 1`` for it, outside), which opens connections to the daemon,
sends what it is told and holds the connections until released.
"""

from __future__ import annotations

import ctypes
import os
import pwd
import select
import socket
from collections.abc import Sequence
from pathlib import Path

from tests._daemon import DaemonProcess
from tests.attacks._helpers import fork_as

#: <linux/sched.h>
CLONE_NEWUSER = 0x10000000
#: 65 536 subordinate ids, as Debian's useradd gives each user.
RANGE = 65536
_libc = ctypes.CDLL(None, use_errno=True)


def free_id_range(count: int = RANGE) -> int:
    """A base id such that base … base+count-1 have no passwd/group entry and run no process."""
    taken = {p.pw_uid for p in pwd.getpwall()}
    running: set[int] = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/status", "rb") as f:
                    for line in f:
                        if line.startswith(b"Uid:"):
                            running.update(int(x) for x in line.split()[1:])
                            break
            except OSError:
                continue
    for base in range(300_000, 4_000_000_000, 1_000_000):
        if not any(base <= u < base + count for u in taken | running):
            return base
    msg = "no free range of subordinate ids"
    raise AssertionError(msg)


def write_subid_files(root: Path, owner: int, base: int, count: int = RANGE) -> tuple[Path, Path]:
    """``subuid``/``subgid`` files of the test (never the host's) delegating base… to *owner*."""
    try:
        name = pwd.getpwuid(owner).pw_name  # as useradd writes it: by name
    except KeyError:
        name = str(owner)
    subuid, subgid = root / "subuid", root / "subgid"
    subuid.write_text(f"# test copy of /etc/subuid\n{name}:{base}:{count}\n")
    subgid.write_text(f"{name}:{base}:{count}\n")
    return subuid, subgid


def subid_config(subuid: Path, subgid: Path, mode: str = "owner") -> str:
    """The ``[identity]`` table naming the test's files."""
    return (
        f'[identity]\nsubordinate_ids = "{mode}"\n'
        f'subuid_file = "{subuid}"\nsubgid_file = "{subgid}"\n'
    )


def _unshare_user() -> None:
    if _libc.unshare(CLONE_NEWUSER) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


class SubordinateHolder:
    """The owner's namespace: *uids* namespace uids (1…), each with *conns* connections.

    Args:
        daemon: the daemon attacked.
        owner: the user whose subordinate ids are used.
        base: the first id of her range (namespace uid 1 is *base*).
        uids: how many subordinate uids take part.
        conns: connections each opens (and keeps while the daemon keeps them).
        frames: what each sends on its first connection once connected.
    """

    def __init__(
        self,
        daemon: DaemonProcess,
        owner: int,
        base: int,
        *,
        uids: int,
        conns: int,
        frames: Sequence[bytes] = (),
    ) -> None:
        go_r, go_w = os.pipe()
        rep_r, rep_w = os.pipe()
        hold_r, hold_w = os.pipe()

        def member(k: int) -> None:
            os.setgroups([])
            os.setgid(k)
            os.setuid(k)
            held = []
            for i in range(conns):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(daemon.socket)
                if i == 0:
                    for f in frames:
                        s.sendall(f)
                held.append(s)
            os.write(rep_w, b"%d %d\n" % (os.getpid(), len(held)))
            os.read(hold_r, 1)  # until the test releases

        def child() -> None:
            os.close(go_w)
            os.close(rep_r)
            os.close(hold_w)
            _unshare_user()
            os.write(rep_w, b"unshared\n")
            assert os.read(go_r, 1) == b"g", "maps not written"
            kids = []
            for k in range(1, uids + 1):
                pid = os.fork()
                if pid == 0:
                    code = 1
                    try:
                        member(k)
                        code = 0
                    finally:
                        os._exit(code)
                kids.append(pid)
            failed = 0
            for pid in kids:
                _, status = os.waitpid(pid, 0)
                failed += os.waitstatus_to_exitcode(status) != 0
            assert not failed, f"{failed} members failed"

        self.pid = fork_as(owner, child)
        os.close(go_r)
        os.close(rep_w)
        os.close(hold_r)
        self._hold = hold_w
        self._rep = rep_r
        self._buf = b""
        assert self._line() == b"unshared"
        # what newuidmap/newgidmap write from /etc/subuid and /etc/subgid
        for kind in ("uid_map", "gid_map"):
            Path(f"/proc/{self.pid}/{kind}").write_text(f"0 {owner} 1\n1 {base} {RANGE}\n")
        os.write(go_w, b"g")
        os.close(go_w)
        #: kernel pid -> connections opened, of each member
        self.opened: dict[int, int] = {}
        for _ in range(uids):
            pid, n = self._line().split()
            self.opened[int(pid)] = int(n)

    def _line(self, timeout: float = 60.0) -> bytes:
        while b"\n" not in self._buf:
            ready, _, _ = select.select([self._rep], [], [], timeout)
            assert ready, "subordinate holder did not answer in time"
            data = os.read(self._rep, 4096)
            assert data, "subordinate holder exited"
            self._buf += data
        line, self._buf = self._buf.split(b"\n", 1)
        return line

    def release(self) -> None:
        """Close every connection; the members and the child exit."""
        os.close(self._hold)
        os.close(self._rep)
        _, status = os.waitpid(self.pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "subordinate holder failed"
