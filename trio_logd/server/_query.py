"""The ``query`` control operation: authorized reads of the store, and ``-f`` follow.

How this works: the request is validated (``QuerySpec.from_request``) and
authorized from the connection's kernel credentials only: ``SO_PEERCRED``
(uid, primary gid) and ``SO_PEERGROUPS``. A uid may read its own records
and, with ``[identity] subordinate_ids = "owner"``, those of the uids
delegated to it in ``/etc/subuid``; root and members of an ``[access]
readers`` group may read any. The request
names uids as integers; the store path is built from those integers only.

The scan (``store.scan.Scanner``) never runs in the event loop: the handler
pulls batches from it in a worker thread, one bounded step per hop (a few
chunks of a few MiB, at most ``_STEP_SECONDS``), under a limiter shared by
all queries, then sends them. A slow client therefore slows only its own
query (``send_all`` waits, nothing more is read), a client that goes away
stops its scan at the next step, and ``--grep`` runs RE2, whose matching
time is linear in the text, so no pattern can stall anyone.

Follow: a :class:`FollowHub` is the pipeline's one ``written_hook``. It hands
each uid's freshly stored lines to the followers of that uid, each of which
keeps a bounded buffer; the hook does O(1) work per follower and never waits.
A follower that cannot keep up loses what does not fit, counts it, and is
sent a ``missed`` line with the count before its next records. A follower
subscribes *before* its historic scan opens any file; live lines already
covered by the scan (``seq`` not above what the scan saw) are dropped, so
nothing is sent twice and nothing falls between the two.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final

import structlog
import trio

from trio_logd.config import Config
from trio_logd.errors import AccessDenied, LimitExceeded
from trio_logd.query.filters import LineFilter, QuerySpec, line_seq
from trio_logd.server._control import ControlCall
from trio_logd.store.scan import Scanner

__all__ = ["FollowHub", "Follower", "QueryService", "authorize_uids", "reader_gids"]

log = structlog.get_logger("trio_logd.query")

#: Scan steps running at once, all queries together: two cores, and the
#: writer's thread must keep its share.
SCAN_THREADS: Final = 2
#: A worker-thread step returns after this long or this many lines, whichever first.
_STEP_SECONDS: Final = 0.05
_STEP_LINES: Final = 4096
#: Queries (follows included) one uid may have open at once.
MAX_QUERIES_PER_UID: Final = 16
#: A follower's buffer of live records not yet sent: by count and by bytes.
FOLLOW_BUFFER_RECORDS: Final = 10_000
FOLLOW_BUFFER_BYTES: Final = 16 << 20

_RECORD_HEAD: Final = b'{"type":"record","record":'


def encode_records(lines: Sequence[bytes]) -> bytes:
    """``record`` response lines for stored lines (without LF), embedding them unchanged."""
    if not lines:
        return b""
    return _RECORD_HEAD + b'}\n{"type":"record","record":'.join(lines) + b"}\n"


# --------------------------------------------------------------------------- authorization


def reader_gids(config: Config) -> dict[int, str]:
    """The gids of the ``[access] readers`` groups that exist (gid → name).

    Looked up in the group database on every call (in a worker thread: NSS
    may be slow), so a group created or renumbered takes effect at once.
    """
    out: dict[int, str] = {}
    for name in config.access.readers:
        try:
            out[grp.getgrnam(name).gr_gid] = name
        except KeyError:
            continue
    return out


def authorize_uids(
    config: Config,
    caller_uid: int,
    caller_gids: Sequence[int],
    spec: QuerySpec,
    readers: dict[int, str],
    owned: Collection[int] = (),
) -> list[int] | None:
    """Decide which uids the caller may read for *spec*.

    A user may read her subordinate uids' records (``[identity]
    subordinate_ids = "owner"``): *owned* lists those the query concerns,
    and a query without uids reads them with her own.

    Args:
        config: the running config (``is_reader``).
        caller_uid: ``SO_PEERCRED`` uid.
        caller_gids: the primary gid and ``SO_PEERGROUPS``.
        spec: the query.
        readers: :func:`reader_gids`.
        owned: :func:`owned_uids` for this query.

    Returns:
        The uids to read; ``None`` for every uid.

    Raises:
        AccessDenied: "permission denied: uid 1001 may not read uid 1000".
    """
    groups = [readers[g] for g in caller_gids if g in readers]
    if config.is_reader(caller_uid, groups):
        return None if spec.all_uids else list(spec.uids or (caller_uid,))
    if spec.all_uids:
        names = ", ".join(config.access.readers) or "none configured"
        msg = (
            f"permission denied: uid {caller_uid} may not read all uids "
            f"(root and members of the [access] readers groups may: {names})"
        )
        raise AccessDenied(msg, uid=caller_uid, what="all")
    for uid in spec.uids:
        if uid != caller_uid and uid not in owned:
            msg = f"permission denied: uid {caller_uid} may not read uid {uid}"
            raise AccessDenied(msg, uid=caller_uid, what=f"uid {uid}")
    if spec.uids:
        return list(spec.uids)
    return [caller_uid, *sorted(owned)]


def owned_uids(
    log_dir: str, ranges: Sequence[tuple[int, int]], wanted: Sequence[int]
) -> frozenset[int]:
    """The caller's subordinate uids (in *ranges*) that a query concerns. Blocks: a thread.

    Args:
        log_dir: the store's root (uids with records have a directory there).
        ranges: the ``(start, end)`` ranges delegated to the caller.
        wanted: the uids the query names; none: every uid with records.

    Returns:
        Those in *ranges* without a passwd entry of their own (a user's uid
        inside a range is that user's, never the range owner's).
    """
    if not ranges:
        return frozenset()
    if wanted:
        candidates: Iterable[int] = wanted
    else:
        try:
            names = os.listdir(log_dir)
        except OSError:
            names = []
        candidates = (int(n) for n in names if n.isascii() and n.isdigit())
    out = set()
    for uid in candidates:
        if any(start <= uid < end for start, end in ranges):
            try:
                pwd.getpwuid(uid)
            except (KeyError, OverflowError):
                out.add(uid)
    return frozenset(out)


# --------------------------------------------------------------------------- follow


@dataclass(eq=False)
class Follower:
    """One ``-f`` stream's buffer of live lines, bounded; overflow is counted."""

    uids: frozenset[int] | None  # None: every uid
    max_records: int = FOLLOW_BUFFER_RECORDS
    max_bytes: int = FOLLOW_BUFFER_BYTES
    pending: deque[tuple[int, list[bytes]]] = field(default_factory=deque)
    records: int = 0
    nbytes: int = 0
    missed: int = 0
    wake: trio.Event = field(default_factory=trio.Event)

    def push(self, uid: int, lines: list[bytes]) -> None:
        """Take freshly stored lines of *uid* (from the writer's hook). Never blocks."""
        room = self.max_records - self.records
        if room < len(lines):
            self.missed += len(lines) - max(room, 0)
            lines = lines[: max(room, 0)]
        size = sum(map(len, lines))
        if lines and self.nbytes + size > self.max_bytes:
            self.missed += len(lines)
            lines = []
        if lines:
            self.pending.append((uid, lines))
            self.records += len(lines)
            self.nbytes += size
        self.wake.set()

    def take(self) -> tuple[list[tuple[int, list[bytes]]], int]:
        """Return the buffered lines and the count missed since the last take; reset both."""
        out = list(self.pending)
        missed = self.missed
        self.pending.clear()
        self.records = self.nbytes = self.missed = 0
        self.wake = trio.Event()
        return out, missed


