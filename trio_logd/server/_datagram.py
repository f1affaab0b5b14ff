"""Ingest: the optional datagram socket (``[daemon] datagram_socket``).

How this works: one task owns the socket. It waits until the socket is
readable, then reads datagrams with non-blocking ``recvmsg()`` until the
kernel has none left or ``TURN_DATAGRAMS`` were read, files them, and yields.
``SO_PASSCRED`` is on the socket, so each datagram carries the
``SCM_CREDENTIALS`` of the process that sent it; a datagram has no
connection, so there is no ``conn_uid``/``conn_pid``, and no pidfd, so no
``exe``/``comm`` (``SO_PASSPIDFD`` measured at a third or more of the
throughput: docs/ingest-datagram.md). Where the socket has ``SO_PASSSEC``
(``_sockets.pass_labels``), the kernel adds the sender's LSM label
(``SCM_SECURITY``) and the ancillary buffer has room for it; an fd a sender
still got in (``SCM_RIGHTS`` queued before the socket refused them) is
closed at once. A turn's datagrams are grouped by writer (keyed by the raw
credentials and label: ``peer.datagram_writer``), each writer's in the
order sent: one admission and one batch per writer per turn, filed by the
same code as a stream read (``_ingest.Connection.file_frames``). Records of one turn share
their receive time; two writers' records within one turn (~64 datagrams)
are numbered writer by writer. Grouping consecutive datagrams only gave runs
of 1.8 datagrams with four senders, and a ``file_frames`` call per run cost
40 % of the throughput.

One datagram is one record. One trailing NUL (``SysLogHandler`` ends each
datagram with one), then one LF, then one CR are stripped (glibc's
``syslog(3)`` and ``logger`` end with none); an empty datagram is ignored; a
datagram longer than ``max_message_bytes`` is stored cut to it and marked
``truncated`` (the kernel tells us with ``MSG_TRUNC`` when it did not fit).

The socket is shared by every sender, so nothing here ever waits for one
uid. The buckets are the stream path's (per uid, ``Limiter.admit_nowait``):
what they do not admit is dropped and counted, under ``on_rate = "block"``
too, and there is no drop pause. A datagram sender is pushed back only by
the kernel: the socket's queue holds ``net.unix.max_dgram_qlen`` datagrams
(plus the sender's ``SO_SNDBUF`` in bytes), and a sender then blocks in
``send()``. When a uid's queue to the writer is deeper than
``UID_PENDING_BYTES`` (the disk is slower than that uid's senders), this
task waits for the writer's next round: every datagram sender waits with it,
for about a millisecond, as they would for any slow disk. Rate limits never
stop the reading.

The first datagram of a uid not seen before is filed under its uid table and
the defaults (``Limiter.policy_nowait``) while its user and groups are looked
up in the background: an NSS lookup never stalls the socket. Relaying
(``[identity] may_claim``) is a stream-socket feature: over a datagram, a
claim stays a claim (``fields``).
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from typing import Final

import structlog
import trio

from trio_logd.peer import (
    NO_ATTRIBUTION,
    SCM_CREDENTIALS_SPACE,
    SCM_LABELLED_SPACE,
    SO_PASSRIGHTS,
    SO_PASSSEC,
    Attribution,
    PeerCred,
    datagram_writer,
    decode_writer_key,
    lsm_labels,
    read_writer_pidns,
)
from trio_logd.protocol.framing import Frame
from trio_logd.record import Stamp
from trio_logd.server._ingest import SLICE_RECORDS, Connection, IngestContext
from trio_logd.server._pipeline import UID_PENDING_BYTES, UidState

__all__ = ["DatagramReader", "serve_datagrams"]

log = structlog.get_logger("trio_logd.datagram")

#: Datagrams read and filed per turn before other tasks get theirs: the
#: stream path's slice (``_ingest.SLICE_RECORDS``, ~0.2 ms of work).
TURN_DATAGRAMS: Final = SLICE_RECORDS
#: Stamps kept for writers seen (a datagram writer is a pid: many are short-lived).
MAX_STAMPS: Final = 1024
#: The kernel's "unknown" credentials (pid 0, overflow uid/gid): what a
#: datagram without ``SCM_CREDENTIALS`` is filed as (cannot happen with
#: ``SO_PASSCRED`` on; kept so that a missing header is never a crash).
UNKNOWN_WRITER: Final = PeerCred(0, 65534, 65534)
#: Bytes beyond ``max_message_bytes`` read per datagram: the terminators we strip.
_SLACK: Final = 3
#: After an unexpected failure of a turn, wait this long (never spin).
_FAILURE_PAUSE: Final = 0.1
#: Plain ints: testing an ``IntFlag`` costs ~2.5 us per datagram (measured).
#: ``MSG_DONTWAIT``, and ``MSG_CMSG_CLOEXEC``: an fd a sender gets in is never inherited.
_RECV_FLAGS: Final = int(socket.MSG_DONTWAIT) | getattr(socket, "MSG_CMSG_CLOEXEC", 0x40000000)
_MSG_TRUNC: Final = int(socket.MSG_TRUNC)
_SCM_CREDENTIALS: Final = int(socket.SCM_CREDENTIALS)


def _labels_safe(sock: socket.socket) -> bool:
    """Whether *sock* has ``SO_PASSSEC`` on and refuses new fds (``_sockets.pass_labels``).

    ``SO_PASSSEC`` alone (``PassSecurity=yes`` in a socket unit, on a kernel
    without ``SO_PASSRIGHTS``) does not make room for a label: every
    datagram could then bring fds to close. Nor does it on a kernel without
    an LSM that labels sockets (``peer.lsm_labels``): no label would come.
    """
    if not lsm_labels():
        return False
    try:
        return bool(sock.getsockopt(socket.SOL_SOCKET, SO_PASSSEC)) and not sock.getsockopt(
            socket.SOL_SOCKET, SO_PASSRIGHTS
        )
    except OSError:  # ENOPROTOOPT: no SO_PASSRIGHTS before Linux 6.16
        return False


def close_quietly(fd: int) -> None:
    """Close an fd a sender passed (``EBADF``/``EINTR`` are nothing to report)."""
    with contextlib.suppress(OSError):
        os.close(fd)


def strip_terminator(data: bytes) -> bytes:
    """Drop one trailing NUL, then one LF, then one CR (the senders' terminators)."""
    if data[-1:] == b"\0":
        data = data[:-1]
    if data[-1:] == b"\n":
        data = data[:-1]
    if data[-1:] == b"\r":
        data = data[:-1]
    return data


class DatagramReader:
    """Reads and files the datagram socket's records (see the module doc).

    Args:
        ctx: what the ingest tasks share (pipeline, limiter, settings).
        sock: the bound ``SOCK_DGRAM`` socket, ``SO_PASSCRED`` on, non-blocking;
            with ``SO_PASSSEC`` on, records carry the senders' labels.
    """

    def __init__(self, ctx: IngestContext, sock: socket.socket) -> None:
        self.ctx = ctx
        self.sock = sock
        self.bufsize = ctx.max_message_bytes + _SLACK
        self.ancsize = SCM_LABELLED_SPACE if _labels_safe(sock) else SCM_CREDENTIALS_SPACE
        #: per writer (the raw SCM_CREDENTIALS bytes, then its label's): its stamp
        self.stamps: dict[bytes, Stamp] = {}
        #: files records exactly as a stream connection does (no ack, no relay)
        self._filer = Connection(ctx, ctx.daemon, Stamp(ctx.daemon))
        self._looking: set[int] = set()
        self._nursery: trio.Nursery | None = None
        #: datagrams read so far (tests, benchmarks)
        self.datagrams = 0

    # -- reading ----------------------------------------------------------------

    def read_turn(self) -> tuple[int, dict[bytes, list[Frame]]]:
        """Read up to ``TURN_DATAGRAMS`` datagrams without blocking.

        Returns:
            How many datagrams were read, and their non-empty frames grouped
            by writer (``peer.datagram_writer``'s key), each writer's in order.
        """
        by_writer: dict[bytes, list[Frame]] = {}
        recv = self.sock.recvmsg
        bufsize, ancsize, limit = self.bufsize, self.ancsize, self.ctx.max_message_bytes
        n = 0
        while n < TURN_DATAGRAMS:
            try:
                data, anc, flags, _addr = recv(bufsize, ancsize, _RECV_FLAGS)
            except (BlockingIOError, InterruptedError):
                break
            n += 1
            # the credentials' bytes as the key: no PeerCred per datagram
            if len(anc) == 1 and anc[0][1] == _SCM_CREDENTIALS:
                key = anc[0][2]
            else:  # a label, fds, or no credentials (seldom: off the fast path)
                key, fds = datagram_writer(anc)
                for fd in fds:
                    close_quietly(fd)
            truncated = bool(flags & _MSG_TRUNC)
            if not truncated and data and data[-1] in b"\0\n\r":
                data = strip_terminator(data)
            if len(data) > limit:
                data = data[:limit]
                truncated = True
            if not data:
                continue
            frames = by_writer.get(key)
            if frames is None:
                frames = by_writer[key] = []
            frames.append(Frame(data, truncated))
        self.datagrams += n
        return n, by_writer

    # -- filing -----------------------------------------------------------------

    def file(self, by_writer: dict[bytes, list[Frame]], now: float) -> UidState | None:
        """Admit and queue what one turn read, writer by writer. No checkpoint.

        Returns:
            The state of a uid whose queue is now deeper than
            ``UID_PENDING_BYTES`` (wait for it before reading on), or ``None``.
        """
        ctx = self.ctx
        limiter = ctx.limiter
        mono = trio.current_time()
        over: UidState | None = None
        for key, frames in by_writer.items():
            stamp = self._stamp(key)
            uid = stamp.uid
            account = stamp.account  # a subordinate uid is limited as its owner
            policy = limiter.policies.get(account)
            if policy is None:
                self._look_up(account)
                policy = limiter.policy_nowait(account)
            st = ctx.pipeline.state(uid)
            sizes = [len(f.data) for f in frames]
            k, _reason = limiter.admit_nowait(
                uid, st.pending_bytes, sizes, policy.limits, mono, account
            )
            if not k:
                continue
            ctx.others_active(uid, mono)
            self._filer.file_frames(frames if k == len(frames) else frames[:k], now, stamp)
            if st.pending_bytes > UID_PENDING_BYTES:
                over = st
        return over

    def _stamp(self, key: bytes) -> Stamp:
        stamp = self.stamps.get(key)
        if stamp is None:  # decoded once per writer, as peer.py decodes ancillary data
            writer, label = decode_writer_key(key)
            cred = writer or UNKNOWN_WRITER
            attribution = NO_ATTRIBUTION if label is None else Attribution(label=label)
            policy = self.ctx.limiter.policies.get(cred.uid)
            if policy is None:  # its owner is known once its policy is: not kept till then
                self._look_up(cred.uid)
                return Stamp(cred, attribution=attribution)
            owner = self.ctx.limiter.owner_of(cred, policy)
            pidns = read_writer_pidns(cred.pid)
            stamp = Stamp(cred, owner=owner, pidns=pidns, attribution=attribution)
            if len(self.stamps) >= MAX_STAMPS:
                self.stamps.clear()
            self.stamps[key] = stamp
        return stamp

    def _look_up(self, uid: int) -> None:
        """Resolve *uid*'s policy in the background (once at a time)."""
        if uid in self._looking or self._nursery is None:
            return
        self._looking.add(uid)

        async def look_up() -> None:
            try:
                await self.ctx.limiter.policy(uid)
            finally:
                self._looking.discard(uid)

        self._nursery.start_soon(look_up)

    # -- the task ---------------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Read and file datagrams until shutdown, then file what the kernel still holds."""
        ctx = self.ctx
        async with trio.open_nursery() as lookups:
            self._nursery = lookups
            task_status.started()
            while True:
                if not ctx.stopping:
                    with trio.CancelScope() as scope:
                        ctx.receivers.add(scope)
                        try:
                            await trio.lowlevel.wait_readable(self.sock)
                        finally:
                            ctx.receivers.discard(scope)
                try:
                    n, by_writer = self.read_turn()
                    over = self.file(by_writer, time.time()) if by_writer else None
                except Exception as exc:  # never let one bad turn stop the socket
                    log.error("datagram_turn_failed", error=repr(exc))
                    await trio.sleep(_FAILURE_PAUSE)
                    continue
                if ctx.stopping and n < TURN_DATAGRAMS:
                    break  # drained what the kernel held at shutdown
                if over is not None:
                    await over.wait_for_room(UID_PENDING_BYTES)
                elif n == TURN_DATAGRAMS:
                    await trio.lowlevel.checkpoint()  # more may wait: others first
            lookups.cancel_scope.cancel()


async def serve_datagrams(
    sock: socket.socket,
    ctx: IngestContext,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the datagram socket until shutdown (see :class:`DatagramReader`).

    Args:
        sock: the bound ``SOCK_DGRAM`` socket with ``SO_PASSCRED`` on.
        ctx: what the ingest tasks share.
        task_status: started once the task waits for datagrams.
    """
    sock.setblocking(False)
    await DatagramReader(ctx, sock).serve(task_status=task_status)
