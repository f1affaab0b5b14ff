"""The acknowledgement protocol, both ends, without I/O (protocol/ack.py)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_logd.client._outbox import Outbox
from trio_logd.errors import ProtocolError
from trio_logd.protocol.ack import (
    ACK_HELLO,
    ACK_HELLO_PAYLOAD,
    ACK_WELCOME,
    AckEvent,
    AckLedger,
    AckReader,
    Segment,
)
from trio_logd.protocol.framing import Frame, FrameDecoder
from trio_logd.protocol.parse import parse_message


def test_hello_is_one_octet_counted_frame_with_a_nul_payload() -> None:
    """The hello's exact bytes decode to one frame whose payload is the NUL-led magic."""
    assert ACK_HELLO == b"16 \x00trio-logd ack 1"
    decoder = FrameDecoder()
    decoder.receive_data(ACK_HELLO + b"5 <13>x")
    assert decoder.frames() == [Frame(ACK_HELLO_PAYLOAD, False), Frame(b"<13>x", False)]


def test_line_framed_senders_cannot_produce_the_hello() -> None:
    """With LF/NUL framing the NUL ends a frame: the magic text alone is not the hello."""
    decoder = FrameDecoder()
    decoder.receive_data(b"\x00trio-logd ack 1\n")
    assert [f.data for f in decoder.frames()] == [b"trio-logd ack 1"]


def test_ledger_acknowledges_only_the_settled_prefix() -> None:
    """A batch stored before an earlier one waits: `ack` never jumps over a pending record."""
    ledger = AckLedger()
    first, second = ledger.queued(3), ledger.queued(2)
    ledger.stored(second, 2)
    assert ledger.take_lines() == b""
    ledger.stored(first, 3)
    assert ledger.take_lines() == b"ack 5\n"
    assert ledger.take_lines() == b""
    assert (ledger.acked, ledger.numbered, ledger.backlog) == (5, 5, 0)


def test_ledger_reports_drops_before_the_ack_that_covers_them() -> None:
    """Dropped runs become `drop FIRST LAST REASON` lines, merged when adjacent, then `ack`."""
    ledger = AckLedger()
    a = ledger.queued(2)  # 1-2
    ledger.dropped(3, "rate")  # 3-5
    ledger.dropped(1, "rate")  # 6 (merged)
    b = ledger.queued(1)  # 7
    ledger.dropped(0, "rate")  # nothing
    c = ledger.queued(2)  # 8-9
    ledger.stored(a, 2)
    ledger.stored(b, 0)  # the store failed: disk
    ledger.stored(c, 2)
    assert ledger.take_lines() == b"drop 3 6 rate\ndrop 7 7 disk\nack 9\n"


def test_ledger_reports_a_batch_cut_short_exactly() -> None:
    """A batch of which the store wrote 2 of 5 records is acknowledged up to 2, the rest dropped."""
    ledger = AckLedger()
    a = ledger.queued(5)  # 1-5
    b = ledger.queued(2)  # 6-7
    ledger.stored(b, 0)
    ledger.stored(a, 2)
    assert ledger.take_lines() == b"drop 3 7 disk\nack 7\n"
    assert (ledger.acked, ledger.backlog) == (7, 0)


def test_ledger_compact_merges_settled_neighbours_only() -> None:
    """compact() merges adjacent settled runs of one outcome and keeps pending ones apart."""
    ledger = AckLedger()
    pending = ledger.queued(1)
    segs = [ledger.queued(1) for _ in range(4)]
    for seg in segs:
        ledger.stored(seg, 1)
    ledger.dropped(2, "rate")
    ledger.dropped(2, "quota")
    assert ledger.compact() == 3
    assert [(s.first, s.last, s.state) for s in ledger._segments] == [
        (1, 1, None), (2, 5, True), (6, 7, "rate"), (8, 9, "quota"),
    ]  # fmt: skip
    ledger.stored(pending, 1)
    assert ledger.take_lines() == b"drop 6 7 rate\ndrop 8 9 quota\nack 9\n"
    assert isinstance(pending, Segment)


def test_reader_parses_lines_cut_anywhere() -> None:
    """However the daemon's bytes are split, the reader gives the same events."""
    stream = ACK_WELCOME + b"ack 3\nfuture thing 1\ndrop 4 6 rate\nack 10\n"
    expected = [
        AckEvent("welcome"), AckEvent("ack", 0, 3), AckEvent("drop", 4, 6, "rate"),
        AckEvent("ack", 0, 10),
    ]  # fmt: skip
    for cut in range(len(stream) + 1):
        reader = AckReader()
        assert reader.receive_data(stream[:cut]) + reader.receive_data(stream[cut:]) == expected
    reader = AckReader()
    assert [e for b in stream for e in reader.receive_data(bytes([b]))] == expected


@pytest.mark.parametrize(
    ("stream", "error"),
    [
        (b"ack 5\nack 4\n", "went back from ack 5"),
        (b"ack +5\n", "expected a decimal number"),
        (b"ack 5\ndrop 3 7 rate\n", "expected a range after ack 5"),
        (b"drop 7 3 rate\n", "expected a range after ack 0"),
        (b"x" * 200, "longer than 128 bytes"),
    ],
)
def test_reader_refuses_what_a_client_cannot_rely_on(stream: bytes, error: str) -> None:
    """Backwards acks, non-ASCII numbers, stale drop ranges and endless lines are errors."""
    with pytest.raises(ProtocolError, match=error):
        AckReader().receive_data(stream)


def test_hello_payload_is_harmless_if_stored_by_an_old_daemon() -> None:
    """A daemon without acks would parse the hello as an ordinary record, not fail."""
    assert parse_message(ACK_HELLO_PAYLOAD).msg == "\x00trio-logd ack 1"


@given(
    runs=st.lists(
        st.tuples(st.integers(1, 5), st.sampled_from([None, "rate", "quota"])),
        min_size=1,
        max_size=30,
    ),
    order_seed=st.integers(0, 2**32),
    fail=st.sets(st.integers(0, 29)),
    chunk=st.integers(1, 40),
)
def test_daemon_lines_settle_the_client_exactly(
    runs: list[tuple[int, str | None]], order_seed: int, fail: set[int], chunk: int
) -> None:
    """Ledger → lines → client Outbox: each record ends stored or dropped as the daemon did."""
    box = Outbox(1 << 20, ack=True)
    total = sum(n for n, _ in runs)
    for i in range(total):
        box.offer(b"r%d" % i)
    assert len(box.take(1 << 20)) == total
    ledger = AckLedger()
    truth: list[str] = []
    pending: list[tuple[Segment, int]] = []
    for i, (n, reason) in enumerate(runs):
        if reason is None:
            pending.append((ledger.queued(n), i))
            truth.extend(["disk" if i in fail else "ok"] * n)
        else:
            ledger.dropped(n, reason)
            truth.extend([reason] * n)
    random.Random(order_seed).shuffle(pending)
    wire = ledger.take_lines()
    for seg, i in pending:  # the store settles batches in any order
        ledger.stored(seg, 0 if i in fail else seg.last - seg.first + 1)
        wire += ledger.take_lines()
    for start in range(0, len(wire), chunk):
        box.receive(wire[start : start + chunk])
    assert box.settled == total
    assert box.delivered == truth.count("ok")
    expected = {r: truth.count(r) for r in ("rate", "quota", "disk") if r in truth}
    assert box.daemon_dropped == expected
    for ordinal, outcome in enumerate(truth, 1):
        assert box.failed(ordinal) == (outcome != "ok")
