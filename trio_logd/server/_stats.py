"""The figures behind ``trio-logd stats``, ``top`` and the metrics.

How this works: the daemon's hot path only bumps plain counters (per uid in
``UidState``: records, bytes, stored, connections; drops in the
``SuppressionTracker``). A sampler task reads them once a second
(:meth:`StatsCollector.tick`) into a ``RateHistory``, which gives records
and bytes per second over the last second and the last minute, and notices
when a uid's drop total grew (its last drop time, at 1 s resolution). Each
uid's user name and ``quota_bytes`` are resolved once (NSS may block: in a
worker thread) and cached until the config object changes (a reload).

A snapshot is the ``stats`` control operation's answer: the daemon's base
per-uid figures (``uid_stats``) with rates, quota, user name and last drop
added, and daemon-wide figures (uptime, totals, store errors, reloads).
Root and members of ``[access] readers`` or ``admins`` groups see every uid;
anyone else sees the daemon-wide figures and their own uid only.
"""

from __future__ import annotations

import grp
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, ParamSpec, TypeVar

import trio

from trio_logd import __version__
from trio_logd.config import Config
from trio_logd.identity import Identity, lookup_identity
from trio_logd.limits import DROP_REASONS
from trio_logd.metrics import render_metrics
from trio_logd.server._control import ControlCall
from trio_logd.stats import Counts, RateHistory

if TYPE_CHECKING:
    from trio_logd.server import Daemon
    from trio_logd.store.writer import StoreWriter

__all__ = ["DaemonCounters", "StatsCollector", "count_store_errors", "serve_sampler"]

#: Seconds between two samples: the resolution of "records/s now" and of
#: the last drop time.
TICK: Final = 1.0
#: The two windows ``stats`` shows.
NOW_WINDOW: Final = 1.0
MINUTE_WINDOW: Final = 60.0

_P = ParamSpec("_P")
_R = TypeVar("_R")


@dataclass(eq=False)
class DaemonCounters:
    """Daemon-wide counters bumped outside the hot path (store errors from worker threads)."""

    store_errors: int = 0
    reloads: int = 0
    reload_failures: int = 0
    last_reload: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def note_store_error(self) -> None:
        """Count one failed write or sync (called from the writer's worker thread)."""
        with self._lock:
            self.store_errors += 1

    def note_reload(self, ok: bool) -> None:
        """Count one reload, successful or refused."""
        if ok:
            self.reloads += 1
            self.last_reload = time.time()
        else:
            self.reload_failures += 1


def count_store_errors(store: StoreWriter, counters: DaemonCounters) -> None:
    """Count the ``StoreError``\\s that *store*'s ``append`` and ``sync`` raise.

    The writer task already handles those errors (the records count as
    dropped, reason ``disk``); the store's ``error_hooks`` tell the counters
    too, without the writer knowing.
    """
    store.error_hooks.append(lambda _exc: counters.note_store_error())


def _resolve(config: Config, uids: Iterable[int]) -> dict[int, tuple[Identity, int]]:
    """In a worker thread: each uid's names and resolved ``quota_bytes``."""
    out: dict[int, tuple[Identity, int]] = {}
    for uid in uids:
        ident = lookup_identity(uid)
        limits = config.limits_for(uid, user=ident.user, groups=ident.groups)
        out[uid] = (ident, limits.quota_bytes)
    return out


def _group_names(gids: Iterable[int]) -> list[str]:
    names = []
    for gid in gids:
        try:
            names.append(grp.getgrgid(gid).gr_name)
        except KeyError:
            continue
    return names


BaseStats = Callable[["Daemon"], list[dict[str, Any]]]