class FollowHub:
    """Fans the writer's stored lines out to the followers of each uid."""

    def __init__(self) -> None:
        self._by_uid: dict[int, set[Follower]] = {}
        self._everyone: set[Follower] = set()

    def hook(self, uid: int, lines: list[bytes]) -> None:
        """``Pipeline.written_hooks`` entry: O(followers of *uid*), never waits."""
        for f in self._by_uid.get(uid, ()):
            f.push(uid, lines)
        for f in self._everyone:
            f.push(uid, lines)

    def add(self, follower: Follower) -> None:
        """Start buffering live lines for *follower*."""
        if follower.uids is None:
            self._everyone.add(follower)
            return
        for uid in follower.uids:
            self._by_uid.setdefault(uid, set()).add(follower)

    def remove(self, follower: Follower) -> None:
        """Stop buffering for *follower* (idempotent)."""
        self._everyone.discard(follower)
        for uid in follower.uids or ():
            subs = self._by_uid.get(uid)
            if subs is not None:
                subs.discard(follower)
                if not subs:
                    del self._by_uid[uid]

    def __len__(self) -> int:
        return len(self._everyone) + sum(len(s) for s in self._by_uid.values())


def _live_filter(
    filt: LineFilter, chunks: list[tuple[int, list[bytes]]], last_seqs: dict[int, int]
) -> bytes:
    """Worker thread: filter live lines, drop what the scan covered, encode."""
    out: list[bytes] = []
    for uid, lines in chunks:
        floor = last_seqs.get(uid, 0)
        if floor and line_seq(lines[0]) <= floor:
            lines = [ln for ln in lines if line_seq(ln) > floor]
            if not lines:
                continue
        last_seqs[uid] = line_seq(lines[-1])
        out.extend(filt.filter_lines(b"".join(lines)))
    return encode_records(out)


