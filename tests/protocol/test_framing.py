"""FrameDecoder: RFC 6587 octet counting and LF/NUL framing, decided per frame (SPEC §2)."""

from __future__ import annotations

import pytest

from trio_logd.errors import FramingError, ProtocolError
from trio_logd.protocol.framing import BUFFER_SLACK, NEED_DATA, Frame, FrameDecoder, NeedData

from ._feed import Outcome, check_frames, decode


def ok(*frames: bytes | tuple[bytes, bool]) -> Outcome:
    """Expected frames: bytes (not truncated) or (bytes, truncated)."""
    return Outcome([Frame(f, False) if isinstance(f, bytes) else Frame(*f) for f in frames])


def failed(message: str, offset: int, *frames: bytes | tuple[bytes, bool]) -> Outcome:
    """Expected frames, then a FramingError with *message* at *offset*."""
    return Outcome(ok(*frames).frames, (message, offset))


# -- LF / NUL framing --------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"a\nbb\nccc\n", ok(b"a", b"bb", b"ccc")),
        (b"a\x00bb\x00", ok(b"a", b"bb")),
        (b"a\x00b\nc\x00\n", ok(b"a", b"b", b"c")),
        (b"<13>a\nb\x00c", ok(b"<13>a", b"b", b"c")),
        (b"tab\tand space \n", ok(b"tab\tand space ")),
        (b"\xff\xfe invalid utf-8\n", ok(b"\xff\xfe invalid utf-8")),
    ],
    ids=["lf", "nul", "mixed", "no-final-delimiter", "whitespace-kept", "any-bytes"],
)
def test_lf_and_nul_frames(data: bytes, expected: Outcome) -> None:
    """A frame not starting with a digit ends at LF or NUL, whichever comes first."""
    check_frames(data, expected)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"a\r\nb\r\x00", ok(b"a", b"b")),
        (b"a\r\r\n", ok(b"a\r")),
        (b"a\rb\n", ok(b"a\rb")),
        (b"\ra\n", ok(b"\ra")),
        (b"abc\r", ok(b"abc")),
    ],
    ids=["crlf-crnul", "one-cr-only", "inner-cr-kept", "leading-cr-kept", "cr-at-eof"],
)
def test_one_trailing_cr_stripped(data: bytes, expected: Outcome) -> None:
    """One CR before the delimiter (or before EOF) is stripped, other CRs are kept."""
    check_frames(data, expected)


@pytest.mark.parametrize("data", [b"\n", b"\n\n\x00", b"\r\n", b"\r\n\r\x00", b"0 ", b"00 "])
def test_empty_frames_ignored(data: bytes) -> None:
    """Empty frames (only a delimiter, a CR, or a zero octet count) are never returned."""
    check_frames(data + b"x\n" + data, ok(b"x"))


@pytest.mark.parametrize(
    "data",
    [b"+12 hi\n", b" 12 hi\n", "١٢ hi\n".encode(), "１２ hi\n".encode(), b"-1 hi\n"],
    ids=["plus", "space", "arabic-indic", "fullwidth", "minus"],
)
def test_only_ascii_digit_starts_octet_counting(data: bytes) -> None:
    """A frame that starts with anything but an ASCII digit is LF/NUL framed, whatever follows."""
    check_frames(data, ok(data[:-1]))


# -- octet counting ----------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"5 hello3 abc", ok(b"hello", b"abc")),
        (b"11 hello\nworld", ok(b"hello\nworld")),
        (b"6 hello\n", ok(b"hello\n")),
        (b"7 a\x00b\r\nc\r", ok(b"a\x00b\r\nc\r")),
        (b"03 abc", ok(b"abc")),
        (b"0000000003 abc", ok(b"abc")),
        (b"0 x\n", ok(b"x")),
        (b"3 abc\nxyz\n", ok(b"abc", b"xyz")),
        (b"a\n3 abc\x00b\x002 cd", ok(b"a", b"abc", b"b", b"cd")),
        (b"12 hello world", ok((b"hello world", True))),
    ],
    ids=[
        "two-frames",
        "lf-inside",
        "byte-exact",
        "nul-cr-inside",
        "leading-zero",
        "ten-digits",
        "zero-count-then-lf-frame",
        "then-lf-frame",
        "mixed-per-frame",
        "short-at-eof",
    ],
)
def test_octet_counted_frames(data: bytes, expected: Outcome) -> None:
    """A frame starting with an ASCII digit is MSG-LEN SP then that many bytes, kept as sent."""
    check_frames(data, expected)


