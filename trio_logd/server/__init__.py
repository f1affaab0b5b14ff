"""The daemon: trio wiring around the pipeline, the store and the sockets.

``serve()`` opens one nursery. The writer task starts first; then the
listeners (ingest, control) start via ``nursery.start`` and report ready;
the control socket is renamed into place last, so a ``status`` that answers
means the daemon serves. Shutdown (``SIGTERM``/``SIGINT`` or the
``shutdown_trigger``): stop accepting → each connection drains what the
kernel already holds → the pipeline closes → the writer writes everything
queued and syncs → ``serve`` returns. The signal handlers stay installed
until ``serve`` returns (and then the signals are ignored: the process is
about to exit), so a second ``SIGTERM`` (GNU ``timeout`` sends two) never
cuts the shutdown short; a third, or ``SHUTDOWN_DEADLINE`` after the first,
forces the exit, and the next start recovers as after a crash.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final

import structlog
import trio

from trio_logd import __version__
from trio_logd.config import Config
from trio_logd.errors import AccessDenied, ConfigError
from trio_logd.limits import SuppressionTracker
from trio_logd.peer import PeerCred, probe_socket
from trio_logd.reload import ReloadPlan
from trio_logd.server._accept import PeerListener, serve_listener
from trio_logd.server._boot import read_boot_id
from trio_logd.server._boots import BootService
from trio_logd.server._control import ControlCall, ControlServer
from trio_logd.server._datagram import serve_datagrams
from trio_logd.server._fdlimit import FD_RESERVE, FdCounters, FdReserve, raise_nofile_limit
from trio_logd.server._forward import ForwardService, serve_forwarders
from trio_logd.server._helper import StoreHelper
from trio_logd.server._housekeeping import Housekeeper
from trio_logd.server._ingest import IngestContext, handle_connection
from trio_logd.server._limits import Limiter
from trio_logd.server._operators import Operators, install_operators, serve_operators
from trio_logd.server._pipeline import Pipeline
from trio_logd.server._query import QueryService
from trio_logd.server._reload import Reloader
from trio_logd.server._sockets import (
    AlreadyRunning,
    BoundSocket,
    bind_unix,
    unlink_if_ours,
)
from trio_logd.server._suppress import DropReports, serve_suppressions
from trio_logd.server._systemd import take_activated_sockets
from trio_logd.server._usage import op_disk_usage
from trio_logd.server._writer_task import serve_store
from trio_logd.store.placement import candidate_dirs, shared_writable_dirs
from trio_logd.store.retention import RetentionPolicy
from trio_logd.store.writer import StoreWriter

__all__ = ["AlreadyRunning", "Daemon", "probe_socket", "serve"]

log = structlog.get_logger("trio_logd.server")

#: At shutdown, connections get this long to hand over what the kernel holds
#: (``[daemon] shutdown_timeout``; this when it is 0).
DRAIN_DEADLINE: Final = 5.0
#: How long the event loop may keep the GIL while a worker thread (the
#: writer's fdatasync, NSS lookups) waits for it; CPython's default is 5 ms.
#: While connection tasks parse a flood, every such wait stalls the writer
#: and so the quiet uids' records: 0.1 ms took a quiet uid's p99 from ~9 to
#: ~4 ms under a full-speed flood (bench/fairness.py, BENCHMARKS.md).
SWITCH_INTERVAL: Final = 0.0001
#: Once a shutdown has begun, it may take this long (besides the connections'
#: drain) before the process is made to exit: the writer's last rounds, the
#: last sync and the helper's end are each bounded well below it (the
#: helper's request deadline is ``_helper.SYNC_DEADLINE``).
SHUTDOWN_DEADLINE: Final = 60.0
#: The exit status of a forced exit (a shutdown that could not finish).
EXIT_FORCED: Final = 1
#: The signal that forces the exit while a shutdown is under way (the first
#: one starts it, the next ones are logged and waited out, this one ends it).
FORCE_AFTER_SIGNALS: Final = 3


@dataclass(eq=False)
class Daemon:
    """The running daemon's shared state (what control operations look at)."""

    config: Config
    store: StoreWriter
    pipeline: Pipeline
    ingest: IngestContext
    control: ControlServer
    started_at: float = field(default_factory=time.time)
    started_monotonic: float = field(default_factory=time.monotonic)
    sockets: dict[str, str] = field(default_factory=dict)
    shutdown: trio.Event = field(default_factory=trio.Event)
    extra_status: dict[str, Callable[[], Any]] = field(default_factory=dict)
    #: stats, metrics, sd_notify (``install_operators``)
    operators: Operators | None = None
    #: uid -> (quota_bytes, on_quota) for the store's housekeeper (``Limiter.quota_for``)
    quota_for: Callable[[int], tuple[int, str]] = field(default=lambda uid: (1 << 62, "rotate"))
    reloader: Reloader = field(default_factory=Reloader)
    #: where SIGHUP starts its reload (set while the daemon serves)
    task_nursery: trio.Nursery | None = None
    #: further top-level keys of the ``stats`` reply (``forward``: per-destination lag)
    extra_stats: dict[str, Callable[[], Any]] = field(default_factory=dict)
    #: the ``[[forward]]`` destinations, when there are any
    forward: ForwardService | None = None
    #: unreported drop counts, kept across restarts (``_suppress``)
    reports: DropReports | None = None

    def request_reload(self) -> None:
        """SIGHUP: re-read the config in the background; the outcome is logged."""
        if self.task_nursery is not None:
            self.task_nursery.start_soon(self._reload_quietly)

    async def _reload_quietly(self) -> None:
        # a refusal is logged and recorded by the reloader; the old config stays
        with contextlib.suppress(ConfigError):
            await self.reload(by="SIGHUP")

    async def reload(self, *, by: str) -> ReloadPlan:
        """Re-read ``config.path`` and apply it (see ``_reload.py``).

        A reload is bracketed so that systemd hears ``RELOADING=1`` ... ``READY=1``
        and the operators' counters see its outcome.

        Raises:
            ConfigError: the file is invalid; the running config stays in force.
        """
        if self.operators is not None:
            self.operators.reload_started()
        ok = False
        try:
            plan = await self.reloader.reload(self, by=by)
            ok = True
        finally:
            if self.operators is not None:
                self.operators.reload_finished(ok=ok)
        return plan

    @property
    def pid(self) -> int:
        return self.ingest.daemon.pid

    def status(self) -> dict[str, Any]:
        """What ``trio-logd status`` prints."""
        out: dict[str, Any] = {
            "pid": self.pid,
            "version": __version__,
            "uptime": round(time.monotonic() - self.started_monotonic, 3),
            "started": self.started_at,
            "config": self.config.path,
            "sockets": dict(self.sockets),
            "log_dir": self.store.log_dir,
            "connections": sum(st.connections for st in self.pipeline.states()),
        }
        if self.store.refused:  # uid directories never written through (unsafe), and why
            out["refused_uids"] = {str(uid): why for uid, why in sorted(self.store.refused.items())}
        for key, fn in self.extra_status.items():
            out[key] = fn()
        return out


