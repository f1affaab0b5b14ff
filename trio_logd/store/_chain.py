"""Hash chains over the record files: the sidecar format and the writer's side.

How this works. Every record file ``F`` (``current.jsonl``, later its rotated
name ``X.jsonl``) has a *chain file* beside it: ``current.chain``, renamed to
``X.jsonl.chain`` when ``F`` is rotated (it keeps that name when ``F`` is
compressed). Readers never open it: it is not a record file's name.

The chain is SHA-256 over *blocks* of whole record lines::

    h[0] = start      (the predecessor's seal hash; 32 zero bytes for a uid's first file)
    h[k] = SHA-256(h[k-1] || the bytes of block k's lines, each with its LF)

A block is whatever the writer appended since the previous one: its rounds
are hashed as they are written (one ``update`` over the round's joined bytes,
~0.15 us per record) and the block is closed and written to the chain file
after ``FLUSH_LINES`` lines, when the housekeeper asks (once a second), at a
gap in ``seq``, at rotation and at close; so the chain file costs one small
write per second per busy uid, not one per round. Each block's line also
records a one-byte check per record line (the low byte of its Adler-32, ~0.1
us per record): the hash proves the block, the checks tell a verifier
*which* record changed (a changed line escapes its check with a chance of
about 1 in 256; the verifier then names the block's records).

Lines of a chain file, one JSON object each:

* the header, first: ``{"chain":1,"uid":U,"start":HEX,"prev":SEAL|null}`` —
  ``prev`` is the predecessor's seal, ``null`` for a uid's first file, or
  ``{"file":NAME,"hash":null}`` when the predecessor has no chain;
* a block: ``{"n":N,"seq":S,"end":OFFSET,"h":HEX,"c":BASE64}`` — N lines with
  ``seq`` S..S+N-1, ending at byte OFFSET of the record file, the chain's hash
  after them, their checks (one byte each); ``"seqs":[...]``
  instead of ``"seq"`` when they are not consecutive; ``"r":1`` when the
  block was chained at start from what was on disk (a crash had come before
  its block was written: the chain vouches for it from then on only);
* the seal, last line of a rotated file's chain:
  ``{"seal":{"file":NAME,"first_seq":..,"last_seq":..,"records":N,"bytes":B,"hash":HEX}}``;
* a deletion mark: ``{"deleted":{"file":NAME,...the file's seal...},"rule":RULE}``,
  written into the uid's current chain before retention removes a file;
  ``rule`` is the retention rule that chose it (``age``, ``quota``,
  ``max_bytes``, ``keep_free``; absent in marks of earlier versions).

The chain files are not synced per round: what a crash takes from one is
rebuilt at start from the record file (blocks marked ``"r"``). A sealed
chain is synced with the rotation that made it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
import os
import sys
import zlib
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
import structlog

from trio_logd.record import line_seq
from trio_logd.store import _layout

__all__ = [
    "CHAIN_SUFFIX",
    "CURRENT_CHAIN",
    "FLUSH_LINES",
    "GENESIS",
    "Block",
    "ChainFile",
    "ChainWriter",
    "Seal",
    "block_line",
    "chain_name",
    "deletion_line",
    "header_line",
    "line_checks",
    "parse_chain",
]

log = structlog.get_logger("trio_logd.store")

#: The chain file of ``current.jsonl``.
CURRENT_CHAIN: Final = "current.chain"
#: A rotated file ``X.jsonl`` has its chain in ``X.jsonl.chain``.
CHAIN_SUFFIX: Final = ".chain"
#: Where a uid's first file's chain starts.
GENESIS: Final = bytes(32)
#: A block is closed after this many lines: 4 KiB of checks per block line.
FLUSH_LINES: Final = 4096
VERSION: Final = 1
_LITTLE: Final = sys.byteorder == "little"


def chain_name(record_file: str) -> str:
    """The chain file of a record file (``current.jsonl`` or a rotated name, uncompressed)."""
    if record_file == "current.jsonl":
        return CURRENT_CHAIN
    return record_file + CHAIN_SUFFIX


def line_checks(lines: Iterable[bytes], *, without_lf: bool = False) -> bytes:
    """One byte per line: the low byte of the line's Adler-32 (LF included).

    Adler-32 rather than CRC-32: measured 0.11 against 0.19 us per 250-byte
    line, and its low byte (of the byte sum) changes with any one changed
    byte unless the sum wraps around its modulus.

    Args:
        lines: record lines.
        without_lf: the lines lack their LF (as ``bytes.split`` leaves them):
            the checks are those of the lines with it.
    """
    sums = array("I", map(zlib.adler32, lines))
    if without_lf:  # Adler-32 goes on from a value: adler32(b"\n", adler32(line))
        sums = array("I", map(zlib.adler32, itertools.repeat(b"\n"), sums))
    if not _LITTLE:
        sums.byteswap()
    return sums.tobytes()[0::4]  # the low byte of each little-endian 32-bit value


@dataclass(frozen=True, slots=True)
class Seal:
    """What a rotated file's chain ends with, and what its successor starts from.

    Attributes:
        file: the rotated file's name, uncompressed.
        first_seq, last_seq: its ``seq`` range (from its name).
        records: its lines.
        bytes: its size, uncompressed.
        hash: the chain's hash after its last block (hex).
    """

    file: str
    first_seq: int
    last_seq: int
    records: int
    bytes: int
    hash: str

    def as_dict(self) -> dict[str, Any]:
        """The seal as it appears in chain files and ``rotated`` records."""
        return {
            "file": self.file,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "records": self.records,
            "bytes": self.bytes,
            "hash": self.hash,
        }

    @classmethod
    def from_dict(cls, obj: Any) -> Seal:
        """Read a seal from a chain file's JSON.

        Raises:
            ValueError: not a seal.
        """
        try:
            return cls(
                str(obj["file"]),
                int(obj["first_seq"]),
                int(obj["last_seq"]),
                int(obj["records"]),
                int(obj["bytes"]),
                str(obj["hash"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            msg = f"not a seal: {obj!r:.80}"
            raise ValueError(msg) from exc


@dataclass(frozen=True, slots=True)
class Block:
    """One block line of a chain file.

    Attributes:
        n: how many record lines.
        seqs: their ``seq`` values (a ``range`` when consecutive).
        end: byte offset in the record file after its last line.
        hash: the chain's hash after it (hex).
        checks: one byte per line (:func:`line_checks`).
        recovered: chained at start from what a crash left on disk.
    """

    n: int
    seqs: Sequence[int | None]
    end: int
    hash: str
    checks: bytes
    recovered: bool = False


@dataclass(slots=True)
class ChainFile:
    """A chain file, parsed (:func:`parse_chain`).

    Attributes:
        start: where the chain starts (hex), from the header.
        prev: the predecessor's seal as the header names it (``None``: the
            uid's first file; a seal whose ``hash`` is ``""``: a predecessor
            without a chain).
        blocks: the blocks, in order.
        seal: the seal, if the file was rotated.
        deleted: deletion marks written into it.
        rules: the rule of each deletion mark that names one, by file name.
        problems: lines that could not be read (line number, why).
        torn: the last line had no LF (a crash while writing it): ignored.
    """

    start: str = GENESIS.hex()
    prev: Seal | None = None
    has_header: bool = False
    blocks: list[Block] = field(default_factory=list)
    seal: Seal | None = None
    deleted: list[Seal] = field(default_factory=list)
    rules: dict[str, str] = field(default_factory=dict)
    problems: list[tuple[int, str]] = field(default_factory=list)
    torn: bool = False

    @property
    def records(self) -> int:
        """Record lines the blocks cover."""
        return sum(b.n for b in self.blocks)

    @property
    def head(self) -> str:
        """The chain's hash after its last block (its start when it has none)."""
        return self.blocks[-1].hash if self.blocks else self.start

    @property
    def end(self) -> int:
        """Bytes of the record file the blocks cover."""
        return self.blocks[-1].end if self.blocks else 0


