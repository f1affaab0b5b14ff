"""Query scans over the store (sync): the engine of ``logq``, online and offline.

How this works: a :class:`Scanner` reads the files of the asked uids with a
filter (:class:`ChunkFilter`: the query layer's ``LineFilter``) and yields batches of matching
record lines, in ``seq`` order per uid and merged by ``ts`` across uids. It
is a plain generator: the daemon drives it from a worker thread a bounded
step at a time (it yields after every chunk, or every piece of a chunk when
lines are decoded one by one, so the caller can stop at a deadline), ``logq
--directory`` drives it directly, so both return the same records.

What is read, and what is not:

* rotated files carry their seq range and time span in their names
  (``_layout.RotatedName``); a file whose span lies outside ``--since`` /
  ``--until`` is never opened. The current file's span is read from its
  first and last line.
* a query that selects by unit (``-u``, ``--user-unit``, ``unit=…``) reads
  the uid's unit index first (``_unitindex``: per rotated file, the units,
  slices, user units and user slices its records name) and never opens a
  file whose summary names none it can match; a file without a usable
  summary, and the current file, are read.
* files are read in big chunks (``CHUNK`` bytes, decompressed as a stream
  for ``.zst`` and ``.gz``); the filter works on whole chunks.
* ``-n N`` reads backwards: the current file from its end in growing
  chunks, then rotated files newest first, and stops once it has N matches.
  (A compressed file cannot be read backwards; it is read forwards keeping
  only the last matches it still needs.) Memory stays bounded in bytes
  whatever N: the matches are kept only while they fit in ``keep_bytes``;
  past that the backward pass only counts, notes the ``seq`` (and, in the
  current file, the offset) where the last N begin, and a forward pass from
  there streams them. Several uids: each uid's start is found so, then their
  forward passes are merged and the surplus at the front is dropped.

Files move while we read: the writer rotates ``current.jsonl`` to a
rotated name, compression replaces ``X.jsonl`` by ``X.jsonl.zst`` and
retention deletes old files. So the current file is opened first (the fd
keeps its contents whatever its name becomes), a rotated file that has
vanished makes us list the directory again and go on by ``seq`` from where
we were, and lines already covered (by ``seq``) are never returned twice.
Only complete lines (ending in LF) are records: a torn or half-written
last line is left out.

A damaged file (a compressed file cut short or corrupted, a directory, FIFO
or symlink where a file belongs, a file that cannot be opened) does not stop
the scan: its records up to the damage are returned, the file is noted in
:attr:`ScanStats.damaged`, and the scan goes on with the next file.
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import os
import stat
from collections import deque
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Generic, Protocol, TypeVar

from trio_logd.errors import StoreError
from trio_logd.store import _layout, _unitindex
from trio_logd.store.files import (
    DIR_FLAGS,
    READ_ERRORS,
    DamagedFile,
    Stream,
    line_time,
    line_ts,
    list_uids,
    open_record_file,
    read_error,
    rotated_files,
    seek_seq,
    whole_lines,
)
from trio_logd.store.files import seq_of as line_seq

__all__ = [
    "CHUNK",
    "PIECE",
    "TAIL_KEEP_BYTES",
    "ChunkFilter",
    "ScanStats",
    "Scanner",
    "UnitTest",
    "cut_lines",
    "list_uids",
    "uid_store_ids",
]

#: Bytes read (after decompression) at a time: big enough that the filter's
#: chunk-wide search dominates, small enough that a query paused by a client
#: that does not read holds little (a chunk and its matches).
CHUNK: Final = 256 << 10
#: When lines are decoded one by one (pid, priority, ``--grep``) a chunk is
#: filtered in pieces of about this size, each a turn for the caller: a costly
#: pattern then still yields every few ms, and a deadline is kept.
PIECE: Final = 32 << 10
#: Matching lines a tail keeps in memory before it switches to counting them
#: and streaming them in a second pass: ``-n 1000`` of 200-byte records is one
#: pass, and 16 queries paused half-way through their tails hold 4 MiB.
TAIL_KEEP_BYTES: Final = 256 << 10
#: zstd's read size when decompressing (its input buffer).
_ZSTD_READ: Final = 128 << 10
#: First backwards read of a current file for ``-n``: 100 lines of 300 bytes.
_FIRST_REVERSE: Final = 64 << 10
#: Bytes read to find the first or last line's ts and seq.
_PROBE: Final = 4096
#: How often a scan lists a uid's directory again after files vanished.
_MAX_RELIST: Final = 50
#: Lines per batch when merging several uids.
_MERGE_BATCH: Final = 1024

_DIR_FLAGS: Final = DIR_FLAGS


class ChunkFilter(Protocol):
    """What a scan asks of its query's filter (``query.filters.LineFilter``)."""

    @property
    def decodes(self) -> bool:
        """Whether lines are decoded one by one: chunks are then filtered in pieces."""
        ...

    def filter_lines(self, chunk: bytes) -> list[bytes]:
        """The matching lines (without LF) of *chunk*, complete lines in file order."""
        ...

    def file_may_match(self, first_time: float, last_time: float) -> bool:
        """Whether a file whose records lie in ``[first_time, last_time]`` can hold a match."""
        ...

    @property
    def unit_test(self) -> UnitTest | None:
        """Whether a file whose unit summary lists these names (by key: ``unit``,
        ``slice``, ``user_unit``, ``user_slice``) can hold a match; ``None``
        when the query selects by no unit (summaries are then not read)."""
        ...


