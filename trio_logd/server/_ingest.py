"""Ingest: one task per connection on the stream socket.

How this works: at accept the task reads ``SO_PEERCRED`` (and, through a
pidfd, ``exe``/``comm``) once. It then reads with ``recvmsg()``: the
listener has ``SO_PASSCRED``, so every read carries the ``SCM_CREDENTIALS``
of the process that wrote its bytes, and the kernel never merges two writers'
bytes into one read. When the writer changes (a child that inherited the
connection, an fd passed to another process), the partial frame buffered so
far is closed off and filed under the previous writer, and the new writer's
records get a stamp of their own (with ``conn_uid``/``conn_pid``).

Each read's complete frames are parsed and encoded into one batch, handed to
the pipeline without a checkpoint per record. Limits are checked here, in the
connection's own task, before anything reaches shared state: one
``Limiter.admit`` call per batch (``_limits.py``). Under ``on_rate = "block"``
the task files what the buckets admit, then sleeps until the rest can pass
before it reads again, so the kernel's socket buffer pushes back on that
uid's senders and nobody else. A writer that may relay (``[identity]
may_claim``) has its records parsed first and filed run by run under the uid
each claims (``protocol/claim.py``), stamped with its own credentials as
``relay_uid``/``relay_pid``, and counted against the claimed uid's limits.

Reads are non-blocking first: while a client keeps the socket busy a read
costs one ``recvmsg`` and a yield, and no timer. Only when the socket is
empty does the task wait, in a cancel scope whose deadline is the earlier of
the per-frame deadline (``[daemon] frame_timeout``, armed when a read ends
inside a frame and kept until that frame ends) and the idle deadline (``[daemon]
idle_timeout``, counted from the start of the wait). A frame that misses its
deadline is filed as far as it arrived, ``truncated``, with one
``protocol_error`` record (``reason: "frame_timeout"``), and the connection is
closed; an idle connection is closed (``docs/security.md``).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
import operator
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import KW_ONLY, dataclass, field
from typing import Final

import structlog
import trio

from trio_logd.errors import FramingError
from trio_logd.errors import excerpt as _excerpt
from trio_logd.limits import SuppressionTracker
from trio_logd.peer import (
    SCM_CREDENTIALS_SPACE,
    PeerCred,
    ProcessIdentity,
    creds_from_ancdata,
    read_process_identity,
    read_writer_identity,
)
from trio_logd.protocol.claim import Claim, take_claim
from trio_logd.protocol.fastpath import encode_plain_batch
from trio_logd.protocol.framing import Frame, FrameDecoder
from trio_logd.protocol.message import Message
from trio_logd.protocol.parse import parse_message
from trio_logd.record import Stamp, daemon_record_line, encode_lines, format_ts, sender_json
from trio_logd.server._accept import Accepted
from trio_logd.server._ack import AckSlot, serve_with_acks
from trio_logd.server._fdlimit import FdCounters
from trio_logd.server._limits import OVERFLOW_ID, Limiter, UidPolicy
from trio_logd.server._pipeline import UID_PENDING_BYTES, Batch, Pipeline, UidState
from trio_logd.unit_limits import UnitFigures

__all__ = ["Connection", "IngestContext", "handle_connection"]

#: Frame fields by position (Frame is a NamedTuple), for map() over a read's frames.
_PAYLOAD: Final = operator.itemgetter(0)
_TRUNCATED: Final = operator.itemgetter(1)

log = structlog.get_logger("trio_logd.ingest")

#: One read takes up to this much: hundreds of typical records per wake-up.
READ_SIZE: Final = 65536
#: Records parsed and queued between two yields to the scheduler (~0.2 ms of
#: work at ~2.8 us per record): bounds how long a flooder's read delays
#: everyone else's. Under a full-speed flood this took a quiet uid's p50 from
#: ~5.8 to ~2.1 ms, but cost the flood ~25 % of its throughput (CPU per
#: record +1.4 s per million), so reads are sliced only while another uid is
#: sending (``ACTIVE_WINDOW``; bench/fairness.py, BENCHMARKS.md).
SLICE_RECORDS: Final = 64
#: Another uid counts as sending for this long after its latest read.
ACTIVE_WINDOW: Final = 1.0
#: A refused connection has at most this many reads of what it sent dropped
#: before it is closed (the default socket buffer holds about 200 KiB).
_DISCARD_READS: Final = 8
#: Stamps a relay connection keeps for the (claimed id, writer) pairs it has seen.
MAX_CLAIM_STAMPS: Final = 256
#: A stream without a socket (tests) has no process to look up in ``/proc``.
_NO_IDENTITY: Final = ProcessIdentity(None, None)
_conn_ids = itertools.count(1)


@dataclass(eq=False)
class IngestContext:
    """What every connection task shares: the pipeline, settings, the daemon's identity."""

    pipeline: Pipeline
    max_message_bytes: int
    daemon: PeerCred
    #: counts every dropped record; ``_suppress.py`` turns counts into records
    suppression: SuppressionTracker = field(default_factory=SuppressionTracker)
    _: KW_ONLY
    #: per-uid limits (counting its drops in ``suppression``)
    limiter: Limiter
    stopping: bool = False
    #: receive cancel scopes of live connections, cancelled at shutdown so
    #: that each connection drains what the kernel holds and stops.
    receivers: set[trio.CancelScope] = field(default_factory=set)
    #: ``[daemon] frame_timeout``: seconds a started frame may take to end; 0 = never
    frame_timeout: float = 30.0
    #: ``[daemon] idle_timeout``: seconds a connection may send nothing; 0 = never
    idle_timeout: float = 0.0
    #: the descriptor reserve connections may not use (``None``: none, tests)
    fds: FdCounters | None = None
    #: the latest read (uid, time), and the time of the latest read by a uid
    #: other than that one: whether anyone else is sending (``others_active``)
    _last_uid: int = field(default=-1, init=False, repr=False)
    _last_time: float = field(default=-math.inf, init=False, repr=False)
    _prev_time: float = field(default=-math.inf, init=False, repr=False)

    def others_active(self, uid: int, now: float) -> bool:
        """Note a read by *uid*; tell whether another uid read within ``ACTIVE_WINDOW``.

        O(1): the latest read by a uid other than *uid* is the latest read,
        or else the latest read by a uid other than the latest one's.
        """
        if uid == self._last_uid:
            self._last_time = now
            return now - self._prev_time < ACTIVE_WINDOW
        self._prev_time = self._last_time
        self._last_uid, self._last_time = uid, now
        return now - self._prev_time < ACTIVE_WINDOW

    def stop_receiving(self) -> None:
        """Shutdown: make every connection drain its socket and finish."""
        self.stopping = True
        for scope in self.receivers:
            scope.cancel()

    def daemon_stamp(self, uid: int) -> Stamp:
        """A stamp for the daemon's own records filed with *uid*."""
        return Stamp(PeerCred(self.daemon.pid, uid, self.daemon.gid))

    def file_daemon_record(
        self,
        uid: int,
        event: str,
        *,
        on_stored: Callable[[int], None] | None = None,
        **extra: object,
    ) -> None:
        """Queue one of the daemon's own records, filed with *uid*.

        *on_stored* is called once it is settled (``Batch.on_stored``: 1 if
        stored, 0 if not); *extra* are the record's fields.
        """
        st = self.pipeline.state(uid)
        seq = st.next_seqs(1)
        ts = format_ts(time.time()).encode()
        line = daemon_record_line(ts, seq, self.daemon_stamp(uid), event, **extra)
        self.pipeline.submit(st, Batch([line], len(line), seq, ts, on_stored, event))


