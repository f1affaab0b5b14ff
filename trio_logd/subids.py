"""Subordinate ids: which user a uid from ``/etc/subuid`` (or gid from ``/etc/subgid``) belongs to.

How this works: ``useradd`` gives each user a range of subordinate ids
(``alice:100000:65536``) that ``newuidmap``/``newgidmap`` let her map into
user namespaces she creates (rootless containers). The kernel then reports
those ids, not hers, for her containers' processes. To keep one user from
multiplying her limits by her subordinate uids, the daemon limits such a uid
as its owner (``[identity] subordinate_ids = "owner"``, docs/limits.md).

:func:`parse_subids` turns the file's text into a :class:`SubidTable`:
disjoint ranges sorted by start, so that :meth:`SubidTable.owner_of` is one
``bisect`` (the table is built at start, at reload and when a file changes;
it is never read per record). Owner names are resolved to uids once, when
the table is built (:func:`load_subids`, blocking: call it off the event
loop). Where ranges overlap (a mistake of the file), the line written
first keeps the ids it names. Lines that are not ``OWNER:START:COUNT``
(comments, blanks, bad numbers, unknown names) are skipped and counted.
Uid 0 is never anybody's subordinate.
"""

from __future__ import annotations

import bisect
import os
import pwd
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final, NamedTuple

__all__ = [
    "EMPTY",
    "FileStamp",
    "SubidFiles",
    "SubidTable",
    "file_stamp",
    "load_subids",
    "parse_subids",
]

#: ids are 32-bit and (uid_t)-1 is "no id" (setresuid(2)).
_MAX_ID: Final = (1 << 32) - 2
#: A file larger than this is not a subordinate-id file (65 536 users at 64 bytes a line).
MAX_FILE_BYTES: Final = 4 << 20


@dataclass(frozen=True, slots=True)
class SubidTable:
    """Disjoint ranges of delegated ids, sorted by start, each with its owner's uid.

    Attributes:
        starts: first id of each range, ascending.
        ends: one past the last id of each range.
        owners: the uid each range is delegated to.
        skipped: lines that were not valid entries.
    """

    starts: tuple[int, ...] = ()
    ends: tuple[int, ...] = ()
    owners: tuple[int, ...] = ()
    skipped: int = 0
    _by_owner: dict[int, tuple[tuple[int, int], ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        by_owner: dict[int, list[tuple[int, int]]] = {}
        for start, end, owner in zip(self.starts, self.ends, self.owners, strict=True):
            by_owner.setdefault(owner, []).append((start, end))
        self._by_owner.update({o: tuple(r) for o, r in by_owner.items()})

    def owner_of(self, ident: int) -> int | None:
        """The uid that *ident* is delegated to, or ``None``: one bisect."""
        i = bisect.bisect_right(self.starts, ident) - 1
        if i >= 0 and ident < self.ends[i]:
            return self.owners[i]
        return None

    def ranges_of(self, owner: int) -> tuple[tuple[int, int], ...]:
        """The ``(start, end)`` ranges delegated to *owner* (end exclusive)."""
        return self._by_owner.get(owner, ())

    def __len__(self) -> int:
        return len(self.starts)


#: No subordinate ids at all.
EMPTY: Final = SubidTable()


def _entries(
    text: str, resolve: Callable[[str], int | None]
) -> tuple[list[tuple[int, int, int]], int]:
    """``(start, end, owner)`` in file order, and the number of lines skipped."""
    out: list[tuple[int, int, int]] = []
    skipped = 0
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) != 3 or not all(p.isascii() and p.isdigit() for p in parts[1:]):
            skipped += 1
            continue
        name, start_text, count_text = parts
        start, count = int(start_text), int(count_text)
        owner = int(name) if name.isascii() and name.isdigit() else resolve(name)
        if owner is None or count == 0 or start + count - 1 > _MAX_ID:
            skipped += 1
            continue
        out.append((max(start, 1), start + count, owner))  # uid 0 is nobody's
    return out, skipped


def parse_subids(text: str, resolve: Callable[[str], int | None]) -> SubidTable:
    """Build the table of a ``subuid(5)``/``subgid(5)`` file's *text*.

    Args:
        text: the file's contents.
        resolve: a user name to its uid (``None`` when unknown).

    Returns:
        The ranges, disjoint and sorted; on overlap the earlier line wins.
    """
    entries, skipped = _entries(text, resolve)
    ranges: list[tuple[int, int, int]] = []  # disjoint, sorted
    for start, end, owner in entries:
        # the parts of [start, end) no earlier line took
        pieces = [(start, end)]
        for s, e, _o in ranges:
            pieces = [
                part
                for a, b in pieces
                for part in ((a, min(b, s)), (max(a, e), b))
                if part[0] < part[1]
            ]
            if not pieces:
                break
        for a, b in pieces:
            bisect.insort(ranges, (a, b, owner))
    return SubidTable(
        tuple(r[0] for r in ranges),
        tuple(r[1] for r in ranges),
        tuple(r[2] for r in ranges),
        skipped,
    )


class FileStamp(NamedTuple):
    """What tells that a file changed: device, inode, size, modification time."""

    dev: int
    ino: int
    size: int
    mtime_ns: int


def file_stamp(path: str) -> FileStamp | None:
    """*path*'s :class:`FileStamp`, or ``None`` when it does not exist (or cannot be read)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return FileStamp(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass(frozen=True, slots=True)
class SubidFiles:
    """Both tables, and the stamps of the files they were read from.

    Attributes:
        uids: ``/etc/subuid``'s table.
        gids: ``/etc/subgid``'s table.
        stamps: the files' stamps when read (``None``: absent).
    """

    uids: SubidTable = EMPTY
    gids: SubidTable = EMPTY
    stamps: tuple[FileStamp | None, ...] = ()


def _user_uid(name: str) -> int | None:
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return None


def _read(path: str) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError:
        return ""  # absent or unreadable: no subordinate ids
    if len(data) > MAX_FILE_BYTES:
        return ""
    return data.decode("utf-8", "replace")


def load_subids(
    paths: Iterable[str], resolve: Callable[[str], int | None] = _user_uid
) -> SubidFiles:
    """Read ``(subuid_file, subgid_file)``. Blocks (files, NSS): call it in a worker thread.

    A file that is absent, unreadable or larger than :data:`MAX_FILE_BYTES`
    delegates nothing.
    """
    subuid, subgid = paths
    stamps = (file_stamp(subuid), file_stamp(subgid))
    return SubidFiles(
        parse_subids(_read(subuid), resolve), parse_subids(_read(subgid), resolve), stamps
    )
