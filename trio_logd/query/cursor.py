"""Cursors: where a reader stopped, so that the next read resumes exactly there (pure).

How this works: a cursor names the last record shown (its ``ts``, ``uid``
and ``seq``) and, for every uid whose records were shown (up to
:data:`MAX_CURSOR_UIDS`), the ``seq`` of the last one and the identity of
that uid's store (the inode of its directory, which rotation, compression,
retention and restarts keep). ``seq`` is monotonic per uid and files are
named by their seq range, so a reader resumes by seeking to a seq, not by
scanning from the start; a uid's ``seq`` never repeats while its directory
lives, so a seq position has neither gaps nor duplicates.

Resuming, per uid read (:meth:`Cursor.floor`):

* the uid is in the cursor and its store is the same: the records after its
  seq (``--cursor``: from the named record itself);
* otherwise (a uid first seen now, or a store that was removed and made
  again, where seq numbers restarted): the records after the cursor's place
  in the merged order ``(ts, uid)``, as a multi-uid query shows them.

The text is opaque to users (``docs/logq.md``): ``c1.`` and the base64url of
``ts;uid.seq.store;…``, the named record first. Besides the stores'
identities (inode numbers of directories the reader may read), it carries
nothing the reader did not see in the records it came from; it grants nothing (the daemon
authorizes a query by the caller's credentials alone, and a cursor's entries
for uids the query does not read are ignored), so a forged or another uid's
cursor can at most move the start of the caller's own records.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, NamedTuple

from trio_logd.query.filters import LineFilter
from trio_logd.query.timespec import TS_LENGTH, ts_to_epoch
from trio_logd.record import line_ts, seq_key

if TYPE_CHECKING:
    from trio_logd.store.scan import ChunkFilter, Scanner, UnitTest

__all__ = [
    "CURSOR_KEYS",
    "MAX_CURSOR_CHARS",
    "MAX_CURSOR_UIDS",
    "Cursor",
    "CursorRequest",
    "CursorTracker",
    "Position",
    "SeqFloor",
    "TsFloor",
    "TsFloorFilter",
    "line_uid",
    "place",
]

#: uids a cursor keeps a seq for (the most recently shown first); the others
#: resume by time. 512 entries are about 16 KiB of text, well inside a
#: control request (``protocol.control.MAX_REQUEST_BYTES``).
MAX_CURSOR_UIDS: Final = 512
#: Longest cursor text accepted: 512 entries of the largest numbers, base64.
MAX_CURSOR_CHARS: Final = 40_000
_PREFIX: Final = "c1."
#: Largest uid, seq and store identity a cursor may name (uid: ``config.MAX_UID``).
_MAX_UID: Final = (1 << 32) - 2
_MAX_SEQ: Final = (1 << 63) - 1
_MAX_STORE: Final = (1 << 64) - 1
#: Every record line has ``,"uid":`` right after its ``seq`` (``record.encode_line``).
_UID_KEY: Final = b',"uid":'


class Position(NamedTuple):
    """One uid's place in a cursor: the seq of its last record shown, and its store."""

    uid: int
    seq: int
    store: int


class SeqFloor(NamedTuple):
    """Resume a uid after this seq (seek: files before it are not read)."""

    after: int


class TsFloor(NamedTuple):
    """Resume a uid by time: records with ``ts`` above *ts* (or equal, when not *strict*)."""

    ts: bytes
    strict: bool

    def keeps(self, line: bytes) -> bool:
        """Whether the record *line* is past this floor (its ``ts`` at a fixed offset)."""
        ts = line_ts(line)
        return ts > self.ts or (ts == self.ts and not self.strict)


class TsFloorFilter:
    """A uid's ``LineFilter`` that also drops the records at or before a :class:`TsFloor`.

    It has what a scan of one uid asks of its filter (``filter_lines``,
    ``decodes``, ``file_may_match``, ``unit_test``); a file that ends before the floor is
    skipped by the time span in its name.
    """

    def __init__(self, base: LineFilter, floor: TsFloor) -> None:
        self.base = base
        self.floor = floor
        self._epoch = ts_to_epoch(floor.ts.decode("ascii"))

    @property
    def decodes(self) -> bool:
        """As the base filter's (lines are cut in pieces when it decodes them)."""
        return self.base.decodes

    def filter_lines(self, chunk: bytes) -> list[bytes]:
        """The base filter's matches past the floor."""
        keeps = self.floor.keeps
        return [line for line in self.base.filter_lines(chunk) if keeps(line)]

    def file_may_match(self, first_time: float, last_time: float) -> bool:
        """Whether a file spanning these times can hold a match past the floor."""
        return last_time >= self._epoch and self.base.file_may_match(first_time, last_time)

    @property
    def unit_test(self) -> UnitTest | None:
        """As the base filter's (a file's unit summary)."""
        return self.base.unit_test


