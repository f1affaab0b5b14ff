"""Forwarding to central collectors: one task per ``[[forward]]`` destination.

How this works: the store is the queue. Each :class:`Destination` keeps a
cursor (uid -> seq of the last record the collector surely has; see
``trio_logd.forward.cursor``), persisted in ``log_dir/.forward/NAME.cursor``,
and reads each wanted uid's records after its position with a
``store.seqreader.SeqReader``, one bounded step of one uid at a time:
reading, filtering and RFC 5424 encoding. Catching up through older
(rotated, maybe compressed) files runs in a worker thread
(:data:`STEP_BYTES` per hop); records just written, which the reader finds
in the current file in the page cache, are encoded in the event loop in
small steps (:data:`LIVE_STEP_BYTES`, about a millisecond), which costs
less than a thread hop and its wait for the GIL. A slow or absent collector
never holds records in memory nor slows ingestion: records wait on disk,
up to retention.

The writer's ``written_hooks`` tell the :class:`ForwardService` which uid
has new records and up to which seq (O(1) per destination: a dict update
and an event); a destination wakes, reads them back from the files (the
page cache has them) and sends them, uid by uid round-robin.

Delivery: a step's bytes are handed to the kernel, then noted in the
``DeliveryLedger`` with the connection's byte marker; a poller reads the
kernel's acknowledged-bytes counter (``_forward_link``) and commits what has
been acknowledged for ``commit_delay`` seconds with the connection up. The
cursor is written (atomically, ``store.statefile``) at most once per
:data:`SAVE_INTERVAL` while it moves, and at shutdown. A connection that
breaks (the collector closed it, reset it, or stopped acknowledging for
``timeout``) rewinds every reader to the committed cursor and reconnects
with exponential backoff; what was sent but not committed is sent again:
delivery is at least once, ``seq`` identifies the copies.

Shutdown: stop sending, wait (at most :data:`DRAIN_SECONDS`) until the
collector acknowledged everything sent, close cleanly (the collector reads
up to our FIN), commit and save.
"""

from __future__ import annotations

import contextlib
import random
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import structlog
import trio

from trio_logd.config import ForwardConfig
from trio_logd.errors import StoreError
from trio_logd.forward import (
    DeliveryLedger,
    RecordFilter,
    decode_cursor,
    encode_cursor,
    make_framer,
)
from trio_logd.record import format_ts, seq_key
from trio_logd.server._fdlimit import out_of_fds
from trio_logd.server._forward_link import (
    Link,
    LinkError,
    describe_error,
    make_ssl_context,
    open_link,
)
from trio_logd.store.scan import list_uids
from trio_logd.store.seqreader import SeqReader
from trio_logd.store.statefile import StateDir
from trio_logd.store.writer import StoreWriter

__all__ = ["STATE_DIR", "Destination", "ForwardService", "serve_forwarders"]

log = structlog.get_logger("trio_logd.forward")

#: The directory under ``log_dir`` that holds the cursors (not a uid: never read as records).
STATE_DIR: Final = ".forward"
#: Lines read per worker-thread step (of one uid, catching up through older
#: files): ~1000 records; big enough that the thread hop is amortised, small
#: enough that other uids' records and shutdown wait little.
STEP_BYTES: Final = 256 << 10
#: Lines read per step in the event loop (records just written, read from the
#: current file in the page cache): ~250 records, about a millisecond of
#: encoding. Cheaper than a thread hop: no wait for the GIL (measured: +15 %
#: forwarded while ingesting at full speed).
LIVE_STEP_BYTES: Final = 64 << 10
#: How often the kernel's acknowledged-bytes counter is read while data is in flight.
ACK_POLL: Final = 0.05
#: The cursor is saved at most this often while it moves (and at shutdown).
SAVE_INTERVAL: Final = 1.0
#: At shutdown, how long to wait for the collector to acknowledge what was sent.
DRAIN_SECONDS: Final = 3.0
#: First wait before reconnecting; doubled per failure up to ``retry_max``.
RETRY_MIN: Final = 0.5
#: A connection that lasted this long resets the backoff.
STABLE_SECONDS: Final = 10.0
#: Readers holding open files at once, per destination (the rest are closed
#: and reopen where they were): bounds descriptors with thousands of uids.
OPEN_READERS: Final = 64

State = Literal["starting", "connecting", "connected", "waiting", "stopped"]


@dataclass(slots=True)
class _Step:
    """What one step produced for one uid."""

    payload: bytes
    last_seq: int
    records: int  # sent (passed the filter)
    read: int  # read (sent or passed over)
    bad: int  # lines that are not JSON records (never expected; counted)
    missing: int  # records found gone from the store (retention came first)


