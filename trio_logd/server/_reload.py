"""Reload: re-read the config file and put what can change live in force.

How this works: one reload at a time (a lock). The file the daemon was
started with (``Config.path``) is read and validated in a worker thread; an
invalid file raises ``ConfigError`` and nothing changes. ``plan_reload``
(pure) says which keys apply live and builds the effective config; the
limiter resolves the new config's NSS answers off the event loop; then, with
no checkpoint in between, the limiter, the ingest settings and the daemon's
config are swapped. Connections stay open and no record is dropped: a
connection task picks the new limits up at its next batch, and its token
buckets keep their balance.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog
import trio

from trio_logd._logging import configure_logging
from trio_logd.config import DEFAULTS_NAME, Config, load
from trio_logd.errors import ConfigError
from trio_logd.reload import ReloadPlan, plan_reload
from trio_logd.server._ingest import IngestContext

__all__ = ["ReloadTarget", "Reloader"]

log = structlog.get_logger("trio_logd.reload")


class ReloadTarget(Protocol):
    """What a reload changes (the ``Daemon``)."""

    config: Config
    ingest: IngestContext


@dataclass(eq=False)
class Reloader:
    """Serializes reloads and applies them to a :class:`ReloadTarget`.

    Attributes:
        hooks: called (in the event loop, after the swap) with the old and
            the effective config; for parts that apply their own keys live.
    """

    lock: trio.Lock = field(default_factory=trio.Lock)
    hooks: list[Callable[[Config, Config], None]] = field(default_factory=list)

    async def reload(self, target: ReloadTarget, *, by: str) -> ReloadPlan:
        """Re-read the config file and apply it.

        Args:
            target: the daemon.
            by: who asked, for the daemon's log and ``reloaded`` record
                (``"SIGHUP"``, ``"uid 0"``).

        Returns:
            What changed, what applies now and what waits for a restart.

        Raises:
            ConfigError: the file is unreadable or invalid (file, key,
                reason); the running config stays in force.
        """
        async with self.lock:
            old = target.config
            try:
                if old.path is None:
                    reason = (
                        "the daemon runs on its embedded defaults, so there is no file to "
                        "re-read (start it with --config FILE or $TRIO_LOGD_CONFIG)"
                    )
                    raise ConfigError(DEFAULTS_NAME, "", reason)
                new = await trio.to_thread.run_sync(load, old.path)
            except ConfigError as exc:
                log.error("reload_refused", by=by, error=str(exc))
                _record(target, "reload_refused", sev="err", by=by, error=str(exc))
                raise
            plan = plan_reload(old, new)
            limiter = target.ingest.limiter
            prepared = await limiter.prepare(plan.effective)
            # from here to the end: no checkpoint, so connections see all or nothing
            limiter.apply(prepared)
            target.ingest.max_message_bytes = plan.effective.daemon.max_message_bytes
            target.config = plan.effective
            if plan.effective.daemon.log_level != old.daemon.log_level:
                configure_logging(plan.effective.daemon.log_level)
            for hook in self.hooks:
                hook(old, plan.effective)
            log.info(
                "reloaded",
                by=by,
                config=old.path,
                applied=list(plan.applied),
                restart_required=list(plan.restart_required),
            )
            _record(
                target,
                "reloaded",
                by=by,
                applied=list(plan.applied),
                restart_required=list(plan.restart_required),
            )
            return plan


def _record(target: ReloadTarget, event: str, **extra: Any) -> None:
    """File a daemon record about the reload under the daemon's uid (best effort)."""
    ctx = target.ingest
    path = target.config.path
    if event == "reloaded":
        msg = f"reloaded {path}"
    else:
        msg = f"reload refused, the running config stays in force: {extra.get('error')}"
    # shutting down (pipeline closed): the log line is all there is
    with contextlib.suppress(trio.ClosedResourceError):
        ctx.file_daemon_record(ctx.daemon.uid, event, msg=msg, config=path, **extra)
