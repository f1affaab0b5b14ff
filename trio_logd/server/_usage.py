"""The ``disk_usage`` control operation: ``logq --disk-usage``, from the store's ledger.

How this works: the store's writer keeps every uid's bytes on disk (current
and rotated files, hash chains, torn tails) in its ``QuotaLedger``, set when
it scans a uid's directory at start and kept up to date as it writes,
compresses and deletes. The operation answers from that ledger, without
touching the disk: ``ok`` with ``uids``, a list of ``[uid, bytes]``, and
``total``. It takes ``uids`` (a list of integers) or nothing, and is
authorized as ``query`` is (``authorize_uids``), by the caller's kernel
credentials only: root and ``[access] readers`` get every uid (or those
named), anyone else her own uid and the subordinate uids delegated to her,
and naming another uid is refused with the same message as a query.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import trio

from trio_logd.config import Config
from trio_logd.errors import AccessDenied
from trio_logd.limits import QuotaLedger
from trio_logd.query.filters import QuerySpec
from trio_logd.server._control import ControlCall
from trio_logd.server._query import authorize_uids, owned_uids, reader_gids, user_names

__all__ = ["op_disk_usage"]


async def op_disk_usage(
    config: Callable[[], Config],
    ledger: QuotaLedger,
    log_dir: str,
    delegated: Callable[[int], Sequence[tuple[int, int]]],
    call: ControlCall,
) -> None:
    """Control operation ``disk_usage``: the bytes of the uids the caller may read.

    Raises:
        ValueError: a bad ``uids`` or another argument.
        AccessDenied: the caller named a uid she may not read.
    """
    args = dict(call.request.args)
    unknown = sorted(set(args) - {"uids"})
    if unknown:
        msg = f"disk_usage: unknown argument {unknown[0]!r}: expected 'uids' or nothing"
        raise ValueError(msg)
    spec = QuerySpec.from_request(args)
    running = config()
    caller = call.caller.uid
    gids = (call.caller.gid, *call.groups)
    readers = await trio.to_thread.run_sync(reader_gids, running)
    ranges = delegated(caller)
    owned = await trio.to_thread.run_sync(owned_uids, log_dir, ranges, spec.uids)
    if not spec.uids and running.is_reader(caller, [readers[g] for g in gids if g in readers]):
        spec = QuerySpec(all_uids=True)  # a reader's figure is everyone's, unless she names uids
    try:
        uids = authorize_uids(running, caller, gids, spec, readers, owned=owned)
    except AccessDenied:  # say it again with user names (NSS: a worker thread)
        names = await trio.to_thread.run_sync(user_names, {caller, *spec.uids})
        uids = authorize_uids(running, caller, gids, spec, readers, owned=owned, names=names)
    usages = ledger.usages()
    shown = usages if uids is None else {uid: usages.get(uid, 0) for uid in uids}
    await call.send(
        "ok", uids=[list(item) for item in sorted(shown.items())], total=sum(shown.values())
    )
