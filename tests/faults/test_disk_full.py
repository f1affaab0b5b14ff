"""A full disk, with a real daemon on a small tmpfs: seq never reused, loss counted exactly.

Every test asserts the same numbers: no acknowledged record lost, no seq
reused, the seq gaps exactly the records counted by ``suppressed`` records
(reason ``disk``), and ``logq --verify`` clean.
"""

from __future__ import annotations

import os

import orjson
import pytest

from tests._daemon import DaemonProcess, run_as
from tests._uids import free_uids
from tests.faults._store import (
    AckedSender,
    account,
    daemon_on,
    logq_messages,
    verify_problems,
    wait_reported,
)
from tests.faults.conftest import SmallFs
from tests.store._lines import lines
from trio_logd.store.writer import StoreWriter

ME = os.geteuid()  # the test's records are filed under its own uid (root: CI runs as root)


def test_a_start_on_a_full_disk_continues_seq_from_the_newest_rotated_file(
    small_fs: SmallFs,
) -> None:
    """Mark in the newest rotated file, current file empty, start on a full disk, space freed:
    acked records continue the seq, logq shows them, verify is clean."""
    d = daemon_on(small_fs)
    store = StoreWriter(str(d.log_dir))  # what a rotation leaves when its record meets ENOSPC
    store.open()
    store.append(ME, lines(1, 50), 50)
    assert store.rotate(ME, "size") is not None
    store.close()
    small_fs.fill()
    after = _start_full_then_free(small_fs, d, during=5, after=20, reported=6)
    acc = account(d, ME)
    assert acc.seqs[:50] == list(range(1, 51))
    assert acc.reused == 0
    assert after.stored() <= acc.msgs
    assert acc.gaps == acc.disk_reported == 6
    assert after.stored() <= logq_messages(d, ME)
    assert verify_problems(d) == []


def test_a_uid_unreadable_at_start_is_written_only_past_its_mark(small_fs: SmallFs) -> None:
    """A torn tail that a full disk keeps from being set aside: no mark, nothing written;
    space freed: the records queue past the mark, the gap is the counted loss."""
    d = daemon_on(small_fs)
    store = StoreWriter(str(d.log_dir))
    store.open()
    store.append(ME, lines(1, 40), 40)
    store.close()
    with open(d.log_dir / str(ME) / "current.jsonl", "ab") as f:
        f.write(b'{"ts":"2026-11-27T20:47:40.000000Z","seq":41,"ui')  # kill -9 mid-write
    small_fs.fill()
    after = _start_full_then_free(small_fs, d, during=3, after=5, reported=4)
    acc = account(d, ME)
    assert acc.seqs[:40] == list(range(1, 41))
    assert [r["seq"] for r in acc.records if r.get("msg", "").startswith("after-")] == [
        45, 46, 47, 48, 49,
    ]  # fmt: skip
    assert (acc.reused, acc.gaps, acc.disk_reported) == (0, 4, 4)
    assert after.stored() <= logq_messages(d, ME)
    assert verify_problems(d) == []


def test_a_restart_during_an_outage_reports_the_drops_of_the_run_before(
    small_fs: SmallFs,
) -> None:
    """Drops counted before a restart on a full disk are reported after it: count == gap."""
    d = daemon_on(small_fs)
    with d:
        s = AckedSender(d.socket)
        s.send([f"before-{i}" for i in range(30)])
        s.settle()
        small_fs.fill()
        s.exhaust()  # one probe dropped
        s.send([f"full-{i}" for i in range(10)])
        s.settle()
        s.close()
    assert len(s.lost()) == 10
    with d:  # still full: nothing of the first run's count may be lost with the restart
        small_fs.free()
        s = AckedSender(d.socket)
        s.send([f"after-{i}" for i in range(5)])
        s.settle()
        assert s.lost() == set()
        wait_reported(d, ME, 11)  # the probe and the 10, counted by the run before
        s.close()
    acc = account(d, ME)
    assert acc.reused == 0
    assert {f"before-{i}" for i in range(30)} | s.stored() <= acc.msgs
    started = sum(1 for r in acc.records if r.get("event") == "started")
    assert acc.gaps == acc.disk_reported == 11 + (2 - started)  # a `started` met the full disk?
    assert verify_problems(d) == []


