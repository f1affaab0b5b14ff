"""Query memory and steps: the byte budget, batches cut by bytes, time-bounded steps."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import trio.testing

from tests.query._store import T0, Rec, write_uid
from trio_logd.config import default_config
from trio_logd.query.budget import RECORD_OVERHEAD, ByteBudget, LineBatch
from trio_logd.query.filters import LineFilter, QuerySpec
from trio_logd.query.scanner import query_scanner
from trio_logd.query.steps import encode_records, pause_after, run_step, split_sent
from trio_logd.record import seq_key
from trio_logd.server._query import QueryService


def test_budget_takes_what_fits_and_gives_back() -> None:
    """try_take refuses past the total; release makes room; take may run over."""
    b = ByteBudget(100)
    assert b.try_take(60)
    assert not b.try_take(41)
    assert b.try_take(40)
    b.release(60)
    assert (b.used, b.try_take(61), b.try_take(60)) == (40, False, True)
    b.take(50)  # a batch one line over its share
    assert b.used == 150
    b.release(150)
    assert b.used == 0
    with pytest.raises(ValueError, match="more than were taken"):
        b.release(1)
    assert b.used == 0


def test_budget_total_changes_for_new_takes_only() -> None:
    """A smaller total (reload) keeps what is held and refuses new takes until it fits."""
    b = ByteBudget(100)
    assert b.try_take(80)
    b.total = 50
    assert not b.try_take(1)
    b.release(80)
    assert b.try_take(50)


def test_line_batch_cuts_by_encoded_bytes() -> None:
    """A batch is at most max_bytes encoded, in order, and at least one line."""
    batch = LineBatch()
    lines = [b"x" * n for n in (10, 20, 30, 40, 500, 5)]
    batch.add(lines)
    assert batch.nbytes == sum(len(ln) + RECORD_OVERHEAD for ln in lines)
    first = batch.cut(30 + 2 * RECORD_OVERHEAD)
    assert first == lines[:2]
    assert len(encode_records(first)) == 30 + 2 * RECORD_OVERHEAD
    assert batch.cut(1) == [lines[2]]  # one line over the budget goes alone
    assert batch.cut(1000) == lines[3:]
    assert (len(batch), batch.nbytes, batch.cut(1000)) == (0, 0, [])


@pytest.mark.parametrize("max_bytes", [1, 64, 200, 1000, 10_000])
def test_line_batch_cut_in_any_budget_gives_every_line_once(max_bytes: int) -> None:
    """Cutting until empty returns every line once, in order, each batch within budget."""
    batch = LineBatch()
    lines = [b"%d" % i * (i % 17 + 1) for i in range(300)]
    batch.add(lines[:150])
    out: list[bytes] = []
    out += batch.cut(max_bytes)
    batch.add(lines[150:])
    while batch:
        cut = batch.cut(max_bytes)
        assert len(cut) == 1 or len(encode_records(cut)) <= max_bytes
        out += cut
    assert out == lines


class _Clock:
    """A clock that advances by *tick* seconds at every reading."""

    def __init__(self, tick: float) -> None:
        self.now, self.tick = 0.0, tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now


def _batches(n: int, size: int) -> Iterator[list[bytes]]:
    for i in range(n):
        yield [b"%08d" % i + b"y" * size]


def test_step_ends_at_its_deadline() -> None:
    """A step pulls batches until its time is up, then returns what it found."""
    batches = _batches(100, 10)
    found = LineBatch()
    filt = LineFilter(QuerySpec())
    # every batch costs one tick of 10 ms; a 50 ms step takes five
    result = run_step(batches, found, filt, seconds=0.05, max_bytes=1 << 20, clock=_Clock(0.01))
    assert (result.lines, result.done, result.last_seq) == (5, False, 0)
    assert result.took == pytest.approx(0.06)


def test_step_is_cut_by_bytes_and_keeps_the_rest() -> None:
    """A step stops once it has max_bytes; what did not fit waits for the next step."""
    batches = itertools.chain([[b"a" * 100, b"b" * 100, b"c" * 100]], _batches(3, 100))
    found = LineBatch()
    filt = LineFilter(QuerySpec())
    first = run_step(batches, found, filt, seconds=10, max_bytes=250, clock=_Clock(0.0))
    assert (first.data, first.done) == (encode_records([b"a" * 100]), False)
    assert len(found) == 2
    rest = []
    while True:
        r = run_step(batches, found, filt, seconds=10, max_bytes=250, clock=_Clock(0.0))
        rest.append(r.data)
        if r.done:
            break
    assert b"".join(rest) == encode_records(
        [b"b" * 100, b"c" * 100, *(ln for b in _batches(3, 100) for ln in b)]
    )


def test_step_of_a_cancelled_filter_stops(tmp_path: Path) -> None:
    """Once the filter is cancelled, a step returns without pulling more."""
    lines = write_uid(tmp_path, 1000, [Rec(T0 + i, f"m {i}") for i in range(50)])
    scanner = query_scanner(str(tmp_path), [1000], QuerySpec(grep="m"))
    found = LineBatch()
    batches = scanner.batches()
    first = run_step(batches, found, scanner.filter, seconds=10, max_bytes=1 << 20)
    assert (first.lines, first.done, first.last_seq) == (50, True, 50)
    assert first.data == encode_records(lines)
    scanner2 = query_scanner(str(tmp_path), [1000], QuerySpec(grep="m"))
    scanner2.filter.cancel()
    r = run_step(scanner2.batches(), LineBatch(), scanner2.filter, seconds=10, max_bytes=1)
    assert (r.lines, r.done) == (0, False)


def test_pause_after_an_overrun_is_the_overrun() -> None:
    """A step within twice query_step is not paced; past that the overrun is paid back."""
    assert pause_after(0.01, 0.02) == 0.0
    assert pause_after(0.04, 0.02) == 0.0
    assert pause_after(1.02, 0.02) == pytest.approx(1.0)


def test_resumed_scan_goes_on_after_the_last_line_sent(tmp_path: Path) -> None:
    """A scan let go half-way resumes after a seq, up to what it first covered."""
    lines = write_uid(tmp_path, 1000, [Rec(T0 + i, f"m {i}") for i in range(300)], per_file=70)
    scanner = query_scanner(str(tmp_path), [1000], QuerySpec(lines=250), tail_keep_bytes=0)
    batches = scanner.batches()
    first = next(b for b in batches if b)
    batches.close()
    # a record stored after the scan began is for followers, not for the resumed scan
    with open(tmp_path / "1000" / "current.jsonl", "ab") as f:
        f.write(lines[-1].replace(b'"seq":300', b'"seq":301') + b"\n")
    resumed = [ln for b in scanner.resume(seq_key(first[9])) for ln in b]
    assert first[:10] + resumed == lines[-250:]
    assert scanner.last_seqs() == {1000: 300}


def test_split_sent_finds_the_line_being_sent() -> None:
    """After any number of bytes sent: the rest of that line, the lines done, the last seq."""
    stored = [
        b'{"ts":"2026-11-27T20:47:40.123456Z","seq":%d,"msg":"%s"}' % (i, b"m" * i)
        for i in (7, 8, 9)
    ]
    data = encode_records(stored)
    ends = [i + 1 for i, c in enumerate(data) if c == 0x0A]
    assert split_sent(data, 0) == (b"", 0, 0)
    for went in range(1, len(data) + 1):
        rest, lines, seq = split_sent(data, went)
        k = next(i for i, e in enumerate(ends) if e >= went)
        assert rest == data[went : ends[k]]
        assert (lines, seq) == (k + 1, 7 + k)


def test_resumed_tail_starts_no_earlier_than_the_tail(tmp_path: Path) -> None:
    """A tail let go before anything was sent resumes at its start, not at the first record."""
    lines = write_uid(tmp_path, 1000, [Rec(T0 + i, f"m {i}") for i in range(300)], per_file=70)
    scanner = query_scanner(str(tmp_path), [1000], QuerySpec(lines=20), tail_keep_bytes=0)
    batches = scanner.batches()
    assert next(b for b in batches if b) == lines[-20:]  # found by seq, streamed
    batches.close()
    assert [ln for b in scanner.resume(0) for ln in b] == lines[-20:]
    assert [ln for b in scanner.resume(295) for ln in b] == lines[-5:]


async def test_queries_wait_for_the_daemon_wide_budget(tmp_path: Path) -> None:
    """A query's share waits until others give theirs back; nobody holds more than the total."""
    config = default_config()
    service = QueryService(lambda: config, str(tmp_path))
    total = config.control.query_memory_bytes
    share = total // 2
    order: list[str] = []

    async def hold(name: str, release: trio.Event) -> None:
        async with service._share(share):
            order.append(name)
            assert service.budget.used <= total
            await release.wait()

    events = [trio.Event() for _ in range(3)]
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            for i, ev in enumerate(events):
                nursery.start_soon(hold, f"q{i}", ev)
                await trio.testing.wait_all_tasks_blocked()
            assert order == ["q0", "q1"]
            events[0].set()
            await trio.testing.wait_all_tasks_blocked()
            assert order == ["q0", "q1", "q2"]
            events[1].set()
            events[2].set()
    assert service.budget.used == 0


async def test_one_step_per_uid_at_a_time(tmp_path: Path) -> None:
    """Two steps of one uid run one after the other; another uid's step does not wait."""
    config = default_config()
    service = QueryService(lambda: config, str(tmp_path))
    inside: list[int] = []
    gate = trio.Event()

    async def step(uid: int) -> None:
        async with service._turn(uid):
            inside.append(uid)
            await gate.wait()
            inside.remove(uid)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(step, 1000)
            nursery.start_soon(step, 1000)
            nursery.start_soon(step, 1001)
            await trio.testing.wait_all_tasks_blocked()
            assert sorted(inside) == [1000, 1001]
            gate.set()
    assert inside == []
    assert len(service._steps) == 0
