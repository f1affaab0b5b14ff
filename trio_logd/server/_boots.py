"""The ``boots`` control operation: the kernel boots the daemon ran in (``logq -b``).

How this works: the boots are read from the daemon's own records
(``query.boots``), under the daemon's uid, in a worker thread, one reading at
a time. The service goes on from where its last reading stopped (a
``SeqReader`` keeps the ``seq``), so the store is read once while the daemon
runs and each request reads only the daemon's records filed since the last
one: asking again and again costs no one anything. Any caller may ask: the
answer says only the boot ids and when the daemon started and reloaded, as
``status`` tells anyone when the daemon started; no record of any user is
shown.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

import structlog
import trio

from trio_logd.errors import StoreError
from trio_logd.query.boots import Boot, boots_of_lines
from trio_logd.server._control import ControlCall
from trio_logd.store.seqreader import SeqReader

log = structlog.get_logger("trio_logd.boots")

__all__ = ["BootService"]

#: Bytes read per step of a reading (the daemon's records since the last one).
_STEP_BYTES: Final = 4 << 20


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
    _boots: list[Boot] = field(default_factory=list)
    _reader: SeqReader | None = None

    def _read_new(self) -> None:
        """Worker thread: take in the daemon's records filed since the last reading."""
        if self._reader is None:
            self._reader = SeqReader(self.log_dir, self.daemon_uid)
        try:
            while lines := self._reader.read(_STEP_BYTES):
                boots_of_lines(lines, self._boots)
        except OSError as exc:
            msg = f"{self.log_dir}/{self.daemon_uid}: cannot read: {exc.strerror or exc}"
            raise StoreError(msg) from exc
        finally:
            self._reader.close()
            for damaged in self._reader.damaged:  # passed over: the boots in it are not listed
                log.warning("boots_file_damaged", file=damaged.path, error=damaged.reason)
            self._reader.damaged.clear()

    async def handle(self, call: ControlCall) -> None:
        """Answer ``ok`` with ``boots``: ``[{"boot_id", "first", "last"}, …]``, oldest first."""
        async with self._lock:
            await trio.to_thread.run_sync(self._read_new, limiter=self.limiter)
            boots = [b.as_dict() for b in self._boots]
        await call.send("ok", boots=boots)
