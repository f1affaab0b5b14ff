"""The ``boots`` control operation: the kernel boots the daemon ran in (``logq -b``).

How this works: the boots are read from the daemon's own ``started`` records
(``query.boots``), under the daemon's uid, in a worker thread, one reading at
a time. The list of past boots does not change while the daemon runs, so it
is kept once it ends with the running boot (it may not yet, if asked before
this start's record is written). Any caller may ask: it says only the boot
ids and when the daemon started and reloaded, as ``status`` tells anyone
when the daemon started; no record of any user is shown.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import trio

from trio_logd.query.boots import Boot
from trio_logd.server._boot import read_boot_id
from trio_logd.server._control import ControlCall
from trio_logd.store.boots import read_boots

__all__ = ["BootService"]


@dataclass(eq=False)
class BootService:
    """Serves ``boots``.

    Args:
        log_dir: the store's root.
        daemon_uid: the uid the daemon files its own records under.
        limiter: the worker threads reads may use (the queries').
    """

    log_dir: str
    daemon_uid: int
    limiter: trio.CapacityLimiter
    _lock: trio.Lock = field(default_factory=trio.Lock)
    _known: list[Boot] | None = None

    async def handle(self, call: ControlCall) -> None:
        """Answer ``ok`` with ``boots``: ``[{"boot_id", "first", "last"}, …]``, oldest first."""
        async with self._lock:
            boots = self._known
            if boots is None:
                boots = await trio.to_thread.run_sync(
                    read_boots, self.log_dir, self.daemon_uid, limiter=self.limiter
                )
                if boots and boots[-1].boot_id == read_boot_id():
                    self._known = boots
        await call.send("ok", boots=[b.as_dict() for b in boots])