def _prev_seal(obj: Any) -> Seal | None:
    if obj is None:
        return None
    if isinstance(obj, dict) and obj.get("hash") is None:  # a predecessor without a chain
        return Seal(str(obj.get("file", "")), 0, 0, 0, 0, "")
    return Seal.from_dict(obj)


def _block(obj: dict[str, Any]) -> Block:
    n = int(obj["n"])
    seqs: Sequence[int | None]
    if "seqs" in obj:
        seqs = [None if s is None else int(s) for s in obj["seqs"]]
    else:
        first = int(obj["seq"])
        seqs = range(first, first + n)
    checks = base64.b64decode(obj["c"], validate=True)
    h = str(obj["h"])
    bytes.fromhex(h)
    if len(seqs) != n or len(checks) != n or n < 1:
        msg = f"a block of {n} lines with {len(seqs)} seqs and {len(checks)} checks"
        raise ValueError(msg)
    return Block(n, seqs, int(obj["end"]), h, checks, bool(obj.get("r")))


def parse_chain(data: bytes) -> ChainFile:
    """Parse a chain file's bytes. Never raises: unreadable lines are listed in ``problems``."""
    out = ChainFile()
    lines = data.split(b"\n")
    if lines[-1]:
        out.torn = True
    for number, raw in enumerate(lines[:-1], 1):
        try:
            obj = orjson.loads(raw)
            if not isinstance(obj, dict):
                msg = "not a JSON object"
                raise ValueError(msg)
            if "chain" in obj:
                if number != 1:
                    msg = "a header after the first line"
                    raise ValueError(msg)
                out.has_header = True
                out.start = str(obj["start"])
                bytes.fromhex(out.start)
                out.prev = _prev_seal(obj.get("prev"))
            elif "n" in obj:
                if out.seal is not None:
                    msg = "a block after the seal"
                    raise ValueError(msg)
                out.blocks.append(_block(obj))
            elif "seal" in obj:
                out.seal = Seal.from_dict(obj["seal"])
            elif "deleted" in obj:
                gone = _prev_seal(obj["deleted"]) or Seal("", 0, 0, 0, 0, "")
                out.deleted.append(gone)
                if isinstance(rule := obj.get("rule"), str):
                    out.rules[gone.file] = rule
            else:
                msg = "not a chain entry"
                raise ValueError(msg)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, binascii.Error) as exc:
            out.problems.append((number, str(exc) or type(exc).__name__))
    return out