class StatsCollector:
    """Samples the daemon's counters; builds ``stats`` snapshots.

    Args:
        daemon: the running daemon (its pipeline, store, suppression tracker
            and config are read, never changed).
        base: the daemon's per-uid figures (``trio_logd.server.uid_stats``).
    """

    def __init__(self, daemon: Daemon, base: BaseStats) -> None:
        self.daemon = daemon
        self._base = base
        self.counters = DaemonCounters()
        self.history = RateHistory(daemon.started_monotonic)
        self.last_drop: dict[int, float] = {}
        self._drops_seen: dict[int, int] = {}
        self._resolved: dict[int, tuple[Identity, int]] = {}
        self._resolved_for: Config | None = None

    # -- sampling ---------------------------------------------------------

    def tick(self, now: float | None = None, wall: float | None = None) -> None:
        """Sample every uid's counters; note uids whose drops grew. Sync, O(uids)."""
        now = time.monotonic() if now is None else now
        wall = time.time() if wall is None else wall
        states = list(self.daemon.pipeline.states())
        self.history.sample(now, {st.uid: Counts(st.records, st.bytes) for st in states})
        tracker = self.daemon.ingest.suppression
        for st in states:
            total = sum(tracker.dropped(st.uid).values())
            if total != self._drops_seen.get(st.uid, 0):
                self._drops_seen[st.uid] = total
                self.last_drop[st.uid] = wall

    async def resolve(self, uids: Iterable[int]) -> None:
        """Look up the names and quota of uids not resolved under the current config."""
        config = self.daemon.config
        if config is not self._resolved_for:
            self._resolved = {}
            self._resolved_for = config
        missing = [uid for uid in uids if uid not in self._resolved]
        if missing:
            found = await trio.to_thread.run_sync(_resolve, config, missing)
            if self._resolved_for is config:
                self._resolved.update(found)

    # -- snapshots --------------------------------------------------------

    async def visible_uid(self, call: ControlCall) -> int | None:
        """``None`` when *call*'s caller may see every uid, else the one uid it may see."""
        caller = call.caller
        if caller.uid == 0:
            return None
        config = self.daemon.config
        if not config.access.readers and not config.access.admins:
            return caller.uid
        names = await trio.to_thread.run_sync(_group_names, call.groups)
        if config.is_reader(caller.uid, names) or config.is_admin(caller.uid, names):
            return None
        return caller.uid

    async def snapshot(self, only_uid: int | None = None) -> dict[str, Any]:
        """The ``stats`` object: daemon-wide figures and per-uid items.

        Args:
            only_uid: list only this uid (daemon-wide totals still cover all).

        Returns:
            ``pid``, ``version``, ``started``, ``uptime``, ``daemon``, ``uids``
            (sorted by uid) and ``units`` (per system unit, at most
            ``unit_limits.MAX_UNITS`` and one ``(other)``; empty for a caller
            who sees one uid); see ``docs/operators.md`` for every field.
        """
        items = self._base(self.daemon)
        await self.resolve(item["uid"] for item in items)
        now = time.monotonic()
        history = self.history
        since_now = history.base(now, NOW_WINDOW)
        since_minute = history.base(now, MINUTE_WINDOW)
        daemon = self.daemon
        totals = dict.fromkeys(("records", "bytes", "stored", "connections"), 0)
        dropped = dict.fromkeys(DROP_REASONS, 0)
        rate_now = [0.0, 0.0]
        rate_minute = [0.0, 0.0]
        shown = []
        for item in items:
            uid = item["uid"]
            counts = Counts(item["records"], item["bytes"])
            r_now = history.rates_since(uid, since_now, now, counts)
            r_min = history.rates_since(uid, since_minute, now, counts)
            resolved = self._resolved.get(uid)
            item["user"] = resolved[0].user if resolved else None
            item["quota_bytes"] = (
                resolved[1] if resolved else daemon.config.limits_default.quota_bytes
            )
            item["records_per_s"] = round(r_now.records, 3)
            item["records_per_s_1m"] = round(r_min.records, 3)
            item["bytes_per_s"] = round(r_now.bytes, 3)
            item["bytes_per_s_1m"] = round(r_min.bytes, 3)
            item["last_drop"] = self.last_drop.get(uid)
            for key in totals:
                totals[key] += item[key]
            for reason, n in item["dropped"].items():
                dropped[reason] = dropped.get(reason, 0) + n
            rate_now = [rate_now[0] + r_now.records, rate_now[1] + r_now.bytes]
            rate_minute = [rate_minute[0] + r_min.records, rate_minute[1] + r_min.bytes]
            if only_uid is None or uid == only_uid:
                shown.append(item)
        counters = self.counters
        return {
            "pid": daemon.pid,
            "version": __version__,
            "started": daemon.started_at,
            "uptime": round(now - daemon.started_monotonic, 3),
            "daemon": {
                **totals,
                "uids": len(items),
                "pending_bytes": daemon.pipeline.pending_bytes,
                "dropped": dropped,
                "records_per_s": round(rate_now[0], 3),
                "records_per_s_1m": round(rate_minute[0], 3),
                "bytes_per_s": round(rate_now[1], 3),
                "bytes_per_s_1m": round(rate_minute[1], 3),
                "store_errors": counters.store_errors,
                "reloads": counters.reloads,
                "reload_failures": counters.reload_failures,
                "last_reload": counters.last_reload,
            },
            "uids": shown,
            # units span uids: only for who may see every uid
            "units": daemon.ingest.limiter.units.snapshot() if only_uid is None else [],
            # further top-level keys (``forward``: per-destination lag)
            **{key: fn() for key, fn in daemon.extra_stats.items()},
        }

    def status_line(self) -> str:
        """One line for ``systemctl status`` (sd_notify ``STATUS=``); sync, from the last tick."""
        states = list(self.daemon.pipeline.states())
        now = time.monotonic()
        since = self.history.base(now, MINUTE_WINDOW)
        per_s = sum(
            self.history.rates_since(st.uid, since, now, Counts(st.records, st.bytes)).records
            for st in states
        )
        conns = sum(st.connections for st in states)
        return f"{conns} connections, {per_s:.0f} records/s over 1 min, {len(states)} uids"


async def op_stats(collector: StatsCollector, call: ControlCall) -> None:
    """Control operation ``stats``: the snapshot the caller may see."""
    only = await collector.visible_uid(call)
    await call.send("ok", **(await collector.snapshot(only)))


async def op_metrics(collector: StatsCollector, call: ControlCall) -> None:
    """Control operation ``metrics``: the same figures as Prometheus text (``text``)."""
    only = await collector.visible_uid(call)
    snapshot = await collector.snapshot(only)
    await call.send("ok", text=await trio.to_thread.run_sync(render_metrics, snapshot))


async def serve_sampler(
    collector: StatsCollector,
    on_tick: Callable[[int], None] | None = None,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Sample once a second forever; ``on_tick(n)`` after each (cancel to stop)."""
    collector.tick()
    task_status.started()
    n = 0
    while True:
        await trio.sleep(TICK)
        collector.tick()
        await collector.resolve(st.uid for st in collector.daemon.pipeline.states())
        n += 1
        if on_tick is not None:
            on_tick(n)
