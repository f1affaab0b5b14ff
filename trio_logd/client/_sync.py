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
import bisect
import contextlib
import itertools
import os
import select
import socket
import threading
import time
import weakref
from collections.abc import Mapping
from typing import Any, Final

from trio_logd.client._base import (
    CHUNK_BYTES,
    HEALTHY_AFTER,
    ClientBase,
    ClientStatistics,
)
from trio_logd.client._encode import encode_record
from trio_logd.client._outbox import Backoff, Outbox, queue_drop_report
from trio_logd.errors import ClientError, ProtocolError

__all__ = ["LINGER", "LogdClient"]

#: How long the sender waits for a burst to gather before sending a few
#: records: the latency one record may gain, against a system call and a
#: thread switch per record (measured: 54 000 against 120 000+ records/s).
LINGER: Final = 0.002
#: With this many records queued the sender does not wait: a full batch.
_LINGER_RECORDS: Final = 1000
_READ_SIZE: Final = 65536
_READABLE: Final = select.POLLIN | select.POLLHUP | select.POLLERR


class LogdClient(ClientBase):
    """A thread-safe client for trio-logd's ingest socket.

    Records are encoded in the calling thread and sent by a background
    thread; nothing the daemon does (down, restarting, stopped, slow) makes
    a call wait longer than its timeout, and no delivery problem raises.
    Arguments: see :class:`~trio_logd.client._base.ClientBase` (socket
    path first; ``app``, ``facility``, ``timeout``, ``ack``,
    ``expected_uid``, ``buffer_bytes``, ``config``, ``reconnect_max``,
    ``on_error``).

    Raises:
        ValueError: unknown facility.
    """

    def _setup(self, outbox: Outbox) -> None:
        self._reset_runtime(outbox)
        self._closing = False
        self._closed = False
        self._close_deadline = 0.0
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
            return self._statistics(self._outbox, self._sock is not None)

    def __enter__(self) -> LogdClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
        if self._idle:  # one wake-up: the thread needs a moment to take the GIL back
            self._idle = False
            self._wake()
        return n

    def _internal_error(self, exc: BaseException) -> None:
        """A record could not even be encoded (a bug): count it as dropped, say so once."""
        with self._lock:
            self._outbox.refuse()
        self._tell(exc)

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
        if 0 < len(self.box.queued) < _LINGER_RECORDS and not (c._waiters or c._closing):
            # A few records: let the burst they start arrive, so that it goes
            # out in one send() and the application's threads are not woken
            # from (or made to wake) this thread once per record.
            time.sleep(LINGER)
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
        done = self.done
        k = bisect.bisect_right(ends, self.pos, done)
        if k > done and not self.c.ack:
            size = ends[k - 1] - (ends[done - 1] if done else 0)
            with self.lock:
                self.box.written(k - done, size)
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
            sock = c._open()
        except ClientError:
            self.next_try = now + self.backoff.next_delay()
            return
        self.poller.register(sock, select.POLLIN)
        self.sock = sock
        self.connected_at = now
        with self.lock:
            c._sock = sock

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
        if now - self.connected_at >= HEALTHY_AFTER:
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
