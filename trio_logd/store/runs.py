"""What the writer knows about the lines it appends, without reading them.

How this works: the daemon encodes record lines in batches, one receive time
and one run of consecutive ``seq`` per batch, and a daemon record (``rotated``,
``suppressed`` …) in a batch of its own. A :class:`Run` says so, and
:meth:`~trio_logd.store.writer.StoreWriter.append` takes the runs beside the
lines: the first and last ``seq``, the times of the first and last record and
which lines are the daemon's ``rotated`` records come from them, and so do
the units their writer sits in (for the file's unit summary, ``_unitindex``),
so the store never parses what the daemon just encoded. A caller that has only lines (a
test, a tool) gets runs for them from :func:`runs_of_lines`, which reads each
line's fixed-offset prefix.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from trio_logd.record import TS_AT, daemon_event, line_seq
from trio_logd.store._unitindex import Names

__all__ = ["LineRun", "Run", "RunIndex", "runs_of_lines"]


class Run(Protocol):
    """Record lines contiguous in ``seq``, received at one time (``server._pipeline.Batch``)."""

    @property
    def lines(self) -> Sequence[bytes]: ...

    @property
    def last_seq(self) -> int: ...

    #: the lines' ``ts`` as written (27 bytes, ``…Z``)
    @property
    def ts(self) -> bytes: ...

    #: the ``event`` of a daemon record (a run of one line); ``None`` for senders' lines
    @property
    def event(self) -> str | None: ...

    #: the writer's ``(unit, slice, user_unit, user_slice)``, the same for
    #: every line of the run (``record.Stamp.names``); ``None`` when the run
    #: does not say (a daemon record): its lines are searched for them
    @property
    def names(self) -> Names | None: ...


@dataclass(frozen=True, slots=True)
class LineRun:
    """A :class:`Run` built by hand (one daemon record, or lines read back)."""

    lines: Sequence[bytes]
    last_seq: int
    ts: bytes
    event: str | None = None
    names: Names | None = None


def runs_of_lines(lines: Sequence[bytes], last_seq: int) -> list[LineRun]:
    """One run per line, read from each line's prefix (for callers that have only lines).

    The last line is numbered *last_seq*; a line without the daemon's layout
    counts as numbered one before the line after it.
    """
    seqs = [line_seq(line) for line in lines]
    if seqs:
        seqs[-1] = last_seq
    for i in range(len(seqs) - 2, -1, -1):
        if seqs[i] is None:
            seqs[i] = (seqs[i + 1] or 1) - 1
    return [
        LineRun((line,), seq or 0, line[TS_AT], daemon_event(line))
        for line, seq in zip(lines, seqs, strict=True)
    ]


class RunIndex:
    """Line *i* of the lines of *runs* (concatenated): its run, ``seq``, ``ts`` and event.

    One run (the usual append of one batch) is looked up directly; several
    are found by bisection over their cumulative lengths, computed once.
    """

    __slots__ = ("_ends", "runs")

    def __init__(self, runs: Sequence[Run]) -> None:
        self.runs = runs
        self._ends: list[int] | None = None

    def _at(self, i: int) -> tuple[Run, int]:
        runs = self.runs
        if len(runs) == 1:
            return runs[0], i
        ends = self._ends
        if ends is None:
            ends = self._ends = list(itertools.accumulate(len(r.lines) for r in runs))
        k = bisect.bisect_right(ends, i)
        return runs[k], i - (ends[k - 1] if k else 0)

    def seq(self, i: int) -> int:
        """The ``seq`` of line *i*."""
        run, j = self._at(i)
        return run.last_seq - len(run.lines) + 1 + j

    def ts(self, i: int) -> bytes:
        """The ``ts`` of line *i*, as written."""
        return self._at(i)[0].ts

    def event(self, i: int) -> str | None:
        """The daemon ``event`` of line *i*; ``None`` for a sender's line."""
        return self._at(i)[0].event

    def runs_in(self, start: int, stop: int) -> Sequence[Run]:
        """The runs lines ``[start, stop)`` belong to (``stop > start``)."""
        runs = self.runs
        if len(runs) == 1:
            return runs
        ends = self._ends
        if ends is None:
            ends = self._ends = list(itertools.accumulate(len(r.lines) for r in runs))
        return runs[bisect.bisect_right(ends, start) : bisect.bisect_right(ends, stop - 1) + 1]

    def first_record(self, start: int, stop: int) -> int | None:
        """The first line in ``[start, stop)`` that is not a ``rotated`` record, if any."""
        i = start
        while i < stop:
            run, j = self._at(i)
            if run.event != "rotated":
                return i
            i += len(run.lines) - j
        return None