F = TypeVar("F", bound=ChunkFilter)
#: :attr:`ChunkFilter.unit_test`: a rotated file's unit summary in, "may it hold a match" out.
UnitTest = Callable[[Mapping[str, frozenset[str]]], bool]


@dataclass(slots=True)
class ScanStats:
    """What a scan read: for ``logq --stats`` and the benchmarks."""

    files_opened: int = 0
    files_skipped: int = 0
    bytes_read: int = 0
    #: files passed over (or read only up to their damage), each once
    damaged: list[DamagedFile] = field(default_factory=list)

    def note(self, damaged: DamagedFile) -> None:
        """Note a damaged file (once, however often it is met)."""
        if all(d.path != damaged.path for d in self.damaged):
            self.damaged.append(damaged)

    def as_dict(self) -> dict[str, int]:
        """The figures as a dict (for the ``end`` line; without :attr:`damaged`)."""
        return {
            "files_opened": self.files_opened,
            "files_skipped": self.files_skipped,
            "bytes_read": self.bytes_read,
        }


def _store_error(exc: OSError, what: str) -> StoreError:
    return StoreError(f"{what}: {exc.strerror or exc}")


@dataclass(frozen=True, slots=True)
class _Rotated:
    name: str
    span: _layout.RotatedName


@dataclass(slots=True)
class _Current:
    fd: int
    size: int
    first_ts: float
    first_seq: int
    last_ts: float
    last_seq: int


def _probe(head: bytes) -> tuple[float, int] | None:
    try:
        return line_time(head), line_seq(head)
    except ValueError:
        return None


def _last_line_head(fd: int, size: int) -> bytes:
    """The first bytes of the last complete line of a file of *size* bytes."""
    end = size
    # the end of the last complete line: the last LF
    while end > 0:
        start = max(0, end - _PROBE)
        data = os.pread(fd, end - start, start)
        k = data.rfind(b"\n")
        if k >= 0:
            end = start + k
            break
        end = start
    # its start: the LF before it
    stop = end
    while stop > 0:
        start = max(0, stop - _PROBE)
        data = os.pread(fd, stop - start, start)
        k = data.rfind(b"\n")
        if k >= 0:
            return os.pread(fd, min(_PROBE, end - start - k - 1), start + k + 1)
        stop = start
    return os.pread(fd, min(_PROBE, end), 0)


def cut_lines(chunk: bytes, size: int) -> list[tuple[int, bytes]]:
    """Cut complete lines into pieces of about *size* bytes, at line ends.

    Args:
        chunk: complete lines, each ending in LF.
        size: the piece size aimed at; a longer line is a piece of its own.

    Returns:
        ``(offset in chunk, piece)`` in order; the pieces joined are *chunk*.
    """
    if len(chunk) <= size:
        return [(0, chunk)]
    out: list[tuple[int, bytes]] = []
    start, n = 0, len(chunk)
    while start < n:
        end = chunk.find(b"\n", min(start + size, n) - 1)
        end = n if end < 0 else end + 1
        out.append((start, chunk[start:end]))
        start = end
    return out