def header_line(uid: int, prev: Seal | None, start: bytes) -> bytes:
    """The first line of a chain file."""
    if prev is not None and not prev.hash:
        prev_obj: Any = {"file": prev.file, "hash": None}
    else:
        prev_obj = None if prev is None else prev.as_dict()
    obj = {"chain": VERSION, "uid": uid, "start": start.hex(), "prev": prev_obj}
    return orjson.dumps(obj) + b"\n"


def block_line(
    n: int,
    seqs: Sequence[int | None] | int,
    end: int,
    digest: bytes,
    checks: bytes,
    *,
    recovered: bool,
) -> bytes:
    """One block line; *seqs* is the first seq when they are consecutive."""
    c = base64.b64encode(checks)
    r = b',"r":1' if recovered else b""
    if isinstance(seqs, int):
        return b'{"n":%d,"seq":%d,"end":%d,"h":"%s","c":"%s"%s}\n' % (
            n, seqs, end, digest.hex().encode(), c, r,
        )  # fmt: skip
    obj = {"n": n, "seqs": list(seqs), "end": end, "h": digest.hex(), "c": c.decode()}
    if recovered:
        obj["r"] = 1
    return orjson.dumps(obj) + b"\n"


def deletion_line(seal: Seal, rule: str | None = None) -> bytes:
    """A deletion mark: the removed file's seal (or just its name, when it had no chain),
    and the retention rule that removed it."""
    obj = seal.as_dict() if seal.hash else {"file": seal.file, "hash": None}
    mark: dict[str, Any] = {"deleted": obj}
    if rule is not None:
        mark["rule"] = rule
    return orjson.dumps(mark) + b"\n"


