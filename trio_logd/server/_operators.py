"""What operators see and what systemd hears: the wiring of stats, metrics and sd_notify.

How this works: ``install_operators`` (from ``build_daemon``) makes the
``StatsCollector``, registers the ``stats`` and ``metrics`` control
operations and counts store errors. ``serve_operators`` (started last by the
daemon, once every socket serves) runs the one-second sampler, the optional
metrics endpoint and textfile and the systemd watchdog, then tells systemd
``READY=1``; when it is cancelled (shutdown) it says ``STOPPING=1``. A reload
is bracketed by ``reload_started``/``reload_finished``: ``RELOADING=1``, then
``READY=1`` whatever the outcome (a refused config leaves the old one in
force, and the daemon serving).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Final

import structlog
import trio

from trio_logd.metrics import render_metrics
from trio_logd.server._exporter import serve_metrics_http, serve_textfile
from trio_logd.server._stats import (
    BaseStats,
    StatsCollector,
    count_store_errors,
    op_metrics,
    op_stats,
    serve_sampler,
)
from trio_logd.server._systemd import Notifier, watchdog_interval

if TYPE_CHECKING:
    from trio_logd.server import Daemon

__all__ = ["Operators", "install_operators", "serve_operators"]

log = structlog.get_logger("trio_logd.operators")

#: Ticks (seconds) between two ``STATUS=`` lines to systemd.
STATUS_EVERY: Final = 5


@dataclass(eq=False)
class Operators:
    """The daemon's operator-facing parts: figures, systemd notifier, metrics endpoint."""

    collector: StatsCollector
    notifier: Notifier
    #: the address the metrics endpoint is bound to, once it serves
    metrics_address: tuple[str, int] | None = None

    def reload_started(self) -> None:
        """A reload begins: tell systemd (``RELOADING=1``)."""
        self.notifier.reloading()

    def reload_finished(self, ok: bool) -> None:
        """A reload ended (*ok*: the new config is in force); count it, tell systemd ``READY=1``."""
        self.collector.counters.note_reload(ok)
        outcome = "reloaded" if ok else "reload refused, previous config in force"
        self.notifier.ready(status=f"{outcome}; {self.collector.status_line()}")

    async def render_metrics(self) -> str:
        """The Prometheus text of every uid (what the endpoint and the textfile show).

        The text is rendered in a worker thread: with thousands of uids it
        takes tens of milliseconds that the event loop need not wait for.
        """
        snapshot = await self.collector.snapshot()
        return await trio.to_thread.run_sync(render_metrics, snapshot)

    def status(self) -> dict[str, Any]:
        """The ``metrics`` entry of ``trio-logd status``."""
        metrics = self.collector.daemon.config.metrics
        listen = self.metrics_address
        return {
            "listen": f"{listen[0]}:{listen[1]}" if listen else None,
            "textfile": metrics.textfile,
        }


def install_operators(daemon: Daemon, base: BaseStats) -> Operators:
    """Make the operator parts of *daemon* and register ``stats`` and ``metrics``.

    Args:
        daemon: the daemon being built.
        base: its per-uid figures (``uid_stats``).

    Returns:
        The parts, for ``serve_operators`` and the reload path.
    """
    collector = StatsCollector(daemon, base)
    count_store_errors(daemon.store, collector.counters)
    operators = Operators(collector, Notifier.from_environ())
    daemon.control.register("stats", partial(op_stats, collector))
    daemon.control.register("metrics", partial(op_metrics, collector))
    daemon.extra_status["metrics"] = operators.status
    return operators


async def _serve_watchdog(notifier: Notifier, interval: float) -> None:
    while True:
        notifier.watchdog()
        await trio.sleep(interval)


async def serve_operators(
    daemon: Daemon,
    operators: Operators,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the sampler, metrics outputs and watchdog; ``READY=1`` once they run.

    Start it after every socket serves. Cancelling it (shutdown) sends
    ``STOPPING=1``.
    """
    notifier = operators.notifier
    collector = operators.collector
    metrics = daemon.config.metrics

    def on_tick(n: int) -> None:
        if notifier.enabled and n % STATUS_EVERY == 0:
            notifier.status(collector.status_line())

    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_sampler, collector, on_tick)
            if metrics.listen is not None:
                host, port = metrics.listen
                try:
                    operators.metrics_address = await nursery.start(
                        serve_metrics_http, operators.render_metrics, host, port
                    )
                except OSError as exc:
                    # metrics are not worth refusing to log: say so and go on
                    log.error(
                        "metrics_listen_failed",
                        host=host,
                        port=port,
                        error=exc.strerror or str(exc),
                    )
            if metrics.textfile is not None:
                await nursery.start(
                    serve_textfile, operators.render_metrics, metrics.textfile, metrics.interval
                )
            interval = watchdog_interval()
            if interval is not None and notifier.enabled:
                nursery.start_soon(_serve_watchdog, notifier, interval)
            task_status.started()
            notifier.ready(status=collector.status_line())
    finally:
        notifier.stopping()
        notifier.close()
