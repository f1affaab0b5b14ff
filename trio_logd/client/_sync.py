"""``LogdClient``: the thread-safe sync client, with a background sender thread.

How this works: the application's threads only encode a record and append it
to the :class:`~trio_logd.client._outbox.Outbox` under one lock; they never
touch the socket, so ``emit`` costs microseconds whatever the daemon does. A
daemon thread owns the connection: it connects (non-blocking, then checks
``SO_PEERCRED``), writes queued frames in chunks of up to
:data:`CHUNK_BYTES` with one ``send()`` each, reads acknowledgements,
reconnects with backoff and reports drops in a record of its own. It sleeps
in ``poll()`` on the socket and an eventfd; a producer writes the eventfd
only when the thread has said it is about to sleep (``_idle``), so while
records flow the wake-up costs nothing.

Blocking is bounded everywhere: ``emit`` never waits for I/O (a full buffer
drops the record and counts it); ``send``, ``flush`` and ``close`` wait at
most their timeout. The thread is a daemon thread and an ``atexit`` hook
gives each client ``timeout`` seconds to deliver what it holds.

Fork: a child must not share its parent's connection (its records would
carry its own pid through ``SCM_CREDENTIALS`` but interleave with the
parent's frames) nor send the parent's queued records again. An
``os.register_at_fork`` hook gives every client in the child a fresh lock,
eventfd, outbox and client id, closes the inherited socket, and the child's
first record starts its own sender thread.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import select
import socket
import sys
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from trio_logd.client._connect import PeerRefused, connect, default_socket_path
from trio_logd.client._encode import FrameEncoder, encode_record
from trio_logd.client._outbox import Backoff, Outbox, queue_drop_report
from trio_logd.errors import ClientError, ConfigError, ConnectFailed, LogdError, ProtocolError
from trio_logd.protocol.ack import ACK_HELLO

__all__ = [
    "CHUNK_BYTES",
    "DEFAULT_BUFFER_BYTES",
    "DEFAULT_TIMEOUT",
    "ClientStatistics",
    "LogdClient",
]

#: One ``send()`` takes up to this much: ~2000 typical records per system call.
CHUNK_BYTES: Final = 256 * 1024
#: Records held while the daemon is away or slow: about 40 000 typical records.
DEFAULT_BUFFER_BYTES: Final = 8 * 1024 * 1024
#: The longest any call waits for delivery, by default (``send``, ``flush``, ``close``).
DEFAULT_TIMEOUT: Final = 1.0
#: A connection that lasted this long worked: the reconnect backoff starts over.
_HEALTHY_AFTER: Final = 1.0
_READ_SIZE: Final = 65536
_READABLE: Final = select.POLLIN | select.POLLHUP | select.POLLERR


@dataclass(frozen=True, slots=True)
class ClientStatistics:
    """A snapshot of a client's counters (all since it was made, or since ``fork()``).

    Attributes:
        connected: a connection is open now.
        connects: connections made.
        accepted: records taken into the buffer.
        delivered: records written to the daemon (acknowledged mode: stored).
        pending: records accepted but not yet delivered (queued or in flight).
        pending_bytes: their size.
        dropped: records refused (buffer full, client closed, not encodable)
            or thrown away at close.
        daemon_dropped: acknowledged mode: records the daemon dropped by
            policy, by reason (``rate``, ``quota``, ``disk``…).
        last_error: the last reason a connection failed or broke, if any.
    """

    connected: bool
    connects: int
    accepted: int
    delivered: int
    pending: int
    pending_bytes: int
    dropped: int
    daemon_dropped: dict[str, int] = field(default_factory=dict)
    last_error: str | None = None


def _print_error(exc: BaseException) -> None:
    with contextlib.suppress(Exception):  # stderr closed or broken: nothing left to tell
        print(f"trio-logd client: {exc}", file=sys.stderr, flush=True)


class LogdClient:
    """A thread-safe client for trio-logd's ingest socket.

    Records are encoded in the calling thread and sent by a background
    thread; nothing the daemon does (down, restarting, stopped, slow) makes
    a call wait longer than its timeout, and no delivery problem raises.

    Args:
        socket_path: the ingest socket; default: found as the CLIs find it
            (``$TRIO_LOGD_CONFIG``, ``/etc/trio-logd/logd.toml``, defaults).
        app: APP-NAME of records that name none (default: the program name).
        facility: facility keyword (``user``, ``daemon``, ``local0``…).
        timeout: the longest ``send``, ``flush`` and ``close`` wait, seconds.
        ack: acknowledged mode: records count as delivered once the daemon
            confirms they are stored; unconfirmed ones are sent again after
            a reconnect, with a ``delivery_id`` field to spot duplicates.
        expected_uid: the daemon's uid; the default trusts the owner of the
            socket's directory. Root is always trusted.
        buffer_bytes: records held while they cannot be sent; beyond it new
            records are dropped, counted and reported once the daemon is back.
        config: a config file to find the socket in.
        reconnect_max: the longest pause between connection attempts, seconds.
        on_error: called (from any thread) once per kind of problem worth a
            human's attention: a socket served by an untrusted uid, a broken
            config; default: one line on stderr.

    Raises:
        ValueError: unknown facility.
    """

    def __init__(
        self,
        socket_path: str | os.PathLike[str] | None = None,
        *,
        app: str | None = None,
        facility: str | int = "user",
        timeout: float = DEFAULT_TIMEOUT,
        ack: bool = False,
        expected_uid: int | None = None,
        buffer_bytes: int = DEFAULT_BUFFER_BYTES,
        config: str | None = None,
        reconnect_max: float = 5.0,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.timeout = timeout
        self.ack = ack
        self.expected_uid = expected_uid
        self.reconnect_max = reconnect_max
        self._on_error = on_error or _print_error
        self._told: set[str] = set()
        self._last_error: str | None = None
        self._config_error: LogdError | None = None
        self.path: str | None
        if socket_path is not None:
            self.path = os.fspath(socket_path)
        else:
            try:
                self.path = default_socket_path(config)
            except ConfigError as exc:
                self.path = None
                self._config_error = exc
                self._tell(exc)
        self._encoder = FrameEncoder(facility=facility, default_app=app, delivery_ids=ack)
        self.app = self._encoder.default_app
        self._reset_runtime(Outbox(buffer_bytes, ack=ack))
        self._closing = False
        self._closed = False
        self._close_deadline = 0.0
        self._connects = 0
        _clients.add(self)

    def _reset_runtime(self, outbox: Outbox) -> None:
        """The state a forked child must not share with its parent."""
        self._lock = threading.Lock()
        self._progress = threading.Condition(self._lock)
        self._outbox = outbox
        self._efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._idle = False
        self._waiters = 0

    # -- the application's side -------------------------------------------------

    def emit(
        self,
        msg: str,
        *,
        severity: str | int = "info",
        fields: Mapping[str, Any] | None = None,
        app: str | None = None,
        msgid: str | None = None,
        ts: float | None = None,
    ) -> bool:
        """Queue one record; never waits for I/O, never raises.

        Args:
            msg: the text.
            severity: ``emerg`` … ``debug`` (or ``warn``, ``error``,
                ``critical``…), or a code 0..7. Anything else is sent as
                ``notice`` with the given value in the field ``severity``.
            fields: structured fields, sent with their JSON types (other
                values as ``str()``).
            app: APP-NAME for this record (default: the client's ``app``).
            msgid: RFC 5424 MSGID, or ``None``.
            ts: the record's time (epoch seconds; default now).

        Returns:
            ``True`` if the record was queued, ``False`` if it was dropped
            (buffer full, or the client is closed).
        """
        frame = self._encode(msg, severity, fields, app, msgid, ts)
        return frame is not None and self._offer(frame) > 0

    def send(
        self,
        msg: str,
        *,
        severity: str | int = "info",
        fields: Mapping[str, Any] | None = None,
        app: str | None = None,
        msgid: str | None = None,
        ts: float | None = None,
        timeout: float | None = None,
    ) -> bool:
        """Send one record and wait until it is delivered, at most *timeout* seconds.

        Delivered means written to the daemon's socket, or, with ``ack=True``,
        confirmed stored by the daemon. Arguments as for :meth:`emit`.

        Returns:
            ``True`` once delivered; ``False`` if it was dropped (by the
            client, or by the daemon's limits) or is not delivered within
            *timeout* (it stays queued and may still be delivered later).
        """
        frame = self._encode(msg, severity, fields, app, msgid, ts)
        if frame is None:
            return False
        n = self._offer(frame)
        if n == 0:
            return False
        return self._wait(n, n, self.timeout if timeout is None else timeout)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every record queued so far is delivered, at most *timeout* seconds.

        Returns:
            ``True`` if all of them were delivered (acknowledged mode: stored),
            ``False`` on timeout or if the daemon dropped some. Records
            refused earlier because the buffer was full are not counted
            here; :meth:`statistics` has them.
        """
        with self._lock:
            first = self._outbox.settled + 1
            last = self._outbox.accepted
        if last < first:
            return True
        return self._wait(first, last, self.timeout if timeout is None else timeout)

    def close(self, timeout: float | None = None) -> None:
        """Deliver what is held (for at most *timeout* seconds), then stop. Idempotent.

        Records still undelivered at the deadline are counted as dropped.
        Records emitted after ``close`` are dropped.
        """
        timeout = self.timeout if timeout is None else timeout
        with self._lock:
            if self._closed:
                return
            self._closing = True
            self._close_deadline = time.monotonic() + timeout
            thread = self._thread
        self._wake()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout + 0.5)  # the thread leaves at the deadline; margin for one poll
        with self._lock:
            self._closed = True
            self._outbox.discard()
            if self._thread is None and self._efd >= 0:
                os.close(self._efd)
                self._efd = -1

    def statistics(self) -> ClientStatistics:
        """The client's counters now."""
        with self._lock:
            box = self._outbox
            return ClientStatistics(
                connected=self._sock is not None,
                connects=self._connects,
                accepted=box.accepted,
                delivered=box.delivered,
                pending=len(box.queued) + len(box.inflight),
                pending_bytes=box.held,
                dropped=box.dropped,
                daemon_dropped=dict(box.daemon_dropped),
                last_error=self._last_error,
            )

    def __enter__(self) -> LogdClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<LogdClient {self.path!r} ack={self.ack}>"

    # -- shared with LogdHandler / LogdLoggerFactory ------------------------------

    def _encode(
        self,
        msg: str,
        severity: str | int,
        fields: Mapping[str, Any] | None,
        app: str | None,
        msgid: str | None,
        ts: float | None,
    ) -> bytes | None:
        try:
            return encode_record(self._encoder, msg, severity, fields, app, msgid, ts)
        except Exception as exc:  # never into the application
            self._internal_error(exc)
            return None

    def _offer(self, frame: bytes) -> int:
        """Queue an encoded frame; return its ordinal, or 0 when dropped."""
        with self._lock:
            if self._closing:
                self._outbox.refuse()
                return 0
            n = self._outbox.offer(frame)
            if self._thread is None:
                self._start()
        if self._idle:
            self._wake()
        return n

    def _internal_error(self, exc: BaseException) -> None:
        """A record could not even be encoded (a bug): count it as dropped, say so once."""
        with self._lock:
            self._outbox.refuse()
        self._tell(exc)

    def _tell(self, exc: BaseException) -> None:
        key = type(exc).__name__
        if key in self._told:
            return
        self._told.add(key)
        with contextlib.suppress(Exception):
            self._on_error(exc)

    # -- the sender thread ---------------------------------------------------------

    def _start(self) -> None:
        thread = threading.Thread(target=self._run, name="trio-logd-client", daemon=True)
        self._thread = thread
        thread.start()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # closed: nobody to wake
            os.eventfd_write(self._efd, 1)

    def _wait(self, first: int, last: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._progress:
            self._waiters += 1
            try:
                while self._outbox.settled < last:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._progress.wait(remaining)
                return not self._outbox.failed(first, last)
            finally:
                self._waiters -= 1

    def _run(self) -> None:
        try:
            _Sender(self).run()
        except BaseException as exc:  # a bug: never silently, never into the application
            self._tell(exc)
        finally:
            with self._lock:
                self._thread = None
                self._outbox.disconnected()  # whatever was in flight is queued again
                if self._sock is not None:
                    self._sock.close()
                    self._sock = None
                if self._closed and self._efd >= 0:
                    os.close(self._efd)
                    self._efd = -1

    def _forked(self) -> None:
        """In a forked child: a runtime of our own (see the module comment)."""
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()  # our copy of the fd only; the parent's connection lives on
        with contextlib.suppress(OSError):
            os.close(self._efd)
        old = self._outbox
        self._reset_runtime(Outbox(old.limit, ack=old.ack))
        self._encoder.new_identity()
        self._connects = 0


class _Sender:
    """The sender thread's loop and connection state (one per thread run)."""

    def __init__(self, client: LogdClient) -> None:
        self.c = client
        self.box = client._outbox
        self.lock = client._lock
        self.poller = select.poll()
        self.poller.register(client._efd, select.POLLIN)
        self.backoff = Backoff(maximum=client.reconnect_max)
        self.next_try = 0.0
        self.connected_at = 0.0
        self.sock: socket.socket | None = None
        self.chunk = memoryview(b"")
        self.ends: list[int] = []
        self.pos = 0
        self.done = 0

    def run(self) -> None:
        c = self.c
        box = self.box
        while True:
            now = time.monotonic()
            with self.lock:
                if c._closing and (box.empty or now >= c._close_deadline):
                    return
            sock = self.sock
            if sock is None:
                if now < self.next_try:
                    self._poll(self.next_try - now)
                else:
                    self._connect(now)
                continue
            if self.pos == len(self.chunk) and not self._take():
                self._idle_wait()
                continue
            try:
                sent = sock.send(self.chunk[self.pos :])
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                self._disconnect(f"write failed: {exc.strerror or exc}")
                continue
            if sent:
                self._advance(sent)
            if self.pos < len(self.chunk):  # the kernel buffer is full: wait for room
                self.poller.modify(sock, select.POLLIN | select.POLLOUT)
                self._poll(self._closing_left())
                if self.sock is not None:
                    self.poller.modify(self.sock, select.POLLIN)

    def _take(self) -> bool:
        """Take the next chunk of frames; ``False`` when nothing is queued."""
        c = self.c
        with self.lock:
            box = self.box
            if box.unreported and box.held < box.limit // 2:
                queue_drop_report(box, c._encoder)
            frames = box.take(CHUNK_BYTES)
        if not frames:
            return False
        self.chunk = memoryview(b"".join(frames))
        self.ends = list(itertools.accumulate(map(len, frames)))
        self.pos = self.done = 0
        return True

    def _advance(self, sent: int) -> None:
        """*sent* more bytes of the chunk are written: settle the frames now complete."""
        self.pos += sent
        ends = self.ends
        k = self.done
        while k < len(ends) and ends[k] <= self.pos:
            k += 1
        if k > self.done and not self.c.ack:
            with self.lock:
                self.box.written(k - self.done)
                if self.c._waiters:
                    self.c._progress.notify_all()
        self.done = k

    def _idle_wait(self) -> None:
        """Nothing to write: sleep until records arrive, acks arrive, or close."""
        c = self.c
        c._idle = True
        if self.box.queued or c._closing:  # arrived between _take and _idle = True
            c._idle = False
            return
        self._poll(self._closing_left())
        c._idle = False

    def _closing_left(self) -> float | None:
        c = self.c
        return max(0.0, c._close_deadline - time.monotonic()) if c._closing else None

    def _poll(self, timeout: float | None) -> None:
        ms = None if timeout is None else max(0, int(timeout * 1000) + 1)
        try:
            ready = self.poller.poll(ms)
        except InterruptedError:
            return
        efd = self.c._efd
        for fd, events in ready:
            if fd == efd:
                with contextlib.suppress(OSError):
                    os.eventfd_read(efd)
            elif self.sock is not None and events & _READABLE:
                self._read()

    def _read(self) -> None:
        sock = self.sock
        assert sock is not None
        try:
            data = sock.recv(_READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._disconnect(f"connection broken: {exc.strerror or exc}")
            return
        if not data:
            self._disconnect("the daemon closed the connection")
            return
        if not self.c.ack:
            return  # the daemon says nothing in plain mode; ignore whatever it is
        c = self.c
        try:
            with self.lock:
                if self.box.receive(data) and c._waiters:
                    c._progress.notify_all()
        except ProtocolError as exc:
            c._tell(exc)
            self._disconnect(f"bad acknowledgement: {exc}")

    def _connect(self, now: float) -> None:
        c = self.c
        try:
            if c.path is None:
                msg = f"no socket: {c._config_error}"
                raise ConnectFailed(msg)
            sock = connect(c.path, c.expected_uid)
            if c.ack:
                try:
                    sent = sock.send(ACK_HELLO)  # a new socket's buffer is empty: all of it goes
                except OSError as exc:
                    sock.close()
                    msg = f"{c.path}: {exc.strerror or exc}"
                    raise ConnectFailed(msg) from exc
                if sent != len(ACK_HELLO):
                    sock.close()
                    msg = f"{c.path}: could not write the acknowledgement hello"
                    raise ConnectFailed(msg)
        except ClientError as exc:
            c._last_error = str(exc)
            if isinstance(exc, PeerRefused):
                c._tell(exc)
            self.next_try = now + self.backoff.next_delay()
            return
        self.poller.register(sock, select.POLLIN)
        self.sock = sock
        self.connected_at = now
        with self.lock:
            c._sock = sock
            c._connects += 1

    def _disconnect(self, reason: str) -> None:
        c = self.c
        sock = self.sock
        assert sock is not None
        self.poller.unregister(sock)
        sock.close()
        self.sock = None
        self.chunk = memoryview(b"")
        self.ends = []
        self.pos = self.done = 0
        now = time.monotonic()
        with self.lock:
            c._sock = None
            c._last_error = reason
            self.box.disconnected()
        if now - self.connected_at >= _HEALTHY_AFTER:
            self.backoff.reset()
        self.next_try = now + self.backoff.next_delay()


# -- every client of the process: fork and exit -----------------------------------

_clients: weakref.WeakSet[LogdClient] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for client in list(_clients):
        client._forked()


def _close_all() -> None:
    for client in list(_clients):
        client.close()


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_close_all)