def _abs(path: str) -> str:
    return os.path.abspath(path)


def _shared_warning(log_dir: str, shared: list[str]) -> str:
    dirs = ", ".join(shared[:5]) + (f" and {len(shared) - 5} more" if len(shared) > 5 else "")
    return (
        f"log_dir {log_dir} shares its file system with {dirs}, where other users can "
        "write: filling it presses on keep_free_bytes (see pressure_min_age); give "
        "log_dir a file system of its own"
    )


async def _op_status(daemon: Daemon, call: ControlCall) -> None:
    await call.send("ok", **daemon.status())


def uid_stats(daemon: Daemon) -> list[dict[str, Any]]:
    """Per-uid figures since start (``trio-logd stats --json`` items)."""
    out = [
        {
            "uid": st.uid,
            "records": st.records,
            "bytes": st.bytes,
            "stored": st.stored,
            "connections": st.connections,
            "pending_bytes": st.pending_bytes,
            "disk_bytes": daemon.store.disk_usage(st.uid),
            # no NSS lookup here, in the event loop: the stats collector resolves
            # names and quotas in a worker thread and sets quota_bytes again
            "quota_bytes": daemon.ingest.limiter.quota_nowait(st.uid),
            "dropped": dict(daemon.ingest.suppression.dropped(st.uid)),
            "last_seq": st.last_seq,
        }
        for st in daemon.pipeline.states()
    ]
    return sorted(out, key=lambda d: d["uid"])