def test_logger_octet_count_stream() -> None:
    """util-linux `logger --octet-count` output (captured) frames as sent, without delimiters."""
    one = b"38 <13>Nov 27 20:51:16 root: hello oc3164"
    two = (
        b"98 <13>1 2026-11-27T20:55:16.855301+00:00 vm root - - "
        b'[timeQuality tzKnown="1" isSynced="0"] hello oc'
    )
    check_frames(one + two, ok(one[3:], two[3:]))


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            b"1_000 x",
            failed("invalid octet count b'1_' at offset 0: expected ASCII digits then a space", 0),
        ),
        (
            b"12x 34",
            failed("invalid octet count b'12x' at offset 0: expected ASCII digits then a space", 0),
        ),
        (
            "1١ x".encode(),
            failed(
                "invalid octet count b'1\\xd9' at offset 0: expected ASCII digits then a space", 0
            ),
        ),
        (
            b"12\t5 x",
            failed(
                "invalid octet count b'12\\t' at offset 0: expected ASCII digits then a space", 0
            ),
        ),
        (
            b"12345678901 x",
            failed(
                "invalid octet count b'12345678901' at offset 0:"
                " expected at most 10 ASCII digits then a space",
                0,
            ),
        ),
        (
            b"00000000000 x",
            failed(
                "invalid octet count b'00000000000' at offset 0:"
                " expected at most 10 ASCII digits then a space",
                0,
            ),
        ),
        (
            b"a\n5 hello12x 34\nb\n",
            failed(
                "invalid octet count b'12x' at offset 9: expected ASCII digits then a space",
                9,
                b"a",
                b"hello",
            ),
        ),
        (
            b"ok\n12",
            failed(
                "incomplete octet count b'12' at offset 3:"
                " the stream ended before the space that ends it",
                3,
                b"ok",
            ),
        ),
    ],
    ids=[
        "underscore",
        "letter",
        "non-ascii-digit",
        "tab",
        "eleven-digits",
        "eleven-zeros",
        "after-good-frames",
        "count-cut-by-eof",
    ],
)
def test_lying_octet_count(data: bytes, expected: Outcome) -> None:
    """Digits not followed by a space, or over 10 digits: FramingError after the good frames."""
    check_frames(data, expected)


def test_garbage_rejected_before_the_space() -> None:
    """The decoder rejects an 11th digit or a non-digit at once, without waiting for a space."""
    for data in (b"12345678901", b"12x"):
        decoder = FrameDecoder()
        decoder.receive_data(data)
        with pytest.raises(FramingError):
            decoder.frames()


def test_framing_error_attributes() -> None:
    """A FramingError is a ProtocolError carrying the stream offset and a capped excerpt."""
    decoder = FrameDecoder()
    decoder.receive_data(b"abc\n" + b"9" * 200)
    assert decoder.next_frame() == Frame(b"abc", False)  # the good frame comes first
    with pytest.raises(ProtocolError) as info:
        decoder.next_frame()
    assert isinstance(info.value, FramingError)
    assert (info.value.offset, info.value.excerpt) == (4, repr(b"9" * 80) + "...")


