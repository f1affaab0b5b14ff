"""Checking the store's hash chains and seals: the engine of ``logq --verify``.

How this works: for each uid, every record file is read (decompressed) with
its chain file (``_chain``), oldest first, and checked in three ways:

* **contents**: each line's check (a byte of its Adler-32) against the chain's,
  then each block's SHA-256 from the chain's start. When every check matches
  and every hash too, the file holds exactly what the daemon wrote. When not,
  the lines are aligned with the chain's ``(seq, check)`` list (difflib), so
  that each difference is named: a record changed, removed, moved, added, or
  the end cut off;
* **links**: each file's chain starts from its predecessor's seal, named in
  its header. A predecessor that is gone is fine only if retention deleted it
  (retention marks each deletion in the current chain first, and deletes
  oldest first); anything else missing is a problem. The ``rotated`` records
  (in the files, and forwarded with them) carry each seal too, and must agree;
* **what is not a problem**: records at the end of ``current.jsonl`` that
  the daemon has not chained yet (it does so within a second), blocks
  chained at start after a crash (the chain vouches for them only from
  then on), ``seq`` gaps inside the chain (records lost before they were
  written: the chain covers what was written), files written before chains
  existed, and a chain file found *empty* (a crash before its bytes reached
  the disk, or a file-system repair such as ``fsck`` that emptied it) beside
  a record file that is whole: complete lines whose ``seq`` run is the one
  its name (and its successor's chain) says. These are reported as notes.

A file that cannot be read to its end (a compressed file cut short, empty,
with a bad CRC or not of its suffix's format; a directory, FIFO or symlink
where a file belongs; a file that cannot be opened) is a problem,
``damaged``, naming the file and what is wrong; what could be read of it
is still checked against its chain (the records lost are named), and the
other files and uids are verified as usual. Files the store does not know
(neither record files, chains nor torn chains) are not looked at.

The store may be live: the chain of ``current.jsonl`` is read before its
records (a block is written only after its records, so the chain never
covers more than the records read), and a uid is verified again from the
start when one of its files is rotated, compressed or deleted under us.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import itertools
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson

from trio_logd.errors import StoreError
from trio_logd.record import daemon_event, line_seq
from trio_logd.store import _layout
from trio_logd.store._chain import (
    CHAIN_SUFFIX,
    CURRENT_CHAIN,
    ChainFile,
    Seal,
    chain_name,
    line_checks,
    parse_chain,
)
from trio_logd.store.files import (
    DIR_FLAGS,
    DamagedFile,
    open_record_file,
    read_error,
    read_readable,
    read_whole,
    rotated_files,
    suffix_of,
)

__all__ = ["Finding", "Report", "verify_store"]

#: How often a uid is verified again when the daemon moves its files under us.
RETRIES: Final = 10


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing ``--verify`` found.

    Attributes:
        uid: whose files.
        file: the file's name in the uid directory (``""``: the uid as a whole).
        what: a keyword: ``changed``, ``removed``, ``reordered``, ``added``,
            ``truncated``, ``missing``, ``unchained``, ``unsealed``,
            ``mismatch``, ``damaged`` (a file that cannot be read, or not to
            its end), ``unreadable`` (a uid directory that cannot be listed)
            (problems); ``deleted``, ``gap``,
            ``recovered``, ``pending``, ``legacy``, ``interrupted``,
            ``emptied`` (notes; ``emptied`` is a problem when the records
            do not match the file's name).
        text: what it is, in words, naming the ``seq`` values concerned.
        problem: whether it means the store was changed after writing.
        first_seq, last_seq: the ``seq`` range concerned, when there is one.
    """

    uid: int
    file: str
    what: str
    text: str
    problem: bool
    first_seq: int | None = None
    last_seq: int | None = None

    def describe(self) -> str:
        """One line: ``UID/FILE: TEXT``."""
        where = f"{self.uid}/{self.file}" if self.file else f"uid {self.uid}"
        return f"{where}: {self.text}"

    def as_dict(self) -> dict[str, Any]:
        """The finding as a JSON object (``logq --verify -o json``)."""
        out: dict[str, Any] = {
            "uid": self.uid,
            "file": self.file,
            "what": self.what,
            "problem": self.problem,
            "text": self.text,
        }
        if self.first_seq is not None:
            out["first_seq"] = self.first_seq
            out["last_seq"] = self.last_seq
        return out