class Connection:
    """Per-connection state of the hot path."""

    __slots__ = ("ack", "claim_stamps", "conn", "ctx", "decoder", "stamp", "stamps")

    def __init__(self, ctx: IngestContext, conn: PeerCred, stamp: Stamp) -> None:
        #: acknowledged delivery (server/_ack.py): set by serve_with_acks, and
        #: None once the first frame turned out not to be the ack hello
        self.ack: AckSlot | None = None
        self.ctx = ctx
        self.conn = conn
        self.stamp = stamp
        self.stamps: dict[PeerCred, Stamp] = {conn: stamp}
        self.claim_stamps: dict[tuple[Claim, PeerCred], Stamp] = {}
        self.decoder = FrameDecoder(ctx.max_message_bytes)

    async def writer_changed(self, writer: PeerCred, now: float) -> None:
        """Close off the previous writer's partial frame; switch stamps.

        Raises:
            FramingError: the previous writer left half an octet count.
        """
        partial = self.decoder.close_partial()
        if partial is not None:
            await self.file([partial], now)
        limiter = self.ctx.limiter
        policy = await limiter.policy(writer.uid)
        stamp = self.stamps.get(writer)
        if stamp is None:
            owner = limiter.owner_of(writer, policy)
            if owner is not None:
                await limiter.policy(owner)
            # exe/comm were verified for the connection's peer only: for another
            # writer they would be a guess, so they are left out. Its pid
            # namespace and attribution are read through a pidfd opened on its
            # pid now (peer.read_writer_identity).
            ident = read_writer_identity(writer)
            stamp = Stamp(
                writer, self.conn, owner=owner, pidns=ident.pidns, attribution=ident.attribution
            )
            if len(self.stamps) < 64:
                self.stamps[writer] = stamp
        self.stamp = stamp

    async def file(self, frames: list[Frame], now: float) -> None:
        """Admit one read's frames under the writer's limits, then stamp, number and queue them.

        No checkpoint unless the writer is a relay with a claimed uid not yet
        looked up, ``on_rate = "block"`` makes it wait for tokens, or records
        were dropped (the drop pause).
        """
        ack = self.ack
        if ack is not None and not ack.on:  # the first frames: the ack hello?
            frames = ack.hello(frames)
            if not ack.on:
                self.ack = None
            if not frames:
                return
        stamp = self.stamp
        limiter = self.ctx.limiter
        policy = limiter.policies.get(stamp.uid) or await limiter.policy(stamp.uid)
        if policy.may_claim:
            await self._file_relayed(frames, now, stamp)
            return
        account = stamp.account  # a subordinate uid is limited as its owner
        if account != stamp.uid:
            policy = limiter.policies.get(account) or await limiter.policy(account)
        mono = trio.current_time()
        # slices only help someone else: alone, a uid's reads go whole (cheaper)
        slices = self.ctx.others_active(stamp.uid, mono)

        async def file_admitted(start: int, stop: int) -> None:
            admitted = frames if not start and stop == len(frames) else frames[start:stop]
            if slices:
                await self._file_sliced(admitted, now, stamp)
            else:
                self.file_frames(admitted, now, stamp)

        sizes = [len(f.data) for f in frames]
        await self._admit(stamp, account, policy, sizes, file_admitted, mono)

    async def _admit(
        self,
        stamp: Stamp,
        account: int,
        policy: UidPolicy,
        sizes: list[int],
        file_admitted: Callable[[int, int], Awaitable[None]],
        mono: float,
        *,
        relayed: bool = False,
    ) -> None:
        """Admit records of payload *sizes* under *account*'s limits; file those admitted.

        ``file_admitted(start, stop)`` files records ``start…stop``; with
        ``on_rate = "block"`` the rest waits for tokens (under the policy as
        a reload leaves it), else it is dropped and counted. After drops a
        writer's connection pauses (``Limiter.drop_pause``); a relay's
        (*relayed*) does not, as it carries many uids and one flooding tenant
        must not slow the others it forwards, but it waits while the claimed
        uid's queue is full (backpressure per claimed uid too).
        """
        limiter = self.ctx.limiter
        st = self.ctx.pipeline.state(stamp.uid)
        start = 0
        while True:
            rest = sizes[start:] if start else sizes
            k, wait, pause, reason = limiter.admit(
                stamp.uid, st.pending_bytes, rest, policy.limits, mono, account, stamp.unit
            )
            if k:
                await file_admitted(start, start + k)
            if not wait:
                self._acked_drop(len(rest) - k, reason)
                if relayed:
                    if st.pending_bytes > UID_PENDING_BYTES:
                        await st.wait_for_room()
                elif pause:  # some were dropped: read on later (Limiter.drop_pause)
                    await trio.sleep(pause)
                return
            start += k
            try:
                await trio.sleep(wait)
            except trio.Cancelled:  # shutdown while blocked: what we hold is dropped
                limiter.note_drop(stamp.uid, "rate", len(sizes) - start, stamp.unit)
                self._acked_drop(len(sizes) - start, "rate")
                raise
            policy = limiter.policy_nowait(account)  # a reload may have changed it
            mono = trio.current_time()

    async def _file_sliced(self, frames: list[Frame], now: float, stamp: Stamp) -> None:
        """File admitted frames, yielding to other tasks every ``SLICE_RECORDS``.

        A 64 KiB read of short records takes over a millisecond to parse and
        encode; in slices, a quiet uid's task and the writer get their turn
        in between. The yield is not a cancel point: what was admitted is
        filed.
        """
        n = len(frames)
        if n <= SLICE_RECORDS:
            self.file_frames(frames, now, stamp)
            return
        for start in range(0, n, SLICE_RECORDS):
            if start:
                await trio.lowlevel.cancel_shielded_checkpoint()
            self.file_frames(frames[start : start + SLICE_RECORDS], now, stamp)

    def file_frames(self, frames: list[Frame], now: float, stamp: Stamp | None = None) -> None:
        """Parse, stamp, number and queue admitted frames. No checkpoint."""
        if stamp is None:
            stamp = self.stamp
        st = self.ctx.pipeline.state(stamp.uid)
        pid = stamp.cred.pid
        payloads = list(map(_PAYLOAD, frames))
        claims = None if any(map(_TRUNCATED, frames)) else encode_plain_batch(payloads, pid)
        if claims is None:  # not all plain glibc lines: the general parser
            claims = [
                sender_json(parse_message(f.data, truncated=f.truncated), pid) for f in frames
            ]
        self._queue(st, stamp, claims, now, sum(map(len, payloads)))

    def _queue(
        self, st: UidState, stamp: Stamp, claims: list[bytes], now: float, payload: int
    ) -> None:
        """Stamp, number and queue records (their encoded *claims*). No checkpoint.

        Args:
            st: the uid they are filed with.
            stamp: their writer's stamp.
            claims: each record's claimed fields, encoded (``sender_json``).
            now: when they were received.
            payload: the bytes they arrived as (the uid's statistics).
        """
        ts = format_ts(now).encode()
        seq = st.last_seq
        lines = encode_lines(ts, seq + 1, stamp.fragment, claims)
        seq += len(lines)
        st.last_seq = seq
        st.records += len(lines)
        st.bytes += payload
        if stamp.unit is not None:
            self.ctx.limiter.units.count(stamp.unit, len(lines), payload)
        batch = Batch(lines, sum(map(len, lines)), seq, ts, names=stamp.names)
        if self.ack is not None:
            self.ack.queued(batch, len(lines))
        self.ctx.pipeline.submit(st, batch)

    def _acked_drop(self, n: int, reason: str | None) -> None:
        """Number dropped records for an acknowledged connection (``AckSlot.dropped``)."""
        if self.ack is not None and n:
            self.ack.dropped(n, reason or "rate")

    # -- relays ---------------------------------------------------------------

    async def _file_relayed(self, frames: list[Frame], now: float, relay: Stamp) -> None:
        """File a relay's frames run by run, each run under the uid its records claim."""
        limiter = self.ctx.limiter
        items: list[tuple[Stamp, Message, int]] = []
        try:
            for i, f in enumerate(frames):
                if i and not i % SLICE_RECORDS:  # as in _file_sliced
                    await trio.lowlevel.cancel_shielded_checkpoint()
                msg = parse_message(f.data, truncated=f.truncated)
                taken = take_claim(msg)
                if taken is None:
                    items.append((relay, msg, len(f.data)))
                    continue
                claim, msg = taken
                if claim.uid not in limiter.policies:
                    await limiter.policy(claim.uid)
                items.append((self._claim_stamp(claim, relay.cred), msg, len(f.data)))
        except trio.Cancelled:  # shutdown during a lookup: nothing of this read was filed
            limiter.note_drop(relay.uid, "rate", len(frames))
            self._acked_drop(len(frames), "rate")
            raise
        start = 0
        while start < len(items):
            stamp = items[start][0]
            end = start + 1
            while end < len(items) and items[end][0] is stamp:
                end += 1
            try:
                await self._file_run(items[start:end], now, stamp)
            except trio.Cancelled:
                for later, _msg, _size in items[end:]:
                    limiter.note_drop(later.uid, "rate", 1)
                self._acked_drop(len(items) - end, "rate")
                raise
            start = end

    def _claim_stamp(self, claim: Claim, relay: PeerCred) -> Stamp:
        key = (claim, relay)
        stamp = self.claim_stamps.get(key)
        if stamp is None:
            gid = claim.gid
            if gid is None:
                gid = self.ctx.limiter.policy_nowait(claim.uid).gid
            writer = PeerCred(claim.pid or 0, claim.uid, gid if gid is not None else OVERFLOW_ID)
            stamp = Stamp(writer, self.conn if self.conn != relay else None, relay=relay)
            if len(self.claim_stamps) < MAX_CLAIM_STAMPS:
                self.claim_stamps[key] = stamp
        return stamp

    async def _file_run(
        self, run: list[tuple[Stamp, Message, int]], now: float, stamp: Stamp
    ) -> None:
        st = self.ctx.pipeline.state(stamp.uid)
        pid = stamp.cred.pid

        async def file_admitted(start: int, stop: int) -> None:
            claims = [sender_json(msg, pid) for _stamp, msg, _size in run[start:stop]]
            self._queue(st, stamp, claims, now, sum(size for _s, _m, size in run[start:stop]))

        policy = self.ctx.limiter.policy_nowait(stamp.uid)
        sizes = [size for _stamp, _msg, size in run]
        mono = trio.current_time()
        await self._admit(stamp, stamp.uid, policy, sizes, file_admitted, mono, relayed=True)


