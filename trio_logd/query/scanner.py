"""A query's scan over the store: the query's filter on the store's engine (sync).

How this works: the store's :class:`~trio_logd.store.scan.Scanner` reads files
and asks a filter which lines match; it knows nothing of queries.
:func:`query_scanner` builds the filter of a :class:`QuerySpec` and the
scanner that runs it, in one call, so that a caller running it in a worker
thread compiles the query's patterns there too.
"""

from __future__ import annotations

from collections.abc import Sequence

from trio_logd.query.filters import RE2_MAX_MEM, LineFilter, QuerySpec
from trio_logd.store.scan import TAIL_KEEP_BYTES, Scanner

__all__ = ["query_scanner"]


def query_scanner(
    log_dir: str,
    uids: Sequence[int] | None,
    spec: QuerySpec,
    *,
    regex_memory_bytes: int = RE2_MAX_MEM,
    tail_keep_bytes: int = TAIL_KEEP_BYTES,
) -> Scanner[LineFilter]:
    """The scan of *spec* over *uids* of the store at *log_dir*.

    Args:
        log_dir: the store's root directory.
        uids: the uids to read, or ``None`` for every uid with a directory.
        spec: the query (its ``uids``/``all_uids`` are not looked at: the
            caller has resolved and authorized them into *uids*).
        regex_memory_bytes: RE2's memory budget for ``--grep``.
        tail_keep_bytes: for ``lines`` (one uid): the matching lines kept in
            memory while finding the last N; past it they are streamed by a
            second, forward pass.

    Raises:
        StoreError: *log_dir* or a uid directory cannot be opened.
    """
    filt = LineFilter(spec, regex_memory_bytes=regex_memory_bytes)
    return Scanner(log_dir, uids, filt, lines=spec.lines, tail_keep_bytes=tail_keep_bytes)