@dataclass(slots=True)
class Report:
    """Everything ``--verify`` found, and what it read."""

    findings: list[Finding] = field(default_factory=list)
    uids: int = 0
    files: int = 0
    records: int = 0

    @property
    def problems(self) -> list[Finding]:
        """The findings that mean a change after writing."""
        return [f for f in self.findings if f.problem]


#: How a deletion mark's rule reads (``retention.RULES``): routine retention
#: apart from disk pressure, which may come from outside the store.
_DELETED_BY: Final = {
    "age": "deleted by retention: max_age",
    "quota": "deleted by retention: the uid's quota_bytes",
    "max_bytes": "deleted under disk pressure: max_bytes (all uids together)",
    "keep_free": "deleted under disk pressure: keep_free_bytes (the file system was short "
    "of free space)",
}


def _deleted(rule: str | None) -> str:
    """What deleted a file, from its deletion mark's rule (none in marks of older versions)."""
    if rule is None:
        return "deleted by retention"
    return _DELETED_BY.get(rule, f"deleted by retention (rule {rule!r})")


def _seqs(first: int | None, last: int | None) -> str:
    if first is None:
        return ""
    return f"seq {first}" if last == first else f"seq {first}..{last}"


class _Moved(Exception):
    """A file moved under us (rotation, compression, retention): verify the uid again."""


@dataclass(slots=True)
class _File:
    """One record file as read, and what its checks found out."""

    name: str  # uncompressed (the name chains and seals use)
    shown: str  # the name on disk
    rotated: _layout.RotatedName | None
    chain: ChainFile | None
    records: int = 0
    #: the chain's final hash, recomputed from the records (None: they differ)
    head: str | None = None
    #: ``rotated`` records found in it: (seq, record)
    rotations: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    #: its chain file is there but empty (``chain`` is None)
    emptied: bool = False
    #: the seqs of its complete lines, in file order (for an emptied chain)
    seqs: list[int | None] = field(default_factory=list)
    #: its chain file is there but could not be read (said as ``damaged``)
    chain_damaged: bool = False
    #: it could not be read to its end (said as ``damaged``)
    damaged: bool = False