#: One read: the bytes and their ancillary data (``SCM_CREDENTIALS``), as ``recvmsg`` gives them.
_Read = tuple[bytes, list[tuple[int, int, bytes]], int, object]


class _SocketSource:
    """Reads of a real socket: ``recvmsg`` without waiting first, a wait only when empty.

    The hot path reads with ``MSG_DONTWAIT`` and waits only when the socket is
    empty, with its own deadlines (``_serve_source``); trio's ``recvmsg``
    would need a cancel scope per read.
    """

    __slots__ = ("raw", "recv_nowait")

    def __init__(self, raw: socket.socket) -> None:
        self.raw = raw
        #: one read; ``BlockingIOError`` when the socket is empty
        self.recv_nowait: Callable[[], _Read] = functools.partial(
            raw.recvmsg, READ_SIZE, SCM_CREDENTIALS_SPACE, socket.MSG_DONTWAIT
        )

    async def wait_readable(self) -> None:
        await trio.lowlevel.wait_readable(self.raw)

    def drain_nowait(self) -> _Read | None:
        """One non-blocking read for the shutdown drain; ``None`` when nothing is left."""
        try:
            return self.recv_nowait()
        except OSError:  # EAGAIN (nothing left) or the client is gone
            return None


class _StreamSource:
    """Reads of a stream without a socket (a memory stream in tests): ``receive_some``.

    The stream carries no ancillary data: every byte is the accepted peer's.
    """

    __slots__ = ("pending", "stream")

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        #: what the last wait received, not yet read (``b""``: EOF)
        self.pending: bytes | None = None

    def recv_nowait(self) -> _Read:
        data = self.pending
        if data is None:
            raise BlockingIOError
        self.pending = None
        return data, [], 0, None

    async def wait_readable(self) -> None:
        if self.pending is None:  # receive_some cancelled takes nothing
            self.pending = bytes(await self.stream.receive_some(READ_SIZE))

    def drain_nowait(self) -> _Read | None:
        return None if self.pending is None else self.recv_nowait()