async def _op_stats(daemon: Daemon, call: ControlCall) -> None:
    extra = {key: fn() for key, fn in daemon.extra_stats.items()}
    await call.send("ok", pid=daemon.pid, uids=uid_stats(daemon), **extra)


async def _op_reload(daemon: Daemon, call: ControlCall) -> None:
    """``trio-logd reload``: root, ``[access] admins`` and the daemon's own uid only."""
    caller = call.caller
    limiter = daemon.ingest.limiter
    if caller.uid != daemon.ingest.daemon.uid and not limiter.is_privileged(caller, call.groups):
        admins = ", ".join(daemon.config.access.admins) or "none configured"
        msg = (
            f"permission denied: reload needs root or membership in an [access] admins group "
            f"({admins}); uid {caller.uid} is neither"
        )
        raise AccessDenied(msg, uid=caller.uid, what="reload")
    try:
        plan = await daemon.reload(by=f"uid {caller.uid}")
    except ConfigError as exc:
        error = f"reload refused, the running config stays in force: {exc}"
        await call.send("error", code="config", error=error)
        return
    await call.send(
        "ok",
        config=daemon.config.path,
        applied=list(plan.applied),
        restart_required=list(plan.restart_required),
    )


def build_daemon(config: Config) -> Daemon:
    """Make the daemon's objects (no sockets bound, no files opened)."""
    me = PeerCred(os.getpid(), os.geteuid(), os.getegid())
    sc = config.store
    store = StoreWriter(
        _abs(config.daemon.log_dir),
        fsync=sc.fsync,
        max_file_bytes=sc.max_file_bytes,
        max_file_age=sc.max_file_age,
        compress=sc.compress,
        daemon=me,
    )
    pipeline = Pipeline(store.last_seq)
    suppression = SuppressionTracker()
    limiter = Limiter(config, suppression, store.usage)
    ingest = IngestContext(
        pipeline,
        config.daemon.max_message_bytes,
        me,
        frame_timeout=config.daemon.frame_timeout,
        idle_timeout=config.daemon.idle_timeout,
        suppression=suppression,
        limiter=limiter,
    )
    control = ControlServer(
        settings=config.control,
        is_privileged=limiter.is_privileged,
        account_for=limiter.control_account,
    )
    daemon = Daemon(config, store, pipeline, ingest, control)
    daemon.reports = DropReports(ingest, store)
    daemon.reloader.hooks.append(lambda _old, new: control.configure(new.control))
    daemon.extra_status["control"] = control.statistics
    daemon.extra_stats["control"] = control.statistics
    daemon.quota_for = limiter.quota_for
    daemon.control.register("status", partial(_op_status, daemon))
    daemon.control.register("stats", partial(_op_stats, daemon))
    daemon.control.register("reload", partial(_op_reload, daemon))
    queries = QueryService(
        lambda: daemon.config,
        store.log_dir,
        limiter.is_privileged,
        delegated=limiter.delegated_to,
    )
    pipeline.written_hooks.append(queries.hub.hook)
    daemon.control.register("query", queries.handle)
    boots = BootService(store.log_dir, ingest.daemon.uid, queries.limiter)
    daemon.control.register("boots", boots.handle)
    usage = partial(
        op_disk_usage, lambda: daemon.config, store.ledger, store.log_dir, limiter.delegated_to
    )
    daemon.control.register("disk_usage", usage)
    daemon.extra_status["queries"] = queries.status
    daemon.operators = install_operators(daemon, uid_stats)  # replaces "stats"
    if config.forward:
        daemon.forward = ForwardService(config.forward, store)
        pipeline.written_hooks.append(daemon.forward.hook)
        daemon.extra_status["forward"] = daemon.forward.stats
        daemon.extra_stats["forward"] = daemon.forward.stats
    return daemon


