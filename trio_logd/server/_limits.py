"""The daemon's per-uid limits: resolved policies, admission, connection caps, reload.

How this works: a uid's limits depend on its user name and groups, which
come from NSS (``/etc/passwd``, maybe LDAP) and may block. So the first time a
uid is seen (at accept, when a connection's writer changes, or when a relay
claims it) its identity is looked up once in a worker thread, and a
:class:`UidPolicy` (resolved ``Limits``, may it relay, its primary gid) is
cached. After that the hot path only does ``policies.get(uid)``: one dict
lookup and one :meth:`Limiter.admit` call per read batch, never per record.

``admit`` decides a whole batch at once, in this order: a uid over its
``quota_bytes`` with ``on_quota = "drop"`` has the batch dropped (reason
``quota``; tokens are not spent on records that are not stored); else the
token buckets admit the longest prefix they can pay for, and the rest is
dropped (reason ``rate``) under ``on_rate = "drop"`` or handed back with a
delay to wait under ``"block"``. Every drop is counted in the shared
``SuppressionTracker``, so stored + dropped = sent. After a read with drops
the uid's connections pause reading (``drop_pause``), so that a flooder over
its limit cannot make the daemon spend a core on counting what it drops.

Connection caps: ``open_connection`` counts a connection of its
``SO_PEERCRED`` uid under the uid's ``max_connections`` and the global
``[daemon] max_connections``; the headroom above ``max_connections -
connection_headroom`` is for root and members of ``[access] admins`` groups,
decided from the kernel's view of the peer (its gid and ``SO_PEERGROUPS``),
compared with the admins' gids resolved when the config was loaded. Peer
groups are read only when the ordinary cap is reached.

Subordinate ids (``[identity] subordinate_ids = "owner"``, ``subids.py``):
a uid delegated to a user in ``/etc/subuid`` (a gid in ``/etc/subgid``) is
limited as that user. ``owner_of`` decides it at accept and when a
connection's writer changes (two bisects); the connection is then counted,
and its batches admitted, under the owner's uid (the *account*): her
``max_connections``, her token buckets, her ``quota_bytes`` over her files
and her subordinate uids' together. Drops are still counted for the uid
whose records they were. The tables are read by ``prepare`` (start, reload)
and by ``serve_subid_watch`` when a file's stamp changes.

Units (``[limits.unit."GLOB"]``, ``unit_limits.py``): a record whose
writer runs in a system unit (its stamp's ``unit``) must pass the unit's
buckets as well as its uid's. The unit's are asked first, so that a unit
over its own rate never spends its uid's tokens, which the uid's other
units need: one flooding service leaves its neighbours under the same uid
alone. A connection opened from a unit is also counted under that unit's
``max_connections``. Drops are counted for the uid and for the unit (in the
bounded ``UnitLedger``). Which table a unit gets is decided once per unit
name and config (a glob match per table), then cached.

Reload: ``prepare`` (async, NSS in a worker thread) re-resolves every known
uid and the admins' gids for a new config; ``apply`` (sync, no checkpoint)
swaps the config and policies in one step. Buckets keep their balance: the
rate limiter sees new ``Limits`` objects and reconfigures each uid's buckets
in place on its next batch.
"""

from __future__ import annotations

import grp
import math
import pwd
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, NamedTuple

import structlog
import trio

from trio_logd.config import Config, Limits
from trio_logd.identity import lookup_identity
from trio_logd.limits import ConnectionCounter, DropReason, RateLimiter, SuppressionTracker
from trio_logd.peer import PeerCred
from trio_logd.subids import FileStamp, SubidFiles, file_stamp, load_subids
from trio_logd.unit_limits import UnitFigures, UnitLimiter

#: No subordinate ids (``"separate"``, or before the files are read).
EMPTY_SUBIDS: Final = SubidFiles()

__all__ = [
    "OVERFLOW_ID",
    "Admission",
    "Limiter",
    "Prepared",
    "UidIdentity",
    "UidPolicy",
    "resolve_gids",
    "resolve_uid",
]

log = structlog.get_logger("trio_logd.limits")

