"""One uid's files as the writer holds them open, and what a rotation reports.

How this works: :class:`UidFile` is the writer's record of one uid
directory (its open ``current.jsonl`` and chain, the index of rotated files,
torn tails and spares); the writer's modules (``writer``, ``_deletion``,
``_startup``) read and update it under the writer's lock. :func:`disk_bytes`
is what the quota ledger holds for it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from trio_logd.store._chain import ChainWriter, Seal
from trio_logd.store._layout import RotatedName
from trio_logd.store._unitindex import UnitSet

__all__ = ["Rotation", "UidFile", "disk_bytes", "rotated_name"]


@dataclass(frozen=True, slots=True)
class Rotation:
    """One rotation: ``current.jsonl`` of *uid* became the rotated file *name*.

    Attributes:
        uid: whose file.
        name: the rotated file's name, uncompressed (``….jsonl``); it gets a
            ``.zst``/``.gz`` suffix once compressed.
        first_seq, last_seq: the ``seq`` range of the file.
        bytes: its size before compression.
        reason: ``size``, ``age`` or ``quota``.
        records: its lines (from its chain's seal; 0 without a chain).
        hash: its chain's final hash, hex (``""`` without a chain).
    """

    uid: int
    name: str
    first_seq: int
    last_seq: int
    bytes: int
    reason: str
    records: int = 0
    hash: str = ""


@dataclass(slots=True, eq=False)
class UidFile:
    """One uid's directory: its open current file and its rotated files."""

    uid: int
    dir_fd: int
    #: current.jsonl open for appending; -1 while it could not be (re)opened
    fd: int
    #: bytes of complete lines in current.jsonl
    size: int
    #: the uid's last seq written (current file or, after a rotation, the rotated file)
    last_seq: int
    dirty: bool = False
    #: a failed write may have left a partial line after ``size``: cut it first
    needs_trim: bool = False
    first_seq: int = 0
    first_ts: bytes = b""
    last_ts: bytes = b""
    #: epoch of the current file's first record other than a ``rotated``
    #: header; ``None`` while it holds none (an idle uid is never rotated by age)
    records_since: float | None = None
    #: rotated files by key (name without suffix), in seq order
    rotated: dict[tuple[int, int, int, int], tuple[RotatedName, int]] = field(default_factory=dict)
    #: torn tails set aside: name -> (size, mtime)
    torn: dict[str, tuple[int, float]] = field(default_factory=dict)
    #: fds of files rotated since the last sync: synced (per policy), then closed
    retired: list[int] = field(default_factory=list)
    #: the directory changed (rename, create) since the last sync
    dir_dirty: bool = False
    #: the hash chain of current.jsonl (``_chain``); None while it could not be opened
    chain: ChainWriter | None = None
    #: the seal of the newest rotated file: where the next chain starts
    seal: Seal | None = None
    #: bytes of rotated files' chain files, by key
    chains: dict[tuple[int, int, int, int], int] = field(default_factory=dict)
    #: the units the lines of current.jsonl name (``_unitindex``)
    units: UnitSet = field(default_factory=UnitSet)
    #: bytes of the unit index ``units.index``, and what it held after its
    #: last compaction (or at start)
    units_index: int = 0
    units_compacted: int = 0
    #: index lines of files rotated since the housekeeper last appended them
    pending_units: list[bytes] = field(default_factory=list)
    #: unnamed files made ahead in this directory (``O_TMPFILE``), linked into
    #: place as the next current.jsonl and current.chain (see ``prepare_spares``)
    spares: list[int] = field(default_factory=list)
    #: generation of the newest save in ``log_dir/.drops/<uid>`` (``dropstate``);
    #: None while that file could not be made (a full disk at registration)
    drops_gen: int | None = None
    #: when an append may next try to make a missing chain (``time.monotonic``)
    chain_retry_at: float = 0.0
    #: the last seq the previous run gave out (dropped records included), from
    #: ``log_dir/.drops/<uid>``: numbering goes on past it (``last_seq``)
    numbered: int = 0


@functools.lru_cache(maxsize=8192)
def rotated_name(n: RotatedName) -> str:
    """``n.format()``, remembered: retention snapshots every file once a pass."""
    return n.format()


def disk_bytes(uf: UidFile) -> int:
    """Bytes of every file of the uid: current, chains, rotated files, the unit index,
    torn tails."""
    return (
        uf.size
        + (uf.chain.size if uf.chain is not None else 0)
        + sum(size for _, size in uf.rotated.values())
        + sum(uf.chains.values())
        + uf.units_index
        + sum(size for size, _ in uf.torn.values())
    )