#: What a connection's reads come from: a real socket or a stream without one (tests).
_Source = _SocketSource | _StreamSource


async def handle_connection(accepted: Accepted, ctx: IngestContext) -> None:
    """Serve one ingest connection until EOF, a protocol error, or shutdown.

    A real socket is read with ``recvmsg`` (each read's writer from
    ``SCM_CREDENTIALS``); a memory stream (tests) through ``receive_some``,
    every byte from the peer *accepted* names.

    Never raises: a failure of this connection is logged with the peer's
    uid and the connection is closed; other connections are unaffected.
    """
    sock = accepted.socket
    conn_id = next(_conn_ids)
    st = None
    counted: int | None = None
    unit: tuple[str, UnitFigures] | None = None
    try:
        cred = accepted.cred
        structlog.contextvars.bind_contextvars(conn=conn_id, uid=cred.uid, pid=cred.pid)
        if sock is not None and not _within_fd_reserve(ctx, cred, accepted):
            ctx.limiter.note_drop(cred.uid, "connections", 1)
            ctx.pipeline.state(cred.uid)
            _discard_unread(sock)
            log.debug("connection_refused_fd_reserve", fd=sock.fileno())
            return
        limiter = ctx.limiter
        policy = limiter.policies.get(cred.uid) or await limiter.policy(cred.uid)
        # a subordinate uid (/etc/subuid) is counted under its owner's cap
        owner = limiter.owner_of(cred, policy)
        account = cred.uid
        if owner is not None:
            account = owner
            policy = limiter.policies.get(owner) or await limiter.policy(owner)
        if not limiter.open_connection(cred, policy, accepted.read_groups, account):
            # accepted and closed at once, counted as a drop (and listed in stats)
            ctx.pipeline.state(cred.uid)
            if sock is not None:
                _discard_unread(sock)
            log.debug("connection_refused", open=limiter.conns.count(account))
            return
        counted = account
        ident = _NO_IDENTITY if sock is None else read_process_identity(sock, cred.pid)
        name = ident.attribution.unit
        if name is not None:
            figures = limiter.open_unit(cred.uid, name)
            if figures is None:  # the unit's max_connections: as the uid's cap above
                ctx.pipeline.state(cred.uid)
                if sock is not None:
                    _discard_unread(sock)
                log.debug("connection_refused_unit", unit=name)
                return
            unit = (name, figures)
        st = ctx.pipeline.state(cred.uid)
        st.connections += 1
        stamp = Stamp(
            cred,
            exe=ident.exe,
            comm=ident.comm,
            owner=owner,
            pidns=ident.pidns,
            attribution=ident.attribution,
        )
        conn = Connection(ctx, cred, stamp)
        log.debug("connection_opened", exe=ident.exe)
        await serve_with_acks(accepted.stream, conn, functools.partial(_serve, accepted))
    except Exception as exc:  # one client's failure never reaches the shared nursery
        log.warning("connection_failed", error=repr(exc))
    finally:
        if st is not None:
            st.connections -= 1
        if counted is not None:
            ctx.limiter.close_connection(counted)
        if unit is not None:
            ctx.limiter.unit_limits.close(*unit)
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(accepted.stream)


