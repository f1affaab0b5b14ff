"""The ``disk_usage`` control operation: ``logq --disk-usage``, from the store's ledger.

How this works: the store's writer keeps every uid's bytes on disk (current
and rotated files, hash chains, torn tails) in its ``QuotaLedger``, set when
it scans a uid's directory at start and kept up to date as it writes,
compresses and deletes. The operation answers from that ledger, without
touching the disk: ``ok`` with ``uids``, a list of ``[uid, bytes]``, and
``total``. Authorized as ``query`` is, by the caller's kernel credentials
only: root and ``[access] readers`` get every uid, anyone else her own uid
and the subordinate uids delegated to her (``owned_uids``). A uid with no
files is listed with 0 bytes when it is the caller's own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import trio

from trio_logd.config import Config
from trio_logd.limits import QuotaLedger
from trio_logd.server._control import ControlCall
from trio_logd.server._query import owned_uids, reader_gids

__all__ = ["op_disk_usage"]


async def op_disk_usage(
    config: Callable[[], Config],
    ledger: QuotaLedger,
    log_dir: str,
    delegated: Callable[[int], Sequence[tuple[int, int]]],
    call: ControlCall,
) -> None:
    """Control operation ``disk_usage``: the bytes of the uids the caller may read."""
    running = config()
    caller = call.caller.uid
    readers = await trio.to_thread.run_sync(reader_gids, running)
    groups = [readers[g] for g in (call.caller.gid, *call.groups) if g in readers]
    usages = ledger.usages()
    if running.is_reader(caller, groups):
        shown = usages
    else:
        owned = await trio.to_thread.run_sync(owned_uids, log_dir, delegated(caller), ())
        shown = {uid: usages.get(uid, 0) for uid in (caller, *sorted(owned))}
    uids = sorted(shown.items())
    await call.send("ok", uids=[list(item) for item in uids], total=sum(shown.values()))