#: The kernel's "unknown" id (/proc/sys/kernel/overflowgid): the gid of a
#: relayed record whose claim names none and whose uid has no passwd entry.
OVERFLOW_ID: Final = 65534
#: An NSS lookup (LDAP, sssd) slower than this is abandoned: the uid gets the
#: limits of its uid table and the defaults until the next reload.
LOOKUP_TIMEOUT: Final = 5.0
#: Shortest wait under ``on_rate = "block"``: float rounding can make the
#: bucket's "time until one token" come out as 0 while ``admit`` still says
#: no; a floor keeps that from spinning.
MIN_BLOCK_WAIT: Final = 0.001
#: Under ``"block"``, a connection waits until about this many records can
#: pass (its next slice, see ``_ingest.SLICE_RECORDS``)...
BLOCK_GATHER_RECORDS: Final = 64
#: ...but waits at most this much longer than for the first of them.
MAX_BLOCK_GATHER: Final = 0.02
#: After a read with drops (``on_rate``/``on_quota = "drop"``), a uid's
#: connections read again only after this long, all of them together: one
#: 64 KiB read per 10 ms is ~1 % of a core spent on drops per flooding uid.
DROP_PAUSE: Final = 0.01
#: The table of uids' next read times is cleaned once it has this many.
_RESUME_PRUNE: Final = 1024
#: Seconds between two looks at whether ``/etc/subuid`` or ``/etc/subgid`` changed.
SUBID_CHECK_INTERVAL: Final = 2.0
#: Seconds between passes that forget the token buckets of idle uids (their
#: buckets refilled: exactly what a new uid gets), so that uids that come and
#: go (containers, user namespaces) do not grow the daemon.
BUCKET_PRUNE_INTERVAL: Final = 60.0


class Admission(NamedTuple):
    """What :meth:`Limiter.admit` decided for one batch (see there)."""

    admitted: int
    retry: float
    pause: float
    #: why the rest was dropped (``None`` when nothing was)
    dropped: DropReason | None = None


@dataclass(frozen=True, slots=True)
class UidIdentity:
    """What NSS says about a uid.

    Attributes:
        user: its user name, or ``None``.
        groups: names of its groups (primary and supplementary).
        gid: its primary gid, or ``None`` without a passwd entry.
    """

    user: str | None
    groups: tuple[str, ...]
    gid: int | None


#: The identity of a uid NSS knows nothing about (or did not answer for).
UNKNOWN: Final = UidIdentity(None, (), None)


@dataclass(frozen=True, slots=True)
class UidPolicy:
    """Everything the hot path needs to know about one uid.

    Attributes:
        uid: the uid.
        limits: its resolved limits (``Config.limits_for``).
        may_claim: whether it may relay records for other uids.
        gid: its primary gid (for relayed records without a ``gid``).
        named: it has a user name (a passwd entry): then it is a user of its
            own, never anybody's subordinate id.
    """

    uid: int
    limits: Limits
    may_claim: bool
    gid: int | None
    named: bool = False


@dataclass(frozen=True, slots=True)
class Prepared:
    """A config with its NSS answers, ready to ``apply`` without blocking."""

    config: Config
    identities: dict[int, UidIdentity]
    admin_gids: frozenset[int]
    subids: SubidFiles = EMPTY_SUBIDS


def resolve_uid(uid: int) -> UidIdentity:
    """Look *uid* up in NSS. Blocks: call it in a worker thread.

    Args:
        uid: a kernel-reported or claimed uid.

    Returns:
        Its user name, group names and primary gid; :data:`UNKNOWN` parts
        for what NSS does not know.
    """
    identity = lookup_identity(uid)
    try:
        gid: int | None = pwd.getpwuid(uid).pw_gid
    except (KeyError, OverflowError):
        gid = None
    return UidIdentity(identity.user, identity.groups, gid)


def resolve_gids(names: Iterable[str]) -> frozenset[int]:
    """Return the gids of the group *names* NSS knows. Blocks: call it in a worker thread."""
    gids: set[int] = set()
    for name in names:
        try:
            gids.add(grp.getgrnam(name).gr_gid)
        except KeyError:
            continue
    return frozenset(gids)


