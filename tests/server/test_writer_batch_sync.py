"""The writer task with fsync = "batch": appends from the event loop, syncs overlapped."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
import trio
import trio.testing

from trio_logd.limits import SuppressionTracker
from trio_logd.server._pipeline import Batch, Pipeline
from trio_logd.server._writer_task import serve_writer
from trio_logd.store.reader import read_uid_records
from trio_logd.store.writer import StoreWriter

TS = b"2026-11-27T20:47:40.123456Z"


def line(uid: int, seq: int) -> bytes:
    return b'{"ts":"%s","seq":%d,"uid":%d,"gid":5,"pid":1,"msg":"m"}\n' % (TS, seq, uid)


async def test_batches_are_acknowledged_only_after_a_sync_that_covers_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A line is in its file before its sync; on_stored(True) comes after an fdatasync that
    started after the append, even for batches appended while an earlier sync ran."""
    store = StoreWriter(str(tmp_path), fsync="batch")
    store.open()
    pipeline = Pipeline(store.last_seq)
    events: list[str] = []
    in_sync = threading.Event()
    release = threading.Event()
    real_fdatasync = os.fdatasync

    def slow_fdatasync(fd: int) -> None:
        events.append("sync-start")
        in_sync.set()
        release.wait(10)
        real_fdatasync(fd)
        events.append("sync-end")

    monkeypatch.setattr(os, "fdatasync", slow_fdatasync)

    three_acks = trio.Event()

    def submit(uid: int) -> None:
        st = pipeline.state(uid)
        seq = st.next_seqs(1)

        def ack(ok: bool) -> None:
            events.append(f"ack {uid}.{seq} {ok}")
            if sum(e.startswith("ack") for e in events) == 3:
                three_acks.set()

        pipeline.submit(st, Batch([line(uid, seq)], 60, seq, on_stored=ack))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_writer, pipeline, store, SuppressionTracker())
            submit(1)
            await trio.to_thread.run_sync(in_sync.wait)  # the first sync is running
            submit(1)
            submit(2)
            await trio.testing.wait_all_tasks_blocked()
            # appended while the first sync runs: in the files already, not acknowledged
            assert len(list(read_uid_records(tmp_path, 1))) == 2
            assert len(list(read_uid_records(tmp_path, 2))) == 1
            assert events == ["sync-start"]
            release.set()
            await three_acks.wait()
            pipeline.close()
    store.close()
    assert events[:3] == ["sync-start", "sync-end", "ack 1.1 True"]
    # the second sync covers both files, then both later batches are acknowledged
    assert events[3:] == ["sync-start", "sync-end", "sync-start", "sync-end", "ack 1.2 True",
                          "ack 2.1 True"]  # fmt: skip