def _within_fd_reserve(ctx: IngestContext, cred: PeerCred, accepted: Accepted) -> bool:
    """Whether the connection's descriptor leaves the reserve alone (``_fdlimit.FdReserve``).

    Counts a refusal. The peer's groups are read only when its number is
    in the part of the reserve that root and admins may use.
    """
    fds = ctx.fds
    if fds is None:
        return True
    assert accepted.socket is not None
    fd = accepted.socket.fileno()
    reserve = fds.reserve
    if reserve.admits(fd) or (
        reserve.admits(fd, privileged=True)
        and ctx.limiter.is_privileged(cred, accepted.read_groups())
    ):
        return True
    fds.note_refused("ingest")
    return False


def _discard_unread(sock: trio.socket.SocketType) -> None:
    """Drop what a refused client already sent, so that it sees EOF, not ECONNRESET.

    Linux resets the peer of a Unix socket closed with unread data
    (``unix_release_sock``); bytes sent after this still get the reset.
    """
    with _borrowed(sock) as raw:
        for _ in range(_DISCARD_READS):
            try:
                if not raw.recv(READ_SIZE, socket.MSG_DONTWAIT):
                    return
            except OSError:  # EAGAIN: nothing (more) to drop
                return


@contextlib.contextmanager
def _borrowed(sock: trio.socket.SocketType) -> Iterator[socket.socket]:
    """A stdlib socket on *sock*'s descriptor, to read without trio's wrapper.

    The descriptor is borrowed: released, not closed, at the end (*sock*
    closes it).
    """
    raw = socket.socket(fileno=sock.fileno())
    try:
        yield raw
    finally:
        raw.detach()