class _Lost(Exception):
    """The connection ended; the message says how."""


class Destination:
    """One ``[[forward]]`` destination: its cursor, its readers and its connection.

    Args:
        config: the destination's table.
        log_dir: the store's root.
        known_last: uid -> last seq stored, shared with the service (read only here).
        hostname: the HOSTNAME to send, when the table does not set one.
        limiter: bounds the worker threads of all destinations together.
    """

    def __init__(
        self,
        config: ForwardConfig,
        log_dir: str,
        known_last: dict[int, int],
        hostname: str,
        limiter: trio.CapacityLimiter,
    ) -> None:
        self.config = config
        #: called when a connection attempt found no descriptor (counted)
        self.on_fd_shortage: Callable[[], None] = lambda: None
        self.name = config.name
        self.filter = RecordFilter.build(
            uids=config.uids, min_severity=config.min_severity, facilities=config.facilities
        )
        self._log_dir = log_dir
        self._state_dir = StateDir(log_dir, STATE_DIR)
        self._cursor_file = f"{config.name}.cursor"
        self._known_last = known_last
        self._frames = make_framer(config.hostname or hostname)
        self._limiter = limiter
        self.ledger = DeliveryLedger({})
        self._readers: dict[int, SeqReader] = {}
        self._open: dict[int, None] = {}  # uids whose reader holds files, least recent first
        self._restarted: set[int] = set()  # uids to read from their first record again
        self._pending: dict[int, None] = {}  # uids with records to send, round-robin order
        self._wake = trio.Event()
        self._stopping = trio.Event()
        self._loaded = False
        self._saved = -1  # the ledger's `changes` when the cursor was last saved
        self._saved_at = 0.0
        self._save_lock = trio.Lock()
        # figures for stats and status
        self.state: State = "starting"
        self.connected_since: float | None = None
        self.sent_records = 0
        self.resent_records = 0
        self._sending = 0  # records of the step being written (lost with the connection)
        self.sent_bytes = 0
        self.connects = 0
        self.failures = 0
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.cursor_saved_at: float | None = None
        self.retry_at: float | None = None

    # -- what the service calls ---------------------------------------------

    def note_written(self, uid: int, last_seq: int) -> None:
        """New records of *uid* up to *last_seq* are stored. Never blocks."""
        if not self._loaded:
            return  # the cursor is being read: it looks at every uid then
        if last_seq < self.ledger.committed.get(uid, 0):
            # the uid's numbering restarted (its directory was removed): start it
            # over, in the send loop (its reader may be in a worker thread now)
            log.warning("forward_uid_restarted", destination=self.name, uid=uid, seq=last_seq)
            self._restarted.add(uid)
        self._pending[uid] = None
        self._wake.set()

    def stop(self) -> None:
        """Finish: drain, close the connection cleanly, save the cursor."""
        self._stopping.set()
        self._wake.set()

    def lag(self) -> int:
        """Records stored and not yet surely at the collector (by seq, wanted uids)."""
        committed = self.ledger.committed
        wants = self.filter.wants_uid
        return sum(
            max(0, last - committed.get(uid, 0))
            for uid, last in self._known_last.items()
            if wants(uid)
        )

    def stats(self) -> dict[str, Any]:
        """This destination's figures (the ``forward`` items of ``stats`` and ``status``)."""
        ledger = self.ledger
        return {
            "name": self.name,
            "address": self.config.address,
            "protocol": self.config.protocol,
            "state": self.state,
            "connected_since": self.connected_since,
            "lag_records": self.lag(),
            "sent_records": self.sent_records,
            "sent_bytes": self.sent_bytes,
            "delivered_records": ledger.committed_records,
            "resent_records": self.resent_records,
            "missing_records": sum(r.missing for r in self._readers.values()),
            "connects": self.connects,
            "failures": self.failures,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "retry_at": self.retry_at,
            "cursor_saved_at": self.cursor_saved_at,
            "uids": len(self.ledger.committed),
        }

    # -- the task -----------------------------------------------------------

    async def run(self) -> None:
        """Forward until :meth:`stop`; reconnect with backoff on any failure."""
        log_ = log.bind(destination=self.name, address=self.config.address)
        try:
            await self._load_cursor()
            failures = 0
            while not self._stopping.is_set():
                self.state = "connecting"
                started = time.monotonic()
                try:
                    link = await self._connect()
                except LinkError as exc:
                    self._note_error(str(exc))
                    if out_of_fds(exc):
                        self.on_fd_shortage()
                    log_.warning("forward_connect_failed", error=str(exc))
                except Exception as exc:  # a bug: retried like a failure, the daemon goes on
                    self._note_error(f"internal error: {exc!r}")
                    log_.exception("forward_failed", error=repr(exc))
                else:
                    await self._use(link, log_)
                    if time.monotonic() - started >= STABLE_SECONDS:
                        failures = 0
                if self._stopping.is_set():
                    break
                failures += 1
                delay = min(self.config.retry_max, RETRY_MIN * 2 ** min(failures - 1, 30))
                delay *= random.uniform(0.8, 1.0)  # spread the reconnections of many hosts
                self.state = "waiting"
                self.retry_at = time.time() + delay
                with trio.move_on_after(delay):
                    await self._stopping.wait()
        finally:
            self.state = "stopped"
            self.retry_at = None
            with trio.CancelScope(shield=True), trio.move_on_after(DRAIN_SECONDS):
                await self._save(force=True)
            for reader in self._readers.values():
                reader.close()

    async def _use(self, link: Link, log_: Any) -> None:
        """Forward over *link* until stopped or until it breaks; then close it."""
        self.connects += 1
        self.state = "connected"
        self.connected_since = time.time()
        self.retry_at = None
        log_.info("forward_connected", protocol=self.config.protocol)
        try:
            await self._session(link)
        except _Lost as exc:
            self._note_error(str(exc))
            resent = self._rewind()
            log_.warning("forward_connection_lost", error=str(exc), resend=resent)
        except Exception as exc:
            # a bug: this destination starts over from its cursor, the daemon goes on
            self._note_error(f"internal error: {exc!r}")
            resent = self._rewind()
            log_.exception("forward_failed", error=repr(exc), resend=resent)
        finally:
            self.connected_since = None
            await link.aclose()

    def _note_error(self, error: str) -> None:
        self.failures += 1
        self.last_error = error
        self.last_error_at = time.time()

    async def _connect(self) -> Link:
        ctx: ssl.SSLContext | None = None
        if self.config.protocol == "tls":
            # loaded at every attempt: replacing a file needs no restart
            ctx = await trio.to_thread.run_sync(make_ssl_context, self.config)
        return await open_link(self.config, ctx)

    async def _session(self, link: Link) -> None:
        """Send until stopped (then drain and return) or until the link breaks (raise _Lost)."""
        lost: list[str] = []
        async with trio.open_nursery() as nursery:

            def give_up(why: str) -> None:
                lost.append(why)
                nursery.cancel_scope.cancel()

            nursery.start_soon(self._watch_peer, link, give_up)
            nursery.start_soon(self._watch_acks, link)
            nursery.start_soon(self._watch_stop, nursery.cancel_scope)
            try:
                await self._send_loop(link)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                give_up(f"connection lost: {describe_error(exc)}")
            else:
                await self._drain(link)
                nursery.cancel_scope.cancel()
        if lost:
            msg = f"{self.config.address}: {lost[0]}"
            raise _Lost(msg)
        # stopping: what the collector's TCP acknowledged, it reads before our FIN
        with contextlib.suppress(OSError):
            self.ledger.acked(link.acknowledged(), time.monotonic())
        self.ledger.settle_acked()

    async def _watch_stop(self, scope: trio.CancelScope) -> None:
        """Once stopping, the session (sending, draining) gets DRAIN_SECONDS more at most."""
        await self._stopping.wait()
        scope.deadline = min(scope.deadline, trio.current_time() + DRAIN_SECONDS)

    async def _watch_peer(self, link: Link, give_up: Callable[[str], None]) -> None:
        """A collector sends nothing: any end of its side means the connection is gone."""
        try:
            while await link.stream.receive_some(4096):
                pass  # unexpected bytes from the collector: ignored
            give_up("the collector closed the connection")
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            give_up(f"connection lost: {describe_error(exc)}")

    async def _watch_acks(self, link: Link) -> None:
        """Commit what the collector acknowledged long enough ago; save the cursor now and then."""
        delay = self.config.commit_delay
        while True:
            await trio.sleep(ACK_POLL)
            if self.ledger.inflight:
                now = time.monotonic()
                self.ledger.acked(link.acknowledged(), now)
                self.ledger.settle(now, delay)
            await self._save()

    async def _send_loop(self, link: Link) -> None:
        send_all = link.stream.send_all
        ledger = self.ledger
        while not self._stopping.is_set():
            uid = next(iter(self._pending), None)
            if uid is None:
                await self._wake.wait()
                self._wake = trio.Event()
                continue
            # taken off before reading: records stored meanwhile put it back
            del self._pending[uid]
            if uid in self._restarted:
                self._restarted.discard(uid)
                self.ledger.reset_uid(uid, 0)
                self._reader(uid).seek(0)
            reader = self._reader(uid)
            try:
                # no further than the writer reported stored (and synced, per
                # its policy): never a record that a power cut could take back
                upto = self._known_last.get(uid, 0)
                if reader.live:
                    step = self._step(reader, upto, LIVE_STEP_BYTES)
                    await trio.lowlevel.checkpoint()
                else:
                    step = await trio.to_thread.run_sync(
                        self._step, reader, upto, limiter=self._limiter
                    )
            except StoreError as exc:
                # one uid's files cannot be read (a symlink planted, a damaged
                # file): the others go on; this one is tried again with its next record
                reader.close()
                self._open.pop(uid, None)
                self._note_error(str(exc))
                log.error("forward_uid_unreadable", destination=self.name, uid=uid, error=str(exc))
                continue
            if step.missing:
                log.warning(
                    "forward_records_missing",
                    destination=self.name,
                    uid=uid,
                    records=step.missing,
                    before_seq=reader.after,
                )
            if step.bad:
                log.error("forward_bad_lines", destination=self.name, uid=uid, lines=step.bad)
            while reader.damaged:  # passed over, after what could be read of it
                damaged = reader.damaged.pop(0)
                self._note_error(str(damaged))
                log.error(
                    "forward_file_damaged",
                    destination=self.name,
                    uid=uid,
                    file=damaged.path,
                    error=damaged.reason,
                )
            if not step.read:
                reader.close()  # caught up: free its files until new records come
                self._open.pop(uid, None)
                continue
            if step.payload:
                self._sending = step.records
                await send_all(step.payload)
                self._sending = 0
                self.sent_records += step.records
                self.sent_bytes += len(step.payload)
            ledger.sent(link.written(), uid, step.last_seq, step.records)
            if reader.after < self._known_last.get(uid, 0):
                self._pending[uid] = None  # more to read: to the back of the queue
                self._open.pop(uid, None)
                self._open[uid] = None
                while len(self._open) > OPEN_READERS:  # the least recent gives its files back
                    oldest = next(iter(self._open))
                    self._readers[oldest].close()
                    del self._open[oldest]
            else:
                reader.close()  # caught up
                self._open.pop(uid, None)

    def _step(self, reader: SeqReader, upto: int, budget: int = STEP_BYTES) -> _Step:
        """Read one step of a uid (up to seq *upto*), filter, encode, frame.

        Runs in a worker thread, or in the event loop when the reader is live.
        """
        missing = reader.missing
        lines = reader.read(budget, upto)
        missing = reader.missing - missing
        if not lines:
            return _Step(b"", reader.after, 0, 0, 0, missing)
        wants = None if self.filter.all_records else self.filter.wants
        payload, sent, bad = self._frames(lines, wants)
        return _Step(payload, reader.after, sent, len(lines), bad, missing)

    async def _drain(self, link: Link) -> None:
        """Stopping: wait until everything sent is acknowledged (the deadline is _watch_stop's)."""
        ledger = self.ledger
        while True:
            ledger.acked(link.acknowledged(), time.monotonic())
            ledger.settle_acked()
            if not ledger.inflight:
                return
            await trio.sleep(ACK_POLL / 5)

    def _rewind(self) -> int:
        resent = self.ledger.rewind() + self._sending
        self._sending = 0
        self.resent_records += resent
        for uid, reader in self._readers.items():
            position = self.ledger.position(uid)
            if reader.after != position:
                reader.seek(position)
                self._open.pop(uid, None)
            if position < self._known_last.get(uid, 0):
                self._pending[uid] = None
        return resent

    def _reader(self, uid: int) -> SeqReader:
        reader = self._readers.get(uid)
        if reader is None:
            reader = self._readers[uid] = SeqReader(self._log_dir, uid, self.ledger.position(uid))
        return reader

    # -- the cursor ---------------------------------------------------------

    async def _load_cursor(self) -> None:
        try:
            data = await trio.to_thread.run_sync(self._state_dir.read, self._cursor_file)
        except StoreError as exc:
            self._note_error(str(exc))
            log.error("forward_cursor_unreadable", destination=self.name, error=str(exc))
            data = None
        positions: dict[int, int] | None = None
        if data is not None:
            try:
                positions = decode_cursor(data, where=f"{self._state_dir.path}/{self._cursor_file}")
            except ValueError as exc:
                # never guess a position: start over (at least once) and keep the file
                with contextlib.suppress(StoreError):
                    aside = await trio.to_thread.run_sync(
                        self._state_dir.set_aside, self._cursor_file
                    )
                    log.error(
                        "forward_cursor_invalid", destination=self.name, error=str(exc), aside=aside
                    )
                self._note_error(str(exc))
        if positions is None:
            positions = {}
            if self.config.start == "now":
                positions = {u: s for u, s in self._known_last.items() if self.filter.wants_uid(u)}
        for uid, seq in list(positions.items()):
            last = self._known_last.get(uid, 0)
            if seq > last:
                log.warning(
                    "forward_uid_restarted", destination=self.name, uid=uid, seq=last, cursor=seq
                )
                positions[uid] = 0
        self.ledger = DeliveryLedger(positions)
        self._loaded = True
        for uid, last in self._known_last.items():
            if self.filter.wants_uid(uid) and positions.get(uid, 0) < last:
                self._pending[uid] = None
        if data is None or self.config.start == "now":
            await self._save(force=True)

    async def _save(self, *, force: bool = False) -> None:
        """Write the cursor if it moved (at most once per SAVE_INTERVAL unless *force*)."""
        changes = self.ledger.changes
        now = time.monotonic()
        if not force and (changes == self._saved or now - self._saved_at < SAVE_INTERVAL):
            return
        data = encode_cursor(self.name, self.ledger.committed, updated=format_ts(time.time()))
        async with self._save_lock:
            try:
                await trio.to_thread.run_sync(self._state_dir.write, self._cursor_file, data)
            except StoreError as exc:
                log.error("forward_cursor_save_failed", destination=self.name, error=str(exc))
                self._note_error(str(exc))
                return
            finally:
                self._saved_at = now
        self._saved = changes
        self.cursor_saved_at = time.time()