def _reverse_chunks(fd: int, size: int, stats: ScanStats) -> Iterator[tuple[int, bytes]]:
    """Complete lines of an uncompressed file, last chunk first (each in file order).

    Yields:
        ``(offset in the file, chunk)``.
    """
    end, step = size, _FIRST_REVERSE
    pending = b""  # the start of the later chunk: the end of a line that began earlier
    trim = True  # a torn last line (no LF) is not a record
    while end > 0:
        start = max(0, end - step)
        data = os.pread(fd, end - start, start)
        stats.bytes_read += len(data)
        end, step = start, min(step * 2, CHUNK)
        if trim:
            k = data.rfind(b"\n")
            if k < 0:
                continue
            data = data[: k + 1]
            trim = False
        if pending:
            data += pending
        if start > 0:
            k = data.find(b"\n")
            if k < 0:
                pending = data
                continue
            pending, data = data[: k + 1], data[k + 1 :]
            start += k + 1
        if data:
            yield start, data


def _seq_offset(fd: int, size: int, seq: int) -> int:
    """A line start in a plain file of ascending seqs, with every line before it below *seq*.

    Bisects on the lines' fixed-offset ``seq`` (a cursor's seek within
    ``current.jsonl``); anything unexpected gives 0, the start, which only
    costs time: the reader drops the lines before the position anyway.
    """
    lo, hi = 0, size
    while hi - lo > _PROBE:
        mid = (lo + hi) // 2
        head = os.pread(fd, _PROBE, mid)
        k = head.find(b"\n")
        start = mid + k + 1
        if k < 0 or start >= hi:
            hi = mid
            continue
        found = line_seq(os.pread(fd, 80, start))
        if not found:
            return lo
        if found < seq:
            lo = start
        else:
            hi = mid
    return lo


