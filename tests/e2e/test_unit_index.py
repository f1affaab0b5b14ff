"""A real daemon keeps its unit index as it rotates, and ``logq -u`` (through the daemon and
with ``--directory``) opens only the files that may hold the unit's records."""

from __future__ import annotations

import functools
import os
import re
import socket

import orjson
import pytest

from tests._cgroups import CgroupTree
from tests._daemon import DaemonProcess, free_uids, poll, world
from tests.e2e.test_logq import Result, cfg, logq_as
from trio_logd.store._unitindex import INDEX, read_index

pytestmark = pytest.mark.usefixtures("as_root")

#: Small files: the often-logging unit's records rotate the store several times.
STORE = 'max_file_bytes = 2048\ncompress = "zstd"'
OFTEN = 40


def _send(path: str, hold: int, tag: str, n: int) -> None:
    """Send *n* records, one write each, then stay alive until *hold* (a pipe) is written
    to: the daemon reads a writer's unit through its pidfd, and an exited writer gets none."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(path)
        for i in range(n):
            s.sendall(f"<13>app: {tag} {i}\n".encode())
        os.read(hold, 1)


class Writers:
    """Writers forked into units, each held alive until its records are stored."""

    def __init__(self, cgroups: CgroupTree, d: DaemonProcess) -> None:
        self.cgroups, self.d = cgroups, d

    def log(self, unit: str, uid: int, tag: str, n: int) -> None:
        """A writer in system.slice/UNIT sends *n* records; returns once they are stored."""
        r, w = os.pipe()
        try:
            send = functools.partial(_send, self.d.socket, r, tag, n)
            pid = self.cgroups.fork_in(f"system.slice/{unit}", send, uid=uid)
            self.d.wait_records(uid, n, where=lambda rec: str(rec.get("msg")).startswith(tag))
            os.write(w, b"x")
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
        finally:
            os.close(r)
            os.close(w)


def _read_stats(r: Result) -> dict[str, int]:
    m = re.search(r"read: records=(\d+), files_opened=(\d+), files_skipped=(\d+)", r.err)
    assert m is not None, r.err
    return dict(zip(("records", "opened", "skipped"), map(int, m.groups()), strict=True))


def _msgs(r: Result) -> list[str]:
    assert r.rc == 0, r.err
    return [orjson.loads(line)["msg"] for line in r.out.splitlines()]


def test_logq_u_skips_the_files_whose_summary_names_no_match(cgroups: CgroupTree) -> None:
    """rare.service logs first, then often.service fills several files: -u rare opens the
    rare file and the current file only, -u none-such the current file only, unit= alike,
    offline too; with the index removed the same queries open every file."""
    (uid,) = free_uids(1)
    with world() as root, DaemonProcess(root, store_extra=STORE) as d:
        writers = Writers(cgroups, d)
        writers.log("rare.service", uid, "rare", 3)
        writers.log("often.service", uid, "often", OFTEN)
        udir = d.log_dir / str(uid)

        def settled() -> list[str] | None:
            """The rotated files, once every one is compressed and in the unit index."""
            names = os.listdir(udir)
            if any(n.endswith(".jsonl") and n != "current.jsonl" for n in names):
                return None
            zst = sorted(n[: -len(".zst")] for n in names if n.endswith(".jsonl.zst"))
            fd = os.open(udir, os.O_RDONLY | os.O_DIRECTORY)
            try:
                indexed = sorted(read_index(fd))
            finally:
                os.close(fd)
            return zst if len(zst) >= 4 and indexed == zst else None

        files = poll(settled, timeout=20)
        total = len(files) + 1  # and the current file
        rare = [f"rare {i}" for i in range(3)]
        # as the user through the daemon, and as root reading the directory
        for who, where in ((uid, cfg(d)), (0, ("--uid", str(uid), "--directory", str(d.log_dir)))):
            base = ("-o", "json", "--stats", *where)
            r = logq_as(who, who, "-u", "rare", *base)
            assert _msgs(r) == rare
            assert _read_stats(r) == {"records": 3, "opened": 2, "skipped": total - 2}
            r = logq_as(who, who, "unit=rare.service", "-n", "100", *base)
            assert (_msgs(r), _read_stats(r)["opened"]) == (rare, 2)
            r = logq_as(who, who, "-u", "none-such", *base)
            assert (_msgs(r), _read_stats(r)["opened"]) == ([], 1)
            r = logq_as(who, who, "-u", "often", "-n", "5", *base)
            assert _msgs(r) == [f"often {i}" for i in range(OFTEN - 5, OFTEN)]
        os.unlink(udir / INDEX)
        r = logq_as(uid, uid, "-u", "rare", "-o", "json", "--stats", *cfg(d))
        assert _msgs(r) == rare
        assert _read_stats(r)["opened"] >= total - 1  # every file but one written meanwhile


def test_a_user_learns_no_other_uids_units(cgroups: CgroupTree) -> None:
    """Another uid's summaries name a unit: a user's -u for it reads only her own files and
    answers as for a unit nobody has (same output and files opened)."""
    alice, bob = free_uids(2)
    with world() as root, DaemonProcess(root, store_extra=STORE) as d:
        writers = Writers(cgroups, d)
        writers.log("bobs.service", bob, "b", 30)
        writers.log("own.service", alice, "a", 30)
        poll(lambda: (d.log_dir / str(bob) / INDEX).exists())
        asked = logq_as(alice, alice, "-u", "bobs", "--stats", *cfg(d))
        nobody = logq_as(alice, alice, "-u", "nobody", "--stats", *cfg(d))
        assert (asked.rc, asked.out) == (nobody.rc, nobody.out) == (0, "")
        assert _read_stats(asked) == _read_stats(nobody)
