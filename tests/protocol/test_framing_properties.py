"""Property tests of FrameDecoder: chunking never matters, memory stays bounded."""

from __future__ import annotations

import contextlib
import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from trio_logd.errors import FramingError
from trio_logd.protocol.framing import BUFFER_SLACK, Frame, FrameDecoder

from ._feed import Outcome, decode

_DIGITS = b"0123456789"

# A line payload: no LF/NUL inside, no ASCII digit first (that would make it
# octet-counted), no CR last (it would be stripped), not empty.
line_payloads = st.binary(min_size=1, max_size=80).filter(
    lambda p: b"\n" not in p and b"\x00" not in p and p[0] not in _DIGITS and p[-1:] != b"\r"
)


@st.composite
def frames_on_the_wire(
    draw: st.DrawFn, max_bytes: int | None = None
) -> tuple[bytes, list[Frame], int]:
    """A well-formed stream of mixed frames, the frames it must give, and max_message_bytes."""
    if max_bytes is None:
        max_bytes = draw(st.integers(min_value=1, max_value=100))
    wire = bytearray()
    expected: list[Frame] = []
    for _ in range(draw(st.integers(min_value=0, max_value=12))):
        kind = draw(st.sampled_from(["lf", "crlf", "nul", "octet", "empty"]))
        if kind == "empty":
            wire += draw(st.sampled_from([b"\n", b"\r\n", b"\x00", b"0 ", b"\r\x00"]))
            continue
        if kind == "octet":
            payload = draw(st.binary(min_size=1, max_size=120))
            wire += b"%d %s" % (len(payload), payload)
        else:
            payload = draw(line_payloads)
            wire += payload + {"lf": b"\n", "crlf": b"\r\n", "nul": b"\x00"}[kind]
        expected.append(Frame(payload[:max_bytes], len(payload) > max_bytes))
    return bytes(wire), expected, max_bytes


@st.composite
def chunked(draw: st.DrawFn, data: bytes) -> list[bytes]:
    """*data* cut at arbitrary points."""
    cuts = sorted(draw(st.sets(st.integers(min_value=0, max_value=len(data)), max_size=20)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@settings(max_examples=1000, deadline=None)
@given(st.data())
def test_any_chunking_of_well_formed_frames(data: st.DataObject) -> None:
    """Serialized frames decode back to themselves (cut at max_message_bytes), however chunked."""
    wire, expected, max_bytes = data.draw(frames_on_the_wire())
    chunks = data.draw(chunked(wire))
    one_by_one = data.draw(st.booleans())
    assert decode(chunks, max_bytes, one_by_one=one_by_one) == Outcome(expected)


def reference_decode(data: bytes, max_bytes: int) -> Outcome:
    """The framing rules of SPEC §2, written the obvious way (whole stream, then EOF)."""
    frames: list[Frame] = []
    pos, n = 0, len(data)
    while pos < n:
        if data[pos] in _DIGITS:
            end = pos
            while end < n and data[end] in _DIGITS:
                end += 1
            if end - pos > 10:
                bad = data[pos : pos + 11]
                expected = "at most 10 ASCII digits then a space"
            elif end == n:
                return Outcome(
                    frames,
                    (
                        f"incomplete octet count {data[pos:end]!r} at offset {pos}:"
                        " the stream ended before the space that ends it",
                        pos,
                    ),
                )
            elif data[end] != ord(" "):
                bad = data[pos : end + 1]
                expected = "ASCII digits then a space"
            else:
                count = int(data[pos:end])
                payload = data[end + 1 : end + 1 + count]
                if payload:
                    frames.append(
                        Frame(payload[:max_bytes], len(payload) > max_bytes or len(payload) < count)
                    )
                pos = end + 1 + count
                continue
            message = f"invalid octet count {bad!r} at offset {pos}: expected {expected}"
            return Outcome(frames, (message, pos))
        ends = [i for i in (data.find(b"\n", pos), data.find(b"\x00", pos)) if i >= 0]
        end = min(ends, default=n)
        frame = data[pos:end]
        if frame.endswith(b"\r"):
            frame = frame[:-1]
        if frame:
            frames.append(Frame(frame[:max_bytes], len(frame) > max_bytes))
        pos = end + 1
    return Outcome(frames)


# Arbitrary bytes, biased towards the interesting ones.
noisy_bytes = st.lists(
    st.one_of(
        st.binary(max_size=30),
        st.sampled_from(
            [b"\n", b"\r", b"\x00", b" ", b"0", b"12 ", b"3 ", b"99999999999", b"\r\n", b"x"]
        ),
    ),
    max_size=30,
).map(b"".join)


@settings(max_examples=1000, deadline=None)
@given(noisy_bytes, st.integers(min_value=1, max_value=40), st.data())
def test_arbitrary_bytes_give_frames_or_framing_error(
    wire: bytes, max_bytes: int, data: st.DataObject
) -> None:
    """Any bytes: the frames (then FramingError) the rules say, however chunked, memory bounded."""
    whole = decode([wire], max_bytes)  # decode() checks the buffer bound and the failed state
    assert whole == reference_decode(wire, max_bytes)
    assert all(0 < len(f.data) <= max_bytes for f in whole.frames)
    assert decode(data.draw(chunked(wire)), max_bytes) == whole
    assert decode([wire[i : i + 1] for i in range(len(wire))], max_bytes) == whole


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=4096), max_size=40))
def test_buffer_bounded_for_any_input(chunks: list[bytes]) -> None:
    """Whatever arrives, the decoder holds at most max_message_bytes + BUFFER_SLACK bytes."""
    decoder = FrameDecoder(max_message_bytes=64)
    with contextlib.suppress(FramingError):  # a valid outcome; the bound held until then
        for chunk in chunks:
            decoder.receive_data(chunk)
            assert decoder.buffered <= 64 + BUFFER_SLACK
            decoder.frames()


@st.composite
def unfinished_frame(draw: st.DrawFn, max_bytes: int) -> tuple[bytes, list[Frame]]:
    """Bytes a writer left unfinished, and the frame they must give when closed off."""
    kind = draw(st.sampled_from(["none", "line", "octet"]))
    if kind == "none":
        return b"", []
    if kind == "line":
        payload = draw(line_payloads)
        return payload, [Frame(payload[:max_bytes], len(payload) > max_bytes)]
    payload = draw(st.binary(max_size=120))
    count = len(payload) + draw(st.integers(min_value=1, max_value=200))
    frames = [Frame(payload[:max_bytes], True)] if payload else []
    return b"%d %s" % (count, payload), frames


@settings(max_examples=600, deadline=None)
@given(st.data())
def test_close_partial_never_glues_writers(data: st.DataObject) -> None:
    """Writer A's unfinished frame is closed off on its own; writer B's frames come out whole."""
    wire_a, frames_a, max_bytes = data.draw(frames_on_the_wire())
    tail, tail_frames = data.draw(unfinished_frame(max_bytes))
    wire_b, frames_b, _ = data.draw(frames_on_the_wire(max_bytes))
    decoder = FrameDecoder(max_bytes)
    got: list[Frame] = []
    for chunk in data.draw(chunked(wire_a + tail)):
        if chunk:
            decoder.receive_data(chunk)
            got += decoder.frames()
    closed = decoder.close_partial()
    if closed is not None:
        got.append(closed)
    for chunk in data.draw(chunked(wire_b)):
        if chunk:
            decoder.receive_data(chunk)
            got += decoder.frames()
    decoder.receive_data(b"")
    got += decoder.frames()
    assert got == frames_a + tail_frames + frames_b