async def _serve(accepted: Accepted, conn: Connection) -> None:
    if accepted.socket is None:
        await _serve_source(_StreamSource(accepted.stream), conn)
        return
    with _borrowed(accepted.socket) as raw:
        await _serve_source(_SocketSource(raw), conn)


async def _serve_source(source: _Source, conn: Connection) -> None:
    ctx = conn.ctx
    recv_nowait = source.recv_nowait
    decoder = conn.decoder
    last_writer = conn.conn
    uid_state = ctx.pipeline.state(conn.conn.uid)
    frame_timeout = ctx.frame_timeout
    idle_timeout = ctx.idle_timeout
    frame_deadline = math.inf  # when the frame in progress must have ended
    while True:
        data: bytes | None = None
        anc: list[tuple[int, int, bytes]] = []
        if not ctx.stopping:
            # as trio's own sock.recvmsg: a cancel point before, a yield after a read
            await trio.lowlevel.checkpoint_if_cancelled()
            try:
                data, anc, _flags, _addr = recv_nowait()
            except BlockingIOError:
                deadline = frame_deadline
                if idle_timeout:
                    deadline = min(deadline, trio.current_time() + idle_timeout)
                if await _wait_readable(source, ctx, deadline):
                    continue
                if not ctx.stopping:  # the deadline passed
                    await _timed_out(conn, frame_deadline, time.time())
                    return
            else:
                await trio.lowlevel.cancel_shielded_checkpoint()
        if data is None:  # shutting down: take what the kernel already holds
            got = source.drain_nowait()
            if got is None:
                await _finish(conn, time.time())
                return
            data, anc, _flags, _addr = got
        now = time.time()
        writer = creds_from_ancdata(anc) or conn.conn
        if writer != last_writer:
            try:
                await conn.writer_changed(writer, now)
            except FramingError as exc:
                _protocol_error(conn, exc, now)
                return
            last_writer = writer
            uid_state = ctx.pipeline.state(writer.uid)
            frame_deadline = math.inf  # the previous writer's frame was closed off
        if not data:  # EOF
            await _finish(conn, now)
            return
        decoder.receive_data(data)
        ended = False  # whether a frame ended in this read
        try:
            while frames := decoder.frames():
                ended = True
                await conn.file(frames, now)
        except FramingError as exc:
            _protocol_error(conn, exc, now)
            return
        if uid_state.pending_bytes > UID_PENDING_BYTES:
            await uid_state.wait_for_room()
        if frame_timeout:
            # Armed when a frame starts (the read ends inside a new frame),
            # kept while that frame goes on, disarmed when no frame is open;
            # counted from after our own work on the read (filing, backpressure).
            if not decoder.in_frame:
                frame_deadline = math.inf
            elif ended or frame_deadline == math.inf:
                frame_deadline = trio.current_time() + frame_timeout


