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
connection's own task, before anything reaches shared state.
"""

from __future__ import annotations

import errno
import itertools
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import structlog
import trio

from trio_logd.errors import FramingError
from trio_logd.limits import SuppressionTracker
from trio_logd.peer import (
    SCM_CREDENTIALS_SPACE,
    PeerCred,
    creds_from_ancdata,
    read_peer_cred,
    read_process_identity,
)
from trio_logd.protocol.framing import Frame, FrameDecoder
from trio_logd.protocol.parse import parse_message
from trio_logd.record import Stamp, daemon_record_line, format_ts, sender_json
from trio_logd.server._ack import AckSlot, serve_with_acks
from trio_logd.server._pipeline import UID_PENDING_BYTES, Batch, Pipeline

__all__ = ["IngestContext", "handle_connection", "serve_listener"]

log = structlog.get_logger("trio_logd.ingest")

#: One read takes up to this much: hundreds of typical records per wake-up.
READ_SIZE: Final = 65536
#: accept() errors that mean "out of a resource for now", not "listener broken"
#: (the same set trio's SocketListener sleeps on).
_ACCEPT_CAPACITY_ERRORS: Final = frozenset(
    {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
)
_conn_ids = itertools.count(1)


@dataclass(eq=False)
class IngestContext:
    """What every connection task shares: the pipeline, settings, the daemon's identity."""

    pipeline: Pipeline
    max_message_bytes: int
    daemon: PeerCred
    #: counts every dropped record; ``_suppress.py`` turns counts into records
    suppression: SuppressionTracker = field(default_factory=SuppressionTracker)
    stopping: bool = False
    #: receive cancel scopes of live connections, cancelled at shutdown so
    #: that each connection drains what the kernel holds and stops.
    receivers: set[trio.CancelScope] = field(default_factory=set)

    def stop_receiving(self) -> None:
        """Shutdown: make every connection drain its socket and finish."""
        self.stopping = True
        for scope in self.receivers:
            scope.cancel()

    def daemon_stamp(self, uid: int) -> Stamp:
        """A stamp for the daemon's own records filed with *uid*."""
        return Stamp(PeerCred(self.daemon.pid, uid, self.daemon.gid))

    def file_daemon_record(self, uid: int, event: str, **extra: object) -> None:
        """Queue one of the daemon's own records, filed with *uid*."""
        st = self.pipeline.state(uid)
        seq = st.next_seqs(1)
        line = daemon_record_line(time.time(), seq, self.daemon_stamp(uid), event, **extra)
        self.pipeline.submit(st, Batch([line], len(line), seq))


class _Connection:
    """Per-connection state of the hot path."""

    __slots__ = ("ack", "conn", "ctx", "decoder", "stamp", "stamps")

    def __init__(self, ctx: IngestContext, conn: PeerCred, stamp: Stamp) -> None:
        #: acknowledged delivery (server/_ack.py): set by serve_with_acks, and
        #: None once the first frame turned out not to be the ack hello
        self.ack: AckSlot | None = None
        self.ctx = ctx
        self.conn = conn
        self.stamp = stamp
        self.stamps: dict[PeerCred, Stamp] = {conn: stamp}
        self.decoder = FrameDecoder(ctx.max_message_bytes)

    def writer_changed(self, writer: PeerCred, now: float) -> None:
        """Close off the previous writer's partial frame; switch stamps.

        Raises:
            FramingError: the previous writer left half an octet count.
        """
        partial = self.decoder.close_partial()
        if partial is not None:
            self.file_frames([partial], now)
        stamp = self.stamps.get(writer)
        if stamp is None:
            # exe/comm were verified for the connection's peer only: for another
            # writer they would be a guess, so they are left out.
            stamp = Stamp(writer, self.conn)
            if len(self.stamps) < 64:
                self.stamps[writer] = stamp
        self.stamp = stamp

    def file_frames(self, frames: list[Frame], now: float) -> None:
        """Parse, stamp, number and queue one read's frames. No checkpoint."""
        ack = self.ack
        if ack is not None and not ack.on:  # the first frames: the ack hello?
            frames = ack.hello(frames)
            if not ack.on:
                self.ack = ack = None
            if not frames:
                return
        stamp = self.stamp
        st = self.ctx.pipeline.state(stamp.uid)
        ts = format_ts(now).encode()
        frag = stamp.fragment
        pid = stamp.cred.pid
        seq = st.last_seq
        lines: list[bytes] = []
        append = lines.append
        nbytes = payload = 0
        for f in frames:
            data = f.data
            payload += len(data)
            seq += 1
            line = b'{"ts":"%s","seq":%d,%s,%s}\n' % (
                ts,
                seq,
                frag,
                sender_json(parse_message(data, truncated=f.truncated), pid),
            )
            nbytes += len(line)
            append(line)
        st.last_seq = seq
        st.records += len(frames)
        st.bytes += payload
        batch = Batch(lines, nbytes, seq)
        if ack is not None:
            ack.queued(batch, len(lines))
        self.ctx.pipeline.submit(st, batch)