def test_a_record_sent_right_after_space_returns_is_stored(small_fs: SmallFs) -> None:
    """A write failed a moment ago (cool-down): the record sent once space is back lands."""
    d = daemon_on(small_fs)
    with d:
        s = AckedSender(d.socket)
        s.send(["warm-up"])
        s.settle()
        small_fs.fill()
        s.exhaust()  # one probe dropped
        s.send(["lost-1", "lost-2"])
        s.settle()
        small_fs.free()
        s.send(["right-after"])
        s.settle()
        assert s.lost() == {"lost-1", "lost-2"}
        assert {"warm-up", "right-after"} <= s.stored()
        wait_reported(d, ME, 3)
        s.close()
    acc = account(d, ME)
    assert (acc.reused, acc.gaps, acc.disk_reported) == (0, 3, 3)
    assert verify_problems(d) == []


def test_acks_are_exact_for_a_batch_cut_short_by_the_full_disk(small_fs: SmallFs) -> None:
    """Part of one batch fits before ENOSPC: that part is acked and on disk, the rest dropped."""
    d = daemon_on(small_fs)
    with d:
        s = AckedSender(d.socket)
        s.send([f"w{i:03d}" + "x" * 100 for i in range(20)])  # current file: part of a page
        s.settle()
        small_fs.fill()
        s.send([f"b{i:03d}" + "y" * 100 for i in range(200)])  # one read, one batch
        s.settle()
        cut = {m for m in s.stored() if m.startswith("b")}
        assert 0 < len(cut) < 200, "the page cache page left no room to cut a batch"
        assert len(s.lost()) == 200 - len(cut)
        small_fs.free()
        wait_reported(d, ME, len(s.lost()))
        s.close()
    acc = account(d, ME)
    assert {m for m in acc.msgs if m.startswith("b")} == cut
    assert (acc.reused, acc.gaps) == (0, acc.disk_reported)
    assert not [n for n in os.listdir(d.log_dir / str(ME)) if n.endswith(".tmp")]
    assert verify_problems(d) == []


@pytest.mark.parametrize("restart", [False, True], ids=["", "restarted-during-the-outage"])
def test_a_uid_first_seen_during_an_outage_numbers_from_1_and_gets_its_chain(
    small_fs: SmallFs, restart: bool
) -> None:
    """A new uid's first records meet the full disk: seq 1, 2 are the counted drops (also
    across a restart: its count waits in a file made at start), its first record stored is
    seq 3, and its hash chain exists as soon as writing works."""
    (other,) = free_uids(1)
    d = daemon_on(small_fs)
    with d:
        s = AckedSender(d.socket)
        small_fs.fill()
        s.exhaust()
        assert _send_as(d, other, ["first", "second"]) == (set(), {"first", "second"})
        s.close()
        if restart:
            d.stop()
            d.start()
        small_fs.free()
        assert _send_as(d, other, ["third"]) == ({"third"}, set())
        wait_reported(d, other, 2)
    acc = account(d, other)
    assert [(r["seq"], r.get("msg")) for r in acc.records if "event" not in r] == [(3, "third")]
    assert (acc.reused, acc.seqs[0] - 1, acc.gaps, acc.disk_reported) == (0, 2, 0, 2)
    assert (d.log_dir / str(other) / "current.chain").exists()
    assert verify_problems(d) == []


def _start_full_then_free(
    fs: SmallFs, d: DaemonProcess, *, during: int, after: int, reported: int
) -> AckedSender:
    """Start *d* on the full *fs*; send *during* records (all dropped), free the space, send
    *after* (all stored); wait until *reported* drops (theirs and `started`) are reported."""
    with d:
        first = AckedSender(d.socket)
        first.send([f"during-{i}" for i in range(during)])
        first.settle()
        fs.free()
        then = AckedSender(d.socket)
        then.send([f"after-{i}" for i in range(after)])
        then.settle()
        assert (len(first.lost()), then.lost()) == (during, set())
        wait_reported(d, ME, reported)
        first.close()
        then.close()
    return then


def _send_as(d: DaemonProcess, uid: int, msgs: list[str]) -> tuple[set[str], set[str]]:
    """Send *msgs* acknowledged as *uid* (a forked child); return (stored, dropped)."""
    r, w = os.pipe()

    def body() -> None:
        s = AckedSender(d.socket)
        s.send(msgs)
        s.settle()
        s.close()
        os.write(w, orjson.dumps([sorted(s.stored()), sorted(s.lost())]))

    run_as(uid, uid, body)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        stored, lost = orjson.loads(f.read())
    return set(stored), set(lost)