async def serve(
    config: Config,
    *,
    task_status: trio.TaskStatus[Daemon] = trio.TASK_STATUS_IGNORED,
    shutdown_trigger: trio.Event | None = None,
    handle_signals: bool = False,
) -> None:
    """Run the daemon until shutdown; never returns before that.

    Args:
        config: the validated configuration.
        task_status: receives the :class:`Daemon` once every socket serves.
        shutdown_trigger: setting it starts a clean shutdown.
        handle_signals: handle ``SIGTERM``/``SIGINT`` (shutdown) and
            ``SIGHUP`` (reload); only from the main thread (the CLI), which
            exits once this returns: they are ignored from then on.

    Raises:
        AlreadyRunning: another daemon answers on the control socket.
        StoreInUse: another daemon holds ``log_dir``.
        UnsafeLogDir: ``log_dir`` is unsafe.
        LogdError, OSError: a socket could not be bound.
    """
    control_path = _abs(config.daemon.control_socket)
    peer = probe_socket(control_path)
    if peer is not None:
        raise AlreadyRunning(control_path, peer)
    handled = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    if handle_signals:
        # what the receiver puts back when it closes: once we have stopped cleanly,
        # a late SIGTERM must not turn exit 0 into 143 before the process is gone
        for signum in handled:
            signal.signal(signum, signal.SIG_IGN)
    receiver = (
        trio.open_signal_receiver(*handled) if handle_signals else contextlib.nullcontext(None)
    )
    # installed until we return: a signal during start-up or late in the shutdown
    # is queued and handled (or waited out), never the default "terminate now"
    with receiver as signals:
        await _serve(config, task_status, shutdown_trigger, signals)


async def _serve(
    config: Config,
    task_status: trio.TaskStatus[Daemon],
    shutdown_trigger: trio.Event | None,
    signals: AsyncIterator[int] | None,
) -> None:
    control_path = _abs(config.daemon.control_socket)

    activated = take_activated_sockets(config)  # systemd's, if any: never unlinked
    daemon = build_daemon(config)
    fds = raise_nofile_limit()  # connections must not starve the store of fds
    daemon.extra_status["fd_limit"] = lambda: fds.soft
    # connections may not use the last descriptors (the store's): _fdlimit.py
    counters = FdCounters(FdReserve(fds.soft))
    daemon.ingest.fds = daemon.control.fds = counters
    daemon.extra_status["fds"] = counters.snapshot
    daemon.extra_stats["fds"] = counters.snapshot
    daemon.store.on_fd_shortage = partial(counters.note_exhausted, "store")
    if daemon.forward is not None:
        daemon.forward.on_fd_shortage = partial(counters.note_exhausted, "forward")
    wanted = config.daemon.max_connections + config.control.max_connections + FD_RESERVE
    if fds.soft < wanted:
        log.warning(
            "fd_limit_low",
            soft=fds.soft,
            hard=fds.hard,
            max_connections=config.daemon.max_connections,
            control_max_connections=config.control.max_connections,
            reserve=FD_RESERVE,
            hint="raise LimitNOFILE= (systemd) or lower the max_connections of [daemon], [control]",
        )
    sys.setswitchinterval(SWITCH_INTERVAL)
    limiter = daemon.ingest.limiter
    limiter.apply(await limiter.prepare(config))  # the admins' gids, off the event loop
    await trio.to_thread.run_sync(daemon.store.open)
    shared = await trio.to_thread.run_sync(
        shared_writable_dirs, daemon.store.log_dir, candidate_dirs(), os.geteuid()
    )
    if shared:  # others can fill the disk under the store: keep_free_bytes pressure
        log.warning("log_dir_shares_file_system", log_dir=daemon.store.log_dir, shared_with=shared)
        daemon.extra_status["warnings"] = lambda: [_shared_warning(daemon.store.log_dir, shared)]
    assert daemon.reports is not None
    left = await trio.to_thread.run_sync(daemon.store.load_drops)
    restored = daemon.reports.restore(left, trio.current_time())
    if restored:
        log.warning("drops_restored", records=restored)
    # what start-up made (modules, config, the store's index) lives as long as
    # the daemon: kept out of the collector's full passes, which otherwise walk
    # it all and stall the event loop (quiet uid's p99 under a flood 6.3 -> 3.4 ms)
    gc.collect()
    gc.freeze()
    bound: list[BoundSocket] = []
    try:
        ingest = activated.ingest
        if ingest is None:
            ingest = bind_unix(
                _abs(config.daemon.socket), mode=config.daemon.socket_mode, passcred=True
            )
            bound.append(ingest)
        daemon.sockets["socket"] = ingest.path
        datagram = activated.datagram
        if datagram is None and config.daemon.datagram_socket is not None:
            datagram = bind_unix(
                _abs(config.daemon.datagram_socket),
                kind=socket.SOCK_DGRAM,
                mode=config.daemon.socket_mode,
                passcred=True,
            )
            bound.append(datagram)
        if datagram is not None:
            daemon.sockets["datagram_socket"] = datagram.path
        control = bind_unix(control_path, mode=0o666)
        bound.append(control)
        daemon.sockets["control_socket"] = control.path
        await _run(daemon, ingest, datagram, control, task_status, shutdown_trigger, signals)
    finally:
        for b in bound:
            unlink_if_ours(b)
            b.sock.close()
        activated.close()
        await trio.to_thread.run_sync(daemon.store.close)
    log.info("stopped", pid=daemon.pid)