class ForwardService:
    """Every destination, fed by the writer's hook.

    Args:
        configs: the ``[[forward]]`` tables.
        store: the store (its last seq per uid, its directory).
        hostname: the HOSTNAME to send by default (this machine's name).
    """

    def __init__(
        self,
        configs: Sequence[ForwardConfig],
        store: StoreWriter,
        *,
        hostname: str | None = None,
    ) -> None:
        self._store = store
        self.known_last: dict[int, int] = {}
        limiter = trio.CapacityLimiter(1)
        name = hostname or socket.gethostname()
        self.destinations = [
            Destination(c, store.log_dir, self.known_last, name, limiter) for c in configs
        ]

    @property
    def on_fd_shortage(self) -> Callable[[], None]:
        """Called when a destination's connection attempt found no descriptor."""
        return self.destinations[0].on_fd_shortage if self.destinations else lambda: None

    @on_fd_shortage.setter
    def on_fd_shortage(self, callback: Callable[[], None]) -> None:
        for d in self.destinations:
            d.on_fd_shortage = callback

    def hook(self, uid: int, lines: list[bytes]) -> None:
        """``Pipeline.written_hooks`` entry: note the uid's new last seq. O(destinations)."""
        if not lines:
            return
        last = seq_key(lines[-1])
        self.known_last[uid] = last
        for d in self.destinations:
            if d.filter.wants_uid(uid):
                d.note_written(uid, last)

    def learn_store(self) -> None:
        """Read the last seq of every uid in the store (at start, after the store opened)."""
        try:
            uids = list_uids(self._store.log_dir)
        except StoreError as exc:
            log.error("forward_store_unreadable", error=str(exc))
            return
        for uid in uids:
            last = self._store.last_seq(uid)
            if last is not None:  # None: unreadable now; learnt from what is written later
                self.known_last.setdefault(uid, last)

    def stop(self) -> None:
        """Tell every destination to drain and finish."""
        for d in self.destinations:
            d.stop()

    def stats(self) -> list[dict[str, Any]]:
        """One item per destination (``stats`` and ``status`` replies)."""
        return [d.stats() for d in self.destinations]


async def serve_forwarders(
    service: ForwardService,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run every destination until :meth:`ForwardService.stop`; returns once all are done."""
    await trio.to_thread.run_sync(service.learn_store)
    async with trio.open_nursery() as nursery:
        for d in service.destinations:
            nursery.start_soon(_guarded, d)
        task_status.started()


async def _guarded(destination: Destination) -> None:
    """Run one destination; whatever happens to it, the daemon (and the others) go on."""
    try:
        await destination.run()
    except Exception as exc:
        destination.state = "stopped"
        destination.last_error = f"internal error: {exc!r}"
        log.exception("forward_crashed", destination=destination.name, error=repr(exc))