def _policy(config: Config, uid: int, ident: UidIdentity) -> UidPolicy:
    return UidPolicy(
        uid=uid,
        limits=config.limits_for(uid, user=ident.user, groups=ident.groups),
        may_claim=config.may_claim_for(uid, user=ident.user, groups=ident.groups),
        gid=ident.gid,
        named=ident.user is not None,
    )


def _subid_paths(config: Config) -> tuple[str, str]:
    return config.identity.subuid_file, config.identity.subgid_file


def _subid_stamps(config: Config) -> tuple[FileStamp | None, ...]:
    return tuple(map(file_stamp, _subid_paths(config)))


def _load_subids(config: Config) -> SubidFiles:
    """The subordinate-id tables *config* asks for (none with ``"separate"``). Blocks."""
    if config.identity.subordinate_ids != "owner":
        return EMPTY_SUBIDS
    return load_subids(_subid_paths(config))


class Limiter:
    """Per-uid limits for the ingest path, and their reload.

    Args:
        config: the config in force.
        suppression: where drops are counted (and later reported).
        usage: bytes a uid's files use on disk (the store's figure), for
            ``on_quota = "drop"``.
        resolve: NSS lookup of a uid (replaceable in tests).
    """

    def __init__(
        self,
        config: Config,
        suppression: SuppressionTracker,
        usage: Callable[[int], int],
        *,
        resolve: Callable[[int], UidIdentity] = resolve_uid,
    ) -> None:
        self.config = config
        self.suppression = suppression
        self.usage = usage
        self._resolve = resolve
        self.rate = RateLimiter()
        d = config.daemon
        self.conns = ConnectionCounter(d.max_connections, d.connection_headroom)
        #: resolved per uid; read by connection tasks once per batch
        self.policies: dict[int, UidPolicy] = {}
        self._identities: dict[int, UidIdentity] = {}
        self._lookups: dict[int, trio.Event] = {}
        #: per uid dropping records: when its connections may read again
        self._resume: dict[int, float] = {}
        #: NSS answers looked up by quota_for in worker threads
        self._thread_identities: dict[int, UidIdentity] = {}
        self.admin_gids: frozenset[int] = frozenset()
        #: ``/etc/subuid`` and ``/etc/subgid`` as last read (``[identity] subordinate_ids``)
        self.subids = EMPTY_SUBIDS
        #: subordinate uid -> its owner, for the writers seen (and their files' quota)
        self.accounts: dict[int, int] = {}
        #: owner -> the subordinate uids seen counting against her limits
        self.members: dict[int, set[int]] = {}
        #: ``[limits.unit."GLOB"]``: buckets, connection counts and figures per unit
        self.unit_limits = UnitLimiter(config)
        self.units = self.unit_limits.ledger

    # -- policies ---------------------------------------------------------------

    async def policy(self, uid: int) -> UidPolicy:
        """Return *uid*'s policy, looking its identity up (once, off the event loop) if new."""
        while (policy := self.policies.get(uid)) is None:
            pending = self._lookups.get(uid)
            if pending is not None:
                await pending.wait()
                continue
            done = self._lookups[uid] = trio.Event()
            try:
                ident = await self._lookup(uid)
                self._identities[uid] = ident
                self.policies[uid] = _policy(self.config, uid, ident)
            finally:
                del self._lookups[uid]
                done.set()
        return policy

    async def _lookup(self, uid: int) -> UidIdentity:
        with trio.move_on_after(LOOKUP_TIMEOUT):
            try:
                return await trio.to_thread.run_sync(self._resolve, uid, abandon_on_cancel=True)
            except Exception as exc:  # NSS modules raise anything; limits must not
                log.warning("identity_lookup_failed", lookup_uid=uid, error=repr(exc))
                return UNKNOWN
        log.warning("identity_lookup_timeout", lookup_uid=uid, timeout=LOOKUP_TIMEOUT)
        return UNKNOWN

    def policy_nowait(self, uid: int) -> UidPolicy:
        """Return *uid*'s policy; one not yet looked up gets its uid table and defaults."""
        policy = self.policies.get(uid)
        if policy is None:
            policy = _policy(self.config, uid, UNKNOWN)
        return policy

    def owner_of(self, cred: PeerCred, policy: UidPolicy) -> int | None:
        """The user whose limits *cred*'s records count against, if not its own uid.

        With ``[identity] subordinate_ids = "owner"``: the owner of the uid's
        range in ``/etc/subuid``, else of the gid's in ``/etc/subgid``; never
        for a uid with a passwd entry of its own. Two bisects, no I/O: call it
        at accept and when a connection's writer changes, not per record.

        Args:
            cred: the writer's kernel credentials.
            policy: the uid's own policy (whether it has a user name).

        Returns:
            The owner's uid, or ``None``: the uid counts as itself.
        """
        if policy.named:
            return None
        owner = self._range_owner(cred)
        if owner is None:
            return None
        if self.accounts.get(cred.uid) != owner:
            self.accounts[cred.uid] = owner
            self.members.setdefault(owner, set()).add(cred.uid)
        return owner

    def control_account(self, cred: PeerCred) -> int:
        """The uid a control connection counts against: its owner's, for a subordinate uid.

        No I/O (it runs before the connection's first checkpoint): a uid whose
        policy is known is decided as at ingest (:meth:`owner_of`); one not
        seen yet counts against the owner of its ``/etc/subuid`` (or
        ``/etc/subgid``) range, if any, without the passwd check, so that
        subordinate uids never multiply the per-uid control cap.
        """
        policy = self.policies.get(cred.uid)
        owner = self._range_owner(cred) if policy is None else self.owner_of(cred, policy)
        return cred.uid if owner is None else owner

    def _range_owner(self, cred: PeerCred) -> int | None:
        """The owner of *cred*'s ``/etc/subuid`` (else ``/etc/subgid``) range; no passwd check."""
        if self.config.identity.subordinate_ids != "owner":
            return None
        owner = self.subids.uids.owner_of(cred.uid)
        if owner is None:
            owner = self.subids.gids.owner_of(cred.gid)
        return None if owner == cred.uid else owner

    def delegated_to(self, uid: int) -> tuple[tuple[int, int], ...]:
        """The ``(start, end)`` uid ranges delegated to *uid* whose records it may read."""
        if self.config.identity.subordinate_ids != "owner":
            return ()
        return self.subids.uids.ranges_of(uid)

    def account_for(self, uid: int) -> int:
        """The uid whose quota *uid*'s files count against (the housekeeper's view).

        Called from a worker thread: a uid not seen writing since start is
        looked up in ``/etc/subuid`` and, for the passwd check, in NSS here.
        """
        owner = self.accounts.get(uid)
        if owner is not None:
            return owner
        if self.config.identity.subordinate_ids != "owner":
            return uid
        owner = self.subids.uids.owner_of(uid)
        if owner is None or owner == uid or self._thread_identity(uid).user is not None:
            return uid
        return owner

    def _thread_identity(self, uid: int) -> UidIdentity:
        known = self._thread_identities
        ident = known.get(uid)
        if ident is None:
            try:
                ident = self._resolve(uid)
            except Exception:  # as in _lookup: NSS failures never fail retention
                ident = UNKNOWN
            known[uid] = ident
        return ident

    def usage_of(self, account: int) -> int:
        """Disk bytes of *account*'s files and of its subordinate uids' files."""
        members = self.members.get(account)
        if not members:
            return self.usage(account)
        return self.usage(account) + sum(map(self.usage, members))

    def quota_for(self, uid: int) -> tuple[int, str]:
        """Return *uid*'s ``(quota_bytes, on_quota)``, for the store's retention.

        Called from a worker thread (the housekeeper), for uids that may not
        have connected since start: a uid without a cached policy is looked
        up in NSS here, in the calling thread, and remembered apart from the
        event loop's cache (a reload forgets those answers).
        """
        uid = self.account_for(uid)  # a subordinate uid has its owner's quota
        policy = self.policies.get(uid)
        if policy is not None:
            limits = policy.limits
        else:
            limits = _policy(self.config, uid, self._thread_identity(uid)).limits
        return limits.quota_bytes, limits.on_quota

    def quota_nowait(self, uid: int) -> int:
        """*uid*'s ``quota_bytes`` from what is known, never asking NSS (the event loop's
        figure; a uid not looked up yet gets its uid table or the defaults)."""
        policy = self.policies.get(uid)
        if policy is None:
            ident = self._thread_identities.get(uid, UNKNOWN)
            policy = _policy(self.config, uid, ident)
        return policy.limits.quota_bytes

    # -- admission --------------------------------------------------------------

    def admit(
        self,
        uid: int,
        pending_bytes: int,
        sizes: Sequence[int],
        limits: Limits,
        now: float,
        account: int | None = None,
        unit: str | None = None,
    ) -> Admission:
        """Decide one batch of *uid*'s records: how many to file now, and how long to wait.

        Args:
            uid: the uid the records are filed with.
            pending_bytes: the uid's bytes queued but not yet written (they
                count towards its quota).
            sizes: payload bytes of each record, in order.
            limits: the uid's resolved limits.
            now: monotonic seconds (``trio.current_time()``).
            account: the uid whose limits these are (its owner, for a
                subordinate uid: ``owner_of``); *uid* when ``None``. Buckets
                and quota are the account's; drops are counted for *uid*.
            unit: the writer's system unit: its ``[limits.unit]`` buckets
                are asked first; drops are counted for it too.

        Returns:
            File ``sizes[:admitted]`` now. ``retry > 0`` (``on_rate =
            "block"``): offer the rest again after that many seconds.
            Otherwise the rest (if any) was dropped and counted, and when
            ``pause > 0`` the connection should wait that long before it
            reads again (see :meth:`drop_pause`).
        """
        n = len(sizes)
        key = uid if account is None else account
        if limits.on_quota == "drop" and self.usage_of(key) + pending_bytes >= limits.quota_bytes:
            self._drop(uid, "quota", n, now, unit)
            return Admission(0, 0.0, self.drop_pause(key, limits, now), "quota")
        m = n if unit is None else self.unit_limits.admit(unit, sizes, now)
        k = self.rate.admit(key, sizes if m == n else sizes[:m], limits, now)
        if k == n:
            return Admission(k, 0.0, 0.0)
        if limits.on_rate == "drop":
            self._drop(uid, "rate", n - k, now, unit)
            return Admission(k, 0.0, self.drop_pause(key, limits, now), "rate")
        if k == m and unit is not None:  # the unit's buckets held the rest back
            wait = self.unit_limits.delay_for(unit, sizes[k], now)
        else:
            wait = self.rate.delay_for(key, sizes[k], limits, now)
        if not math.isfinite(wait):  # cannot happen with a validated config (burst >= 1)
            return Admission(k, 1.0, 0.0)
        # Wake for a handful of records, not for each: at 10 000/s a wake per token
        # cost a blocked flooder's connections a third of a core. Never gather more
        # than half a burst, so that no token is lost to a full bucket.
        want = max(1, min(n - k, BLOCK_GATHER_RECORDS, limits.burst_messages // 2))
        gather = min((want - 1) / limits.rate_messages, MAX_BLOCK_GATHER)
        return Admission(k, max(MIN_BLOCK_WAIT, wait + gather), 0.0)

    def admit_nowait(
        self,
        uid: int,
        pending_bytes: int,
        sizes: Sequence[int],
        limits: Limits,
        now: float,
        account: int | None = None,
        unit: str | None = None,
    ) -> tuple[int, DropReason | None]:
        """Decide a batch that cannot wait: records off the shared datagram socket.

        As :meth:`admit`, but nothing is handed back and nobody pauses: what
        the buckets do not admit is dropped and counted, also under ``on_rate
        = "block"`` (a shared socket cannot push back on one uid), and there
        is no drop pause (it would stall every sender of the socket).

        Returns:
            File ``sizes[:admitted]``; the rest was dropped for the reason given.
        """
        n = len(sizes)
        key = uid if account is None else account
        if limits.on_quota == "drop" and self.usage_of(key) + pending_bytes >= limits.quota_bytes:
            self._drop(uid, "quota", n, now, unit)
            return 0, "quota"
        m = n if unit is None else self.unit_limits.admit(unit, sizes, now)
        k = self.rate.admit(key, sizes if m == n else sizes[:m], limits, now)
        if k == n:
            return k, None
        self._drop(uid, "rate", n - k, now, unit)
        return k, "rate"

    def _drop(self, uid: int, reason: DropReason, n: int, now: float, unit: str | None) -> None:
        """Count a drop for *uid*, and for *unit* (reported under its name while tracked)."""
        if unit is not None:
            unit = self.units.drop(unit, reason, n)
        self.suppression.note_drop(uid, reason, n, now, unit)

    def drop_pause(self, uid: int, limits: Limits, now: float) -> float:
        """Return how long a connection of *uid* should wait after a read with drops.

        Reading and counting records only to drop them costs the daemon CPU
        that other uids' records need. So after a read in which *uid*'s
        records were dropped, its next read waits: the uid's connections
        together get one such read per ``DROP_PAUSE`` (each drop pushes the
        uid's next read by one step). The step is at most half the time the
        uid's buckets take to refill from empty, so a pause never costs the
        uid a record its limits would have let through. Meanwhile its
        senders wait on their socket buffers; what they send over the limit
        is still dropped and counted.
        """
        step = min(
            DROP_PAUSE,
            0.5 * limits.burst_messages / limits.rate_messages,
            0.5 * limits.burst_bytes / limits.rate_bytes,
        )
        resume = max(self._resume.get(uid, now), now) + step
        self._resume[uid] = resume
        if len(self._resume) > _RESUME_PRUNE:
            self._resume = {u: t for u, t in self._resume.items() if t > now}
        return resume - now

    def open_unit(self, uid: int, unit: str) -> UnitFigures | None:
        """Count a connection of *uid* opened from *unit* (``UnitLimiter.open``); a
        refusal is counted as a ``connections`` drop of *uid* and *unit*."""
        figures = self.unit_limits.open(unit)
        if figures is None:
            self.note_drop(uid, "connections", 1, unit)
        return figures

    def note_drop(self, uid: int, reason: DropReason, n: int, unit: str | None = None) -> None:
        """Count *n* of *uid*'s records (from *unit*, if known) dropped for *reason*, now."""
        self._drop(uid, reason, n, trio.current_time(), unit)

    # -- connections --------------------------------------------------------------

    def is_privileged(self, cred: PeerCred, groups: Sequence[int]) -> bool:
        """Root, or a member of an ``[access] admins`` group by the kernel's account.

        Args:
            cred: the peer's credentials (its gid counts as a group).
            groups: its supplementary gids (``SO_PEERGROUPS``).
        """
        admins = self.admin_gids
        return cred.uid == 0 or cred.gid in admins or not admins.isdisjoint(groups)

    def open_connection(
        self,
        cred: PeerCred,
        policy: UidPolicy,
        groups: Callable[[], Sequence[int]],
        account: int | None = None,
    ) -> bool:
        """Count a new connection of ``cred.uid`` if the caps allow it.

        Args:
            cred: the connection's ``SO_PEERCRED``.
            policy: the account's policy (its ``max_connections``).
            groups: reads the peer's supplementary gids; called only when the
                ordinary share of the global cap is used up.
            account: the uid the connection counts under (the owner of a
                subordinate uid); ``cred.uid`` when ``None``. Pair with
                ``close_connection(account)``.

        Returns:
            ``True`` if counted (pair with :meth:`close_connection`); ``False``
            if refused, the refusal counted as a ``connections`` drop: close
            the connection at once.
        """
        d = self.config.daemon
        privileged = False
        if self.conns.total >= d.max_connections - d.connection_headroom:
            privileged = self.is_privileged(cred, groups())
        key = cred.uid if account is None else account
        if self.conns.try_open(key, policy.limits.max_connections, privileged=privileged):
            return True
        self.note_drop(cred.uid, "connections", 1)
        return False

    def close_connection(self, uid: int) -> None:
        """Uncount a connection that :meth:`open_connection` counted."""
        self.conns.close(uid)

    # -- start and reload -------------------------------------------------------

    async def prepare(self, config: Config) -> Prepared:
        """Resolve, off the event loop, everything *config* needs: uids seen, admins' gids.

        Args:
            config: the config about to be applied.

        Returns:
            What :meth:`apply` takes.
        """
        uids = list(self._identities)

        def lookup_all() -> tuple[dict[int, UidIdentity], frozenset[int], SubidFiles]:
            found: dict[int, UidIdentity] = {}
            for uid in uids:
                try:
                    found[uid] = self._resolve(uid)
                except Exception:  # as in _lookup: NSS failures never fail a reload
                    found[uid] = UNKNOWN
            return found, resolve_gids(config.access.admins), _load_subids(config)

        with trio.move_on_after(LOOKUP_TIMEOUT * 2):
            found, admin_gids, subids = await trio.to_thread.run_sync(
                lookup_all, abandon_on_cancel=True
            )
            return Prepared(config, found, admin_gids, subids)
        log.warning("identity_lookup_timeout", uids=len(uids), timeout=LOOKUP_TIMEOUT * 2)
        return Prepared(config, dict(self._identities), self.admin_gids, self.subids)

    def apply(self, prepared: Prepared) -> None:
        """Put a prepared config in force. Sync: connections see all of it or none.

        Connections stay open, even where more are open than a new cap allows
        (new ones are refused until enough have closed); token buckets keep
        their balance, clipped to a smaller burst.
        """
        config = prepared.config
        d = config.daemon
        self.conns.reconfigure(d.max_connections, d.connection_headroom)
        # uids looked up while prepare() ran keep their (fresh) answer
        identities = {**self._identities, **prepared.identities}
        self.config = config
        self.admin_gids = prepared.admin_gids
        self._identities = identities
        self.policies = {uid: _policy(config, uid, ident) for uid, ident in identities.items()}
        self.unit_limits.reconfigure(config)
        self._thread_identities = {}
        self.set_subids(prepared.subids)
        self.rate.reconfigure(lambda uid: self.policy_nowait(uid).limits, trio.current_time())

    def set_subids(self, subids: SubidFiles) -> None:
        """Put subordinate-id tables in force: new connections and writers see them.

        The owners learned from writers are looked up again in the new
        ``/etc/subuid`` table (quota and retention follow it at once); a
        connection open now stays counted under the owner it was accepted
        under until it closes.
        """
        if subids == self.subids:
            return
        log.info(
            "subordinate_ids_read",
            subuid_ranges=len(subids.uids),
            subgid_ranges=len(subids.gids),
            skipped=subids.uids.skipped + subids.gids.skipped,
        )
        self.subids = subids
        accounts: dict[int, int] = {}
        members: dict[int, set[int]] = {}
        for uid in self.accounts:
            owner = subids.uids.owner_of(uid)
            if owner is not None and owner != uid:
                accounts[uid] = owner
                members.setdefault(owner, set()).add(uid)
        self.accounts, self.members = accounts, members

    async def serve_subid_watch(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Re-read ``/etc/subuid`` and ``/etc/subgid`` within :data:`SUBID_CHECK_INTERVAL`
        of a change (their stamps, off the event loop), for ever."""
        task_status.started()
        while True:
            await trio.sleep(SUBID_CHECK_INTERVAL)
            config = self.config
            if config.identity.subordinate_ids != "owner":
                continue
            stamps = await trio.to_thread.run_sync(_subid_stamps, config)
            if stamps != self.subids.stamps:
                subids = await trio.to_thread.run_sync(_load_subids, config)
                if self.config is config:  # a reload in between read them itself
                    self.set_subids(subids)

    async def serve_pruning(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Forget full token buckets every :data:`BUCKET_PRUNE_INTERVAL` seconds, for ever."""
        task_status.started()
        while True:
            await trio.sleep(BUCKET_PRUNE_INTERVAL)
            self.rate.prune(trio.current_time())
            self.unit_limits.rate.prune(trio.current_time())

    def seed(self, identities: Mapping[int, UidIdentity]) -> None:
        """Take identities known without asking NSS (tests; a cache kept across a restart)."""
        for uid, ident in identities.items():
            self._identities[uid] = ident
            self.policies[uid] = _policy(self.config, uid, ident)