async def _run(
    daemon: Daemon,
    ingest: BoundSocket,
    datagram: BoundSocket | None,
    control: BoundSocket,
    task_status: trio.TaskStatus[Daemon],
    shutdown_trigger: trio.Event | None,
    signals: AsyncIterator[int] | None,
) -> None:
    ingest_sock = trio.socket.from_stdlib_socket(ingest.sock)
    control_sock = trio.socket.from_stdlib_socket(control.sock)
    fds = daemon.ingest.fds
    helper = StoreHelper(
        on_fd_shortage=partial(fds.note_exhausted, "helper") if fds else lambda: None
    )
    await helper.start()  # compression, spare files and syncs, outside our GIL
    daemon.extra_status["helper"] = helper.status
    daemon.extra_status["store"] = lambda: {
        "compress_pending": daemon.store.compress_pending(),
        "files_created": daemon.store.files_created,
        "held": daemon.store.held,
    }
    async with trio.open_nursery() as guard:
        if signals is not None:  # beside everything until the helper is gone (later: queued)
            await guard.start(_serve_signals, daemon, signals)
        try:
            await _run_tasks(
                daemon, ingest_sock, datagram, control_sock, task_status, shutdown_trigger,
                helper,
            )  # fmt: skip
        finally:
            with trio.CancelScope(shield=True):
                await helper.aclose()
        guard.cancel_scope.cancel()


