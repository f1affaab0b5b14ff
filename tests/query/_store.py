"""Lay out a store on disk as the daemon would: rotated (compressed) files + current.

Records are made with the daemon's own encoder (``record.encode_line``), so
lines are byte for byte what the writer stores.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import zstandard

from trio_logd.record import encode_line, format_ts
from trio_logd.store._layout import CURRENT, RotatedName

__all__ = ["T0", "Rec", "line", "write_uid"]

T0 = 1_790_000_000.0  # 2026-09-21, a fixed origin for reproducible stores


@dataclass
class Rec:
    """One record to lay out."""

    t: float
    msg: str
    sev: str = "info"
    pid: int = 100
    app: str = "app"
    extra: dict[str, Any] = field(default_factory=dict)


def line(uid: int, seq: int, rec: Rec) -> bytes:
    """The stored line of *rec* (LF included)."""
    stamp = orjson.dumps({"uid": uid, "gid": uid, "pid": rec.pid})[1:-1]
    claims = orjson.dumps(
        {"fac": "user", "sev": rec.sev, "app": rec.app, "msg": rec.msg, **rec.extra}
    )
    return encode_line(format_ts(rec.t).encode(), seq, stamp, claims[1:-1])


def _compress(data: bytes, suffix: str) -> bytes:
    if suffix == ".zst":
        return zstandard.ZstdCompressor().compress(data)
    if suffix == ".gz":
        return gzip.compress(data)
    return data


def write_uid(
    log_dir: Path,
    uid: int,
    recs: Sequence[Rec],
    *,
    per_file: int = 0,
    suffixes: Sequence[str] = (".zst",),
    first_seq: int = 1,
    torn: bytes = b"",
) -> list[bytes]:
    """Write *recs* for *uid*: rotated files of *per_file* records, the rest current.

    Args:
        suffixes: compression of the rotated files, cycled (``""``, ``.gz``, ``.zst``).
        torn: bytes appended to the current file after its last line (a torn write).

    Returns:
        Every stored line (without LF), oldest first.
    """
    d = log_dir / str(uid)
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    lines = [line(uid, first_seq + i, r) for i, r in enumerate(recs)]
    start = 0
    k = 0
    if per_file:
        while len(lines) - start > per_file:
            part = lines[start : start + per_file]
            seq0 = first_seq + start
            span = RotatedName(
                seq0,
                seq0 + len(part) - 1,
                int(recs[start].t),
                -int(-recs[start + len(part) - 1].t // 1),
                suffixes[k % len(suffixes)],
            )
            (d / span.format()).write_bytes(_compress(b"".join(part), span.suffix))
            start += per_file
            k += 1
    (d / CURRENT).write_bytes(b"".join(lines[start:]) + torn)
    os.chmod(d / CURRENT, 0o600)
    return [ln[:-1] for ln in lines]
