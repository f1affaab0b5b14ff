"""Record lines as the daemon writes them, for store tests."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import orjson

from trio_logd.peer import PeerCred
from trio_logd.record import TS_AT, Stamp, daemon_record_line, encode_line, format_ts
from trio_logd.server._pipeline import Batch
from trio_logd.store.writer import StoreWriter

#: 2026-11-27T20:47:40Z
T0 = 1795812460.0


def line(seq: int, ts: float = T0, msg: str = "", uid: int = 5) -> bytes:
    """A sender's record line (pid 1) with *seq* at time *ts*.

    Without *msg*, every line is as long as any other (seq < 10**9).
    """
    msg = msg or "m" * (10 - len(str(seq)))
    stamp = b'"uid":%d,"gid":%d,"pid":1' % (uid, uid)
    claims = b'"fac":"user","sev":"info","msg":"%s"' % msg.encode()
    return encode_line(format_ts(ts).encode(), seq, stamp, claims)


def lines(first: int, last: int, ts: float = T0, msg: str = "") -> list[bytes]:
    """Lines with seq first..last."""
    return [line(s, ts, msg) for s in range(first, last + 1)]


def daemon_line(seq: int, event: str, ts: float = T0, uid: int = 5, **extra: object) -> bytes:
    """One of the daemon's own records."""
    return daemon_record_line(ts, seq, Stamp(PeerCred(os.getpid(), uid, 0)), event, **extra)


def batch(
    items: list[bytes],
    last_seq: int,
    *,
    event: str | None = None,
    on_stored: Callable[[int], None] | None = None,
) -> Batch:
    """A pipeline batch of *items* (received at one time, as ingest makes them)."""
    return Batch(items, sum(map(len, items)), last_seq, items[0][TS_AT], on_stored, event)


def seqs(records: object) -> list[int]:
    """The seq of each line."""
    return [orjson.loads(r)["seq"] for r in records]  # type: ignore[attr-defined]


def names(d: Path) -> list[str]:
    """Sorted names of the record files (and torn tails) in a directory: chain files and
    the unit index left out (tests/store/test_chain.py, test_unitindex.py are about those)."""
    return sorted(
        p.name for p in d.iterdir() if not p.name.endswith(".chain") and p.name != "units.index"
    )


def disk_bytes(d: Path) -> int:
    """Bytes of every file in a directory."""
    return sum(p.stat().st_size for p in d.iterdir())


def chain_bytes(d: Path) -> int:
    """Bytes of the files beside the record files in a directory: chains, the unit index."""
    return sum(
        p.stat().st_size
        for p in d.iterdir()
        if p.name.endswith(".chain") or p.name == "units.index"
    )


def seal_hash(d: Path, name: str) -> str:
    """The hash in the seal of rotated file *name*'s chain."""
    last = (d / (name + ".chain")).read_bytes().rstrip(b"\n").rsplit(b"\n", 1)[-1]
    return str(orjson.loads(last)["seal"]["hash"])


def deletion_marks(d: Path) -> bytes:
    """The deletion marks in the current chain of uid directory *d*."""
    kept = (d / "current.chain").read_bytes().splitlines(keepends=True)
    return b"".join(ln for ln in kept if ln.startswith(b'{"deleted"'))


def die(writer: StoreWriter) -> None:
    """What the kernel does to *writer*'s store lock when its process is killed: drop it.

    Its other fds stay open (a crashed writer's files are left as they were).
    """
    os.close(writer._lock_fd)
    writer._lock_fd = -1
