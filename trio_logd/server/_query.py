"""The ``query`` control operation: authorized reads of the store, and ``-f`` follow.

How this works: the request is validated (``QuerySpec.from_request``) and
authorized from the connection's kernel credentials only: ``SO_PEERCRED``
(uid, primary gid) and ``SO_PEERGROUPS``. A uid may read its own records
and, with ``[identity] subordinate_ids = "owner"``, those of the uids
delegated to it in ``/etc/subuid``; root and members of an ``[access]
readers`` group may read any. The request
names uids as integers; the store path is built from those integers only.

The scan (``store.scan.Scanner``) never runs in the event loop: the handler
pulls batches from it in a worker thread, one step per hop, then sends them.
A step is bounded in time (``[control] query_step``: the scan yields after
every chunk or piece, and the step returns at its deadline) and in bytes
(``query_buffer_bytes``, taken from the daemon-wide ``query_memory_bytes``
budget before the step and given back once its batch is sent; the lines
beyond it wait in the query's ``LineBatch``). So:

* a client that has not read a batch within :data:`PATIENCE` pauses its
  query: a scan of one uid closes its files (and zstd's window), drops its
  buffers, gives its share back and keeps only the rest of the line being
  sent; once the client has read that, the scan resumes after it by
  ``seq`` (``Scanner.resume``). A scan of several uids (root and readers
  only) keeps its batch and share while it waits;
* a uid's scans hold files and buffers :data:`SCANS_PER_UID` at a time;
* steps run two at a time for all queries together (two cores; the
  writer's thread keeps its share), and one at a time per uid, so one uid's
  queries, however costly, leave a thread to everyone else; a step that ran
  over its time is followed by a pause as long as the overrun
  (:func:`pause_after`), so a costly ``--grep`` gets about half a core;
* a client that hangs up cancels its query at once: the EOF watcher
  cancels the trio scope and the ``LineFilter`` (which then rejects every
  line, so a step running in a thread ends with the piece it is on; a
  ``--grep`` program is capped in size, which bounds one record's search);
* a uid may have ``max_queries_per_uid`` queries and follows open (root and
  ``[access] admins``: no cap); one more is refused with ``code: "limit"``.

When a query pauses and when the last query ends the daemon asks glibc to
return freed memory to the system (``malloc_trim``): answers come and go in
large buffers freed in the middle of glibc's heaps, which it would keep.

Follow: a :class:`FollowHub` is the pipeline's one ``written_hook``. It hands
each uid's freshly stored lines to the followers of that uid, each of which
keeps a bounded buffer; the hook does O(1) work per follower and never waits.
A follower that cannot keep up loses what does not fit (its share,
``query_buffer_bytes``, or the daemon-wide budget), counts it, and is sent
a ``missed`` line with the count before its next records. A follower
subscribes *before* its historic scan opens any file; live lines already
covered by the scan (``seq`` not above what the scan saw) are dropped, so
nothing is sent twice and nothing falls between the two.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import grp
import os
import pwd
from collections import deque
from collections.abc import (
    AsyncIterator,
    Callable,
    Collection,
    Generator,
    Iterable,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from functools import partial
from typing import Final

import structlog
import trio

from trio_logd.config import Config
from trio_logd.errors import AccessDenied
from trio_logd.peer import PeerCred
from trio_logd.query.budget import ByteBudget, LineBatch
from trio_logd.query.cursor import CursorRequest, place
from trio_logd.query.filters import LineFilter, QuerySpec
from trio_logd.query.scanner import query_scanner
from trio_logd.query.steps import encode_records, last_seq, pause_after, run_step, split_sent
from trio_logd.record import seq_key
from trio_logd.server._control import ControlCall
from trio_logd.store.scan import TAIL_KEEP_BYTES, Scanner, uid_store_ids

__all__ = [
    "FollowHub",
    "Follower",
    "QueryService",
    "authorize_uids",
    "encode_records",
    "reader_gids",
    "user_names",
]

log = structlog.get_logger("trio_logd.query")

#: Scan steps running at once, all queries together: two cores, and the
#: writer's thread must keep its share.
SCAN_THREADS: Final = 2
#: A follower's buffer of live records not yet sent, by count (by bytes it is
#: ``[control] query_buffer_bytes``).
FOLLOW_BUFFER_RECORDS: Final = 10_000
#: Scans of one uid that may hold files and buffers at once (the others wait:
#: a paused scan lets go of its slot): 16 queries of one uid left unread hold
#: their answers' shares, not 16 zstd windows of 2 MiB each.
SCANS_PER_UID: Final = 2
#: Seconds a client may take to read a batch before its query lets its scan
#: go (files, zstd's 2 MiB window, read buffers) until it reads again.
PATIENCE: Final = 0.25

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


def user_names(uids: Iterable[int]) -> dict[int, str]:
    """The user names of those *uids* that have one (NSS: call it in a worker thread)."""
    out: dict[int, str] = {}
    for uid in uids:
        try:
            out[uid] = pwd.getpwuid(uid).pw_name
        except KeyError:
            continue
    return out


def authorize_uids(
    config: Config,
    caller_uid: int,
    caller_gids: Sequence[int],
    spec: QuerySpec,
    readers: dict[int, str],
    *,
    owned: Collection[int] = (),
    names: Mapping[int, str] | None = None,
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
        names: user names to show in a refusal (:func:`user_names`).

    Returns:
        The uids to read; ``None`` for every uid.

    Raises:
        AccessDenied: "permission denied: uid 1001 (bob) may not read uid 1000
            (alice) (root and members of the [access] readers groups may: adm)".
    """
    groups = [readers[g] for g in caller_gids if g in readers]
    if config.is_reader(caller_uid, groups):
        return None if spec.all_uids else list(spec.uids or (caller_uid,))
    names = names or {}

    def who(uid: int) -> str:
        return f"uid {uid} ({names[uid]})" if uid in names else f"uid {uid}"

    allowed = ", ".join(config.access.readers) or "none configured"
    hint = f"(root and members of the [access] readers groups may: {allowed})"
    if spec.all_uids:
        msg = f"permission denied: {who(caller_uid)} may not read all uids {hint}"
        raise AccessDenied(msg, uid=caller_uid, what="all")
    for uid in spec.uids:
        if uid != caller_uid and uid not in owned:
            msg = f"permission denied: {who(caller_uid)} may not read {who(uid)} {hint}"
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
    """One ``-f`` stream's buffer of live lines, bounded; overflow is counted.

    Its bytes are taken from *budget* (the daemon-wide one) when pushed and
    given back by whoever sends them (:meth:`take` hands them over) or by
    :meth:`drop`.
    """

    uids: frozenset[int] | None  # None: every uid
    max_bytes: int
    budget: ByteBudget
    max_records: int = FOLLOW_BUFFER_RECORDS
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
        if lines and (self.nbytes + size > self.max_bytes or not self.budget.try_take(size)):
            self.missed += len(lines)
            lines = []
        if lines:
            self.pending.append((uid, lines))
            self.records += len(lines)
            self.nbytes += size
        self.wake.set()

    def take(self) -> tuple[list[tuple[int, list[bytes]]], int, int]:
        """Return the buffered lines, the count missed since the last take and
        the budget bytes they hold (the caller releases them); reset all."""
        out = list(self.pending)
        missed, nbytes = self.missed, self.nbytes
        self.pending.clear()
        self.records = self.nbytes = self.missed = 0
        self.wake = trio.Event()
        return out, missed, nbytes

    def drop(self) -> None:
        """Forget what is buffered and give its bytes back (the follower ends)."""
        self.budget.release(self.nbytes)
        self.pending.clear()
        self.records = self.nbytes = 0


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
        if floor and seq_key(lines[0]) <= floor:
            lines = [ln for ln in lines if seq_key(ln) > floor]
            if not lines:
                continue
        last_seqs[uid] = seq_key(lines[-1])
        out.extend(filt.filter_lines(b"".join(lines)))
    return encode_records(out)


