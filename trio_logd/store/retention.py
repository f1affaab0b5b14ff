"""Retention: which files to delete, and which current files to rotate first (pure).

How this works: :func:`plan_retention` gets a snapshot of every uid's files
(oldest first), the uid's quota and ``on_quota`` policy, the global limits,
the free space and the time, and returns a :class:`Plan`. It reads no clock
and touches no file; the store carries the plan out. The rules, in order:

1. ``max_age``: every file whose newest record is older than ``max_age`` is
   deleted, whatever the uid's policy (age is the retention period).
2. ``quota_bytes``: a uid over its quota with ``on_quota = "rotate"`` loses
   its oldest files until it is within it. When its current file alone is
   over the quota, that file is rotated first (then deleted by the next
   plan). A uid with ``on_quota = "drop"`` never loses a file to its quota:
   new records are dropped instead (by ingest).
3. ``max_bytes`` and ``keep_free_bytes`` (global pressure): while all uids
   together use more than ``max_bytes``, or the file system has less than
   ``keep_free_bytes`` free, the uid using the most space *at that moment*
   loses its oldest file; then the next largest is looked at again. So the
   largest users shrink first and towards each other, and a small user keeps
   its files as long as anyone is larger. ``on_quota = "drop"`` uids are
   exempt here too (they are bounded by their quota). When the largest
   ``rotate`` uid has nothing left but its current file, that file is
   rotated. With ``pressure_min_age`` (the default), pressure never deletes
   a file whose newest record is younger than that, and never rotates a
   current file (its records are the newest): a file system filled from
   outside must not wipe recent records. What pressure could not free for
   that reason is the plan's ``held``: the store then refuses new records
   (dropped and counted, reason ``disk``) until a later plan needs nothing.

Each deletion carries the rule that chose it (``age``, ``quota``,
``max_bytes``, ``keep_free``): the store records it with the deletion, and
``logq --verify`` tells routine retention from pressure.

One file is never deleted: a uid's newest rotated file while its current
file is empty, because then it holds the uid's last ``seq`` (the store's
invariant that ``seq`` is never reused; the ``rotated`` record that follows
every rotation lifts this within a round). Torn tails set aside after a
crash count as the uid's oldest files.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

__all__ = ["RULES", "Plan", "RetentionPolicy", "StoredFile", "UidFiles", "plan_retention"]

#: The rules that delete, as the store records them with each deletion.
RULES: Final = ("age", "quota", "max_bytes", "keep_free")


@dataclass(frozen=True, slots=True)
class StoredFile:
    """A deletable file of one uid.

    Attributes:
        uid: whose file.
        name: its name in the uid directory.
        size: bytes on disk.
        newest: epoch seconds of its newest record (from the name; a torn
            tail's modification time).
        last_seq: its last ``seq`` (``0`` for a torn tail).
    """

    uid: int
    name: str
    size: int
    newest: float
    last_seq: int


@dataclass(frozen=True, slots=True)
class UidFiles:
    """One uid's files: the current file's size and the rest, oldest first.

    Attributes:
        uid: whose.
        current: bytes of the current file's records.
        files: the deletable files, oldest first.
        beside: bytes that go with the current file but are not records (its
            hash chain): counted in the usage, never deleted.
    """

    uid: int
    current: int
    files: tuple[StoredFile, ...]
    beside: int = 0

    @property
    def usage(self) -> int:
        """Bytes of all the uid's files."""
        return self.current + self.beside + sum(f.size for f in self.files)


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """The global ``[store]`` retention keys (``0`` switches a rule off where allowed).

    Attributes:
        max_age: seconds; ``0`` = keep regardless of age.
        max_bytes: all uids' files together.
        keep_free_bytes: free space to leave; ``0`` = no reserve.
        pressure_min_age: seconds; ``max_bytes``/``keep_free_bytes`` never
            delete a file with records younger than this; ``0`` = no floor.
    """

    max_age: float
    max_bytes: int
    keep_free_bytes: int
    pressure_min_age: float = 0.0


@dataclass(frozen=True, slots=True)
class Plan:
    """What to do: delete these files (in order), rotate these uids' current files.

    Attributes:
        delete: the files to delete, in order.
        rotate: the uids whose current file to rotate.
        rules: for each file of *delete*, the rule that chose it (:data:`RULES`).
        held: bytes that ``max_bytes``/``keep_free_bytes`` still want freed but
            that only files younger than ``pressure_min_age`` hold: refuse
            new records while it is not 0.
        held_rule: the rule that is held (``max_bytes`` or ``keep_free``; ``""``).
    """

    delete: tuple[StoredFile, ...] = ()
    rotate: tuple[int, ...] = ()
    rules: tuple[str, ...] = ()
    held: int = 0
    held_rule: str = ""


class _Uid:
    __slots__ = ("current", "files", "policy", "quota", "uid", "usage")

    def __init__(self, u: UidFiles, quota: int, policy: str) -> None:
        self.uid = u.uid
        self.current = u.current
        self.files = list(u.files)
        self.usage = u.usage
        self.quota = quota
        self.policy = policy

    def deletable(self) -> list[StoredFile]:
        """Files that may go, oldest first: all but the high-water file while current is empty."""
        if self.current > 0:
            return self.files
        rotated = [f for f in self.files if f.last_seq]
        if not rotated:
            return self.files
        newest = max(rotated, key=lambda f: f.last_seq)
        return [f for f in self.files if f is not newest]

    def remove(self, f: StoredFile) -> None:
        self.files.remove(f)
        self.usage -= f.size


def plan_retention(
    uids: Sequence[UidFiles],
    policy: RetentionPolicy,
    quota_for: Callable[[int], tuple[int, str]],
    *,
    now: float,
    free_bytes: int | None,
) -> Plan:
    """Decide what retention deletes and rotates (see the module doc for the rules).

    Args:
        uids: every uid's files (``StoreWriter.snapshot``).
        policy: the global limits.
        quota_for: *uid* -> ``(quota_bytes, on_quota)``.
        now: epoch seconds.
        free_bytes: free space on the file system of ``log_dir``, or
            ``None`` when unknown (``keep_free_bytes`` is then not applied).

    Returns:
        The plan; empty when every rule is met.
    """
    state = [_Uid(u, *quota_for(u.uid)) for u in uids]
    delete: list[StoredFile] = []
    rules: list[str] = []
    rotate: list[int] = []

    def drop(u: _Uid, f: StoredFile, rule: str) -> None:
        u.remove(f)
        delete.append(f)
        rules.append(rule)

    # 1. age
    if policy.max_age > 0:
        cutoff = now - policy.max_age
        for u in state:
            for f in [f for f in u.deletable() if f.newest < cutoff]:
                drop(u, f, "age")

    # 2. per-uid quota
    for u in state:
        if u.policy != "rotate" or u.usage <= u.quota:
            continue
        for f in list(u.deletable()):
            if u.usage <= u.quota:
                break
            drop(u, f, "quota")
        if u.current > u.quota:
            rotate.append(u.uid)

    # 3. global pressure: one file at a time from the largest user
    total = sum(u.usage for u in state)
    need = total - policy.max_bytes
    rule = "max_bytes"
    if free_bytes is not None and policy.keep_free_bytes > 0:
        short = policy.keep_free_bytes - free_bytes
        if short > need:
            need, rule = short, "keep_free"
    floor = now - policy.pressure_min_age if policy.pressure_min_age > 0 else None
    held = False
    candidates = [u for u in state if u.policy == "rotate"]
    while need > 0 and candidates:
        u = min(candidates, key=lambda c: (-c.usage, c.uid))
        files = u.deletable()
        if files and (floor is None or files[0].newest < floor):
            need -= files[0].size
            drop(u, files[0], rule)
            continue
        candidates.remove(u)
        if floor is not None:  # younger files, or only the current one: all kept
            held = held or bool(files) or u.current > 0
        elif u.current > 0 and u.uid not in rotate:
            rotate.append(u.uid)
            need -= u.current  # deleted by a later plan, once rotated
    if held and need > 0:
        return Plan(tuple(delete), tuple(rotate), tuple(rules), need, rule)
    return Plan(tuple(delete), tuple(rotate), tuple(rules))