# -- truncation and skipping --------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"abcd\n", ok(b"abcd")),
        (b"abcd\r\n", ok(b"abcd")),
        (b"abcd\r\x00", ok(b"abcd")),
        (b"abcde\nxy\n", ok((b"abcd", True), b"xy")),
        (b"abcde\r\nxy\n", ok((b"abcd", True), b"xy")),
        (b"abcd\rx\nxy\n", ok((b"abcd", True), b"xy")),
        (b"abcdefghij\x00xy\x00", ok((b"abcd", True), b"xy")),
        (b"abcdefghij" * 10 + b"\nxy\n", ok((b"abcd", True), b"xy")),
        (b"abcdefghij", ok((b"abcd", True))),
        (b"abcd\r", ok(b"abcd")),
    ],
    ids=[
        "exactly-max",
        "max-plus-crlf",
        "max-plus-cr-nul",
        "one-over",
        "one-over-crlf",
        "inner-cr-counts",
        "nul",
        "long",
        "cut-by-eof",
        "max-plus-cr-at-eof",
    ],
)
def test_long_line_truncated_and_skipped(data: bytes, expected: Outcome) -> None:
    """An LF/NUL frame over max_message_bytes is cut, the rest skipped to its delimiter."""
    check_frames(data, expected, max_message_bytes=4)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"4 abcd1 x", ok(b"abcd", b"x")),
        (b"5 abcde1 x", ok((b"abcd", True), b"x")),
        (b"12 abcdefghijkl1 x", ok((b"abcd", True), b"x")),
        (b"5 abcd\nx\n", ok((b"abcd", True), b"x")),
        (b"9999999999 abcdefgh", ok((b"abcd", True))),
        (b"9 abc", ok((b"abc", True))),
    ],
    ids=["exactly-max", "one-over", "long", "lf-counts", "huge-count", "short-at-eof"],
)
def test_long_octet_frame_truncated_and_skipped(data: bytes, expected: Outcome) -> None:
    """An octet-counted frame over max_message_bytes is cut and exactly its count skipped."""
    check_frames(data, expected, max_message_bytes=4)


def test_truncated_frame_emitted_before_its_end() -> None:
    """The cut frame is available as soon as it is known to be too long, not at its end."""
    decoder = FrameDecoder(max_message_bytes=4)
    decoder.receive_data(b"abcde")
    assert decoder.frames() == [Frame(b"abcd", True)]
    decoder.receive_data(b"6 abcdef")
    assert decoder.frames() == []  # still skipping to the LF
    decoder.receive_data(b"\n9 abcd")
    assert decoder.frames() == [Frame(b"abcd", True)]
    assert decoder.buffered == 0


@pytest.mark.parametrize("chunk", [1, 4096, 65536, 10_000_001], ids=["1", "4k", "64k", "whole"])
def test_memory_bounded_for_endless_line(chunk: int) -> None:
    """A 10 MB frame without delimiter keeps the buffer within max_message_bytes + slack."""
    max_bytes = 1024
    size = 200_000 if chunk == 1 else 10_000_000  # byte by byte: keep the test fast
    data = b"x" * size + b"\nnext\n"
    decoder = FrameDecoder(max_bytes)
    frames: list[Frame] = []
    for i in range(0, len(data), chunk):
        decoder.receive_data(data[i : i + chunk])
        assert decoder.buffered <= max_bytes + BUFFER_SLACK
        frames += decoder.frames()
    assert frames == [Frame(b"x" * max_bytes, True), Frame(b"next", False)]


@pytest.mark.parametrize("chunk", [1, 4096, 10_000_010], ids=["1", "4k", "whole"])
def test_memory_bounded_for_huge_octet_count(chunk: int) -> None:
    """A 10 MB octet-counted frame keeps the buffer within max_message_bytes."""
    max_bytes = 1024
    size = 200_000 if chunk == 1 else 10_000_000
    data = b"%d " % size + b"\n" * size + b"4 next"
    decoder = FrameDecoder(max_bytes)
    frames: list[Frame] = []
    for i in range(0, len(data), chunk):
        decoder.receive_data(data[i : i + chunk])
        assert decoder.buffered <= max_bytes
        frames += decoder.frames()
    assert frames == [Frame(b"\n" * max_bytes, True), Frame(b"next", False)]


def test_many_frames_in_one_read() -> None:
    """A 64 KiB read of hundreds of LF frames, split anywhere, gives every frame once."""
    lines = [b"<13>Nov 27 20:47:40 myprog[%d]: message number %d" % (i, i) for i in range(1500)]
    data = b"\n".join(lines) + b"\n"
    for cut in (65536, 65537, 1000, 7):
        chunks = [data[i : i + cut] for i in range(0, len(data), cut)]
        assert decode(chunks) == ok(*lines)