# --------------------------------------------------------------------------- the operation


class _UidSemaphores:
    """A semaphore per uid, made when first needed and dropped when unused."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._sems: dict[int, tuple[trio.Semaphore, int]] = {}

    def get(self, uid: int) -> trio.Semaphore:
        """*uid*'s semaphore; :meth:`put` it back when done with it."""
        sem, users = self._sems.get(uid) or (trio.Semaphore(self.size), 0)
        self._sems[uid] = (sem, users + 1)
        return sem

    def put(self, uid: int) -> None:
        """Done with *uid*'s semaphore (acquired or not)."""
        sem, users = self._sems[uid]
        if users > 1:
            self._sems[uid] = (sem, users - 1)
        else:
            del self._sems[uid]

    @contextlib.asynccontextmanager
    async def hold(self, uid: int) -> AsyncIterator[None]:
        """Hold one unit of *uid*'s semaphore while inside."""
        sem = self.get(uid)
        try:
            async with sem:
                yield
        finally:
            self.put(uid)

    def __len__(self) -> int:
        return len(self._sems)


@dataclass(eq=False)
class _Scan:
    """A query's scan between steps: where it is, and what it found and did not send yet."""

    scanner: Scanner[LineFilter]
    batches: Generator[list[bytes], None, None]
    #: one of its uid's :data:`SCANS_PER_UID` slots, held while the scan has state
    slot: trio.Semaphore
    holds_slot: bool = False
    found: LineBatch = field(default_factory=LineBatch)
    #: seq of the last line sent (one uid), where a resumed scan goes on from
    position: int = 0
    sent: int = 0

    def let_go(self) -> None:
        """Close the scan's files, drop its buffers (they are read again on
        resume) and give its uid's scan slot to another query."""
        self.batches.close()
        self.found = LineBatch()
        self.holds_slot = False
        self.slot.release()

    def resume(self) -> None:
        """Open the scan again after :meth:`let_go`, after the last line sent."""
        self.batches = self.scanner.resume(self.position)