def _recv_nowait(sock: socket.socket) -> tuple[bytes, list[tuple[int, int, bytes]]] | None:
    """One non-blocking read for the shutdown drain; ``None`` when nothing is left."""
    try:
        data, anc, _flags, _addr = sock.recvmsg(
            READ_SIZE, SCM_CREDENTIALS_SPACE, socket.MSG_DONTWAIT
        )
    except (BlockingIOError, InterruptedError):
        return None
    except OSError:
        return None
    return data, anc


async def handle_connection(sock: trio.socket.SocketType, ctx: IngestContext) -> None:
    """Serve one ingest connection until EOF, a protocol error, or shutdown.

    Never raises: a failure of this connection is logged with the peer's
    uid and the connection is closed; other connections are unaffected.
    """
    conn_id = next(_conn_ids)
    st = None
    try:
        cred = PeerCred(*read_peer_cred(sock))  # type: ignore[arg-type]
        ident = read_process_identity(sock, cred.pid)  # type: ignore[arg-type]
        structlog.contextvars.bind_contextvars(conn=conn_id, uid=cred.uid, pid=cred.pid)
        st = ctx.pipeline.state(cred.uid)
        st.connections += 1
        conn = _Connection(ctx, cred, Stamp(cred, exe=ident.exe, comm=ident.comm))
        log.debug("connection_opened", exe=ident.exe)
        await serve_with_acks(sock, conn, _serve)
    except Exception as exc:  # one client's failure never reaches the shared nursery
        log.warning("connection_failed", error=repr(exc))
    finally:
        if st is not None:
            st.connections -= 1
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(_AsyncCloser(sock))


class _AsyncCloser(trio.abc.AsyncResource):
    def __init__(self, sock: trio.socket.SocketType) -> None:
        self._sock = sock

    async def aclose(self) -> None:
        self._sock.close()


async def _serve(sock: trio.socket.SocketType, conn: _Connection) -> None:
    ctx = conn.ctx
    decoder = conn.decoder
    raw: socket.socket = sock._sock  # type: ignore[attr-defined]  # for the non-blocking drain
    last_writer = conn.conn
    uid_state = ctx.pipeline.state(conn.conn.uid)
    while True:
        data: bytes | None = None
        anc: list[tuple[int, int, bytes]] = []
        if not ctx.stopping:
            with trio.CancelScope() as scope:
                ctx.receivers.add(scope)
                try:
                    data, anc, _flags, _addr = await sock.recvmsg(READ_SIZE, SCM_CREDENTIALS_SPACE)
                finally:
                    ctx.receivers.discard(scope)
        if data is None:  # shutting down: take what the kernel already holds
            got = _recv_nowait(raw)
            if got is None:
                _finish(conn, time.time())
                return
            data, anc = got
        now = time.time()
        writer = creds_from_ancdata(anc) or conn.conn
        if writer != last_writer:
            try:
                conn.writer_changed(writer, now)
            except FramingError as exc:
                _protocol_error(conn, exc, now)
                return
            last_writer = writer
            uid_state = ctx.pipeline.state(writer.uid)
        if not data:  # EOF
            _finish(conn, now)
            return
        decoder.receive_data(data)
        try:
            while frames := decoder.frames():
                conn.file_frames(frames, now)
        except FramingError as exc:
            _protocol_error(conn, exc, now)
            return
        if uid_state.pending_bytes > UID_PENDING_BYTES:
            await uid_state.wait_for_room()


def _finish(conn: _Connection, now: float) -> None:
    """EOF or shutdown: file whatever partial frame the decoder still holds."""
    try:
        conn.decoder.receive_data(b"")
        while frames := conn.decoder.frames():
            conn.file_frames(frames, now)
    except FramingError as exc:
        _protocol_error(conn, exc, now)


def _protocol_error(conn: _Connection, exc: FramingError, now: float) -> None:
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


async def serve_listener(
    listener: trio.socket.SocketType,
    handler_nursery: trio.Nursery,
    handler: Callable[[trio.socket.SocketType], object],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Accept connections forever, starting ``handler(sock)`` in *handler_nursery*.

    Running out of file descriptors does not stop the listener: it logs,
    waits a little, and tries again (as trio's ``SocketListener`` does).
    """
    task_status.started()
    while True:
        try:
            sock, _addr = await listener.accept()
        except OSError as exc:
            if exc.errno in _ACCEPT_CAPACITY_ERRORS:
                log.error("accept_failed", error=os.strerror(exc.errno or 0))
                await trio.sleep(0.1)
                continue
            raise
        handler_nursery.start_soon(handler, sock)  # type: ignore[arg-type]
