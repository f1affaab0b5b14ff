"""The writer task: per-uid cool-down on a failing disk, no self-reporting loop, rotated records."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import orjson
import trio
import trio.testing

from tests.store._lines import batch, line, lines
from trio_logd.config import default_config
from trio_logd.errors import DiskFull
from trio_logd.limits import SuppressionTracker
from trio_logd.peer import PeerCred
from trio_logd.record import Stamp, daemon_record_line
from trio_logd.server._ingest import IngestContext
from trio_logd.server._limits import Limiter
from trio_logd.server._pipeline import Pipeline
from trio_logd.server._suppress import DropReports
from trio_logd.server._writer_task import COOLDOWN_MAX, COOLDOWN_MIN, _Writer
from trio_logd.store.dropstate import read_drop_file
from trio_logd.store.files import read_uid_records
from trio_logd.store.runs import Run
from trio_logd.store.writer import StoreWriter


class FlakyStore(StoreWriter):
    """A real store whose appends for the uids in ``full`` fail as on a full disk.

    While any uid is ``full`` the file system reports no room (as a full one
    does), unless ``room`` says otherwise.
    """

    def __init__(self, log_dir: str, **kw: object) -> None:
        super().__init__(log_dir, **kw)  # type: ignore[arg-type]
        self.full: set[int] = set()
        self.attempts: dict[int, int] = {}
        self.room: int | None = None

    def writable_bytes(self) -> int:
        if self.room is not None:
            return self.room
        return 0 if self.full else super().writable_bytes()

    def append(
        self, uid: int, lines: Sequence[bytes], last_seq: int, runs: Sequence[Run] | None = None
    ) -> None:
        self.attempts[uid] = self.attempts.get(uid, 0) + 1
        if uid in self.full:
            err = DiskFull(f"writing uid {uid}: no space left on the log file system")
            err.written = 0  # type: ignore[attr-defined]
            raise err
        super().append(uid, lines, last_seq, runs)


def submit(p: Pipeline, uid: int, items: list[bytes]) -> None:
    st = p.state(uid)
    st.next_seqs(len(items))  # as ingest does; the test lines carry the same seqs
    p.submit(st, batch(items, st.last_seq))


def ingest(p: Pipeline, tracker: SuppressionTracker | None = None) -> IngestContext:
    """An ingest context on *p*, with limits on the embedded defaults."""
    tracker = tracker or SuppressionTracker()
    limiter = Limiter(default_config(), tracker, lambda uid: 0)
    return IngestContext(p, 65536, PeerCred(os.getpid(), 0, 0), tracker, limiter=limiter)


def report(reports: DropReports, uid: int, rate_drops: int) -> None:
    """Count *rate_drops* of *uid* and file their `suppressed` record at once."""
    reports.tracker.note_drop(uid, "rate", rate_drops, trio.current_time())
    reports.file(reports.tracker.flush(), trio.current_time())


def full_disk(tmp_path: Path) -> tuple[FlakyStore, SuppressionTracker, Pipeline, _Writer]:
    """A store on which uid 5's writes fail, and the writer task's round logic (driven
    one round at a time)."""
    store = FlakyStore(str(tmp_path))
    store.open()
    store.full.add(5)
    tracker = SuppressionTracker()
    p = Pipeline(store.last_seq)
    return store, tracker, p, _Writer(p, store, tracker, None, None)


async def test_a_failing_uid_cools_down_while_others_write(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A full disk for one uid: its records are counted (disk), retried only after a cool-down."""
    store, tracker, p, w = full_disk(tmp_path)
    submit(p, 5, lines(1, 3))
    await w.run_round()
    submit(p, 5, lines(4, 5))  # within the cool-down: not even tried
    submit(p, 7, lines(1, 2))  # another uid writes on
    await w.run_round()
    assert (store.attempts, tracker.pending(5, "disk")) == ({5: 1, 7: 1}, 5)
    await trio.sleep(COOLDOWN_MIN)
    store.full.clear()
    submit(p, 5, lines(6, 6))
    await w.run_round()
    assert (store.attempts[5], w.failing) == (2, {})
    store.close()
    assert [orjson.loads(x)["seq"] for x in read_uid_records(tmp_path, 5)] == [6]
    assert [orjson.loads(x)["seq"] for x in read_uid_records(tmp_path, 7)] == [1, 2]
    assert dict(tracker.dropped(5)) == {"disk": 5}


