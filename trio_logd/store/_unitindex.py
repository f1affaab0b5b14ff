"""The index of the units each rotated file names: ``units.index`` in a uid directory (sync).

How this works: while the writer appends to ``current.jsonl`` it notes, per
run of lines (``runs.Run``), the trusted ``unit``, ``slice``, ``user_unit``
and ``user_slice`` values of their writer (:class:`UnitSet`: the run says
them, so a run costs a compare and, when the writer changed, a set lookup;
a run that does not say them, a daemon record or lines read back, has its
lines searched). A rotation encodes them as the file's *summary*, one JSON
line, the keys with no name left out (a file that names no unit has just
``units`` and ``file``)::

    {"units":1,"file":"<rotated name>","unit":["nginx.service",…],"slice":[…],
     "user_unit":[…],"user_slice":[…]}

and queues it; the housekeeper's pass, once a second, appends what is
queued to the uid's ``units.index`` (:func:`append_entries`: one open,
write and close per uid and pass, from a worker thread, outside the
writer's lock; a file per rotation cost 0.5 ms to create and a GIL
hand-over per system call, which a rotating flood felt). When the index has
grown to twice what it held after its last compaction (entries of deleted
files), the pass rewrites it with the entries of the files still there
(:func:`compact_index`: ``units.index.tmp``, renamed over it).

A query for ``-u``/``--user-unit`` or a ``unit=``/``slice=``/… match reads
the index once per uid (:func:`read_index`) and passes over a rotated file
whose summary names no value its query can match (``scan``).

Invariant: a summary lists *at least* every top-level value of those four
keys in its file (it may list more: a sender's ``fields`` key of the same
name found in a daemon record's line), so skipping by it never misses a
record. Whatever breaks that is "no summary", and a file without one is
read: the current file (always); a file rotated after a start that found
``current.jsonl`` non-empty (its earlier lines were not seen); a value
that is not a string; more than :data:`MAX_NAMES` names or
:data:`MAX_SUMMARY_BYTES` bytes; a line not written yet (a second after the
rotation) or lost or cut short by a crash (the index is not synced), or of
an unknown version; an index that cannot be read or is larger than
:data:`MAX_INDEX_BYTES`. Entries name their file: one of a file retention
deleted is never looked up, and compaction drops it.

The index has the permissions of the records it describes (0600 in the
uid's 0700 directory) and a query reads it only in a uid directory it is
authorized to read, so only a reader of the uid's records learns its units.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from collections.abc import Collection, Iterable
from typing import Final

import orjson

from trio_logd.store import _layout

__all__ = [
    "INDEX",
    "KEYS",
    "MAX_INDEX_BYTES",
    "MAX_NAMES",
    "MAX_SUMMARY_BYTES",
    "Names",
    "UnitSet",
    "append_entries",
    "compact_index",
    "parse_index",
    "read_index",
]

#: The index file of a uid directory (not a record file's name; it ends in
#: ``.index``, so no ``.tmp`` clean-up or record listing takes it).
INDEX: Final = "units.index"
_INDEX_TMP: Final = INDEX + _layout.TMP_SUFFIX
#: The record keys summarised, in the order of :data:`Names`.
KEYS: Final = ("unit", "slice", "user_unit", "user_slice")
#: Distinct names per file, all keys together: a uid whose writers sit in
#: hundreds of units (a host's scopes, one per login or cron job) still gets
#: summaries; past it the file is read (a summary would cost about as much).
MAX_NAMES: Final = 1024
#: Largest summary (1024 names of about 60 bytes).
MAX_SUMMARY_BYTES: Final = 64 << 10
#: Largest index a reader reads (past it, every file is read); compaction
#: keeps an index near twice its live entries.
MAX_INDEX_BYTES: Final = 8 << 20
#: An index is compacted once it is this much larger than after its last
#: compaction, and twice as large.
_COMPACT_SLACK: Final = 64 << 10
#: The summary format's version.
_VERSION: Final = 1
#: Distinct name tuples remembered per file (a cache: ``user_unit`` x
#: ``user_slice`` combinations are the user's to multiply).
_SEEN_MAX: Final = 4 * MAX_NAMES

#: A run's writer's ``(unit, slice, user_unit, user_slice)``, each ``None``
#: when the record has no such key (``record.Stamp.names``).
Names = tuple[str | None, str | None, str | None, str | None]

# A top-level key is preceded by "{" or ",": inside a JSON string every '"'
# is escaped, so this finds keys only (those of nested objects too: a superset).
_KEY_RE: Final = re.compile(rb'[{,]"(unit|slice|user_unit|user_slice)":("(?:[^"\\]|\\.)*"|[^,}]*)')
_KEY_INDEX: Final = {k.encode(): i for i, k in enumerate(KEYS)}


class UnitSet:
    """The names the lines of one ``current.jsonl`` hold, as the writer appends them.

    Args:
        known: whether every line of the file goes through :meth:`note` /
            :meth:`note_lines` (``False`` for a file that held records when
            the writer opened it: no summary is written for it).

    Attributes:
        known: the names are complete and within the caps (a summary can be written).
    """

    __slots__ = ("_last", "_seen", "count", "known", "sets", "size")

    def __init__(self, *, known: bool = True) -> None:
        self.known = known
        self.sets: tuple[set[str], set[str], set[str], set[str]] = (set(), set(), set(), set())
        self._seen: set[Names] = set()
        self._last: Names | None = None
        self.count = 0
        self.size = 0

    def note(self, names: Names) -> None:
        """Note a run of lines whose writer has *names* (the same object as the
        last run's costs one compare)."""
        if names is self._last:
            return
        self._last = names
        if names in self._seen or not self.known:
            return
        if len(self._seen) >= _SEEN_MAX:
            self._seen.clear()
        self._seen.add(names)
        for i, name in enumerate(names):
            if name is not None:
                self._add(i, name)

    def note_lines(self, lines: Iterable[bytes]) -> None:
        """Note lines whose run did not say their names: each is searched for the keys."""
        for line in lines:
            if not self.known:
                return
            if b'unit":' not in line and b'slice":' not in line:
                continue
            for key, raw in _KEY_RE.findall(line):
                try:
                    value = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    value = None
                if not isinstance(value, str):  # a value no summary can say: read the file
                    self.known = False
                    return
                self._add(_KEY_INDEX[key], value)

    def _add(self, i: int, name: str) -> None:
        s = self.sets[i]
        if name in s:
            return
        s.add(name)
        self.count += 1
        self.size += len(name) + 4
        if self.count > MAX_NAMES or self.size > MAX_SUMMARY_BYTES - 256:
            self.known = False
            self._seen.clear()

    def entry(self, file: str) -> bytes | None:
        """The index line of the rotated file *file*; ``None`` when none may be written."""
        if not self.known:
            return None
        doc: dict[str, object] = {"units": _VERSION, "file": file}
        for key, names in zip(KEYS, self.sets, strict=True):
            if names:
                doc[key] = sorted(names)
        data = orjson.dumps(doc) + b"\n"
        return data if len(data) <= MAX_SUMMARY_BYTES else None


def append_entries(dir_fd: int, data: bytes) -> int:
    """Append index lines *data* to the uid directory *dir_fd*'s index (made if
    missing); return the index's size. Not synced: what a crash takes means "read
    the file".

    Raises:
        OSError, UnsafeLogDir: it could not be written (or is not a safe file).
    """
    fd = _layout.open_file(dir_fd, INDEX, os.O_WRONLY | os.O_APPEND | os.O_CREAT, what=INDEX)
    try:
        _layout.write_all(fd, data)
        return os.fstat(fd).st_size
    finally:
        os.close(fd)


def needs_compaction(size: int, compacted: int) -> bool:
    """Whether an index of *size* bytes, *compacted* after its last compaction, is rewritten."""
    return size > 2 * compacted + _COMPACT_SLACK


def compact_index(dir_fd: int, keep: Collection[str]) -> int:
    """Rewrite the index with only the entries of the rotated files *keep*; return its size.

    Raises:
        OSError, UnsafeLogDir: it could not be rewritten (the old one stays).
    """
    kept = [line for line, file in _index_lines(dir_fd) if file in keep]
    with contextlib.suppress(FileNotFoundError):
        os.unlink(_INDEX_TMP, dir_fd=dir_fd)
    fd = _layout.open_file(
        dir_fd, _INDEX_TMP, os.O_WRONLY | os.O_CREAT | os.O_EXCL, what=_INDEX_TMP
    )
    try:
        data = b"".join(kept)
        _layout.write_all(fd, data)
    finally:
        os.close(fd)
    os.rename(_INDEX_TMP, INDEX, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    return len(data)


def _read(dir_fd: int) -> bytes:
    """The index's bytes (``b""``: none, unreadable or too large)."""
    try:
        fd = os.open(
            INDEX, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd
        )
    except OSError:
        return b""
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_INDEX_BYTES:
            return b""
        return os.pread(fd, MAX_INDEX_BYTES + 1, 0)
    except OSError:
        return b""
    finally:
        os.close(fd)


def _index_lines(dir_fd: int) -> Iterable[tuple[bytes, str]]:
    """The index's complete, valid lines with the file each names."""
    for line in _read(dir_fd).splitlines(keepends=True):
        parsed = parse_entry(line)
        if parsed is not None:
            yield line, parsed[0]


def read_index(dir_fd: int) -> dict[str, dict[str, frozenset[str]]]:
    """The summaries in the uid directory *dir_fd*'s index, by rotated file (uncompressed
    name). Never raises: a file without a usable entry is simply not in it."""
    return parse_index(_read(dir_fd))


def parse_index(data: bytes) -> dict[str, dict[str, frozenset[str]]]:
    """The summaries in an index's bytes *data* (the last entry of a file counts)."""
    out: dict[str, dict[str, frozenset[str]]] = {}
    for line in data.splitlines(keepends=True):
        parsed = parse_entry(line)
        if parsed is not None:
            out[parsed[0]] = parsed[1]
    return out


def parse_entry(line: bytes) -> tuple[str, dict[str, frozenset[str]]] | None:
    """The file and names of one index line; ``None`` for a line that is not a complete
    entry of the known version (cut short, damaged, too long)."""
    if len(line) > MAX_SUMMARY_BYTES or not line.endswith(b"\n"):
        return None
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict) or doc.get("units") != _VERSION:
        return None
    file = doc.get("file")
    if not isinstance(file, str):
        return None
    out: dict[str, frozenset[str]] = {}
    for key in KEYS:
        names = doc.get(key, [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            return None
        out[key] = frozenset(names)
    return file, out