class _Uid:
    """Verification of one uid directory."""

    def __init__(self, directory: Path, uid: int) -> None:
        self.dir = directory
        self.uid = uid
        self.findings: list[Finding] = []
        #: the rule of each deletion mark found, by file name
        self.rules: dict[str, str] = {}

    def say(
        self,
        file: str,
        what: str,
        text: str,
        *,
        problem: bool,
        first: int | None = None,
        last: int | None = None,
    ) -> None:
        if first is not None:
            text = f"{_seqs(first, last)}: {text}"
        self.findings.append(
            Finding(self.uid, file, what, text, problem, first, last if first is not None else None)
        )

    # -- reading ------------------------------------------------------------

    def _open(self, name: str) -> int:
        """An fd of the regular file *name*, never through a symlink or a FIFO's wait.

        Raises:
            DamagedFile: it is not a regular file, or cannot be opened.
        """
        try:
            dir_fd = os.open(self.dir, DIR_FLAGS)
        except OSError as exc:
            msg = f"cannot open {self.dir}: {exc.strerror}"
            raise StoreError(msg) from exc
        try:
            fd = open_record_file(dir_fd, name, str(self.dir))
        finally:
            os.close(dir_fd)
        if fd is None:
            raise _Moved
        return fd

    def _read(self, name: str) -> bytes:
        fd = self._open(name)
        try:
            return read_whole(fd, suffix_of(name))
        except OSError as exc:  # plain files only: an I/O error
            raise DamagedFile(str(self.dir / name), read_error(exc)) from exc
        finally:
            os.close(fd)

    def _read_chain(self, f: _File, name: str) -> bytes | None:
        """The chain file *name* of *f*; ``None`` (said as ``damaged``) if it cannot be read."""
        try:
            return self._read(name)
        except DamagedFile as exc:
            self.say(name, "damaged", f"damaged: {exc.reason}", problem=True)
            f.chain_damaged = True
            return None

    def _read_records(self, f: _File) -> bytes | None:
        """What can be read of *f*'s record file; the damage, if any, said as ``damaged``."""
        try:
            fd = self._open(f.shown)
        except DamagedFile as exc:
            self.say(f.shown, "damaged", f"damaged: {exc.reason}", problem=True)
            f.damaged = True
            return None
        try:
            data, failed = read_readable(fd, suffix_of(f.shown))
        finally:
            os.close(fd)
        if failed is not None:
            f.damaged = True
            self.say(
                f.shown, "damaged", f"damaged: {read_error(failed)}: {len(data)} bytes of "
                "records read, those after the damage are lost", problem=True,
            )  # fmt: skip
        return data

    def _current(self) -> tuple[bytes | None, bytes]:
        """The current chain and then the current file, as one consistent pair.

        Raises:
            DamagedFile: one of them is not a regular file, or cannot be opened.
        """
        chain_fd = None
        with contextlib.suppress(_Moved):
            chain_fd = self._open(CURRENT_CHAIN)
        try:
            data_fd = self._open(_layout.CURRENT)
        except BaseException:
            if chain_fd is not None:
                os.close(chain_fd)
            raise
        try:
            # a rotation between the two opens would pair a chain with the wrong file
            for fd, name in ((chain_fd, CURRENT_CHAIN), (data_fd, _layout.CURRENT)):
                if fd is None:
                    continue
                try:
                    same = os.path.samestat(os.fstat(fd), os.stat(self.dir / name))
                except FileNotFoundError:
                    same = False
                if not same:
                    raise _Moved
            chain = None if chain_fd is None else read_whole(chain_fd, "")
            return chain, read_whole(data_fd, "")
        finally:
            os.close(data_fd)
            if chain_fd is not None:
                os.close(chain_fd)

    def files(self) -> tuple[list[_File], set[str], list[str]]:
        """The record files oldest first (chains read), chain files, torn chains."""
        try:
            names = os.listdir(self.dir)
        except OSError as exc:
            msg = f"cannot list {self.dir}: {exc.strerror}"
            raise StoreError(msg) from exc
        chains = {n for n in names if n.endswith(CHAIN_SUFFIX)}
        torn = sorted(
            n for n in names if n.startswith(_layout.TORN_PREFIX) and n.endswith(".chain.partial")
        )
        sealed = self._interrupted(names, chains)
        out: list[_File] = []
        for r in rotated_files(names):
            plain = r.with_suffix("").format()
            cname = chain_name(plain)
            f = _File(plain, r.format(), r, None)
            raw = self._read_chain(f, cname) if cname in chains else None
            if raw is not None:
                f.chain, f.emptied = (parse_chain(raw) if raw else None), raw == b""
            elif not f.chain_damaged:
                f.chain = sealed.get(plain)
            data = self._read_records(f)
            if data is not None:
                self._contents(f, data)
            out.append(f)
        if _layout.CURRENT in names:
            try:
                raw_chain, data = self._current()
            except DamagedFile as exc:  # current.jsonl or current.chain
                self.say(
                    os.path.basename(exc.path), "damaged", f"damaged: {exc.reason}", problem=True
                )
            else:
                chain = parse_chain(raw_chain) if raw_chain else None
                f = _File(_layout.CURRENT, _layout.CURRENT, None, chain, emptied=raw_chain == b"")
                self._contents(f, data)
                out.append(f)
        return out, chains, torn

    def _empty(self, name: str) -> bool:
        try:
            return os.stat(self.dir / name, follow_symlinks=False).st_size == 0
        except FileNotFoundError:
            return False

    def _interrupted(self, names: list[str], chains: set[str]) -> dict[str, ChainFile]:
        """A crash between a rotation's two renames left the sealed chain as current.chain."""
        if _layout.CURRENT in names or CURRENT_CHAIN not in chains:
            return {}
        try:
            cf = parse_chain(self._read(CURRENT_CHAIN))
        except (_Moved, DamagedFile):  # a damaged one is said with the other chains
            return {}
        if cf.seal is None or chain_name(cf.seal.file) in chains:
            return {}
        chains.discard(CURRENT_CHAIN)
        self.say(
            cf.seal.file, "interrupted", "a rotation was interrupted: its chain is still "
            "current.chain (the next start of the daemon renames it)", problem=False,
        )  # fmt: skip
        return {cf.seal.file: cf}

    # -- one file's contents ---------------------------------------------------

    def _contents(self, f: _File, data: bytes) -> None:
        lines = data.split(b"\n")
        partial = lines.pop()
        f.records = len(lines)
        if f.emptied:
            f.seqs = [line_seq(line) for line in lines]
        current = f.rotated is None
        for i, line in enumerate(lines):
            if daemon_event(line) == "rotated":
                with contextlib.suppress(orjson.JSONDecodeError):
                    obj = orjson.loads(line)
                    if isinstance(obj, dict):
                        f.rotations.append((line_seq(line) or i, obj))
        cf = f.chain
        if cf is not None:
            for number, why in cf.problems:
                self.say(
                    chain_name(f.name), "damaged", f"line {number} unreadable: {why}", problem=True
                )
            if current and cf.seal is not None:
                self.say(
                    f.shown,
                    "interrupted",
                    "its chain is sealed but the file was not rotated: a rotation was "
                    "interrupted (the next start of the daemon completes it)",
                    problem=False,
                )
            self._compare(f, lines, cf)
        if partial and f.damaged:
            pass  # cut by the damage, said already
        elif partial:
            if current:
                self.say(
                    f.shown,
                    "pending",
                    "the last line is incomplete (being written, or torn by a crash: the next "
                    "start sets it aside)",
                    problem=False,
                )
            else:
                self.say(
                    f.shown,
                    "truncated",
                    f"ends in an incomplete line of {len(partial)} bytes: the file was cut",
                    problem=True,
                )

    def _compare(self, f: _File, lines: list[bytes], cf: ChainFile) -> None:
        """Check the lines against their chain: checks, then block hashes."""
        n = cf.records
        expected = b"".join(b.checks for b in cf.blocks)
        actual = line_checks(lines[:n], without_lf=True)
        if len(lines) >= n and actual == expected:
            self._hashes(f, lines, cf)
            tail = lines[n:]
        else:
            body, tail = lines, []
            top = max((s for b in cf.blocks for s in b.seqs if s is not None), default=None)
            if f.rotated is None and top is not None:  # records written after the chain was read
                k = len(lines)
                while k and (s := line_seq(lines[k - 1])) is not None and s > top:
                    k -= 1
                body, tail = lines[:k], lines[k:]
            self._diff(f, body, cf)
        if tail:
            first, last = line_seq(tail[0]), line_seq(tail[-1])
            if f.rotated is None:
                self.say(
                    f.shown,
                    "pending",
                    f"{len(tail)} records not chained yet (the daemon chains them within a "
                    "second; after a crash, at its next start)",
                    problem=False,
                    first=first,
                    last=last,
                )
            else:
                self.say(
                    f.shown,
                    "added",
                    f"added after the file was sealed ({len(tail)} records)",
                    problem=True,
                    first=first,
                    last=last,
                )
        for b in cf.blocks:
            if b.recovered:
                self.say(
                    f.shown,
                    "recovered",
                    f"{b.n} records chained at a start after a crash, not as they were "
                    "written: the chain vouches for them from then on",
                    problem=False,
                    first=_first(b.seqs),
                    last=_last(b.seqs),
                )
        self._gaps(f, cf)

    def _hashes(self, f: _File, lines: list[bytes], cf: ChainFile) -> None:
        """Every check matched: recompute each block's SHA-256."""
        h = bytes.fromhex(cf.start)
        i = 0
        intact = True
        for b in cf.blocks:
            block = lines[i : i + b.n]
            sha = hashlib.sha256(h)
            for line in block:
                sha.update(line)
                sha.update(b"\n")
            if sha.hexdigest() != b.hash:
                intact = False
                self.say(
                    f.shown,
                    "changed",
                    f"changed: one of these {b.n} records differs from what was written "
                    "(their checks match, their block's hash does not), or its chain was edited",
                    problem=True,
                    first=_first(b.seqs),
                    last=_last(b.seqs),
                )
            h = bytes.fromhex(b.hash)  # go on from the recorded hash: name each bad block
            i += b.n
        if intact:
            f.head = cf.head

    def _diff(self, f: _File, lines: list[bytes], cf: ChainFile) -> None:
        """The lines are not what the chain lists: say what differs, by seq."""
        want: list[tuple[int | None, int]] = []
        for b in cf.blocks:
            want.extend((s, b.checks[k]) for k, s in enumerate(b.seqs))
        checks = line_checks(lines, without_lf=True)
        have = [(line_seq(ln), checks[k]) for k, ln in enumerate(lines)]
        removed: list[tuple[int | None, int]] = []
        added: list[tuple[int, tuple[int | None, int]]] = []
        changed: list[tuple[int | None, int | None]] = []
        ops = difflib.SequenceMatcher(None, want, have, autojunk=False).get_opcodes()
        for op, i1, i2, j1, j2 in ops:
            if op == "equal":
                continue
            pairs = min(i2 - i1, j2 - j1) if op == "replace" else 0
            changed.extend((want[i1 + k][0], have[j1 + k][0]) for k in range(pairs))
            removed.extend(want[i1 + pairs : i2])
            added.extend((j, have[j]) for j in range(j1 + pairs, j2))
        moved = {key for key in removed if key in {a for _j, a in added}}
        for was, now in changed:
            if now == was:
                self.say(f.shown, "changed", "changed", problem=True, first=was, last=was)
            elif now is None:
                self.say(
                    f.shown, "changed", "changed (no longer a record line)", problem=True,
                    first=was, last=was,
                )  # fmt: skip
            else:
                self.say(
                    f.shown, "changed", f"changed (it now reads seq {now})", problem=True,
                    first=was, last=was,
                )  # fmt: skip
        gone = [s for key in removed if key not in moved for s in [key[0]]]
        at_end = bool(removed) and removed[-1] == want[-1] and not added
        for first, last in _runs(gone):
            if at_end and last == want[-1][0]:
                self.say(
                    f.shown, "truncated", "removed from the end: the file was cut short",
                    problem=True, first=first, last=last,
                )  # fmt: skip
            else:
                self.say(f.shown, "removed", "removed", problem=True, first=first, last=last)
        for j, key in added:
            if key in moved:
                self.say(
                    f.shown, "reordered", f"out of order: moved to line {j + 1}", problem=True,
                    first=key[0], last=key[0],
                )  # fmt: skip
            elif key[0] is None:
                self.say(f.shown, "added", f"line {j + 1}: added (not a record)", problem=True)
            else:
                self.say(
                    f.shown, "added", f"added at line {j + 1}: not in the chain", problem=True,
                    first=key[0], last=key[0],
                )  # fmt: skip

    def _gaps(self, f: _File, cf: ChainFile) -> None:
        """seq gaps inside the chain: records lost before they were written (notes)."""
        prev: int | None = None
        for b in cf.blocks:
            for s in b.seqs:
                if s is None:
                    continue
                if prev is not None and s > prev + 1:
                    self.say(
                        f.shown,
                        "gap",
                        "never written (lost before writing, e.g. to a full disk: see the "
                        "uid's suppressed records with reason disk)",
                        problem=False,
                        first=prev + 1,
                        last=s - 1,
                    )
                prev = s if prev is None else max(prev, s)

    # -- links between files ---------------------------------------------------

    def links(self, files: list[_File], chains: set[str], torn: list[str]) -> None:
        """Check each file's start against its predecessor's seal; name what is missing."""
        marks: dict[str, Seal] = {}
        for f in files:
            if f.chain is not None:
                marks.update((s.file, s) for s in f.chain.deleted)
                self.rules.update(f.chain.rules)
        present = {f.name for f in files}
        chained = [i for i, f in enumerate(files) if f.chain is not None]
        first_chained = chained[0] if chained else len(files)
        for i, f in enumerate(files):
            before = files[i - 1] if i else None
            if f.emptied:
                self._emptied(f, files[i + 1] if i + 1 < len(files) else None)
                continue
            if f.chain is None:
                if f.chain_damaged:
                    continue  # said already
                if i < first_chained:
                    self.say(
                        f.shown, "legacy", "written before hash chains: not verifiable",
                        problem=False,
                    )  # fmt: skip
                else:
                    self.say(
                        f.shown, "unchained", f"its chain file {chain_name(f.name)} is missing",
                        problem=True,
                    )  # fmt: skip
                continue
            if f.rotated is not None:
                self._sealed(f)
            self._link(f, before, present, marks)
        for name in sorted(chains):
            record_file = name[: -len(CHAIN_SUFFIX)]
            if name == CURRENT_CHAIN or record_file in present:
                continue
            if record_file in marks:
                self.say(
                    name, "deleted", f"{record_file} was {_deleted(self.rules.get(record_file))}; "
                    "its chain is left over (a deletion was interrupted)", problem=False,
                )  # fmt: skip
            else:
                span = _layout.RotatedName.parse(record_file)
                self.say(
                    record_file, "missing", "missing: its chain file is here, the file is not; "
                    "not deleted by retention", problem=True,
                    first=span.first_seq if span else None, last=span.last_seq if span else None,
                )  # fmt: skip
        for name in torn:
            if self._empty(name):
                self.say(
                    name, "emptied", "an empty chain file was set aside here at a start (a "
                    "crash before its bytes reached the disk, or a file-system repair such as "
                    "fsck, emptied it; not an edit)", problem=False,
                )  # fmt: skip
                continue
            self.say(
                name, "damaged", "a chain file the daemon could not read at a start was set "
                "aside here (damaged or edited)", problem=True,
            )  # fmt: skip
        self._rotated_records(files)

    def _emptied(self, f: _File, after: _File | None) -> None:
        """*f*'s chain file is empty: a note when its records are whole, else a problem."""
        seqs = f.seqs
        first, last = _first(seqs), _last(seqs)
        wrong = []
        if None in seqs:
            wrong.append("a line that is not a record")
        elif any(b <= a for a, b in itertools.pairwise(s for s in seqs if s is not None)):
            wrong.append("seqs out of order")
        if f.rotated is not None and (first, last) != (f.rotated.first_seq, f.rotated.last_seq):
            wrong.append(
                f"its name says seq {f.rotated.first_seq}..{f.rotated.last_seq}, "
                f"it holds {_seqs(first, last) or 'none'}"
            )
        prev = after.chain.prev if after is not None and after.chain is not None else None
        if prev is not None and prev.file == f.name and prev.records and prev.records != len(seqs):
            wrong.append(f"the next file's chain says {prev.records} records, it holds {len(seqs)}")
        why = (
            "its chain file is empty (a crash before its bytes reached the disk, or a "
            "file-system repair such as fsck, emptied it)"
        )
        if wrong:
            self.say(
                f.shown, "emptied", f"{why}, and its records do not match: " + "; ".join(wrong),
                problem=True,
            )  # fmt: skip
        else:
            self.say(
                f.shown, "emptied", f"{why}; its {len(seqs)} records are whole and in order, "
                "as its name says, but cannot be checked record by record", problem=False,
                first=first, last=last,
            )  # fmt: skip

    def _sealed(self, f: _File) -> None:
        cf = f.chain
        assert cf is not None
        seal = cf.seal
        if seal is None:
            self.say(
                f.shown, "unsealed", "its chain has no seal (it was cut, or could not be "
                "written: see the daemon's log)", problem=True,
            )  # fmt: skip
            return
        wrong = []
        if seal.file != f.name:
            wrong.append(f"names {seal.file}")
        if f.head is not None:  # else the differences are named already, record by record
            if seal.records != cf.records:
                wrong.append(f"counts {seal.records} records, its chain {cf.records}")
            if seal.hash != f.head:
                wrong.append("its hash is not the chain's")
        if wrong:
            self.say(f.shown, "mismatch", "its seal " + "; ".join(wrong), problem=True)

    def _link(
        self, f: _File, before: _File | None, present: set[str], marks: dict[str, Seal]
    ) -> None:
        cf = f.chain
        assert cf is not None
        prev = cf.prev
        if prev is None:
            if before is not None:
                self.say(
                    f.shown, "mismatch", f"its chain starts a new history, but {before.shown} "
                    "comes before it", problem=True,
                )  # fmt: skip
            return
        if before is not None and prev.file == before.name:
            if before.emptied:
                return  # what can be checked of it is said by _emptied
            theirs = before.chain.seal if before.chain is not None else None
            if prev.hash and theirs is not None and theirs.hash != prev.hash:
                self.say(
                    f.shown, "mismatch", f"its chain starts from a hash that is not "
                    f"{before.shown}'s seal: one of them was rewritten", problem=True,
                )  # fmt: skip
            elif prev.hash and before.chain is None:
                self.say(
                    before.shown, "unchained", f"its chain file {chain_name(before.name)} is "
                    "missing", problem=True,
                )  # fmt: skip
            return
        if prev.file in present:
            self.say(
                f.shown, "mismatch", f"its chain continues {prev.file}, which is not the file "
                "before it", problem=True,
            )  # fmt: skip
            return
        span = _layout.RotatedName.parse(prev.file)
        first = span.first_seq if span else None
        last = span.last_seq if span else None
        if before is not None and before.rotated is not None and first is not None:
            first = before.rotated.last_seq + 1  # everything between the two is gone
        mark = marks.get(prev.file)
        if mark is not None:
            self.say(
                prev.file, "deleted", f"{_deleted(self.rules.get(prev.file))} (recorded)",
                problem=False, first=first, last=last,
            )  # fmt: skip
        elif not prev.hash and before is None:
            self.say(
                prev.file, "deleted", "gone, written before hash chains", problem=False,
                first=first, last=last,
            )  # fmt: skip
        else:
            self.say(
                prev.file, "missing", f"missing: {f.shown} continues from it, and no deletion "
                "by retention was recorded", problem=True, first=first, last=last,
            )  # fmt: skip

    def _rotated_records(self, files: list[_File]) -> None:
        """The ``rotated`` records must agree with the seals of the files they name."""
        by_name = {f.name: f for f in files}
        for f in files:
            for seq, rec in f.rotations:
                named = by_name.get(str(rec.get("file")))
                if named is None or named.chain is None or named.chain.seal is None:
                    continue
                seal = named.chain.seal
                if "hash" in rec and (
                    rec["hash"] != seal.hash or rec.get("records") != seal.records
                ):
                    self.say(
                        f.shown, "mismatch", f"its rotated record says {named.shown} had "
                        f"{rec.get('records')} records and hash {str(rec['hash'])[:16]}…, its "
                        f"chain's seal says {seal.records} and {seal.hash[:16]}…", problem=True,
                        first=seq, last=seq,
                    )  # fmt: skip