class ChainWriter:
    """The chain of the record file being appended: hashes rounds, writes blocks.

    Not thread-safe: the store's lock is held around every call. I/O errors
    are never raised: the pending block is kept and written by a later
    :meth:`flush` (records matter more than their chain; a chain that could
    not be written is what ``logq --verify`` then reports).

    Args:
        fd: the chain file, open for appending (the header already written).
        head: the chain's hash so far (its start, or its last block's).
        end: bytes of the record file covered so far.
        records: record lines covered so far.
        size: bytes of the chain file.
        what: how to name the file in the daemon's log.
    """

    __slots__ = (
        "_checks",
        "_failing",
        "_first",
        "_h",
        "_n",
        "_next",
        "_unsealed",
        "end",
        "fd",
        "head",
        "records",
        "size",
        "what",
    )

    def __init__(
        self, fd: int, head: bytes, *, end: int, records: int, size: int, what: str
    ) -> None:
        self.fd = fd
        self.head = head
        self.end = end
        self.records = records
        self.size = size
        self.what = what
        self._h = hashlib.sha256(head)
        self._checks = bytearray()
        self._n = 0
        self._first = 0
        self._next = 0
        self._failing = False
        self._unsealed = size

    def add(
        self,
        lines: Sequence[bytes],
        data: bytes | memoryview,
        last_seq: int,
        first: int | None = None,
    ) -> int:
        """Chain lines just appended to the record file (*data*: them, joined).

        *first* is the first line's ``seq`` if the caller knows it (else it is
        read from the line).

        Returns:
            Bytes written to the chain file (a block was closed), usually 0.
        """
        n = len(lines)
        if first is None:
            first = line_seq(lines[0])
        if first is None or last_seq - first + 1 != n:
            return self._add_irregular(lines, data)
        written = 0
        if self._n and first != self._next:  # a gap in seq: close the block before it
            written = self.flush()
        if not self._n:
            self._first = first
        self._h.update(data)
        self._checks += line_checks(lines)
        self._n += n
        self._next = last_seq + 1
        self.end += len(data)
        self.records += n
        if self._n >= FLUSH_LINES:
            written += self.flush()
        return written

    def _add_irregular(self, lines: Sequence[bytes], data: bytes | memoryview) -> int:
        """Lines whose seqs are not consecutive (or unreadable): a block of their own."""
        return self.add_block(lines, data, recovered=False)

    def add_block(
        self, lines: Sequence[bytes], data: bytes | memoryview, *, recovered: bool
    ) -> int:
        """Chain *lines* (joined: *data*) as a block of their own and write it now.

        Args:
            lines: record lines that follow what the chain covers.
            data: the same, joined.
            recovered: they were found on disk at start, not seen written.

        Returns:
            Bytes written to the chain file.
        """
        written = self.flush()
        h = hashlib.sha256(self.head)
        h.update(data)
        digest = h.digest()
        seqs = [line_seq(ln) for ln in lines]
        first = seqs[0]
        consecutive = first is not None and seqs == list(range(first, first + len(seqs)))
        line = block_line(
            len(lines),
            first if consecutive and first is not None else seqs,
            self.end + len(data),
            digest,
            line_checks(lines),
            recovered=recovered,
        )
        self.end += len(data)
        self.records += len(lines)
        self.head = digest
        self._h = hashlib.sha256(digest)
        if self._write(line):
            return written + len(line)
        return written  # lost: verify reports these lines as not chained

    def flush(self) -> int:
        """Close the pending block and write it. Returns the bytes written (0: none)."""
        if not self._n:
            return 0
        digest = self._h.digest()
        line = block_line(
            self._n, self._first, self.end, digest, bytes(self._checks), recovered=False
        )
        if not self._write(line):
            return 0  # kept pending (the hash object goes on): the next flush writes it
        self.head = digest
        self._h = hashlib.sha256(digest)
        self._checks.clear()
        self._n = 0
        return len(line)

    def _write(self, line: bytes) -> bool:
        try:
            _layout.write_all(self.fd, line)
        except OSError as exc:
            if not self._failing:
                log.error("chain_write_failed", file=self.what, error=exc.strerror)
            self._failing = True
            return False
        if self._failing:
            log.warning("chain_write_recovered", file=self.what)
            self._failing = False
        self.size += len(line)
        return True

    def seal(self, file: str, first_seq: int, last_seq: int, size: int) -> tuple[Seal, int]:
        """Close the chain of *file* (*size* bytes): flush, write the seal.

        Returns:
            The seal and the bytes written. A seal that could not be written
            is still returned (the ``rotated`` record carries it); the chain
            file then lacks it.
        """
        written = self.flush()
        self._unsealed = self.size
        pending = self._n  # a block that could not be written: not covered by the seal
        seal = Seal(file, first_seq, last_seq, self.records - pending, size, self.head.hex())
        line = orjson.dumps({"seal": seal.as_dict()}) + b"\n"
        if self._write(line):
            written += len(line)
        return seal, written

    def unseal(self) -> None:
        """Take the seal back: the rotation failed, the file goes on being appended."""
        try:
            os.ftruncate(self.fd, self._unsealed)
        except OSError as exc:
            log.error("chain_unseal_failed", file=self.what, error=exc.strerror)
            return
        self.size = self._unsealed

    def mark_deleted(self, seals: Sequence[tuple[Seal, str | None]]) -> int:
        """Write deletion marks (seal, rule) for files retention is about to remove.

        Returns:
            The bytes written.
        """
        data = b"".join(deletion_line(seal, rule) for seal, rule in seals)
        return len(data) if data and self._write(data) else 0