# -- EOF -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"a\nbc", ok(b"a", b"bc")),
        (b"a\nbc\r", ok(b"a", b"bc")),
        (b"a\n\r", ok(b"a")),
        (b"a\n10 abc", ok(b"a", (b"abc", True))),
        (b"a\n10 ", ok(b"a")),
        (b"a\n3 abc", ok(b"a", b"abc")),
    ],
    ids=["line", "line-cr", "only-cr", "octet-short", "octet-nothing", "octet-complete"],
)
def test_eof_closes_the_last_frame(data: bytes, expected: Outcome) -> None:
    """At EOF a partial line is a frame; a partial octet frame is a truncated frame of what came."""
    check_frames(data, expected)


def test_bytes_after_eof_is_a_programming_error() -> None:
    """receive_data() with bytes after EOF raises RuntimeError; a second b'' is harmless."""
    decoder = FrameDecoder()
    decoder.receive_data(b"a")
    decoder.receive_data(b"")
    decoder.receive_data(b"")
    with pytest.raises(RuntimeError, match="after EOF"):
        decoder.receive_data(b"b")
    assert decoder.frames() == [Frame(b"a", False)]
    assert decoder.next_frame() is NEED_DATA


def test_without_eof_partial_frames_wait() -> None:
    """Without EOF an unfinished frame is held, not returned."""
    for data in (b"abc", b"12", b"10 abc", b"abc\r"):
        assert decode([data], eof=False) == ok()


# -- failed state ----------------------------------------------------------------


def test_failed_decoder_stays_failed() -> None:
    """After a framing error every call raises the same error and more bytes are dropped."""
    decoder = FrameDecoder()
    decoder.receive_data(b"ok\n12x\n")
    assert decoder.next_frame() == Frame(b"ok", False)
    errors = []
    for call in (decoder.next_frame, decoder.frames, decoder.close_partial, decoder.next_frame):
        with pytest.raises(FramingError) as info:
            call()
        errors.append(info.value)
    assert all(e is errors[0] for e in errors)
    decoder.receive_data(b"more\n")
    decoder.receive_data(b"")
    with pytest.raises(FramingError):
        decoder.frames()
    assert (decoder.buffered, decoder.consumed) == (0, 12)


# -- close_partial (writer changed) ----------------------------------------------


def test_close_partial_line() -> None:
    """The writer changed mid-line: the partial line is its own frame, never glued to the next."""
    decoder = FrameDecoder()
    decoder.receive_data(b"first\nsecond half")
    assert decoder.frames() == [Frame(b"first", False)]
    assert decoder.close_partial() == Frame(b"second half", False)
    decoder.receive_data(b"other writer\n")
    assert decoder.frames() == [Frame(b"other writer", False)]


def test_close_partial_octet_frame() -> None:
    """A partial octet-counted frame is closed as truncated; the next writer starts a new frame."""
    decoder = FrameDecoder()
    decoder.receive_data(b"10 abc")
    assert decoder.close_partial() == Frame(b"abc", True)
    decoder.receive_data(b"3 xyz")
    assert decoder.frames() == [Frame(b"xyz", False)]


@pytest.mark.parametrize("data", [b"", b"done\n", b"\r", b"10 ", b"5 abcd\n", b"x\n1 "])
def test_close_partial_nothing_buffered(data: bytes) -> None:
    """Nothing (or only an empty frame) buffered: close_partial returns None."""
    decoder = FrameDecoder()
    if data:  # b"" would be EOF
        decoder.receive_data(data)
    decoder.frames()
    assert decoder.close_partial() is None
    decoder.receive_data(b"next\n")
    assert decoder.frames() == [Frame(b"next", False)]