def _first(seqs: Sequence[int | None]) -> int | None:
    return next((s for s in seqs if s is not None), None)


def _last(seqs: Sequence[int | None]) -> int | None:
    return next((s for s in reversed(seqs) if s is not None), None)


def _runs(seqs: Iterable[int | None]) -> list[tuple[int | None, int | None]]:
    """Consecutive seqs as (first, last) ranges; each None alone."""
    out: list[tuple[int | None, int | None]] = []
    for s in seqs:
        if s is not None and out and out[-1][1] is not None and out[-1][1] == s - 1:
            out[-1] = (out[-1][0], s)
        else:
            out.append((s, s))
    return out


def _uid_dirs(log_dir: Path, uids: Sequence[int] | None) -> list[int]:
    if uids is not None:
        return sorted(set(uids))
    try:
        names = os.listdir(log_dir)
    except OSError as exc:
        msg = f"cannot list {log_dir}: {exc.strerror}"
        raise StoreError(msg) from exc
    return sorted(
        int(n)
        for n in names
        if n.isascii()
        and n.isdigit()
        and n == str(int(n))
        and stat.S_ISDIR(os.stat(log_dir / n, follow_symlinks=False).st_mode)
    )


def verify_store(log_dir: str | os.PathLike[str], uids: Sequence[int] | None = None) -> Report:
    """Verify every file of the store (or of *uids*) against its hash chain and seals.

    Args:
        log_dir: the store's root (``[daemon] log_dir``); the daemon may be running.
        uids: only these uids' directories (default: every uid's).

    Returns:
        What was found; ``report.problems`` empty means no change after
        writing was found.

    Raises:
        StoreError: *log_dir* could not be listed (permissions: the store is
            private to the daemon's user); a uid directory or a file that
            cannot be read is a finding.
    """
    root = Path(log_dir)
    report = Report()
    for uid in _uid_dirs(root, uids):
        directory = root / str(uid)
        if not directory.is_dir():
            report.findings.append(
                Finding(uid, "", "missing", "no directory for this uid", problem=False)
            )
            continue
        for _ in range(RETRIES):
            check = _Uid(directory, uid)
            try:
                files, chains, torn = check.files()
            except _Moved:
                continue  # rotated, compressed or deleted under us: again
            except StoreError as exc:  # the directory itself: the other uids go on
                check.findings.append(Finding(uid, "", "unreadable", str(exc), problem=True))
                files = []
                break
            check.links(files, chains, torn)
            break
        else:
            msg = f"{directory}: files kept moving while they were read ({RETRIES} tries)"
            raise StoreError(msg)
        report.uids += 1
        report.files += len(files)
        report.records += sum(f.records for f in files)
        report.findings.extend(sorted(check.findings, key=_in_file_order))
    return report


def _in_file_order(f: Finding) -> tuple[int, int]:
    """Oldest file first (by the seq its name starts at), current last; then by seq."""
    name = f.file.removesuffix(CHAIN_SUFFIX)
    span = _layout.RotatedName.parse(name)
    if span is not None:
        where = span.first_seq
    elif name == _layout.CURRENT:
        where = 1 << 63
    else:
        where = -1  # torn chains, the uid as a whole
    return where, f.first_seq if f.first_seq is not None else 1 << 63
