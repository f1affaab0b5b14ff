"""Feed a FrameDecoder in every way a stream can be cut (h11's t_body_reader pattern)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import NamedTuple

import pytest

from trio_logd.errors import FramingError
from trio_logd.protocol.framing import BUFFER_SLACK, NEED_DATA, Frame, FrameDecoder


class Outcome(NamedTuple):
    """What a decoder made of a stream: the frames, then the error (if any)."""

    frames: list[Frame]
    error: tuple[str, int] | None = None  # (message, offset)


def decode(
    chunks: Iterable[bytes],
    max_message_bytes: int = 65536,
    *,
    eof: bool = True,
    one_by_one: bool = False,
) -> Outcome:
    """Feed *chunks* (empty ones skipped: b"" is EOF), then EOF; collect frames.

    Checks on the way that the buffer stays bounded and that after an error
    every call raises the same error.
    """
    decoder = FrameDecoder(max_message_bytes)
    frames: list[Frame] = []
    bound = max_message_bytes + BUFFER_SLACK

    def take() -> None:
        if one_by_one:
            while (frame := decoder.next_frame()) is not NEED_DATA:
                frames.append(frame)
        else:
            while batch := decoder.frames():
                frames.extend(batch)

    try:
        for chunk in chunks:
            if chunk:
                decoder.receive_data(chunk)
                assert decoder.buffered <= bound
                take()
        if eof:
            decoder.receive_data(b"")
            take()
    except FramingError as exc:
        error = (str(exc), exc.offset)
        for call in (decoder.next_frame, decoder.frames, decoder.close_partial):
            with pytest.raises(FramingError) as again:
                call()
            assert (str(again.value), again.value.offset) == error
        return Outcome(frames, error)
    return Outcome(frames)


def splits(data: bytes) -> Iterator[list[bytes]]:
    """The cuts checked for every case: whole, byte by byte, in two at every offset."""
    yield [data]
    yield [data[i : i + 1] for i in range(len(data))]
    for i in range(1, len(data)):
        yield [data[:i], data[i:]]


def check_frames(
    data: bytes, expected: Outcome, max_message_bytes: int = 65536, *, eof: bool = True
) -> None:
    """*data* gives *expected* however it is cut, with frames() and with next_frame()."""
    for chunks in splits(data):
        for one_by_one in (False, True):
            got = decode(chunks, max_message_bytes, eof=eof, one_by_one=one_by_one)
            assert got == expected, (chunks, one_by_one)