@pytest.mark.parametrize("data", [b"abcdefgh", b"100 abcdefgh"], ids=["line", "octet"])
def test_close_partial_stops_skipping(data: bytes) -> None:
    """Mid-skip of an oversized frame: close_partial gives None; the next writer is not skipped."""
    decoder = FrameDecoder(max_message_bytes=4)
    decoder.receive_data(data)
    assert decoder.frames() == [Frame(b"abcd", True)]
    assert decoder.close_partial() is None
    decoder.receive_data(b"xy\n")
    assert decoder.frames() == [Frame(b"xy", False)]


def test_close_partial_in_octet_count_is_an_error() -> None:
    """Digits without their space when the writer changes: FramingError naming the offset."""
    decoder = FrameDecoder()
    decoder.receive_data(b"ok\n12")
    assert decoder.frames() == [Frame(b"ok", False)]
    with pytest.raises(FramingError) as info:
        decoder.close_partial()
    assert (str(info.value), info.value.offset) == (
        "incomplete octet count b'12' at offset 3:"
        " the writer changed before the space that ends it",
        3,
    )
    with pytest.raises(FramingError):
        decoder.frames()


def test_close_partial_with_frames_not_taken() -> None:
    """close_partial() before frames() were taken is a programming error (misattribution)."""
    decoder = FrameDecoder()
    decoder.receive_data(b"a\nb")
    with pytest.raises(RuntimeError, match="frames"):
        decoder.close_partial()
    assert decoder.frames() == [Frame(b"a", False)]
    assert decoder.close_partial() == Frame(b"b", False)


# -- API details -------------------------------------------------------------------


def test_buffered_and_consumed() -> None:
    """buffered counts the unfinished frame's bytes; consumed is the offset where they start."""
    decoder = FrameDecoder()
    assert (decoder.buffered, decoder.consumed) == (0, 0)
    decoder.receive_data(b"abc")
    assert (decoder.buffered, decoder.consumed) == (3, 0)
    decoder.receive_data(b"\nde")
    assert (decoder.buffered, decoder.consumed) == (2, 4)
    decoder.receive_data(b"\n5 ab")
    assert (decoder.buffered, decoder.consumed) == (2, 9)


def test_frames_returns_a_list_the_caller_owns() -> None:
    """Changing a list that frames() returned never changes the decoder's queue."""
    decoder = FrameDecoder()
    empty = decoder.frames()
    empty.append(Frame(b"bogus", False))
    decoder.receive_data(b"a\n")
    batch = decoder.frames()
    batch.clear()
    assert decoder.frames() == []
    assert decoder.next_frame() is NEED_DATA


def test_next_frame_and_frames_interleave() -> None:
    """next_frame() and frames() share one queue, in stream order."""
    decoder = FrameDecoder()
    decoder.receive_data(b"a\nb\nc\n")
    assert decoder.next_frame() == Frame(b"a", False)
    assert decoder.frames() == [Frame(b"b", False), Frame(b"c", False)]
    assert decoder.frames() == []
    assert decoder.next_frame() is NEED_DATA


def test_need_data_sentinel() -> None:
    """NEED_DATA is a singleton with a readable repr."""
    assert repr(NEED_DATA) == str(NEED_DATA) == "NEED_DATA"
    assert NeedData("NEED_DATA") is NEED_DATA
    assert FrameDecoder().next_frame() is NEED_DATA


@pytest.mark.parametrize("kind", [bytearray, memoryview])
def test_bytes_like_input(kind: type[bytearray] | type[memoryview]) -> None:
    """A bytearray or memoryview is accepted; frames are always immutable bytes."""
    decoder = FrameDecoder()
    decoder.receive_data(kind(b"abc\n3 def"))
    frames = decoder.frames()
    assert frames == [Frame(b"abc", False), Frame(b"def", False)]
    assert all(type(f.data) is bytes for f in frames)


def test_max_message_bytes_must_be_positive() -> None:
    """max_message_bytes below 1 is refused."""
    with pytest.raises(ValueError, match="at least 1"):
        FrameDecoder(0)


def test_repr() -> None:
    """The decoder's repr shows its state for debugging."""
    decoder = FrameDecoder()
    decoder.receive_data(b"a\nbc")
    assert repr(decoder) == "<FrameDecoder state=1 buffered=2 ready=1 eof=False failed=False>"
