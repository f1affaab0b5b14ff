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
   rotated.

Subordinate uids (``account_for``, docs/limits.md): the uids that count
against one user's limits (her own and her ``/etc/subuid`` uids) are one
*account* for rules 2 and 3: their files together are held to her quota,
and the account's oldest file goes first. So delegated uids neither
multiply her quota nor make her look smaller under global pressure. An
account of one uid is exactly the rules above.

One file is never deleted: a uid's newest rotated file while its current
file is empty, because then it holds the uid's last ``seq`` (the store's
invariant that ``seq`` is never reused; the ``rotated`` record that follows
every rotation lifts this within a round). Torn tails set aside after a
crash count as the uid's oldest files.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["Plan", "RetentionPolicy", "StoredFile", "UidFiles", "plan_retention"]


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
    """

    max_age: float
    max_bytes: int
    keep_free_bytes: int


@dataclass(frozen=True, slots=True)
class Plan:
    """What to do: delete these files (in order), rotate these uids' current files."""

    delete: tuple[StoredFile, ...] = ()
    rotate: tuple[int, ...] = ()


class _Uid:
    __slots__ = ("account", "current", "files", "policy", "quota", "uid", "usage")

    def __init__(self, u: UidFiles, quota: int, policy: str) -> None:
        self.uid = u.uid
        self.current = u.current
        self.files = list(u.files)
        self.usage = u.usage
        self.quota = quota
        self.policy = policy
        self.account = u.uid

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


class _Account:
    """Uids counted together (one user and her subordinate uids), for rules 2 and 3."""

    __slots__ = ("account", "members")

    def __init__(self, account: int, members: list[_Uid]) -> None:
        self.account = account
        self.members = members

    @property
    def usage(self) -> int:
        return sum(m.usage for m in self.members)

    def oldest(self) -> tuple[_Uid, StoredFile] | None:
        """The member and file that go first: the oldest deletable file of them all."""
        if len(self.members) == 1:  # the uid's own order (torn tails first)
            u = self.members[0]
            files = u.deletable()
            return (u, files[0]) if files else None
        best: tuple[_Uid, StoredFile] | None = None
        for u in self.members:
            files = u.deletable()
            if files and (best is None or files[0].newest < best[1].newest):
                best = (u, files[0])
        return best


def _accounts(state: list[_Uid], account_for: Callable[[int], int] | None) -> list[_Account]:
    if account_for is None:
        return [_Account(u.uid, [u]) for u in state]
    by_account: dict[int, list[_Uid]] = {}
    for u in state:
        u.account = account_for(u.uid)
        by_account.setdefault(u.account, []).append(u)
    return [_Account(a, members) for a, members in by_account.items()]


def plan_retention(
    uids: Sequence[UidFiles],
    policy: RetentionPolicy,
    quota_for: Callable[[int], tuple[int, str]],
    *,
    now: float,
    free_bytes: int | None,
    account_for: Callable[[int], int] | None = None,
) -> Plan:
    """Decide what retention deletes and rotates (see the module doc for the rules).

    Args:
        uids: every uid's files (``StoreWriter.snapshot``).
        policy: the global limits.
        quota_for: *uid* -> ``(quota_bytes, on_quota)``.
        now: epoch seconds.
        free_bytes: free space on the file system of ``log_dir``, or
            ``None`` when unknown (``keep_free_bytes`` is then not applied).
        account_for: *uid* -> the uid whose quota its files count against
            (its owner, for a subordinate uid); ``None``: every uid is its own.
            *quota_for* must give the members of an account its quota.

    Returns:
        The plan; empty when every rule is met.
    """
    state = [_Uid(u, *quota_for(u.uid)) for u in uids]
    delete: list[StoredFile] = []
    rotate: list[int] = []

    def drop(u: _Uid, f: StoredFile) -> None:
        u.remove(f)
        delete.append(f)

    # 1. age
    if policy.max_age > 0:
        cutoff = now - policy.max_age
        for u in state:
            for f in [f for f in u.deletable() if f.newest < cutoff]:
                drop(u, f)

    accounts = _accounts(state, account_for)

    # 2. per-account quota (per uid, but for subordinate uids)
    for a in accounts:
        head = a.members[0]
        if head.policy != "rotate" or a.usage <= head.quota:
            continue
        while a.usage > head.quota and (found := a.oldest()) is not None:
            drop(*found)
        # the current files hold the rest: too large alone, or (subordinate
        # uids) together still over the account's quota
        over = len(a.members) > 1 and a.usage > head.quota
        rotate.extend(u.uid for u in a.members if u.current > head.quota or (over and u.current))

    # 3. global pressure: one file at a time from the largest account
    total = sum(u.usage for u in state)
    need = total - policy.max_bytes
    if free_bytes is not None and policy.keep_free_bytes > 0:
        need = max(need, policy.keep_free_bytes - free_bytes)
    candidates = [a for a in accounts if a.members[0].policy == "rotate"]
    while need > 0 and candidates:
        a = min(candidates, key=lambda c: (-c.usage, c.account))
        found = a.oldest()
        if found is not None:
            need -= found[1].size
            drop(*found)
            continue
        candidates.remove(a)
        for u in a.members:
            if u.current > 0 and u.uid not in rotate:
                rotate.append(u.uid)
                need -= u.current  # deleted by a later plan, once rotated
    return Plan(tuple(delete), tuple(rotate))
