"""A real daemon whose store is on the small tmpfs, an acknowledged sender, and the checks
every disk-full test makes: no seq reused, gaps exactly the counted drops, verify clean."""

from __future__ import annotations

import itertools
import socket
import subprocess
import time
from dataclasses import dataclass
from typing import Any

import orjson

from tests._daemon import PYTHON, DaemonProcess, poll
from tests.faults.conftest import SmallFs
from trio_logd.protocol.ack import ACK_HELLO, AckReader
from trio_logd.store.verify import verify_store


def daemon_on(fs: SmallFs, *, store_extra: str = "keep_free_bytes = 0", **kw: str) -> DaemonProcess:
    """A daemon (not started) whose ``log_dir`` is ``log`` on the tmpfs; sockets beside it.

    ``keep_free_bytes`` is 0 (its default would have retention empty the tmpfs).
    """
    d = DaemonProcess(fs.root.parent, store_extra=store_extra, **kw)
    log_dir = fs.root / "log"
    text = d.config.read_text().replace(f'log_dir = "{d.log_dir}"', f'log_dir = "{log_dir}"')
    d.config.write_text(text)
    d.log_dir = log_dir
    return d


class AckedSender:
    """One acknowledged connection (``protocol/ack.py``): records numbered 1, 2, … as sent."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.sock.sendall(ACK_HELLO)
        self.reader = AckReader()
        self.sent = 0
        self.dropped: set[int] = set()
        self.msgs: dict[int, str] = {}

    def send(self, msgs: list[str]) -> None:
        """Send *msgs* as records, in one write."""
        for m in msgs:
            self.sent += 1
            self.msgs[self.sent] = m
        self.sock.sendall(b"".join(b"<14>faults: %s\n" % m.encode() for m in msgs))

    def settle(self, timeout: float = 15.0) -> None:
        """Read acknowledgements until every record sent is settled (stored or dropped)."""
        deadline = time.monotonic() + timeout
        while self.reader.acked < self.sent:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
            data = self.sock.recv(65536)
            assert data, f"connection closed at ack {self.reader.acked} of {self.sent}"
            for e in self.reader.receive_data(data):
                if e.kind == "drop":
                    self.dropped.update(range(e.first, e.last + 1))

    def exhaust(self, size: int = 1000) -> int:
        """After ``fill``: send records one by one until one is dropped (the last page of
        the current file had room); return how many were stored."""
        stored = 0
        while True:
            self.send([f"probe-{self.sent + 1}-" + "p" * size])
            self.settle()
            if self.sent in self.dropped:
                return stored
            stored += 1
            assert stored < 64, "the disk does not fill"

    def stored(self) -> set[str]:
        """The messages the daemon acknowledged as stored."""
        return {m for n, m in self.msgs.items() if n <= self.reader.acked and n not in self.dropped}

    def lost(self) -> set[str]:
        """The messages the daemon reported as dropped (probes left out)."""
        return {m for n in self.dropped if not (m := self.msgs[n]).startswith("probe-")}

    def close(self) -> None:
        self.sock.close()


@dataclass(frozen=True)
class Accounting:
    """A uid's records on disk, seen as the fault tests judge them."""

    seqs: list[int]
    #: seqs missing between the first and the last record on disk
    gaps: int
    #: the sum of ``count`` of its ``suppressed`` records with reason ``disk``
    disk_reported: int
    msgs: set[str]
    records: list[dict[str, Any]]

    @property
    def reused(self) -> int:
        """seqs stored more than once, or out of order."""
        return sum(1 for a, b in itertools.pairwise(self.seqs) if b <= a)


def disk_reported(recs: list[dict[str, Any]]) -> int:
    """The sum of ``count`` of the ``suppressed`` records with reason ``disk`` among *recs*."""
    return sum(
        int(r["count"]) for r in recs if r.get("event") == "suppressed" and r["reason"] == "disk"
    )


def account(d: DaemonProcess, uid: int) -> Accounting:
    """Read *uid*'s records from disk (the daemon stopped) and count what the tests assert."""
    recs = d.records(uid)
    seqs = [r["seq"] for r in recs]
    gaps = sum(b - a - 1 for a, b in itertools.pairwise(seqs) if b > a + 1)
    reported = disk_reported(recs)
    msgs = {r["msg"] for r in recs if "event" not in r and "msg" in r}
    return Accounting(seqs, gaps, reported, msgs, recs)


def wait_reported(d: DaemonProcess, uid: int, count: int, timeout: float = 20.0) -> None:
    """Poll until *uid*'s ``suppressed`` records with reason ``disk`` count *count* in all."""

    def enough() -> bool:
        return disk_reported(d.records(uid)) >= count

    try:
        poll(enough, timeout=timeout, interval=0.1)
    except AssertionError as exc:
        events = [
            (r["seq"], r.get("event"), r.get("count")) for r in d.records(uid) if "event" in r
        ]
        msg = f"suppressed (disk) never reached {count}: {events}\n{d.stderr()[-3000:]}"
        raise AssertionError(msg) from exc


def logq_messages(d: DaemonProcess, uid: int) -> set[str]:
    """What ``logq --directory`` shows of *uid*'s senders' messages."""
    out = subprocess.run(
        [PYTHON, "-m", "trio_logd.cli.logq", "--uid", str(uid), "-o", "json", "--no-pager",
         "--directory", str(d.log_dir)],
        capture_output=True,
        check=True,
    ).stdout  # fmt: skip
    return {r["msg"] for r in map(orjson.loads, out.splitlines()) if "event" not in r}


def verify_problems(d: DaemonProcess) -> list[str]:
    """``logq --verify``'s problems (changes after writing), described; checks its exit too."""
    problems = [f.describe() for f in verify_store(d.log_dir).problems]
    done = subprocess.run(
        [PYTHON, "-m", "trio_logd.cli.logq", "--verify", "--directory", str(d.log_dir)],
        capture_output=True,
        check=False,
    )
    assert (done.returncode == 0) == (not problems), done.stdout + done.stderr
    return problems
