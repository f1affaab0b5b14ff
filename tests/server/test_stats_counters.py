"""Daemon counters: store errors counted where the store raises them."""

from __future__ import annotations

from pathlib import Path

import pytest

from trio_logd.errors import DiskFull, ReadOnlyStore
from trio_logd.server._stats import DaemonCounters, count_store_errors
from trio_logd.store.writer import StoreWriter


class FailingStore(StoreWriter):
    """A store whose appends for uid 13 and whose syncs fail, below the public methods."""

    def __init__(self, log_dir: str) -> None:
        super().__init__(log_dir)
        self.calls: list[str] = []

    def _append(self, uid: int, lines: object, last_seq: int, runs: object) -> None:
        self.calls.append("append")
        if uid == 13:
            raise DiskFull("writing uid 13: no space left")

    def _finish_sync(self, job: object) -> None:
        self.calls.append("sync")
        raise ReadOnlyStore("syncing uid 13: read-only")


def test_store_errors_from_append_and_sync_are_counted(tmp_path: Path) -> None:
    """Each StoreError out of append or sync counts once and still reaches the caller."""
    store = FailingStore(str(tmp_path / "log"))
    counters = DaemonCounters()
    count_store_errors(store, counters)
    store.append(1, [b"x\n"], 1)
    with pytest.raises(DiskFull):
        store.append(13, [b"x\n"], 1)
    with pytest.raises(ReadOnlyStore):
        store.sync()
    assert store.calls == ["append", "append", "sync"]
    assert counters.store_errors == 2


def test_reload_outcomes_are_counted_apart() -> None:
    """Successful and refused reloads are counted apart; the last success is timed."""
    counters = DaemonCounters()
    counters.note_reload(ok=False)
    assert (counters.reloads, counters.reload_failures, counters.last_reload) == (0, 1, None)
    counters.note_reload(ok=True)
    assert (counters.reloads, counters.reload_failures) == (1, 1)
    assert counters.last_reload is not None
