"""A query's step, pure: run a scan for a bounded time and bytes, encode, account what was sent.

How this works: the daemon (``server._query``) runs :func:`run_step` in a
worker thread: it pulls batches from a scan (``store.scan.Scanner``) into
a :class:`~trio_logd.query.budget.LineBatch` until the step's time or bytes
are used up, then cuts one batch of ``record`` response lines. Between
steps the event loop and other queries are served. :func:`split_sent` tells
where a batch stands when a client stopped reading half-way (the query then
resumes after the last line sent, by ``seq``); :func:`pause_after` is the
pacing of a step that ran over its time.

Pure: the clock is an argument; no trio, no sockets.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final

from trio_logd.query.budget import LineBatch
from trio_logd.query.filters import LineFilter
from trio_logd.record import seq_key

__all__ = ["StepResult", "encode_records", "last_seq", "pause_after", "run_step", "split_sent"]

_RECORD_HEAD: Final = b'{"type":"record","record":'


def encode_records(lines: Sequence[bytes]) -> bytes:
    """``record`` response lines for stored lines (without LF), embedding them unchanged."""
    if not lines:
        return b""
    return _RECORD_HEAD + b'}\n{"type":"record","record":'.join(lines) + b"}\n"


@dataclass(frozen=True, slots=True)
class StepResult:
    """What one scan step gave."""

    data: bytes  #: the batch, encoded as ``record`` lines
    lines: int  #: lines in it
    last_seq: int  #: seq of its last line (0 when empty)
    done: bool  #: the scan has nothing more
    took: float  #: seconds the step ran (in its thread)


def run_step(
    batches: Iterator[list[bytes]],
    found: LineBatch,
    filt: LineFilter,
    *,
    seconds: float,
    max_bytes: int,
    clock: Callable[[], float] = time.monotonic,
) -> StepResult:
    """Worker thread: run the scan for one step.

    The step pulls batches until it has *max_bytes* of answer, its *seconds*
    are up, the scan ends or *filt* is cancelled, then cuts one batch of at
    most *max_bytes* from *found* (the rest waits there for the next step).

    """
    start = clock()
    deadline = start + seconds
    ended = False
    while found.nbytes < max_bytes and not filt.cancelled:
        batch = next(batches, None)
        if batch is None:
            ended = True
            break
        found.add(batch)
        if clock() >= deadline:
            break
    lines = found.cut(max_bytes)
    last = seq_key(lines[-1]) if lines else 0
    return StepResult(encode_records(lines), len(lines), last, ended and not found, clock() - start)


def pause_after(took: float, step: float) -> float:
    """Seconds a uid's next step waits after one that *took* seconds (``query_step`` *step*).

    Nothing for a step within twice its time; past that, the overrun: a query
    whose records are slow to match (a costly ``--grep``) gets about half of
    one core, its uid's other queries wait with it, and other uids are not
    slowed.
    """
    return took - step if took > 2 * step else 0.0


def _stored(data: bytes, start: int, end: int) -> bytes:
    """The stored line inside the ``record`` response line ``data[start:end]`` (no LF)."""
    return data[start + len(_RECORD_HEAD) : end - 1]


def last_seq(data: bytes) -> int:
    """The seq of the last record of an encoded batch (0 if empty)."""
    if not data:
        return 0
    start = data.rfind(b"\n", 0, len(data) - 1) + 1
    return seq_key(_stored(data, start, len(data) - 1))


def split_sent(data: bytes, went: int) -> tuple[bytes, int, int]:
    """Where a batch of ``record`` lines stands after its first *went* bytes were sent.

    Returns:
        ``(rest, lines, seq)``: the rest of the line being sent (``b""`` at a
        line's end), the lines complete once it is sent, and the ``seq`` of
        the last of them (0 when none).
    """
    if went <= 0:
        return b"", 0, 0
    end = data.find(b"\n", went - 1)  # the end of the line holding the last byte sent
    start = data.rfind(b"\n", 0, end) + 1
    return data[went : end + 1], data.count(b"\n", 0, end + 1), seq_key(_stored(data, start, end))
