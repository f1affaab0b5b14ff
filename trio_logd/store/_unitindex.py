"""Per-file summaries of the units a rotated file names: ``X.jsonl.units`` (sync).

How this works: while the writer appends to ``current.jsonl`` it notes, per
run of lines (``runs.Run``), the trusted ``unit``, ``slice``, ``user_unit``
and ``user_slice`` values of their writer (:class:`UnitSet`: the run says
them, so a run costs a compare and, when the writer changed, a set lookup;
a run that does not say them, a daemon record or lines read back, has its
lines searched). At rotation the names are encoded and queued; the
housekeeper's pass, once a second, writes them beside the rotated file as
``<rotated name>.units`` (:func:`write_summaries`, outside the writer's
lock and round: creating a file costs about 0.5 ms on ext4, which a
rotation in the event loop must not), one JSON line, the keys with no name
left out (a file that names no unit: ``{"units":1}``)::

    {"units":1,"unit":["nginx.service",…],"slice":[…],"user_unit":[…],"user_slice":[…]}

A query for ``-u``/``--user-unit`` or a ``unit=``/``slice=``/… match reads
the summary (:func:`read_summary`) before the file, and passes over a file
whose summary names no value its query can match (``scan``).

Invariant: a summary lists *at least* every top-level value of those four
keys in its file (it may list more: a sender's ``fields`` key of the same
name found in a daemon record's line), so skipping by it never misses a
record. Whatever breaks that is "no summary", and a file without one is
read: the current file (always); a file rotated after a start that found
``current.jsonl`` non-empty (its earlier lines were not seen); a value
that is not a string; more than :data:`MAX_NAMES` names or
:data:`MAX_SUMMARY_BYTES` bytes; a summary missing, unreadable, cut short
(a crash: it is written without a sync, or not yet), or of an unknown
version.

The summary has the permissions of the records it describes (0600 in the
uid's 0700 directory) and a query reads it only in a uid directory it is
authorized to read, so only a reader of the uid's records learns its units.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from collections.abc import Iterable
from typing import Final

import orjson
import structlog

from trio_logd.errors import UnsafeLogDir
from trio_logd.store import _layout

__all__ = [
    "KEYS",
    "MAX_NAMES",
    "MAX_SUMMARY_BYTES",
    "UNITS_SUFFIX",
    "Names",
    "UnitSet",
    "parse_summary",
    "read_summary",
    "remove_summary",
    "units_name",
    "write_summaries",
    "write_summary",
]

log = structlog.get_logger("trio_logd.store")

#: A rotated file ``X.jsonl``'s summary is ``X.jsonl.units`` (kept when
#: ``X.jsonl`` becomes ``X.jsonl.zst``, as its chain is).
UNITS_SUFFIX: Final = ".units"
#: The record keys summarised, in the order of :data:`Names`.
KEYS: Final = ("unit", "slice", "user_unit", "user_slice")
#: Distinct names per file, all keys together: a uid whose writers sit in
#: hundreds of units (a host's scopes, one per login or cron job) still gets
#: summaries; past it the file is read (a summary would cost about as much).
MAX_NAMES: Final = 1024
#: Largest summary written or read (1024 names of about 60 bytes): a query
#: reads at most this much per file it may skip.
MAX_SUMMARY_BYTES: Final = 64 << 10
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


def units_name(rotated: str) -> str:
    """The summary's name for the rotated file *rotated* (its uncompressed name)."""
    return rotated + UNITS_SUFFIX


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

    def encode(self) -> bytes | None:
        """The summary of the file; ``None`` when none may be written."""
        if not self.known:
            return None
        doc: dict[str, object] = {"units": _VERSION}
        for key, names in zip(KEYS, self.sets, strict=True):
            if names:
                doc[key] = sorted(names)
        data = orjson.dumps(doc) + b"\n"
        return data if len(data) <= MAX_SUMMARY_BYTES else None


def write_summaries(
    dir_fd: int, items: Iterable[tuple[str, bytes | None]], *, uid: int
) -> list[tuple[str, int]]:
    """Write the summaries *items* (rotated file, summary or ``None``) in *dir_fd*;
    return the ``(file, bytes)`` written. One that cannot be written is logged
    (its file is read instead)."""
    out: list[tuple[str, int]] = []
    for file, data in items:
        try:
            size = write_summary(dir_fd, file, data)
        except (OSError, UnsafeLogDir) as exc:
            log.warning("units_summary_failed", uid=uid, file=file, error=str(exc))
            continue
        if size:
            out.append((file, size))
    return out


def write_summary(dir_fd: int, file: str, data: bytes | None) -> int:
    """Write *file*'s summary *data* (:meth:`UnitSet.encode`) in *dir_fd*, replacing a
    stale one; return its bytes.

    Not synced: a crash leaves it missing or cut short, and either means
    "read the file". With *data* ``None`` nothing is written (a stale
    summary of that name is removed).

    Raises:
        OSError, UnsafeLogDir: it could not be written.
    """
    name = units_name(file)
    remove_summary(dir_fd, file)
    if data is None:
        return 0
    fd = _layout.open_file(
        dir_fd, name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, what=f"{file}{UNITS_SUFFIX}"
    )
    try:
        _layout.write_all(fd, data)
    except BaseException:
        with contextlib.suppress(OSError):
            remove_summary(dir_fd, file)
        raise
    finally:
        os.close(fd)
    return len(data)


def remove_summary(dir_fd: int, file: str) -> None:
    """Remove *file*'s summary, if there is one."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(units_name(file), dir_fd=dir_fd)


def read_summary(dir_fd: int, file: str) -> dict[str, frozenset[str]] | None:
    """The names *file*'s summary lists, by key; ``None``: no usable summary (read the file).

    Never raises: a summary that cannot be opened or read, is not a regular
    file, is too long or cut short is no summary.
    """
    try:
        fd = os.open(
            units_name(file), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK,
            dir_fd=dir_fd,
        )  # fmt: skip
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        data = os.pread(fd, MAX_SUMMARY_BYTES + 1, 0)
    except OSError:
        return None
    finally:
        os.close(fd)
    return parse_summary(data)


def parse_summary(data: bytes) -> dict[str, frozenset[str]] | None:
    """The names a summary's bytes *data* list (see :func:`read_summary`)."""
    if len(data) > MAX_SUMMARY_BYTES or not data.endswith(b"\n") or data.count(b"\n") != 1:
        return None
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict) or doc.get("units") != _VERSION:
        return None
    out: dict[str, frozenset[str]] = {}
    for key in KEYS:
        names = doc.get(key, [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            return None
        out[key] = frozenset(names)
    return out
