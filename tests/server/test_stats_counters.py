"""Daemon counters: store errors counted where the store raises them."""

from __future__ import annotations

from pathlib import Path

import pytest

from trio_logd.errors import DiskFull, ReadOnlyStore
from trio_logd.server._stats import DaemonCounters, count_store_errors
from trio_logd.store.writer import StoreWriter


def test_store_errors_from_append_and_sync_are_counted(tmp_path: Path) -> None:
    """Each StoreError out of append or sync counts once and still reaches the caller."""
    store = StoreWriter(str(tmp_path / "log"))
    calls: list[str] = []

    def append(uid: int, lines: object, last_seq: int) -> None:
        calls.append("append")
        if uid == 13:
            raise DiskFull("writing uid 13: no space left")

    def sync() -> None:
        calls.append("sync")
        raise ReadOnlyStore("syncing uid 13: read-only")

    store.append = append  # type: ignore[method-assign]
    store.sync = sync  # type: ignore[method-assign]
    counters = DaemonCounters()
    count_store_errors(store, counters)
    store.append(1, [b"x\n"], 1)
    with pytest.raises(DiskFull):
        store.append(13, [b"x\n"], 1)
    with pytest.raises(ReadOnlyStore):
        store.sync()
    assert calls == ["append", "append", "sync"]
    assert counters.store_errors == 2


def test_reload_outcomes_are_counted_apart() -> None:
    """Successful and refused reloads are counted apart; the last success is timed."""
    counters = DaemonCounters()
    counters.note_reload(ok=False)
    assert (counters.reloads, counters.reload_failures, counters.last_reload) == (0, 1, None)
    counters.note_reload(ok=True)
    assert (counters.reloads, counters.reload_failures) == (1, 1)
    assert counters.last_reload is not None