def _invalid(text: str, why: str) -> ValueError:
    return ValueError(f"invalid cursor {text[:80]!r}: {why} (use a cursor logq printed)")


def _number(text: str, part: str, maximum: int) -> int:
    if not (part.isascii() and part.isdigit()) or len(part) > 20 or int(part) > maximum:
        raise _invalid(text, f"{part[:24]!r} is not a number in range")
    return int(part)


@dataclass(frozen=True, slots=True)
class Cursor:
    """A parsed cursor.

    Attributes:
        ts: the ``ts`` of the record it names.
        positions: one per uid, the named record's uid first; uids unique.
    """

    ts: str
    positions: tuple[Position, ...]
    _by_uid: dict[int, Position] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_uid", {p.uid: p for p in self.positions})

    @property
    def uid(self) -> int:
        """The uid of the record the cursor names."""
        return self.positions[0].uid

    @property
    def seq(self) -> int:
        """The seq of the record the cursor names."""
        return self.positions[0].seq

    def encode(self) -> str:
        """The cursor's text (opaque to users)."""
        body = ";".join([self.ts, *(f"{p.uid}.{p.seq}.{p.store}" for p in self.positions)])
        return _PREFIX + base64.urlsafe_b64encode(body.encode("ascii")).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """Parse a cursor's text.

        Raises:
            ValueError: not a cursor (the message says why, quoting at most 80 characters).
        """
        if not isinstance(text, str) or len(text) > MAX_CURSOR_CHARS:
            raise _invalid(str(text), f"expected a string of at most {MAX_CURSOR_CHARS} characters")
        if not text.startswith(_PREFIX):
            raise _invalid(text, f"expected it to start with {_PREFIX!r}")
        data = text[len(_PREFIX) :]
        try:
            padded = data + "=" * (-len(data) % 4)
            body = base64.b64decode(padded, altchars=b"-_", validate=True).decode("ascii")
        except (binascii.Error, ValueError):
            raise _invalid(text, "not base64url of a cursor") from None
        ts, *entries = body.split(";")
        try:
            ts_to_epoch(ts)
        except ValueError:
            raise _invalid(text, "no valid time") from None
        if not 1 <= len(entries) <= MAX_CURSOR_UIDS:
            raise _invalid(text, f"expected 1..{MAX_CURSOR_UIDS} positions")
        positions: list[Position] = []
        for entry in entries:
            parts = entry.split(".")
            if len(parts) != 3:
                raise _invalid(text, "a position is not uid.seq.store")
            positions.append(
                Position(
                    _number(text, parts[0], _MAX_UID),
                    _number(text, parts[1], _MAX_SEQ),
                    _number(text, parts[2], _MAX_STORE),
                )
            )
        if len({p.uid for p in positions}) != len(positions):
            raise _invalid(text, "a uid is named twice")
        return cls(ts, tuple(positions))

    def floor(self, uid: int, store: int | None, *, inclusive: bool) -> SeqFloor | TsFloor:
        """Where reading *uid* resumes.

        Args:
            uid: a uid the query reads.
            store: that uid's store identity now (``None``: it has no store).
            inclusive: ``--cursor`` (from the named record on) rather than
                ``--after-cursor`` (after it).
        """
        p = self._by_uid.get(uid)
        if p is not None and p.store == store:
            named = p.uid == self.uid
            return SeqFloor(p.seq - 1 if inclusive and named else p.seq)
        # the merged order is (ts, uid): at the cursor's ts, the uids after its own
        later = uid > self.uid or (inclusive and uid == self.uid)
        return TsFloor(self.ts.encode("ascii"), strict=not later)


def line_uid(line: bytes) -> int | None:
    """The ``uid`` of a record line, read from its prefix (``None`` if not the daemon's layout)."""
    start = line.find(_UID_KEY, 42, 72)
    if start < 0:
        return None
    start += len(_UID_KEY)
    end = start
    while end < len(line) and 48 <= line[end] <= 57:
        end += 1
    return int(line[start:end]) if end > start else None