# --------------------------------------------------------------------------- the operation


def _pull(batches: Iterator[list[bytes]]) -> tuple[bytes, int, bool]:
    """Worker thread: run the scan for one bounded step; return (encoded, count, done)."""
    deadline = time.monotonic() + _STEP_SECONDS
    lines: list[bytes] = []
    for batch in batches:
        lines.extend(batch)
        if len(lines) >= _STEP_LINES or time.monotonic() > deadline:
            return encode_records(lines), len(lines), False
    return encode_records(lines), len(lines), True


@dataclass(eq=False)
class QueryService:
    """Serves ``query`` on the control socket.

    Args:
        config: returns the running config (it may be reloaded).
        log_dir: the store's root.
    """

    config: Callable[[], Config]
    log_dir: str
    hub: FollowHub = field(default_factory=FollowHub)
    limiter: trio.CapacityLimiter = field(
        default_factory=lambda: trio.CapacityLimiter(SCAN_THREADS)
    )
    open_queries: dict[int, int] = field(default_factory=dict)
    #: a uid -> the subordinate-id ranges delegated to it (``Limiter.delegated_to``)
    delegated: Callable[[int], Sequence[tuple[int, int]]] = lambda uid: ()

    def status(self) -> dict[str, int]:
        """Figures for ``trio-logd status``: queries and followers open."""
        return {"queries": sum(self.open_queries.values()), "followers": len(self.hub)}

    async def handle(self, call: ControlCall) -> None:
        """The ``query`` operation (see ``docs/logq.md`` for the protocol)."""
        spec = QuerySpec.from_request(call.request.args)
        config = self.config()
        readers = await trio.to_thread.run_sync(reader_gids, config)
        gids = (call.caller.gid, *call.groups)
        ranges = self.delegated(call.caller.uid)
        owned = await trio.to_thread.run_sync(owned_uids, self.log_dir, ranges, spec.uids)
        uids = authorize_uids(config, call.caller.uid, gids, spec, readers, owned)
        uid = call.caller.uid
        if self.open_queries.get(uid, 0) >= MAX_QUERIES_PER_UID:
            msg = f"uid {uid} has {MAX_QUERIES_PER_UID} queries open already: close one first"
            raise LimitExceeded(msg, uid=uid, limit="queries")
        self.open_queries[uid] = self.open_queries.get(uid, 0) + 1
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_cancel_on_eof, call.stream, nursery.cancel_scope)
                await self._serve(call, spec, uids)
                nursery.cancel_scope.cancel()
        finally:
            self.open_queries[uid] -= 1
            if not self.open_queries[uid]:
                del self.open_queries[uid]

    async def _serve(self, call: ControlCall, spec: QuerySpec, uids: list[int] | None) -> None:
        follower: Follower | None = None
        if spec.follow:
            follower = Follower(None if uids is None else frozenset(uids))
            self.hub.add(follower)  # before any file is opened: nothing falls between
        try:
            scanner = await trio.to_thread.run_sync(
                Scanner, self.log_dir, uids, spec, limiter=self.limiter
            )
            await call.send("ok", uids="all" if uids is None else scanner.uids)
            batches = scanner.batches()
            sent = 0
            try:
                while True:
                    data, n, done = await trio.to_thread.run_sync(
                        _pull, batches, limiter=self.limiter
                    )
                    if data:
                        await call.send_raw(data)
                        sent += n
                    if done:
                        break
            finally:
                batches.close()
                scanner.close()
            if follower is None:
                await call.send("end", records=sent, **scanner.stats.as_dict())
                return
            await self._follow(call, follower, scanner.filter, scanner.last_seqs())
        finally:
            if follower is not None:
                self.hub.remove(follower)

    async def _follow(
        self, call: ControlCall, follower: Follower, filt: LineFilter, last_seqs: dict[int, int]
    ) -> None:
        while True:
            await follower.wake.wait()
            chunks, missed = follower.take()
            if missed:
                await call.send("missed", count=missed)
            if chunks:
                data = await trio.to_thread.run_sync(
                    _live_filter, filt, chunks, last_seqs, limiter=self.limiter
                )
                if data:
                    await call.send_raw(data)


async def _cancel_on_eof(stream: trio.SocketStream, scope: trio.CancelScope) -> None:
    """End the query when the client closes its end (or sends anything more)."""
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        await stream.receive_some(1)
    scope.cancel()
