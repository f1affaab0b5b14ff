"""The cursor file's format, and the ledger that moves the cursor only past delivered records."""

from __future__ import annotations

import pytest

from trio_logd.forward import CURSOR_FORMAT, DeliveryLedger, decode_cursor, encode_cursor


def test_cursor_round_trip() -> None:
    """A cursor is one JSON line, uids ascending, read back as it was."""
    data = encode_cursor("central", {1000: 17, 0: 5}, updated="2026-11-27T20:47:40.000000Z")
    assert data == (
        b'{"format":"trio-logd forward cursor v1","destination":"central",'
        b'"updated":"2026-11-27T20:47:40.000000Z","uids":{"0":5,"1000":17}}\n'
    )
    assert decode_cursor(data, where="c") == {0: 5, 1000: 17}


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"{", "x.cursor: not JSON"),
        (b"[]", f"x.cursor: not a cursor file (expected format {CURSOR_FORMAT!r})"),
        (b'{"format":"other"}', "x.cursor: not a cursor file"),
        (b'{"format":"%s"}' % CURSOR_FORMAT.encode(), "x.cursor: expected 'uids' to be an object"),
        (
            b'{"format":"%s","uids":{"a":1}}' % CURSOR_FORMAT.encode(),
            "x.cursor: expected uid -> seq (integers >= 0), got 'a': 1",
        ),
        (
            b'{"format":"%s","uids":{"1":-1}}' % CURSOR_FORMAT.encode(),
            "x.cursor: expected uid -> seq (integers >= 0), got '1': -1",
        ),
        (
            b'{"format":"%s","uids":{"1":true}}' % CURSOR_FORMAT.encode(),
            "x.cursor: expected uid -> seq (integers >= 0), got '1': True",
        ),
    ],
)
def test_invalid_cursor_is_refused(data: bytes, reason: str) -> None:
    """A damaged or foreign file is refused with the file's name and what was wrong."""
    with pytest.raises(ValueError, match="^" + reason.replace("(", r"\(").replace(")", r"\)")):
        decode_cursor(data, where="x.cursor")


def test_nothing_commits_before_ack_and_delay() -> None:
    """Sent is not delivered: the cursor moves once acknowledged, and only after the delay."""
    ledger = DeliveryLedger({1000: 10})
    ledger.sent(marker=100, uid=1000, last_seq=20, records=10)
    assert ledger.settle(now=50.0, delay=1.0) == 0
    ledger.acked(99, now=5.0)
    assert ledger.settle(now=50.0, delay=1.0) == 0
    ledger.acked(100, now=5.0)
    assert ledger.settle(now=5.5, delay=1.0) == 0
    assert ledger.committed == {1000: 10}
    assert ledger.settle(now=6.0, delay=1.0) == 1
    assert ledger.committed == {1000: 20}
    assert (ledger.committed_records, ledger.inflight) == (10, 0)


def test_batches_commit_in_order() -> None:
    """Batches of several uids commit front first, as TCP acknowledges bytes in order."""
    ledger = DeliveryLedger({})
    ledger.sent(100, 1, 5, 5)
    ledger.sent(200, 2, 7, 7)
    ledger.sent(300, 1, 9, 4)
    ledger.acked(250, now=0.0)
    assert ledger.settle(now=10.0, delay=1.0) == 2
    assert ledger.committed == {1: 5, 2: 7}
    ledger.acked(300, now=11.0)
    assert ledger.settle(now=12.0, delay=1.0) == 1
    assert ledger.committed == {1: 9, 2: 7}


def test_rewind_forgets_what_was_not_committed() -> None:
    """A lost connection: everything not committed is to be sent again, and counted."""
    ledger = DeliveryLedger({1: 3})
    ledger.sent(100, 1, 5, 2)
    ledger.sent(200, 1, 8, 3)
    ledger.acked(100, now=0.0)
    ledger.settle(now=1.0, delay=1.0)
    ledger.acked(200, now=1.0)  # acknowledged, but the delay has not passed
    assert ledger.rewind() == 3
    assert (ledger.committed, ledger.position(1)) == ({1: 5}, 5)
    assert ledger.inflight == 0
    assert ledger.settle(now=100.0, delay=0.0) == 0


def test_clean_close_commits_everything_acknowledged() -> None:
    """After a clean close the acknowledged batches commit at once; the others do not."""
    ledger = DeliveryLedger({})
    ledger.sent(100, 1, 5, 5)
    ledger.sent(200, 1, 9, 4)
    ledger.acked(150, now=0.0)
    assert ledger.settle_acked() == 1
    assert (ledger.committed, ledger.inflight) == ({1: 5}, 1)


def test_filtered_batches_move_the_cursor_too() -> None:
    """A batch whose records the filter dropped (0 sent) still moves the cursor when settled."""
    ledger = DeliveryLedger({})
    ledger.sent(1, 4, 50, 0)
    ledger.acked(1, now=0.0)
    ledger.settle(now=0.0, delay=0.0)
    assert (ledger.committed, ledger.committed_records) == ({4: 50}, 0)


def test_changes_count_moves() -> None:
    """`changes` moves when the cursor does (so an unchanged cursor is not written again)."""
    ledger = DeliveryLedger({})
    before = ledger.changes
    ledger.sent(1, 4, 50, 1)
    ledger.acked(1, now=0.0)
    ledger.settle(now=0.0, delay=0.0)
    ledger.reset_uid(4, 0)
    assert ledger.changes == before + 2