async def _run_tasks(
    daemon: Daemon,
    ingest_sock: trio.socket.SocketType,
    datagram: BoundSocket | None,
    control_sock: trio.socket.SocketType,
    task_status: trio.TaskStatus[Daemon],
    shutdown_trigger: trio.Event | None,
    helper: StoreHelper,
) -> None:
    ctx = daemon.ingest
    reports = daemon.reports
    assert reports is not None

    async with trio.open_nursery() as root:
        sc = daemon.config.store
        housekeeper = Housekeeper(
            daemon.store,
            RetentionPolicy(sc.max_age, sc.max_bytes, sc.keep_free_bytes, sc.pressure_min_age),
            daemon.quota_for,
            daemon.pipeline,
            ctx.file_daemon_record,
            helper=helper,
            account_for=ctx.limiter.account_for,
        )
        await root.start(
            serve_store,
            daemon.pipeline,
            daemon.store,
            ctx.suppression,
            ctx.file_daemon_record,
            housekeeper,
        )
        if daemon.forward is not None:
            await root.start(serve_forwarders, daemon.forward)
        async with trio.open_nursery() as handlers:
            async with trio.open_nursery() as front:
                await front.start(
                    partial(serve_listener, fds=ctx.fds),
                    PeerListener(ingest_sock),
                    handlers,
                    partial(handle_connection, ctx=ctx),
                )
                await front.start(
                    partial(serve_listener, fds=ctx.fds, name="control"),
                    PeerListener(control_sock),
                    front,
                    daemon.control.handle,
                )
                if datagram is not None:  # drained at shutdown like a connection
                    await handlers.start(serve_datagrams, datagram.sock, ctx)
                front.start_soon(serve_suppressions, reports)
                front.start_soon(ctx.limiter.serve_pruning)
                front.start_soon(ctx.limiter.serve_subid_watch)
                if shutdown_trigger is not None:
                    front.start_soon(_wait_and_set, shutdown_trigger, daemon.shutdown)
                daemon.task_nursery = front
                if daemon.operators is not None:  # last: READY=1 to systemd
                    await front.start(serve_operators, daemon, daemon.operators)
                boot_id = read_boot_id()
                boot: dict[str, Any] = {"boot_id": boot_id} if boot_id else {}
                ctx.file_daemon_record(
                    ctx.daemon.uid,
                    "started",
                    msg=f"trio-logd {__version__} started",
                    version=__version__,
                    sockets=daemon.sockets,
                    **boot,
                )
                log.info("started", pid=daemon.pid, **daemon.sockets, log_dir=daemon.store.log_dir)
                task_status.started(daemon)
                await daemon.shutdown.wait()
                log.info("stopping", pid=daemon.pid)
                helper.hurry()  # a compression in progress may not hold the shutdown up
                front.cancel_scope.cancel()
            # not accepting any more: stop new clients from queueing on the backlog
            ingest_sock.close()
            ctx.stop_receiving()
            drain = _drain_deadline(daemon)
            handlers.cancel_scope.deadline = trio.current_time() + drain
        reports.file(ctx.suppression.flush(), trio.current_time())
        daemon.pipeline.close()
        if daemon.forward is not None:
            daemon.forward.stop()  # drains what was sent; the rest waits in the store
    # the writer is done: what is still unreported (a full disk) waits on disk
    with trio.CancelScope(shield=True):
        await reports.save(final=True)


async def _wait_and_set(trigger: trio.Event, target: trio.Event) -> None:
    await trigger.wait()
    target.set()


async def _serve_signals(
    daemon: Daemon,
    signals: AsyncIterator[int],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """SIGHUP reloads; the first SIGTERM/SIGINT shuts down, a third forces the exit."""
    task_status.started()
    stops = 0
    async for signum in signals:
        name = signal.Signals(signum).name
        if signum == signal.SIGHUP:
            if not daemon.shutdown.is_set():
                daemon.request_reload()
            continue
        stops += 1
        if stops == 1:
            log.info("signal", signal=name)
            daemon.shutdown.set()
            _force_exit_after(SHUTDOWN_DEADLINE + _drain_deadline(daemon), daemon.pid)
        elif stops < FORCE_AFTER_SIGNALS:
            log.warning("shutdown_in_progress", signal=name, hint="a third signal forces exit")
        else:
            _force_exit(f"signal {name} during shutdown", daemon.pid)


def _drain_deadline(daemon: Daemon) -> float:
    return daemon.config.daemon.shutdown_timeout or DRAIN_DEADLINE


def _force_exit(why: str, pid: int) -> None:
    """End the process now: what is on disk stays, the next start recovers as after a crash."""
    log.error("shutdown_forced", pid=pid, reason=why)
    os._exit(EXIT_FORCED)


def _force_exit_after(seconds: float, pid: int) -> None:
    """Arm a timer (a thread: it fires even if the event loop is stuck) that forces the exit."""
    timer = threading.Timer(seconds, _force_exit, (f"shutdown took over {seconds:g} s", pid))
    timer.daemon = True  # a shutdown that finishes in time exits with it
    timer.start()
