"""The per-uid queues: seq order, round-robin fairness, per-uid backpressure."""

from __future__ import annotations

import trio
import trio.testing

from trio_logd.server._pipeline import Batch, Pipeline


def batch(uid_tag: str, n: int, size: int, last_seq: int) -> Batch:
    return Batch([f"{uid_tag}{i}".encode() for i in range(n)], size, last_seq, b"")


def test_seq_continues_from_the_store() -> None:
    """A uid's numbering starts after the last seq the store recovered."""
    p = Pipeline(lambda uid: {5: 41}.get(uid, 0))
    assert p.state(5).next_seqs(3) == 42
    assert p.state(5).last_seq == 44
    assert p.state(6).next_seqs(1) == 1


def test_round_robin_takes_a_share_of_each_uid() -> None:
    """A flooder's backlog is taken one share per round; a quiet uid goes out in the first round."""
    p = Pipeline(lambda uid: 0, round_bytes=100)
    flood, quiet = p.state(1), p.state(2)
    for i in range(10):
        p.submit(flood, batch("f", 1, 60, i + 1))
    p.submit(quiet, batch("q", 1, 10, 1))
    first = p.take_round()
    assert [(st.uid, len(bs)) for st, bs in first] == [(1, 2), (2, 1)]
    second = p.take_round()
    assert [(st.uid, len(bs)) for st, bs in second] == [(1, 2)]
    assert flood.pending_bytes == 6 * 60


async def test_wait_for_room_blocks_only_the_full_uid() -> None:
    """A uid over its queue limit waits until the writer takes from it; others never wait."""
    p = Pipeline(lambda uid: 0)
    full, other = p.state(1), p.state(2)
    p.submit(full, batch("f", 1, 2000, 1))
    woke = trio.Event()

    async def waiter() -> None:
        await full.wait_for_room(limit=1000)
        woke.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        assert not woke.is_set()
        with trio.fail_after(1):
            await other.wait_for_room(limit=1000)  # returns at once
        p.take_round()
        with trio.fail_after(1):
            await woke.wait()


async def test_writer_wakes_and_stops_when_closed() -> None:
    """wait_for_work returns True when work is queued and False once closed and drained."""
    p = Pipeline(lambda uid: 0)
    with trio.fail_after(1):
        async with trio.open_nursery() as nursery:
            results: list[bool] = []

            async def writer() -> None:
                while await p.wait_for_work():
                    results.append(True)
                    p.take_round()
                results.append(False)

            nursery.start_soon(writer)
            await trio.testing.wait_all_tasks_blocked()
            p.submit(p.state(1), batch("a", 1, 1, 1))
            await trio.testing.wait_all_tasks_blocked()
            p.close()
    assert results == [True, False]
