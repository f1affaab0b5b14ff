"""The housekeeper: compresses rotated files, applies retention, rotates by age."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import trio
import trio.testing

from tests.store._lines import batch, line, lines, names
from trio_logd.server._housekeeping import COMPRESS_DEFER_MAX, COMPRESS_YIELD, Housekeeper
from trio_logd.server._pipeline import Pipeline
from trio_logd.store.retention import RetentionPolicy
from trio_logd.store.writer import StoreWriter

LINE = len(line(1))
OFF = RetentionPolicy(max_age=0, max_bytes=1 << 60, keep_free_bytes=0)


async def test_a_pass_compresses_and_deletes_over_quota(tmp_path: Path) -> None:
    """One pass: the uid over quota loses its oldest files, the rest get compressed."""
    store = StoreWriter(str(tmp_path), max_file_bytes=10 * LINE, compress="zstd")
    store.open()
    store.append(5, lines(1, 45), 45)  # four rotated files of 10 lines, 5 in current
    (uid5,) = store.snapshot()
    # two files (with their chains) over, and room for the two deletion marks retention writes
    quota = store.usage(5) - sum(f.size for f in uid5.files[:2]) + 1000
    hk = Housekeeper(store, OFF, lambda uid: (quota, "rotate"), Pipeline(store.last_seq), None)
    await hk.run_once()
    d = tmp_path / "5"
    assert [n[:33] for n in names(d)] == [  # 45 lines - 20 = 25: within the quota
        "0000000000000021-0000000000000030",
        "0000000000000031-0000000000000040",
        "current.jsonl",
    ]
    assert [n.endswith(".jsonl.zst") for n in names(d)] == [True, True, False]
    assert store.usage(5) == sum(p.stat().st_size for p in d.iterdir())
    store.close()


async def test_a_pass_rotates_by_age_and_files_the_rotated_record(tmp_path: Path) -> None:
    """A current file max_file_age old is rotated by the pass; its `rotated` record is filed."""
    store = StoreWriter(str(tmp_path), max_file_age=60)
    store.open()
    store.append(5, [line(1, time.time() - 61)], 1)
    filed: list[tuple[int, str, object]] = []
    hk = Housekeeper(
        store,
        OFF,
        lambda uid: (1 << 60, "rotate"),
        Pipeline(store.last_seq),
        lambda uid, event, **kw: filed.append((uid, event, kw["reason"])),
    )
    await hk.run_once()
    assert filed == [(5, "rotated", "age")]
    store.close()


async def test_drop_policy_files_are_kept_over_quota(tmp_path: Path) -> None:
    """on_quota = drop: the housekeeper deletes none of the uid's files."""
    store = StoreWriter(str(tmp_path), max_file_bytes=10 * LINE)
    store.open()
    store.append(5, lines(1, 45), 45)
    before = names(tmp_path / "5")
    hk = Housekeeper(store, OFF, lambda uid: (LINE, "drop"), Pipeline(store.last_seq), None)
    await hk.run_once()
    assert names(tmp_path / "5") == before
    store.close()


async def test_shutdown_waits_for_the_compression_in_progress(tmp_path: Path) -> None:
    """Cancelling the housekeeper mid-pass leaves no .tmp behind: the file in hand is finished."""
    store = StoreWriter(str(tmp_path), max_file_bytes=10 * LINE, compress="gzip")
    store.open()
    store.append(5, lines(1, 45), 45)
    hk = Housekeeper(store, OFF, lambda uid: (1 << 60, "rotate"), Pipeline(store.last_seq), None)
    async with trio.open_nursery() as nursery:
        await nursery.start(hk.serve)
        nursery.cancel_scope.cancel()
    assert not [n for n in names(tmp_path / "5") if n.endswith(".tmp")]
    store.close()


def _young_store(tmp_path: Path, age: float = 0.0) -> StoreWriter:
    """uid 5 with four rotated files of 10 lines whose last record is *age* seconds old."""
    store = StoreWriter(str(tmp_path), max_file_bytes=10 * LINE, compress="zstd")
    store.open()
    store.append(5, lines(1, 45, ts=time.time() - age), 45)
    return store


def _saturated(store: StoreWriter) -> Pipeline:
    """A pipeline with a full round of records waiting for the writer."""
    pipeline = Pipeline(store.last_seq, round_bytes=2 * LINE)
    pipeline.submit(pipeline.state(6), batch(lines(1, 2), 2))
    return pipeline


async def test_compression_yields_while_a_full_round_waits(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """While a full round waits for the writer, young files wait for compression; the pass
    still ends after its interval (retention is not held up). Once the round is taken,
    the next pass compresses them all."""
    store = _young_store(tmp_path)
    pipeline = _saturated(store)
    hk = Housekeeper(store, OFF, lambda uid: (1 << 60, "rotate"), pipeline, None, interval=1.0)
    start = trio.current_time()
    await hk.run_once()
    assert trio.current_time() - start >= 1.0
    assert store.compress_pending() == 4
    assert [n.endswith(".jsonl") for n in names(tmp_path / "5")] == [True] * 5
    pipeline.take_round()
    await hk.run_once()
    assert store.compress_pending() == 0
    assert [n.endswith(".jsonl.zst") for n in names(tmp_path / "5")] == [True] * 4 + [False]
    store.close()


@pytest.mark.parametrize("why", ["old files", "over quota"])
async def test_compression_does_not_yield_to_old_files_or_retention(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, why: str
) -> None:
    """Files older than COMPRESS_DEFER_MAX, or a uid over its quota, are compressed at once,
    a full round waiting or not."""
    store = _young_store(tmp_path, age=COMPRESS_DEFER_MAX + 1 if why == "old files" else 0)
    quota = 1 << 60 if why == "old files" else store.usage(5) - 1
    hk = Housekeeper(store, OFF, lambda uid: (quota, "rotate"), _saturated(store), None)
    start = trio.current_time()
    await hk.run_once()
    assert trio.current_time() - start < COMPRESS_YIELD
    assert store.compress_pending() == 0
    store.close()


async def test_a_pass_as_long_as_the_interval_still_compresses(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Retention that takes the whole interval (here: an interval of 0) does not starve
    compression: each pass still compresses for MIN_GAP, so the backlog drains."""
    store = _young_store(tmp_path, age=COMPRESS_DEFER_MAX + 1)
    hk = Housekeeper(store, OFF, lambda uid: (1 << 60, "rotate"), Pipeline(store.last_seq), None,
                     interval=0.0)  # fmt: skip
    for _ in range(4):
        await hk.run_once()
    assert store.compress_pending() == 0
    store.close()