async def _send_within(stream: trio.abc.SendStream, data: bytes, patience: float) -> int:
    """Send *data* for at most *patience* seconds; return how many bytes went.

    A trio socket's ``send`` is cancelled atomically (nothing or a count is
    sent), so unlike ``send_all`` this knows where it stopped.

    Raises:
        trio.BrokenResourceError: the client went away.
    """
    if not isinstance(stream, trio.SocketStream):  # a memory stream (tests): never full
        await stream.send_all(data)
        return len(data)
    view = memoryview(data)
    sent = 0
    with trio.move_on_after(patience):
        try:
            while sent < len(view):
                sent += await stream.socket.send(view[sent:])
        except OSError as exc:
            msg = f"control client: {exc}"
            raise trio.BrokenResourceError(msg) from exc
    return sent


def _malloc_trim() -> Callable[[], object] | None:
    """glibc's ``malloc_trim``, or ``None`` elsewhere (musl, other C libraries)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: trim(0)


#: Returns the memory glibc holds free to the system (a few ms, in a thread).
_TRIM: Final = _malloc_trim()
#: Seconds between two trims when queries pause: answers are freed in the
#: middle of glibc's heaps, which it keeps (40 MiB for 16 paused queries).
_TRIM_INTERVAL: Final = 0.25


@dataclass(eq=False)
class QueryService:
    """Serves ``query`` on the control socket.

    Args:
        config: returns the running config (it may be reloaded).
        log_dir: the store's root.
        privileged: whether a caller (credentials, supplementary gids) is
            root or an ``[access] admins`` member: not held to
            ``max_queries_per_uid``.
    """

    config: Callable[[], Config]
    log_dir: str
    privileged: Callable[[PeerCred, Sequence[int]], bool] = lambda cred, _groups: cred.uid == 0
    hub: FollowHub = field(default_factory=FollowHub)
    limiter: trio.CapacityLimiter = field(
        default_factory=lambda: trio.CapacityLimiter(SCAN_THREADS)
    )
    open_queries: dict[int, int] = field(default_factory=dict)
    #: a uid -> the subordinate-id ranges delegated to it (``Limiter.delegated_to``)
    delegated: Callable[[int], Sequence[tuple[int, int]]] = lambda uid: ()
    #: queries waiting for their client to read, holding nothing of the budget
    paused: int = 0
    budget: ByteBudget = field(init=False)
    _budget_freed: trio.Event = field(default_factory=trio.Event)
    _trimmed: float = -_TRIM_INTERVAL
    _steps: _UidSemaphores = field(default_factory=lambda: _UidSemaphores(1))
    _scans: _UidSemaphores = field(default_factory=lambda: _UidSemaphores(SCANS_PER_UID))

    def __post_init__(self) -> None:
        self.budget = ByteBudget(self.config().control.query_memory_bytes)

    def status(self) -> dict[str, int]:
        """Figures for ``trio-logd status``: queries and followers open, queries
        paused by their client, answer bytes held."""
        return {
            "queries": sum(self.open_queries.values()),
            "followers": len(self.hub),
            "paused": self.paused,
            "query_bytes": self.budget.used,
        }

    async def handle(self, call: ControlCall) -> None:
        """The ``query`` operation (see ``docs/logq.md`` for the protocol)."""
        position, args = CursorRequest.split(call.request.args)
        spec = QuerySpec.from_request(args)
        if position.cursor is not None and spec.lines is not None:
            msg = "query: a cursor reads forwards from its place; it cannot be used with 'lines'"
            raise ValueError(msg)
        config = self.config()
        readers = await trio.to_thread.run_sync(reader_gids, config)
        gids = (call.caller.gid, *call.groups)
        ranges = self.delegated(call.caller.uid)
        owned = await trio.to_thread.run_sync(owned_uids, self.log_dir, ranges, spec.uids)
        try:
            uids = authorize_uids(config, call.caller.uid, gids, spec, readers, owned=owned)
        except AccessDenied:  # say it again with user names (NSS, so in a worker thread)
            names = await trio.to_thread.run_sync(user_names, {call.caller.uid, *spec.uids})
            uids = authorize_uids(
                config, call.caller.uid, gids, spec, readers, owned=owned, names=names
            )
        uid = call.caller.uid
        cap = config.control.max_queries_per_uid
        if self.open_queries.get(uid, 0) >= cap and not self.privileged(call.caller, call.groups):
            msg = (
                f"uid {uid} has {cap} queries open already ([control] max_queries_per_uid): "
                f"close one first"
            )
            await call.send("error", code="limit", error=msg, limit="max_queries_per_uid")
            return
        self.open_queries[uid] = self.open_queries.get(uid, 0) + 1
        failure: BaseException | None = None
        try:
            async with trio.open_nursery() as nursery:
                cancelled: list[LineFilter] = []  # the scan's filter, once it exists
                nursery.start_soon(_cancel_on_eof, call.stream, nursery.cancel_scope, cancelled)
                await self._serve(call, spec, uids, cancelled, position)
                nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            # one failure (the client went away, a store error): the control
            # server answers it as any other, raised below, outside this
            # handler, so that it does not hold the group (and the group it:
            # a cycle that would keep the query's buffers until a gc run)
            failure = _only(group)
            if failure is group:
                raise
        finally:
            self.open_queries[uid] -= 1
            if not self.open_queries[uid]:
                del self.open_queries[uid]
            if not self.open_queries:
                with trio.CancelScope(shield=True), trio.move_on_after(5):
                    await self._trim(force=True)
        if failure is not None:
            try:
                raise failure
            finally:
                failure = None

    async def _trim(self, *, force: bool = False) -> None:
        """Return free memory to the system (glibc): when the last query ends,
        and when a query pauses (at most every :data:`_TRIM_INTERVAL` s)."""
        now = trio.current_time()
        if _TRIM is None or (not force and now - self._trimmed < _TRIM_INTERVAL):
            return
        self._trimmed = now
        await trio.to_thread.run_sync(_TRIM, abandon_on_cancel=True)

    # -- memory and turns -------------------------------------------------

    @contextlib.asynccontextmanager
    async def _share(self, nbytes: int) -> AsyncIterator[None]:
        """Hold *nbytes* of the daemon-wide budget (waiting for them) while inside."""
        self.budget.total = self.config().control.query_memory_bytes
        while not self.budget.try_take(nbytes):
            await self._budget_freed.wait()
        try:
            yield
        finally:
            self._release(nbytes)

    def _release(self, nbytes: int) -> None:
        self.budget.release(nbytes)
        self._budget_freed.set()
        self._budget_freed = trio.Event()

    @contextlib.asynccontextmanager
    async def _turn(self, uid: int) -> AsyncIterator[None]:
        """One step of *uid* at a time: its queries take turns on one thread."""
        async with self._steps.hold(uid):
            yield

    # -- the query --------------------------------------------------------

    async def _serve(
        self,
        call: ControlCall,
        spec: QuerySpec,
        uids: list[int] | None,
        cancelled: list[LineFilter],
        position: CursorRequest,
    ) -> None:
        control = self.config().control
        follower: Follower | None = None
        if spec.follow:
            follower = Follower(
                None if uids is None else frozenset(uids), control.query_buffer_bytes, self.budget
            )
            self.hub.add(follower)  # before any file is opened: nothing falls between
        try:
            scanner = await trio.to_thread.run_sync(
                partial(
                    _open_scan,
                    self.log_dir,
                    uids,
                    spec,
                    position,
                    regex_memory_bytes=control.regex_memory_bytes,
                    tail_keep_bytes=min(control.query_buffer_bytes, TAIL_KEEP_BYTES),
                ),
                limiter=self.limiter,
            )
            cancelled.append(scanner.filter)
            if follower is not None:  # what is stored after "ok" is live, not history
                await trio.to_thread.run_sync(scanner.open, limiter=self.limiter)
            extra: dict[str, object] = {}
            stores: dict[int, int] | None = None
            if position.stores:  # for the client's cursors: uids it may read only
                stores = await trio.to_thread.run_sync(scanner.store_ids, limiter=self.limiter)
                extra["stores"] = {str(u): i for u, i in stores.items()}
            await call.send("ok", uids="all" if uids is None else scanner.uids, **extra)
            scan = _Scan(scanner, scanner.batches(), self._scans.get(call.caller.uid))
            try:
                await scan.slot.acquire()
                scan.holds_slot = True
                while not await self._step(call, scan):
                    pass
            finally:
                scan.batches.close()
                scanner.close()
                if scan.holds_slot:
                    scan.slot.release()
                self._scans.put(call.caller.uid)
            for damaged in scanner.stats.damaged:  # passed over: the client says so
                await call.send("damaged", file=damaged.path, error=damaged.reason)
            if follower is None:
                await call.send("end", records=scan.sent, **scanner.stats.as_dict())
                return
            await self._follow(call, follower, scanner.filter, scanner.last_seqs(), stores)
        finally:
            if follower is not None:
                self.hub.remove(follower)
                follower.drop()

    async def _step(self, call: ControlCall, scan: _Scan) -> bool:
        """Run one step of *scan* and send its batch, within the query's share.

        A client that has not taken the batch within :data:`PATIENCE` pauses
        the query: a scan of one uid lets go of its files and buffers and of
        its share of the budget, keeping only the rest of the line being sent;
        once the client has taken that, the scan resumes after it (by ``seq``).
        A scan of several uids keeps its batch and share while it waits.

        Returns:
            Whether the scan is done.
        """
        control = self.config().control
        share = control.query_buffer_bytes
        before = scan.position
        async with self._share(share):
            async with self._turn(call.caller.uid):
                step = partial(
                    run_step,
                    scan.batches,
                    scan.found,
                    scan.scanner.filter,
                    seconds=control.query_step,
                    max_bytes=share,
                )
                result = await trio.to_thread.run_sync(step, limiter=self.limiter)
                # a step that ran over (records slow to match) is paid for by a
                # pause as long as the overrun: a costly --grep gets half a core
                await trio.sleep(pause_after(result.took, control.query_step))
            data, done = result.data, result.done
            del result
            over = len(data) - share  # one line longer than the share: held all the same
            if over > 0:
                self.budget.take(over)
            try:
                went = await _send_within(call.stream, data, PATIENCE)
                if went == len(data) or done or not scan.scanner.resumable:
                    await call.stream.send_all(memoryview(data)[went:])
                    scan.sent += data.count(b"\n")
                    scan.position = last_seq(data) or scan.position
                    return done
                rest, lines, last = split_sent(data, went)
                scan.sent += lines
                scan.position = last or before
                del data
                scan.let_go()
            finally:
                if over > 0:
                    self._release(over)
        # paused, holding only the rest of one line: the share is back in the budget
        self.paused += 1
        try:
            await self._trim()
            await call.stream.send_all(rest)
        finally:
            self.paused -= 1
        await scan.slot.acquire()
        scan.holds_slot = True
        scan.resume()
        return False

    async def _follow(
        self,
        call: ControlCall,
        follower: Follower,
        filt: LineFilter,
        last_seqs: dict[int, int],
        stores: dict[int, int] | None,
    ) -> None:
        """Send live records; *stores* (asked for cursors): a uid's first live
        records are preceded by a ``stores`` line with its store identity."""
        while True:
            await follower.wake.wait()
            chunks, missed, nbytes = follower.take()
            try:
                if missed:
                    await call.send("missed", count=missed)
                new = {uid for uid, _ in chunks if uid not in stores} if stores is not None else ()
                if new and stores is not None:
                    ids = await trio.to_thread.run_sync(
                        uid_store_ids, self.log_dir, sorted(new), limiter=self.limiter
                    )
                    stores.update(ids)
                    if ids:
                        await call.send("stores", stores={str(u): i for u, i in ids.items()})
                if chunks:
                    async with self._turn(call.caller.uid):
                        data = await trio.to_thread.run_sync(
                            _live_filter, filt, chunks, last_seqs, limiter=self.limiter
                        )
                    del chunks
                    if data:
                        await call.send_raw(data)
            finally:
                self._release(nbytes)


def _open_scan(
    log_dir: str,
    uids: list[int] | None,
    spec: QuerySpec,
    position: CursorRequest,
    *,
    regex_memory_bytes: int,
    tail_keep_bytes: int,
) -> Scanner[LineFilter]:
    """Worker thread: the query's scan, started where its cursor says (if it has one)."""
    scanner = query_scanner(
        log_dir,
        uids,
        spec,
        regex_memory_bytes=regex_memory_bytes,
        tail_keep_bytes=tail_keep_bytes,
    )
    if position.cursor is not None:
        try:
            place(scanner, position.cursor, inclusive=position.inclusive)
        except BaseException:
            scanner.close()
            raise
    return scanner


def _only(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one exception of *group* (nested groups included), or *group* itself."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        exc = pending.pop()
        if isinstance(exc, BaseExceptionGroup):
            pending.extend(exc.exceptions)
        else:
            leaves.append(exc)
    return leaves[0] if len(leaves) == 1 else group


async def _cancel_on_eof(
    stream: trio.abc.ReceiveStream, scope: trio.CancelScope, filters: list[LineFilter]
) -> None:
    """End the query when the client closes its end (or sends anything more).

    The filter of the query's scan (in *filters* once it exists) is cancelled
    too: a step running in a worker thread cannot be interrupted by trio, so it
    is told to stop at its next line.
    """
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        await stream.receive_some(1)
    for filt in filters:
        filt.cancel()
    scope.cancel()