class CursorTracker:
    """Follows the record lines shown, to write the cursor after the last of them.

    Args:
        stores: each uid's store identity (from the daemon's ``ok`` line, or
            the scan itself offline).
        start: the cursor the query resumed from: its positions for uids
            with nothing new shown are carried over, so they resume by seq.
    """

    def __init__(self, stores: Mapping[int, int], start: Cursor | None = None) -> None:
        self._stores = dict(stores)
        # uid -> (seq, store), most recently shown last
        self._last: dict[int, tuple[int, int]] = {}
        if start is not None:
            for p in reversed(start.positions):
                self._last[p.uid] = (p.seq, p.store)
        self._ts: str | None = start.ts if start is not None else None
        self._uid: int | None = start.uid if start is not None else None
        self.shown = 0

    def add_stores(self, stores: Iterable[tuple[int, int]]) -> None:
        """Learn more uids' store identities (a follow stream's new uids)."""
        self._stores.update(stores)

    def see(self, line: bytes) -> None:
        """Note one record line shown (in the order shown)."""
        uid = line_uid(line)
        store = self._stores.get(uid) if uid is not None else None
        if uid is None or store is None:
            return  # not the daemon's layout, or a uid of unknown store: nothing to resume by
        self._last.pop(uid, None)
        self._last[uid] = (seq_key(line), store)
        self._ts = line_ts(line).decode("ascii", "replace")
        self._uid = uid
        self.shown += 1

    def cursor(self) -> Cursor | None:
        """The cursor after the last record seen; ``None`` if there is none."""
        if self._ts is None or self._uid is None or len(self._ts) != TS_LENGTH:
            return None
        named = self._last.get(self._uid)
        if named is None:
            return None
        others = [
            Position(u, seq, store)
            for u, (seq, store) in reversed(self._last.items())
            if u != self._uid
        ]
        first = Position(self._uid, *named)
        return Cursor(self._ts, (first, *others[: MAX_CURSOR_UIDS - 1]))


#: The ``query`` request's keys for positions (beside ``QuerySpec``'s).
CURSOR_KEYS: Final = frozenset({"cursor", "after_cursor", "stores"})


@dataclass(frozen=True, slots=True)
class CursorRequest:
    """A query's position arguments: where to start, and whether to send store identities.

    Attributes:
        cursor: resume from this cursor, or ``None``.
        inclusive: from the cursor's own record on (``--cursor``); else after
            it (``--after-cursor``, ``--cursor-file``).
        stores: the ``ok`` line carries each uid's store identity
            (``stores``), from which the client makes cursors.
    """

    cursor: Cursor | None = None
    inclusive: bool = False
    stores: bool = False

    @classmethod
    def split(cls, args: Mapping[str, object]) -> tuple[CursorRequest, dict[str, object]]:
        """Take the position keys out of a ``query`` request's arguments.

        Returns:
            The position, and the other arguments (for ``QuerySpec.from_request``).

        Raises:
            ValueError: both ``cursor`` and ``after_cursor``, a cursor that is
                not one, or ``stores`` not a boolean.
        """
        rest = {k: v for k, v in args.items() if k not in CURSOR_KEYS}
        at, after, stores = args.get("cursor"), args.get("after_cursor"), args.get("stores")
        if at is not None and after is not None:
            msg = "query: give either 'cursor' or 'after_cursor', not both"
            raise ValueError(msg)
        if stores is not None and not isinstance(stores, bool):
            msg = f"query 'stores': expected true or false, got {stores!r:.80}"
            raise ValueError(msg)
        text = at if at is not None else after
        if text is not None and not isinstance(text, str):
            msg = f"query 'cursor': expected a string, got {text!r:.80}"
            raise ValueError(msg)
        cursor = Cursor.decode(text) if text is not None else None
        return cls(cursor, at is not None, bool(stores)), rest

    def to_request(self) -> dict[str, object]:
        """The request's position arguments (unset ones left out)."""
        out: dict[str, object] = {}
        if self.cursor is not None:
            out["cursor" if self.inclusive else "after_cursor"] = self.cursor.encode()
        if self.stores:
            out["stores"] = True
        return out


def place(scanner: Scanner[LineFilter], cursor: Cursor, *, inclusive: bool) -> None:
    """Start *scanner* where *cursor* says (:meth:`Cursor.floor` for each uid it reads).

    Raises:
        ValueError: the scan is a tail (``lines``): a cursor reads forwards.
        StoreError: the store's uid directories cannot be looked at.
    """
    stores = scanner.store_ids()
    seqs: dict[int, int] = {}
    filters: dict[int, ChunkFilter] = {}
    for uid in scanner.uids:
        floor = cursor.floor(uid, stores.get(uid), inclusive=inclusive)
        if isinstance(floor, SeqFloor):
            seqs[uid] = floor.after
        else:
            filters[uid] = TsFloorFilter(scanner.filter, floor)
    scanner.start_after(seqs, filters)
