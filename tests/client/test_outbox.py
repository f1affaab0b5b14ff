"""The client's bookkeeping: bounded buffer, settling in order, resending (client/_outbox.py)."""

from __future__ import annotations

import pytest

from trio_logd.client._encode import FrameEncoder
from trio_logd.client._outbox import Backoff, Outbox, queue_drop_report
from trio_logd.errors import ProtocolError
from trio_logd.protocol.framing import FrameDecoder
from trio_logd.protocol.parse import parse_message


def frames(n: int, size: int = 10) -> list[bytes]:
    return [b"%0*d" % (size, i) for i in range(n)]


def test_buffer_is_bounded_and_refusals_are_counted() -> None:
    """Records beyond the byte limit are refused (ordinal 0) and counted; room comes back."""
    box = Outbox(35)
    assert [box.offer(f) for f in frames(5)] == [1, 2, 3, 0, 0]
    assert (box.held, box.dropped, box.unreported, box.accepted) == (30, 2, 2, 3)
    box.take(1 << 20)
    box.written(2, 20)
    assert box.offer(b"x" * 25) == 4
    assert box.held == 35


def test_plain_mode_settles_on_write_in_order() -> None:
    """Without acks a record settles once written in full; settled counts in ordinal order."""
    box = Outbox(1 << 20)
    for f in frames(4):
        box.offer(f)
    assert box.take(15) == frames(2)  # at least up to max_bytes, whole frames
    box.written(1, 10)
    assert (box.settled, box.delivered, len(box.inflight), len(box.queued)) == (1, 1, 1, 2)


def test_plain_mode_resends_only_what_was_not_written() -> None:
    """On disconnect the frame cut mid-write and the unwritten ones go back first, in order."""
    box = Outbox(1 << 20)
    fs = frames(5)
    for f in fs:
        box.offer(f)
    box.take(25)  # frames 0, 1, 2
    box.written(1, 10)
    assert box.disconnected() == 2
    assert list(box.queued) == fs[1:]
    assert box.take(1 << 20) == fs[1:]


def test_ack_mode_settles_on_ack_and_resends_everything_unacknowledged() -> None:
    """With acks, writing settles nothing; `ack N` does; a reconnect resends the rest."""
    box = Outbox(1 << 20, ack=True)
    fs = frames(5)
    for f in fs:
        box.offer(f)
    box.take(25)
    box.written(3, 30)
    assert box.settled == 0
    assert box.receive(b"trio-logd ack 1\nack 2\n") == 2
    assert (box.settled, box.delivered, box.held) == (2, 2, 30)
    assert box.disconnected() == 1
    assert list(box.queued) == fs[2:]
    assert box.take(1 << 20) == fs[2:]
    assert box.receive(b"ack 3\n") == 3  # numbering starts over on the new connection
    assert (box.settled, box.delivered, box.empty) == (5, 5, True)


def test_daemon_drops_are_counted_and_known_to_waiters() -> None:
    """`drop` lines mark records failed (by ordinal) and count them by reason."""
    box = Outbox(1 << 20, ack=True)
    for f in frames(6):
        box.offer(f)
    box.take(1 << 20)
    box.receive(b"drop 2 3 rate\nack 4\ndrop 6 6 quota\nack 6\n")
    assert box.daemon_dropped == {"rate": 2, "quota": 1}
    assert [box.failed(k) for k in range(1, 7)] == [False, True, True, False, False, True]
    assert (box.failed(4, 5), box.failed(1, 2), box.delivered) == (False, True, 3)


@pytest.mark.parametrize("line", [b"ack 3\n", b"drop 1 3 rate\n"])
def test_acknowledging_unsent_records_is_a_protocol_error(line: bytes) -> None:
    """A daemon that acknowledges more than was sent on the connection is not believed."""
    box = Outbox(1 << 20, ack=True)
    for f in frames(3):
        box.offer(f)
    box.take(15)
    with pytest.raises(ProtocolError, match="only 2 sent"):
        box.receive(line)


def test_discard_counts_everything_held_as_dropped() -> None:
    """Close (or fork) throws away what is held: counted, and waiters see failure."""
    box = Outbox(1 << 20, ack=True)
    for f in frames(4):
        box.offer(f)
    box.take(15)
    assert box.discard() == 4
    assert (box.dropped, box.settled, box.held, box.empty, box.failed(1, 4)) == (
        4, 4, 0, True, True,
    )  # fmt: skip


def test_drop_report_goes_through_even_when_full() -> None:
    """The report of dropped records is queued beyond the limit and marks them reported."""
    box = Outbox(20)
    for f in frames(5):
        box.offer(f)
    queue_drop_report(box, FrameEncoder(default_app="me", hostname="h"))
    assert (box.unreported, box.reported, box.accepted) == (0, 3, 3)
    decoder = FrameDecoder()
    decoder.receive_data(box.queued[-1])
    (frame,) = decoder.frames()
    msg = parse_message(frame.data)
    assert (msg.sev, msg.app, msg.msgid, msg.fields) == (
        "warning", "me", "dropped", {"dropped": 3, "reason": "buffer_full", "buffer_bytes": 20},
    )  # fmt: skip
    assert msg.msg.startswith("trio-logd client dropped 3 records")


def test_backoff_doubles_with_jitter_and_resets() -> None:
    """Delays lie in the upper half of a doubling step, capped; reset starts over."""
    backoff = Backoff(initial=0.1, maximum=0.5)
    steps = [0.1, 0.2, 0.4, 0.5, 0.5]
    for step in steps:
        assert step / 2 <= backoff.next_delay() <= step
    backoff.reset()
    assert 0.05 <= backoff.next_delay() <= 0.1