class _UidScan:
    """The files of one uid and the two ways of reading them."""

    def __init__(self, root_fd: int, where: str, uid: int, filt: ChunkFilter, stats: ScanStats):
        self.uid = uid
        self.where = f"{where}/{uid}"
        self.filt = filt
        self.stats = stats
        #: where :meth:`forward` starts: after this seq (a seek), or from the first record
        self.after: int | None = None
        #: the seq of the newest record the scan covered (0 if none): live
        #: records up to it are in what the scan returns.
        self.last_seq = 0
        self._root = root_fd
        self._opened = False
        self._dir: int | None = None
        self._current: _Current | None = None
        #: after :meth:`tail_start`: the matches found (at most N), and either
        #: the matches themselves (oldest first) or ``None`` when they did
        #: not fit and :meth:`forward` streams them from the start found
        self.tail_count = 0
        self.tail_lines: list[bytes] | None = None
        self._start_seq = 0
        self._start_offset = 0
        #: the uid's unit index (``_unitindex.read_index``), once a file asked
        self._units: dict[str, dict[str, frozenset[str]]] | None = None

    def open(self) -> None:
        """Open the uid's directory and its current file (once)."""
        self._open_dir()

    def _open_dir(self) -> None:
        """Open the uid's directory and its current file (once, when the scan reaches it)."""
        if self._opened:
            return
        self._opened = True
        try:
            self._dir = os.open(str(self.uid), _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=self._root)
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                msg = f"{self.where}: not a directory (a symlink?); refusing to follow it"
                raise StoreError(msg) from exc
            raise _store_error(exc, f"cannot open {self.where}") from exc
        # the current file first: whatever it is renamed to later, its fd reads it
        self._current = self._open_current()
        rotated = self._list()
        if self._current is not None:
            self.last_seq = self._current.last_seq
        elif rotated:
            self.last_seq = rotated[-1].span.last_seq

    def close(self) -> None:
        if self._current is not None:
            os.close(self._current.fd)
            self._current = None
        if self._dir is not None:
            os.close(self._dir)
            self._dir = None

    # -- files ------------------------------------------------------------

    def _open(self, name: str) -> int | None:
        assert self._dir is not None
        fd = open_record_file(self._dir, name, self.where)
        if fd is not None:
            self.stats.files_opened += 1
        return fd

    def _open_current(self) -> _Current | None:
        try:
            fd = self._open(_layout.CURRENT)
        except DamagedFile as exc:
            self.stats.note(exc)
            return None
        if fd is None:
            return None
        try:
            size = os.fstat(fd).st_size
            first = _probe(os.pread(fd, _PROBE, 0)) if size else None
            last = _probe(_last_line_head(fd, size)) if first is not None else None
        except OSError as exc:
            os.close(fd)
            raise _store_error(exc, f"cannot read {self.where}/{_layout.CURRENT}") from exc
        if first is None or last is None:  # empty, or no complete line yet
            os.close(fd)
            return None
        return _Current(fd, size, first[0], first[1], last[0], last[1])

    def _list(self) -> list[_Rotated]:
        assert self._dir is not None
        try:
            names = os.listdir(self._dir)
        except OSError as exc:
            raise _store_error(exc, f"cannot list {self.where}") from exc
        # compression leaves X.jsonl beside X.jsonl.zst for a moment: one of them
        return [_Rotated(r.format(), r) for r in rotated_files(names)]

    def _pieces(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        """*chunks*, or their pieces (:func:`cut_lines`) when the filter decodes lines."""
        if not self.filt.decodes:
            yield from chunks
            return
        for chunk in chunks:
            for _, piece in cut_lines(chunk, PIECE):
                yield piece

    def _reverse_pieces(self, fd: int, size: int) -> Iterator[tuple[int, bytes]]:
        """:func:`_reverse_chunks`, each chunk cut in pieces (newest first) if lines are decoded."""
        for offset, chunk in _reverse_chunks(fd, size, self.stats):
            if not self.filt.decodes:
                yield offset, chunk
                continue
            for at, piece in reversed(cut_lines(chunk, PIECE)):
                yield offset + at, piece

    def _chunks(
        self, fd: int, suffix: str, name: str, size: int | None = None, start: int = 0
    ) -> Iterator[bytes]:
        """Complete lines of a whole file (or its bytes *start* to *size*), first chunk first.

        *start* (uncompressed files only) must be the start of a line.
        """
        if suffix == "":
            yield from self._pieces(whole_lines(self._plain_reads(fd, name, size, start)))
            return
        stream = Stream(fd, suffix, _ZSTD_READ)
        try:
            yield from self._pieces(whole_lines(self._stream_reads(stream, name)))
        finally:
            stream.close()

    def _stream_reads(self, stream: Stream, name: str) -> Iterator[bytes]:
        while True:
            try:
                data = stream.read(CHUNK)
            except READ_ERRORS as exc:  # what came before the damage was returned
                self.stats.note(DamagedFile(f"{self.where}/{name}", read_error(exc)))
                return
            if not data:
                return
            self.stats.bytes_read += len(data)
            yield data

    def _plain_reads(self, fd: int, name: str, size: int | None, offset: int) -> Iterator[bytes]:
        while size is None or offset < size:
            want = CHUNK if size is None else min(CHUNK, size - offset)
            try:
                data = os.pread(fd, want, offset)
            except OSError as exc:  # an I/O error: what came before it was returned
                self.stats.note(DamagedFile(f"{self.where}/{name}", read_error(exc)))
                return
            if not data:
                return
            offset += len(data)
            self.stats.bytes_read += len(data)
            yield data

    def _walk(
        self, done: Callable[[_Rotated], bool], *, newest_first: bool = False
    ) -> Generator[tuple[_Rotated, int | None], None, None]:
        """Rotated files not *done* yet, in seq order (or newest first), each with an fd.

        The fd is ``None`` for a file skipped by its time span or damaged
        (noted in the stats), and is closed when the caller asks for the next
        file. A file that vanished (rotated, compressed or deleted meanwhile)
        makes the directory be listed again;
        *done* is asked again then, so the caller's progress decides what is left.
        """
        unit_test = self.filt.unit_test
        for _ in range(_MAX_RELIST):
            files = self._list()
            for r in reversed(files) if newest_first else files:
                if done(r):
                    continue
                if not self.filt.file_may_match(r.span.first_time, r.span.last_time) or (
                    unit_test is not None and not self._units_may_match(r, unit_test)
                ):
                    self.stats.files_skipped += 1
                    yield r, None
                    continue
                try:
                    fd = self._open(r.name)
                except DamagedFile as exc:
                    self.stats.note(exc)
                    yield r, None
                    continue
                if fd is None:
                    break
                try:
                    yield r, fd
                finally:
                    os.close(fd)
            else:
                return

    def _units_may_match(self, r: _Rotated, unit_test: UnitTest) -> bool:
        """Whether *r*'s unit summary lets it hold a match (no usable summary: it may).
        The uid's index is read once, when the first file asks."""
        assert self._dir is not None
        if self._units is None:
            self._units = _unitindex.read_index(self._dir)
        names = self._units.get(r.span.with_suffix("").format())
        return names is None or unit_test(names)

    # -- forward ----------------------------------------------------------

    def forward(self, *, from_tail: bool = False) -> Iterator[list[bytes]]:
        """Matching lines, oldest first, in batches (some empty: one per chunk read).

        Args:
            from_tail: start where :meth:`tail_start` found the last N begin.
        """
        try:
            if self.after is not None and not from_tail:
                self._seek(self.after)
                from_tail = True
            if from_tail:
                yield from self._forward(self._start_seq, self._start_offset)
            else:
                yield from self._forward(0, 0)
        finally:
            self.close()

    def _seek(self, after: int) -> None:
        """Start :meth:`forward` after seq *after*: rotated files before it are
        passed over by name, the current file is bisected."""
        self._open_dir()
        self._start_seq, self._start_offset = after + 1, 0
        cur = self._current
        if cur is not None and after >= cur.first_seq:
            try:
                self._start_offset = _seq_offset(cur.fd, cur.size, after + 1)
            except OSError as exc:
                raise _store_error(exc, f"cannot read {self.where}/{_layout.CURRENT}") from exc

    def _forward(self, start_seq: int, start_offset: int) -> Iterator[list[bytes]]:
        self._open_dir()
        if self._dir is None:
            return
        filt = self.filt
        # every record up to this seq has been looked at (or is before the start)
        covered = max(start_seq - 1, 0)
        with contextlib.closing(self._walk(lambda r: r.span.last_seq <= covered)) as files:
            for r, fd in files:
                if fd is not None:
                    for chunk in self._chunks(fd, r.span.suffix, r.name):
                        lines = filt.filter_lines(chunk)
                        yield _after(lines, covered) if covered else lines
                covered = r.span.last_seq
        self.last_seq = max(self.last_seq, covered)
        cur = self._current
        if cur is None:
            return
        if not filt.file_may_match(cur.first_ts, cur.last_ts):
            self.stats.files_skipped += 1
            return
        # up to its size when opened: what is appended later is for followers
        start = start_offset if covered >= cur.first_seq else 0
        for chunk in self._chunks(cur.fd, "", _layout.CURRENT, cur.size, start):
            lines = filt.filter_lines(chunk)
            yield _after(lines, covered) if covered >= cur.first_seq else lines

    def resume(self, after_seq: int, root_fd: int) -> Iterator[list[bytes]]:
        """Matching lines after *after_seq*, up to the newest the scan first covered.

        For a scan whose files were let go (its client stopped reading): the
        directory and files are opened anew, and nothing newer than
        :attr:`last_seq` is returned (that is for followers), which stays as it was.
        """
        end = self.last_seq
        self.close()
        self._root, self._opened = root_fd, False
        try:
            # not before the start of a tail (-n N), wherever the caller stands
            for lines in self._forward(max(after_seq + 1, self._start_seq), 0):
                if lines and line_seq(lines[-1]) > end:
                    yield [ln for ln in lines if line_seq(ln) <= end]
                    return
                yield lines
        finally:
            self.last_seq = end
            self.close()

    # -- backward ---------------------------------------------------------

    def tail_start(self, n: int, keep_bytes: int) -> Iterator[list[bytes]]:
        """Find where the last *n* matches begin, reading backwards.

        Yields an empty batch after every chunk or piece read (the caller's
        turn), then sets :attr:`tail_count` and :attr:`tail_lines` (``None``
        when the matches took more than *keep_bytes*: then
        ``forward(from_tail=True)`` streams them).
        """
        self._open_dir()
        self.tail_count, self.tail_lines = 0, None
        if self._dir is None or n <= 0:
            self.tail_lines = []
            return
        tail = _TailCounter(n, keep_bytes)
        filt = self.filt
        floor: int | None = None  # every record from this seq on has been looked at
        cur = self._current
        if cur is not None:
            if filt.file_may_match(cur.first_ts, cur.last_ts):
                for offset, piece in self._reverse_pieces(cur.fd, cur.size):
                    if tail.add(filt.filter_lines(piece), offset):
                        break
                    yield []
            else:
                self.stats.files_skipped += 1
            floor = cur.first_seq
        if not tail.done:
            skip = lambda r: floor is not None and r.span.first_seq >= floor  # noqa: E731
            with contextlib.closing(self._walk(skip, newest_first=True)) as files:
                for r, fd in files:
                    if fd is not None:
                        yield from self._file_tail(fd, r, tail, floor)
                    floor = r.span.first_seq
                    if tail.done:
                        break
        self.tail_count = tail.got
        self.tail_lines = tail.lines()
        self._start_seq, self._start_offset = tail.start_seq, tail.start_offset

    def _file_tail(
        self, fd: int, r: _Rotated, tail: _TailCounter, floor: int | None
    ) -> Iterator[list[bytes]]:
        """Count one rotated file's matches below seq *floor* into *tail*, newest first."""
        filt = self.filt
        if r.span.suffix == "":
            for _, piece in self._reverse_pieces(fd, os.fstat(fd).st_size):
                if tail.add(_below(filt.filter_lines(piece), floor), None):
                    return
                yield []
            return
        # compressed: forwards, keeping the last matches still needed while they fit
        need = tail.n - tail.got
        window = _Window(need, tail.room())
        count = 0
        for piece in self._chunks(fd, r.span.suffix, r.name):
            lines = _below(filt.filter_lines(piece), floor)
            count += len(lines)
            window.extend(lines)
            yield []
        if count < need or window.lines is not None:
            tail.add(window.lines if window.lines is not None else [], None, count=count)
            return
        # the start is in this file but its lines did not fit: find its seq
        index = count - need
        os.lseek(fd, 0, os.SEEK_SET)
        for piece in self._chunks(fd, r.span.suffix, r.name):
            lines = _below(filt.filter_lines(piece), floor)
            if index < len(lines):
                tail.start_at(line_seq(lines[index]))
                return
            index -= len(lines)
            yield []


def _after(lines: list[bytes], covered: int) -> list[bytes]:
    """*lines* (of one file: ascending seq) with a seq above *covered*, found by bisection
    (a cursor's position inside a file costs no decoding of the lines before it)."""
    if not lines or line_seq(lines[0]) > covered:
        return lines
    if line_seq(lines[-1]) <= covered:
        return []
    return lines[seek_seq(lines, covered) :]


def _below(lines: list[bytes], floor: int | None) -> list[bytes]:
    """*lines* with a seq below *floor* (all when *floor* is ``None``)."""
    if floor is not None and lines and line_seq(lines[-1]) >= floor:
        return [ln for ln in lines if line_seq(ln) < floor]
    return lines


class _Window:
    """The last *need* lines of a forward read, while they take at most *room* bytes."""

    def __init__(self, need: int, room: int) -> None:
        self.need, self.room = need, room
        self.nbytes = 0
        self._lines: deque[bytes] | None = deque() if room > 0 else None

    @property
    def lines(self) -> list[bytes] | None:
        """The lines kept (oldest first), or ``None`` once they did not fit."""
        return None if self._lines is None else list(self._lines)

    def extend(self, lines: list[bytes]) -> None:
        kept = self._lines
        if kept is None:
            return
        for ln in lines[-self.need :]:
            if len(kept) == self.need:
                self.nbytes -= len(kept.popleft())
            kept.append(ln)
            self.nbytes += len(ln)
        if self.nbytes > self.room:
            self._lines = None


class _TailCounter:
    """The backward pass of a tail: matches counted newest first, kept while they fit.

    Pure bookkeeping (no I/O): :meth:`add` takes each piece's matches, newest
    piece first, until *n* are found; the lines are kept while their bytes stay
    within *keep_bytes*, else only the ``seq`` (and the current file's offset)
    where the last *n* begin is noted.
    """

    def __init__(self, n: int, keep_bytes: int) -> None:
        self.n, self.keep_bytes = n, keep_bytes
        self.got = 0
        self.start_seq = 0  # 0: from the first record (fewer than n matches)
        self.start_offset = 0
        self._kept: list[list[bytes]] | None = [] if keep_bytes > 0 else None
        self._kept_bytes = 0

    @property
    def done(self) -> bool:
        """All *n* found."""
        return self.got >= self.n

    def room(self) -> int:
        """Bytes that may still be kept (0 once keeping stopped)."""
        return 0 if self._kept is None else self.keep_bytes - self._kept_bytes

    def add(self, lines: list[bytes], offset: int | None, *, count: int | None = None) -> bool:
        """Take the matches of the next piece back (in file order); return :attr:`done`.

        Args:
            lines: the piece's matches (all of them, or the last ones when
                *count* says how many there were).
            offset: the piece's offset in the current file (``None`` elsewhere).
            count: the number of matches when *lines* holds only the last.
        """
        total = len(lines) if count is None else count
        need = self.n - self.got
        if total >= need:
            lines = lines[len(lines) - need :] if len(lines) >= need else []
            if lines:
                self.start_seq = line_seq(lines[0])
            self.start_offset = offset or 0
            total = need
        self.got += total
        if self._kept is not None:
            if len(lines) < total:  # some were not kept: the lines are incomplete
                self._kept = None
            else:
                self._kept_bytes += sum(map(len, lines))
                if self._kept_bytes > self.keep_bytes:
                    self._kept = None
                else:
                    self._kept.append(lines)
        return self.done

    def start_at(self, seq: int) -> None:
        """The last *n* begin at *seq* (found by a second pass); nothing is kept."""
        self.start_seq, self.start_offset = seq, 0
        self.got = self.n
        self._kept = None

    def lines(self) -> list[bytes] | None:
        """The matches found, oldest first, or ``None`` if they were not kept."""
        if self._kept is None:
            return None
        return [line for lines in reversed(self._kept) for line in lines]


def uid_store_ids(root: str | int, uids: Sequence[int]) -> dict[int, int]:
    """Each uid's store identity: its directory's inode, which rotation,
    compression, retention and restarts keep (a cursor's seq is valid while it
    stays); uids without a directory have none.

    Args:
        root: the store's root, a path or an open directory.
        uids: the uids.
    """
    out: dict[int, int] = {}
    for uid in uids:
        try:
            if isinstance(root, int):
                st = os.stat(str(uid), dir_fd=root, follow_symlinks=False)
            else:
                st = os.stat(os.path.join(root, str(uid)), follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode):
            out[uid] = st.st_ino
    return out


def _merge(streams: list[Iterator[list[bytes]]]) -> Iterator[list[bytes]]:
    """Merge per-uid batch streams by ``ts``, yielding after every batch read."""
    bufs: list[deque[bytes]] = [deque() for _ in streams]
    alive = list(range(len(streams)))
    while alive:
        for i in list(alive):
            while not bufs[i]:
                batch = next(streams[i], None)
                if batch is None:
                    alive.remove(i)
                    break
                if batch:
                    bufs[i].extend(batch)
                else:
                    yield []  # a chunk read with no match: give the caller a turn
        if not alive:
            return
        heap = [(line_ts(bufs[i][0]), i) for i in alive]
        heapq.heapify(heap)
        out: list[bytes] = []
        while heap and len(out) < _MERGE_BATCH:
            _, i = heapq.heappop(heap)
            out.append(bufs[i].popleft())
            if not bufs[i]:
                break  # refill this stream before comparing again
            heapq.heappush(heap, (line_ts(bufs[i][0]), i))
        yield out


class Scanner(Generic[F]):
    """One query over the store.

    Args:
        log_dir: the store's root directory.
        uids: the uids to read, or ``None`` for every uid with a directory.
        filt: the query's filter (``query.filters.LineFilter``; the query
            layer builds both: ``query.scanner.query_scanner``).
        lines: read only the last *lines* matches (``-n``), or all (``None``).
        tail_keep_bytes: for *lines* (one uid): the matching lines kept in
            memory while finding the last N; past it they are streamed by a
            second, forward pass.

    Raises:
        StoreError: *log_dir* or a uid directory cannot be opened.

    Attributes:
        uids: the uids read.
        stats: files opened and skipped, bytes read.
        filter: *filt* (followers reuse it).
    """

    def __init__(
        self,
        log_dir: str,
        uids: Sequence[int] | None,
        filt: F,
        *,
        lines: int | None = None,
        tail_keep_bytes: int = TAIL_KEEP_BYTES,
    ) -> None:
        self.log_dir = log_dir
        self.lines = lines
        self.stats = ScanStats()
        self.filter = filt
        self._keep_bytes = tail_keep_bytes
        self.uids = list_uids(log_dir) if uids is None else list(uids)
        try:
            self._root: int | None = os.open(log_dir, _DIR_FLAGS)
        except OSError as exc:
            raise _store_error(exc, f"cannot open {log_dir}") from exc
        # uid directories and files are opened when the scan reaches them: a
        # tail over many uids holds the files of one uid at a time
        self._scans = [_UidScan(self._root, log_dir, u, filt, self.stats) for u in self.uids]

    def start_after(
        self, seqs: Mapping[int, int], filters: Mapping[int, ChunkFilter] | None = None
    ) -> None:
        """Resume a forward scan (a cursor's, ``query.cursor.place``): each uid in
        *seqs* after that seq, by a seek (rotated files before it are passed
        over by name, the current file is bisected); a uid in *filters* reads
        with that filter instead (one that drops what lies before the place).
        Call it before :meth:`batches`; not with ``lines``.

        Raises:
            ValueError: the query has ``lines`` (a tail reads backwards).
        """
        if self.lines is not None:
            msg = "query: a cursor reads forwards from its place; it cannot be used with 'lines'"
            raise ValueError(msg)
        for scan in self._scans:
            scan.after = seqs.get(scan.uid)
            if filters is not None and scan.uid in filters:
                scan.filt = filters[scan.uid]

    def store_ids(self) -> dict[int, int]:
        """Each uid's store identity (:func:`uid_store_ids`), for cursors.

        Raises:
            StoreError: the store's root was closed.
        """
        if self._root is None:
            msg = f"{self.log_dir}: the scan is closed"
            raise StoreError(msg)
        return uid_store_ids(self._root, self.uids)

    def last_seqs(self) -> dict[int, int]:
        """Per uid, the newest seq the scan covered: live records after it are new.

        Read it once :meth:`batches` is exhausted.
        """
        return {s.uid: s.last_seq for s in self._scans}

    def batches(self) -> Generator[list[bytes], None, None]:
        """Yield batches of matching lines (some empty), in order, then close the files."""
        try:
            if self.lines is not None:
                yield from self._tail(self.lines)
            elif len(self._scans) == 1:
                yield from self._scans[0].forward()
            else:
                yield from _merge([s.forward() for s in self._scans])
        finally:
            self.close()

    def _tail(self, n: int) -> Iterator[list[bytes]]:
        scans = self._scans
        if len(scans) == 1:
            s = scans[0]
            yield from s.tail_start(n, self._keep_bytes)
            if s.tail_lines is None:
                yield from s.forward(from_tail=True)
                return
            s.close()
            for i in range(0, len(s.tail_lines), _MERGE_BATCH):
                yield s.tail_lines[i : i + _MERGE_BATCH]
            return
        # each uid's last n (counted, not kept), merged; the surplus in front dropped
        for s in scans:
            yield from s.tail_start(n, 0)
        surplus = sum(s.tail_count for s in scans) - n
        for batch in _merge([s.forward(from_tail=True) for s in scans]):
            if surplus > 0 and batch:
                cut = min(surplus, len(batch))
                surplus -= cut
                batch = batch[cut:]
            yield batch

    def open(self) -> None:
        """Open every uid's directory and current file now, rather than when
        the scan reaches them: what is stored from now on is newer than the
        scan (:meth:`last_seqs`), for a follower to send.

        Raises:
            StoreError: a uid directory cannot be opened.
        """
        for s in self._scans:
            s.open()

    @property
    def resumable(self) -> bool:
        """Whether :meth:`resume` can pick the scan up again (one uid only)."""
        return len(self._scans) == 1

    def resume(self, after_seq: int) -> Generator[list[bytes], None, None]:
        """Batches after *after_seq*, once :meth:`batches` was closed half-way.

        A query whose client stops reading lets its scan go (files, the zstd
        window, buffers) and picks it up here once the client reads again.
        One uid only (:attr:`resumable`): ``seq`` is that uid's order.

        Raises:
            StoreError: the store's root cannot be opened any more.
        """
        if self._root is None:
            try:
                self._root = os.open(self.log_dir, _DIR_FLAGS)
            except OSError as exc:
                raise _store_error(exc, f"cannot open {self.log_dir}") from exc
        return self._resumed(after_seq, self._root)

    def _resumed(self, after_seq: int, root_fd: int) -> Generator[list[bytes], None, None]:
        try:
            yield from self._scans[0].resume(after_seq, root_fd)
        finally:
            self.close()

    def close(self) -> None:
        """Close every file (idempotent)."""
        for s in self._scans:
            with contextlib.suppress(OSError):
                s.close()
        if self._root is not None:
            os.close(self._root)
            self._root = None