async def _wait_readable(source: _Source, ctx: IngestContext, deadline: float) -> bool:
    """Wait until *source* has bytes (or EOF) to read.

    Returns:
        ``True`` when it has; ``False`` when the wait ended first: at
        shutdown (``ctx.stopping``) or at *deadline*.
    """
    with trio.CancelScope(deadline=deadline) as scope:
        ctx.receivers.add(scope)  # shutdown cancels it (IngestContext.stop_receiving)
        try:
            await source.wait_readable()
        finally:
            ctx.receivers.discard(scope)
    return not scope.cancelled_caught


async def _timed_out(conn: Connection, frame_deadline: float, now: float) -> None:
    """The frame or idle deadline passed: file what the open frame holds, then close.

    The unfinished frame is filed as far as it arrived, ``truncated``, and one
    ``protocol_error`` record names the timeout; an idle connection without
    an open frame is just closed.
    """
    ctx = conn.ctx
    decoder = conn.decoder
    frame = frame_deadline <= trio.current_time()
    if not decoder.in_frame:
        log.debug("idle_timeout", seconds=ctx.idle_timeout)
        return
    held = decoder.buffered
    try:
        partial = decoder.close_partial()
        excerpt = "" if partial is None else _excerpt(partial.data)
    except FramingError as exc:  # an unfinished octet count: nothing to keep but its excerpt
        partial, excerpt = None, exc.excerpt
    if partial is not None:
        await conn.file([Frame(partial.data, True)], now)
    reason, timeout = (
        ("frame_timeout", ctx.frame_timeout) if frame else ("idle_timeout", ctx.idle_timeout)
    )
    msg = (
        f"frame not completed within {timeout:g} s ({reason}): {held} bytes of it held"
        f"{', filed truncated' if partial is not None else ''}; connection closed"
    )
    writer = conn.stamp.cred
    log.warning("protocol_error", error=msg, writer_uid=writer.uid)
    ctx.file_daemon_record(
        writer.uid,
        "protocol_error",
        sev="warning",
        msg=msg,
        conn_uid=conn.conn.uid,
        conn_pid=conn.conn.pid,
        writer_pid=writer.pid,
        excerpt=excerpt,
        count=1,
        reason=reason,
    )


async def _finish(conn: Connection, now: float) -> None:
    """EOF or shutdown: file whatever partial frame the decoder still holds."""
    try:
        conn.decoder.receive_data(b"")
        while frames := conn.decoder.frames():
            await conn.file(frames, now)
    except FramingError as exc:
        _protocol_error(conn, exc, now)


def _protocol_error(conn: Connection, exc: FramingError, now: float) -> None:
    """File one ``protocol_error`` record for the writer; the caller closes."""
    writer = conn.stamp.cred
    log.warning("protocol_error", error=str(exc), writer_uid=writer.uid)
    conn.ctx.file_daemon_record(
        writer.uid,
        "protocol_error",
        sev="warning",
        msg=str(exc),
        conn_uid=conn.conn.uid,
        conn_pid=conn.conn.pid,
        writer_pid=writer.pid,
        excerpt=exc.excerpt,
        count=1,
        reason="framing",
    )