async def test_a_record_sent_once_room_is_back_is_written_within_the_cool_down(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Space back during a cool-down (fstatvfs says so): the next record is written at once."""
    store, tracker, p, w = full_disk(tmp_path)

    async def one_round(first: int, last: int) -> tuple[int, int]:
        submit(p, 5, lines(first, last))
        await w.run_round()
        return store.attempts[5], tracker.pending(5, "disk")

    assert await one_round(1, 3) == (1, 3)
    store.room = 1 << 20  # room reported: tried at once, but the write fails again...
    assert await one_round(4, 4) == (2, 4)
    # ...the very room it failed with: not tried again before the cool-down ends
    assert await one_round(5, 5) == (2, 5)
    store.full.clear()  # space is really back
    store.room = (1 << 20) + 4096
    assert await one_round(6, 6) == (3, 5)
    assert w.failing == {}
    store.close()
    assert [orjson.loads(x)["seq"] for x in read_uid_records(tmp_path, 5)] == [6]


async def test_cool_down_doubles_up_to_its_maximum(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Each failed retry doubles the cool-down, up to COOLDOWN_MAX."""
    store, _, p, w = full_disk(tmp_path)
    delays = []
    for seq in range(1, 7):
        submit(p, 5, lines(seq, seq))
        await w.run_round()
        cd = w.failing[5]
        delays.append(cd.delay)
        await trio.sleep_until(cd.retry_at)
    store.close()
    assert delays == [COOLDOWN_MIN, 0.5, 1.0, COOLDOWN_MAX, COOLDOWN_MAX, COOLDOWN_MAX]
    assert store.attempts == {5: 6}


async def test_an_unwritable_suppressed_record_gives_back_its_count_and_its_seq(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A `suppressed` record meeting the full disk: not a drop, count back, its seq unused."""
    store, tracker, p, w = full_disk(tmp_path)
    reports = DropReports(ingest(p, tracker))
    submit(p, 5, lines(1, 2))
    report(reports, 5, 40)  # seq 3, behind the two records
    assert p.state(5).last_seq == 3
    await w.run_round()
    assert (tracker.pending(5, "disk"), tracker.pending(5, "rate")) == (2, 40)
    assert dict(tracker.dropped(5)) == {"disk": 2, "rate": 40}
    assert p.state(5).last_seq == 2  # nothing numbered after it: seq 3 is given back
    assert reports.unreported() == {5: {"disk": 2, "rate": 40}}
    # while uid 5 is failing its reports are held back: no seq spent on them
    reports.file(tracker.due(trio.current_time()), trio.current_time())
    assert (p.state(5).last_seq, p.state(5).pending_bytes) == (2, 0)
    assert reports.unreported() == {5: {"disk": 2, "rate": 40}}
    store.close()


async def test_a_lost_suppressed_record_that_cannot_give_back_its_seq_is_counted(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A failed `suppressed` record with records numbered after it: its seq counts as a drop."""
    store, tracker, p, w = full_disk(tmp_path)
    reports = DropReports(ingest(p, tracker))
    report(reports, 5, 7)  # seq 1
    submit(p, 5, lines(2, 3))
    await w.run_round()
    assert (tracker.pending(5, "disk"), tracker.pending(5, "rate")) == (3, 7)
    assert p.state(5).last_seq == 3  # gap 1..3 == 3 counted for disk
    store.close()


async def test_rotations_are_followed_by_a_rotated_record(tmp_path: Path) -> None:
    """After a round that rotated, a `rotated` record is filed with the uid and lands next."""
    store = StoreWriter(str(tmp_path), max_file_bytes=5 * len(lines(1, 1)[0]))
    store.open()
    p = Pipeline(store.last_seq)
    filed: list[tuple[int, str, dict[str, object]]] = []
    me = PeerCred(os.getpid(), 0, 0)

    def file_record(uid: int, event: str, **extra: object) -> None:
        filed.append((uid, event, extra))
        st = p.state(uid)
        seq = st.next_seqs(1)
        line = daemon_record_line(1.0, seq, Stamp(PeerCred(me.pid, uid, 0)), event, **extra)
        p.submit(st, batch([line], seq, event=event))

    w = _Writer(p, store, SuppressionTracker(), file_record, None)
    submit(p, 5, lines(1, 6))
    await w.run_round()  # rotates after seq 5, then files the rotated record
    await w.run_round()  # writes it
    store.close()
    (uid, event, extra), *_later = filed  # the record itself may rotate the small file again
    assert (uid, event, extra["first_seq"], extra["last_seq"], extra["reason"]) == (
        5, "rotated", 1, 5, "size",
    )  # fmt: skip
    assert extra["records"] == 5
    assert len(str(extra["hash"])) == 64  # the sealed file's chain hash (SHA-256, hex)
    recs = [orjson.loads(x) for x in read_uid_records(tmp_path, 5)]
    assert [(r["seq"], r.get("event")) for r in recs] == [
        (1, None), (2, None), (3, None), (4, None), (5, None), (6, None), (7, "rotated"),
    ]  # fmt: skip


async def test_fsync_batch_acknowledges_only_after_a_sync(tmp_path: Path) -> None:
    """fsync = batch: a written batch is acknowledged by the sync after it, not by the write."""
    for policy, acked_after_write in (("batch", []), ("never", [2])):
        store = StoreWriter(str(tmp_path / policy), fsync=policy)
        store.open()
        p = Pipeline(store.last_seq)
        w = _Writer(p, store, SuppressionTracker(), None, None)
        acks: list[int] = []
        st = p.state(5)
        st.next_seqs(2)
        items = lines(1, 2)
        p.submit(st, batch(items, 2, on_stored=acks.append))
        await w.run_round()
        assert (policy, acks, st.stored) == (policy, acked_after_write, 2)
        await w.sync_now()
        assert acks == [2]
        store.close()


async def test_a_uid_whose_mark_was_unknown_is_numbered_past_it_before_any_write(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Unreadable at start, readable later: queued records move past the mark; gap == drops."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    log_dir = tmp_path / "log"
    log_dir.mkdir(mode=0o700)
    (log_dir / "5").symlink_to(elsewhere)  # refused at start: no mark for uid 5
    store = StoreWriter(str(log_dir))
    store.open()
    tracker = SuppressionTracker()
    p = Pipeline(store.last_seq)
    w = _Writer(p, store, tracker, None, None)
    assert (store.last_seq(5), p.state(5).provisional) == (None, True)
    submit(p, 5, lines(1, 3))
    await w.run_round()  # still unreadable: dropped, counted
    assert (tracker.pending(5, "disk"), p.state(5).failing) == (3, True)
    (log_dir / "5").unlink()  # the operator puts the real directory back: seq 1..10
    old = StoreWriter(str(tmp_path / "old"))
    old.open()
    old.append(5, lines(1, 10), 10)
    old.close()
    os.rename(tmp_path / "old" / "5", log_dir / "5")
    await trio.sleep(COOLDOWN_MIN)
    submit(p, 5, lines(4, 5))
    await w.run_round()  # the mark is read; nothing written yet, numbered 14, 15
    assert (p.state(5).last_seq, p.state(5).provisional, p.state(5).failing) == (15, False, False)
    await w.run_round()
    submit(p, 5, [line(16)])
    await w.run_round()
    store.close()
    seqs = [orjson.loads(x)["seq"] for x in read_uid_records(log_dir, 5)]
    assert seqs == [*range(1, 11), 14, 15, 16]  # 11..13: the 3 counted drops
    assert dict(tracker.dropped(5)) == {"disk": 3}


async def test_a_provisional_uid_without_records_keeps_its_numbering(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Unreadable at start, found empty later: numbering from 1 stands, nothing renumbered."""
    log_dir = tmp_path / "log"
    log_dir.mkdir(mode=0o700)
    (log_dir / "5").symlink_to(tmp_path)
    store = StoreWriter(str(log_dir))
    store.open()
    p = Pipeline(store.last_seq)
    w = _Writer(p, store, SuppressionTracker(), None, None)
    (log_dir / "5").unlink()
    submit(p, 5, lines(1, 2))
    await w.run_round()
    assert p.state(5).provisional is False
    submit(p, 5, lines(3, 3))
    await w.run_round()
    store.close()
    assert [orjson.loads(x)["seq"] for x in read_uid_records(log_dir, 5)] == [1, 2, 3]


async def test_unreported_counts_are_saved_for_disk_drops_and_all_at_shutdown(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Each tick saves the uids with disk drops; the final save all; the next start reads them."""
    store = StoreWriter(str(tmp_path))
    store.open()
    p = Pipeline(store.last_seq)
    for uid in (5, 6):
        submit(p, uid, lines(1, 2))
    await _Writer(p, store, SuppressionTracker(), None, None).run_round()
    reports = DropReports(ingest(p), store)
    now = trio.current_time()
    reports.tracker.note_drop(5, "rate", 3, now)
    reports.tracker.note_drop(6, "disk", 4, now)
    p.state(6).next_seqs(4)  # the 4 records dropped had seq 3..6

    def on_disk() -> dict[int, dict[str, int]]:
        d = os.open(tmp_path / ".drops", os.O_RDONLY | os.O_DIRECTORY)
        try:
            counts = {uid: read_drop_file(d, str(uid), what="")[1] for uid in (5, 6)}
        finally:
            os.close(d)
        return {uid: c for uid, c in counts.items() if c}

    await reports.save()
    assert on_disk() == {6: {"disk": 4}}
    await reports.save(final=True)
    store.close()
    assert on_disk() == {5: {"rate": 3}, 6: {"disk": 4}}
    restarted = StoreWriter(str(tmp_path))
    restarted.open()
    left = restarted.load_drops()
    assert (restarted.last_seq(5), restarted.last_seq(6)) == (2, 6)
    q = Pipeline(restarted.last_seq)
    again = DropReports(ingest(q), restarted)
    assert again.restore(left, trio.current_time()) == 7
    assert again.unreported() == {5: {"rate": 3}, 6: {"disk": 4}}
    restarted.close()


async def test_unreported_unit_drops_keep_their_unit_across_a_restart(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Counts of a unit's drops, saved at shutdown, come back naming the unit: in the
    report filed after the restart and in the unit's stats."""
    store = StoreWriter(str(tmp_path))
    store.open()
    p = Pipeline(store.last_seq)
    submit(p, 5, lines(1, 2))
    await _Writer(p, store, SuppressionTracker(), None, None).run_round()
    reports = DropReports(ingest(p), store)
    now = trio.current_time()
    reports.tracker.note_drop(5, "rate", 3, now, "web.service")
    reports.tracker.note_drop(5, "rate", 2, now)
    reports.tracker.note_drop(5, "disk", 4, now)
    await reports.save(final=True)
    store.close()

    restarted = StoreWriter(str(tmp_path))
    restarted.open()
    left = restarted.load_drops()
    assert left == {5: ({"rate": 5, "disk": 4}, {"web.service": {"rate": 3}})}
    q = Pipeline(restarted.last_seq)
    ctx = ingest(q)
    again = DropReports(ctx, restarted)
    assert again.restore(left, trio.current_time()) == 9
    assert again.unreported() == {5: {"rate": 5, "disk": 4}}
    assert again.unreported_units() == {5: {"web.service": {"rate": 3}}}
    (web,) = ctx.limiter.units.snapshot()
    assert (web["unit"], web["dropped"]["rate"]) == ("web.service", 3)
    again.file(again.tracker.flush(), trio.current_time())
    filed = [orjson.loads(x) for b in q.state(5).pending for x in b.lines]
    assert sorted((r["reason"], r["count"], r.get("unit")) for r in filed) == [
        ("disk", 4, None), ("rate", 2, None), ("rate", 3, "web.service"),
    ]  # fmt: skip
    restarted.close()
