"""Micro-benchmark of the protocol hot path (not a test: run it by hand).

    .venv/bin/python -m tests.protocol.bench_protocol

Prints the framing cost per frame for 64 KiB reads of 120-byte frames (LF,
NUL, CRLF, octet-counted, and one byte at a time), and the parse cost per
message for typical payloads. Figures go into the report / BENCHMARKS.md.
"""

from __future__ import annotations

import timeit
from collections.abc import Callable

from trio_logd.protocol.framing import FrameDecoder
from trio_logd.protocol.parse import parse_message

READ_SIZE = 65536  # the daemon's receive_some(65536)
LINE = b"<13>Nov 27 20:47:40 myprog[123]: " + b"x" * 86  # 119 bytes + delimiter = 120


def _stream(delimiter: bytes, size: int) -> bytes:
    frame = LINE[: 120 - len(delimiter)] + delimiter
    return frame * (size // len(frame))


def _octet_stream(size: int) -> bytes:
    payload = LINE[:116]
    frame = b"%d %s" % (len(payload), payload)  # 120 bytes
    return frame * (size // len(frame))


def _best(fn: Callable[[], object], number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=7)) / number


def bench_framing(name: str, wire: bytes, chunk: int = READ_SIZE) -> None:
    """Per-frame cost of receive_data() + frames() over *wire* read in *chunk*s."""
    chunks = [wire[i : i + chunk] for i in range(0, len(wire), chunk)]
    decoder = FrameDecoder()
    decoder.receive_data(wire)
    frames = len(decoder.frames())

    def run() -> None:
        d = FrameDecoder()
        receive, take = d.receive_data, d.frames
        for c in chunks:
            receive(c)
            take()

    number = max(1, 2_000_000 // len(wire) // (1 if chunk > 100 else 200))
    per = _best(run, number) / frames
    print(f"framing {name:34s} {per * 1e9:8.0f} ns/frame  ({frames} frames)")


def bench_parse(name: str, data: bytes) -> None:
    per = _best(lambda: parse_message(data), 100_000)
    print(f"parse   {name:34s} {per * 1e9:8.0f} ns/message  ({len(data)} bytes)")


def main() -> None:
    calibration = _best(lambda: sum(range(1000)), 20_000)
    print(f"calibration: sum(range(1000)) = {calibration * 1e6:.1f} us")
    wire = _stream(b"\n", 8 * READ_SIZE)
    bench_framing("LF, 64 KiB reads", wire)
    bench_framing("LF, one 512 KiB read", wire, len(wire))
    bench_framing("NUL, 64 KiB reads", _stream(b"\x00", 8 * READ_SIZE))
    bench_framing("CRLF, 64 KiB reads", _stream(b"\r\n", 8 * READ_SIZE))
    bench_framing("octet-counted, 64 KiB reads", _octet_stream(8 * READ_SIZE))
    bench_framing("LF, 4 KiB reads", wire, 4096)
    bench_framing("LF, 1 byte reads", _stream(b"\n", 12_000), 1)
    bench_parse("glibc RFC 3164", LINE + b"x")
    bench_parse("logger -u (no pid)", b"<13>Nov 27 20:51:16 root: hello world from a script")
    bench_parse("SysLogHandler", b"<14>connection from 10.0.0.1 closed after 3 requests")
    bench_parse(
        "logger --rfc5424",
        b'<13>1 2026-11-27T20:51:16.853286+00:00 vm root - - [timeQuality tzKnown="1"'
        b' isSynced="0"] hello 5424',
    )
    bench_parse("@cee", b'<13>app[1]: @cee: {"msg": "hi", "user": "bob", "n": 3, "ok": true}')


if __name__ == "__main__":
    main()
