"""The writer's appends: in the event loop while quick, in a thread once the disk is slow."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import trio

from tests.store._lines import batch, lines
from trio_logd.limits import SuppressionTracker
from trio_logd.server._pipeline import Pipeline
from trio_logd.server._writer_task import (
    INLINE_ROUND_LIMIT,
    SLOW_ROUNDS,
    STALL_LIMIT,
    _Writer,
)
from trio_logd.store.files import read_uid_records
from trio_logd.store.runs import Run
from trio_logd.store.writer import StoreWriter


class ThreadNotingStore(StoreWriter):
    """A real store that notes which thread each append ran in, and can be slow.

    Its slowness is on its own clock (:meth:`timer`, given to the writer as
    its round timer): an append with ``delay`` set advances that clock by
    ``delay`` and the others by nothing, so a loaded machine's preemptions
    cannot make a quick round look slow.
    """

    def __init__(self, log_dir: str, **kw: object) -> None:
        super().__init__(log_dir, **kw)  # type: ignore[arg-type]
        self.threads: list[bool] = []  # True: the event loop's (main) thread
        self.delay = 0.0
        self.clock = 0.0

    def timer(self) -> float:
        return self.clock

    def append(
        self, uid: int, lines: Sequence[bytes], last_seq: int, runs: Sequence[Run] | None = None
    ) -> None:
        self.threads.append(threading.current_thread() is threading.main_thread())
        self.clock += self.delay  # a disk that pushes back
        super().append(uid, lines, last_seq, runs)


async def test_quick_appends_stay_in_the_loop_slow_ones_move_to_a_thread(
    tmp_path: Path,
) -> None:
    """Rounds run inline; one slower than INLINE_ROUND_LIMIT is no sign (preempted, say),
    SLOW_ROUNDS of them within SLOW_WINDOW send the next ones to a thread for
    THREAD_PERIOD, then inline again; so does one round slower than STALL_LIMIT.
    fsync=always always uses the thread."""
    store = ThreadNotingStore(str(tmp_path), fsync="never")
    store.open()
    p = Pipeline(store.last_seq)
    writer = _Writer(p, store, SuppressionTracker(), None, None, timer=store.timer)
    seq = 0

    async def one_round(delay: float = 0.0) -> None:
        nonlocal seq
        seq += 1
        store.delay = delay
        st = p.state(5)
        st.next_seqs(1)
        p.submit(st, batch(lines(seq, seq), seq))
        await writer.run_round()

    slow = INLINE_ROUND_LIMIT * 2
    await one_round()
    await one_round(slow)  # inline, slow: once is no sign
    await one_round()
    assert store.threads == [True, True, True]
    for _ in range(SLOW_ROUNDS - 1):
        await one_round(slow)  # SLOW_ROUNDS slow ones within SLOW_WINDOW
    await one_round()  # now in a thread
    assert store.threads[-2:] == [True, False]
    writer._thread_until = trio.current_time() - 1  # as THREAD_PERIOD later
    await one_round()
    assert store.threads[-1] is True
    await one_round(STALL_LIMIT * 1.2)  # one stall is enough
    await one_round()
    assert store.threads[-2:] == [True, False]
    store.close()
    assert [r for r in read_uid_records(tmp_path, 5)] == [
        ln[:-1] for s in range(1, seq + 1) for ln in lines(s, s)
    ]

    always = ThreadNotingStore(str(tmp_path / "always"), fsync="always")
    always.open()
    p = Pipeline(always.last_seq)
    writer = _Writer(p, always, SuppressionTracker(), None, None, timer=always.timer)
    st = p.state(5)
    st.next_seqs(1)
    p.submit(st, batch(lines(1, 1), 1))
    await writer.run_round()
    assert always.threads == [False]
    always.close()
