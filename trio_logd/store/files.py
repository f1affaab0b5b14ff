"""Reading the store's record files (sync): the one way every reader opens, lists and seeks.

How this works: a uid directory holds ``current.jsonl`` and rotated files
whose names carry their ``seq`` range and time span (``_layout.RotatedName``),
plain or compressed (``.gz``, ``.zst``). The readers of the store (``logq``'s
scans, the forwarders' :class:`~trio_logd.store.seqreader.SeqReader`,
``--verify`` and :func:`read_uid_records`) all go through this module:

* :func:`rotated_files` lists the rotated files once each, in ``seq`` order
  (compression leaves ``X.jsonl`` beside ``X.jsonl.zst`` for a moment);
* :func:`open_record_file` opens one without following a symlink and refuses
  anything but a regular file; :class:`Stream` decompresses a compressed one
  as a stream; :func:`read_whole` reads a whole file, :func:`read_readable`
  what can be read of a damaged one;
* a damaged file (a compressed file cut short, empty, with a bad CRC or
  garbage, a directory, FIFO or symlink where a file belongs, a file that
  cannot be opened) raises :class:`DamagedFile`, naming the file and what is
  wrong; every reader says so and goes on with the next file (the records
  read before the damage are returned);
* :func:`whole_lines` cuts what is read into complete lines: a line without
  its LF (being written, or torn by a crash) is never a record;
* seeking by ``seq``: :func:`files_after` says which rotated files hold a
  ``seq`` above a position (from their names alone), :func:`seek_seq` where
  it lies in lines read (they are in ``seq`` order); by time:
  :func:`line_time`, and the names' spans.

What a line says is read at fixed offsets by ``trio_logd.record``'s readers
(the one codec for the line), never by decoding it.
"""

from __future__ import annotations

import bisect
import errno
import gzip
import os
import stat
import zlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Final

import zstandard

from trio_logd.errors import StoreError
from trio_logd.record import TS_AT, line_seq, line_ts, seq_key, ts_epoch
from trio_logd.store import _layout

__all__ = [
    "DIR_FLAGS",
    "FILE_FLAGS",
    "READ_ERRORS",
    "DamagedFile",
    "Stream",
    "files_after",
    "line_time",
    "line_ts",
    "list_uids",
    "open_record_file",
    "plain_reads",
    "read_error",
    "read_readable",
    "read_uid_records",
    "read_whole",
    "rotated_files",
    "seek_seq",
    "seq_of",
    "suffix_of",
    "uid_files",
    "whole_lines",
    "zstd_cut",
]

DIR_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
#: Never follow a symlink planted in the store; never block on a FIFO.
FILE_FLAGS: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
#: What reading a (maybe damaged) compressed file raises.
READ_ERRORS: Final = (OSError, EOFError, ValueError, zlib.error, zstandard.ZstdError)
#: Decompressed bytes asked of a stream per read (zstd's input buffer too).
STREAM_READ: Final = 128 << 10
#: How often :func:`read_uid_records` lists a directory again when files
#: vanish under it (each time means a rotation or compression happened).
_RELISTS: Final = 100


# -- what a line says ----------------------------------------------------------


#: The ``seq`` of a record line, 0 if it has not the daemon's layout (the codec's reader).
seq_of = seq_key


def line_time(line: bytes) -> float:
    """The ``ts`` of a record line in epoch seconds.

    Raises:
        ValueError: the line has no ``ts`` of the daemon's form.
    """
    return ts_epoch(line[TS_AT])


def list_uids(log_dir: str) -> list[int]:
    """The uids that have a directory under *log_dir*, ascending.

    Raises:
        StoreError: *log_dir* cannot be listed.
    """
    try:
        names = os.listdir(log_dir)
    except OSError as exc:
        msg = f"cannot list {log_dir}: {exc.strerror or exc}"
        raise StoreError(msg) from exc
    return sorted(int(n) for n in names if n.isascii() and n.isdigit() and n == str(int(n)))


def seek_seq(lines: Sequence[bytes], seq: int) -> int:
    """Seek by ``seq`` in lines read: the index of the first line numbered above *seq*.

    *lines* are complete record lines (with or without LF) in ``seq`` order,
    as every record file holds them; ``lines[seek_seq(lines, seq):]`` is what
    comes after *seq*.
    """
    return bisect.bisect_right(lines, seq, key=seq_of)


# -- listing -----------------------------------------------------------------------


def rotated_files(names: Iterable[str], *, prefer_plain: bool = False) -> list[_layout.RotatedName]:
    """The rotated files among *names*, once each, in ``seq`` order.

    A file found both plain and compressed (a compression between its rename
    and its unlink) is listed once: compressed (the plain one is the next to
    go), or plain if *prefer_plain* (a reader in the middle of it).
    """
    best: dict[tuple[int, int, int, int], _layout.RotatedName] = {}
    for name in names:
        r = _layout.RotatedName.parse(name)
        if r is None:
            continue
        other = best.get(r.key)
        if other is None or (other.suffix == "") != prefer_plain:
            best[r.key] = r
    return [best[k] for k in sorted(best)]


def files_after(rotated: Iterable[_layout.RotatedName], seq: int) -> list[_layout.RotatedName]:
    """Seek by ``seq`` over files: those of *rotated* holding a ``seq`` above *seq* (by name)."""
    return [r for r in rotated if r.last_seq > seq]


# -- opening and reading -----------------------------------------------------------


def suffix_of(name: str) -> str:
    """The compression suffix of a file's name: ``".gz"``, ``".zst"`` or ``""``."""
    return os.path.splitext(name)[1] if name.endswith((".gz", ".zst")) else ""


class DamagedFile(StoreError):
    """A record (or chain) file that cannot be read, or not to its end.

    Attributes:
        path: the file, as messages name it (``DIR/UID/NAME``).
        reason: what is wrong, in words (``cut short: …``, ``a directory,
            not a file``, ``cannot be opened: Permission denied``).
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: damaged: {reason}")
        self.path = path
        self.reason = reason


def read_error(exc: BaseException) -> str:
    """What a :data:`READ_ERRORS` exception says of a compressed file, in words."""
    if isinstance(exc, EOFError):
        return f"cut short: {exc}"
    if isinstance(exc, OSError) and not isinstance(exc, gzip.BadGzipFile):
        return f"cannot be read: {exc.strerror or exc}"
    return f"cannot be decompressed: {exc}"


_KINDS: Final = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


def open_record_file(dir_fd: int, name: str, where: str) -> int | None:
    """Open the record file *name* of the directory *dir_fd* for reading.

    Args:
        dir_fd: the uid directory.
        name: the file's name in it.
        where: the directory, for messages.

    Returns:
        The fd, or ``None`` if the file is not there (any more).

    Raises:
        DamagedFile: it cannot be opened (permissions), is a symlink (never
            followed), or is not a regular file (a directory, a FIFO…).
    """
    path = f"{where}/{name}"
    try:
        fd = os.open(name, FILE_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        why = f"cannot be opened: {exc.strerror or exc}"
        if exc.errno == errno.ELOOP:
            why = "a symlink, not a file: not followed"
        raise DamagedFile(path, why) from exc
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        why = f"{_KINDS.get(stat.S_IFMT(mode), 'not a regular file')}, not a file"
        raise DamagedFile(path, why)
    return fd


_ZSTD_MAGIC: Final = 0xFD2FB528
_SKIPPABLE: Final = range(0x184D2A50, 0x184D2A60)
_CUT: Final = "the file ends inside a zstd frame"


def zstd_cut(fd: int) -> str | None:
    """Whether the zstd frames of the file *fd* end early, from their headers alone.

    zstd's stream reader returns what it has when a file ends inside a frame;
    this walks the frames' block headers (a few bytes each, one read per
    block: no decompression) to the end of the file. What is not a zstd frame
    is left to the decompressor to refuse.

    Returns:
        What is wrong, or ``None``: every frame is whole.
    """
    size, at = os.fstat(fd).st_size, 0
    while at < size:
        head = os.pread(fd, 18, at)
        magic = int.from_bytes(head[:4], "little")
        if len(head) < 4 or (magic in _SKIPPABLE and len(head) < 8):
            return _CUT
        if magic in _SKIPPABLE:
            at += 8 + int.from_bytes(head[4:8], "little")
            continue
        if magic != _ZSTD_MAGIC:
            return None
        if len(head) < 5:
            return _CUT
        fhd = head[4]  # RFC 8878 3.1.1.1.1: the frame header's descriptor
        single = fhd >> 5 & 1
        at += 5 + (1 - single) + (0, 1, 2, 4)[fhd & 3] + (single, 2, 4, 8)[fhd >> 6]
        last = 0
        while not last:
            block = os.pread(fd, 3, at)
            if len(block) < 3:
                return _CUT
            header = int.from_bytes(block, "little")
            last, kind = header & 1, header >> 1 & 3
            at += 3 + (1 if kind == 1 else header >> 3)  # an RLE block holds one byte
        at += 4 * (fhd >> 2 & 1)  # the content checksum
    return _CUT if at > size else None


class Stream:
    """A compressed record file's bytes, decompressed as they are read (``.zst``, ``.gz``).

    A file cut short (also inside a zstd frame), an empty one, one with a bad
    CRC or one that is not of its suffix's format raises at the read that
    meets the damage, after the bytes before it were returned. The fd stays
    the caller's: :meth:`close` closes only what reads it.
    """

    __slots__ = ("_empty", "_fd", "_raw", "_stream", "_zstd")

    def __init__(self, fd: int, suffix: str, read_size: int = STREAM_READ) -> None:
        raw = open(fd, "rb", buffering=0, closefd=False)  # noqa: SIM115  # closed by close()
        self._raw = raw
        self._fd = fd
        self._zstd = suffix == ".zst"
        self._stream: IO[bytes]
        if suffix == ".zst":
            self._stream = zstandard.ZstdDecompressor().stream_reader(
                raw, read_size=read_size, read_across_frames=True
            )
        elif suffix == ".gz":
            self._stream = gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[assignment]
        else:
            raw.close()
            msg = f"not a compressed record file's suffix: {suffix!r}"
            raise ValueError(msg)
        # compression writes a header whatever the records: an empty file lost its bytes
        self._empty = os.fstat(fd).st_size == 0

    def read(self, size: int) -> bytes:
        """Up to *size* decompressed bytes; ``b""`` at the end.

        Raises:
            OSError, EOFError, ValueError, zlib.error, zstandard.ZstdError:
            the file is damaged (:data:`READ_ERRORS`; :func:`read_error`
            says it in words).
        """
        if self._empty:
            msg = "the file is empty (0 bytes)"
            raise EOFError(msg)
        data = self._stream.read(size)
        if not data and self._zstd and (cut := zstd_cut(self._fd)):
            raise EOFError(cut)
        return data

    def reads(self, size: int = STREAM_READ) -> Iterator[bytes]:
        """Every decompressed piece, in order, about *size* bytes each."""
        while data := self.read(size):
            yield data

    def close(self) -> None:
        """Close the stream (not the fd)."""
        try:
            self._stream.close()
        except READ_ERRORS:
            pass
        finally:
            self._raw.close()


def plain_reads(fd: int, size: int = STREAM_READ, start: int = 0) -> Iterator[bytes]:
    """An uncompressed file's bytes from *start* to its end (as it grows), in pieces."""
    offset = start
    while data := os.pread(fd, size, offset):
        offset += len(data)
        yield data


def whole_lines(reads: Iterable[bytes]) -> Iterator[bytes]:
    """Re-cut data read in pieces into chunks of complete lines; a torn tail is dropped."""
    carry = b""
    for data in reads:
        if carry:
            data = carry + data
        cut = data.rfind(b"\n") + 1
        carry = data[cut:]
        if cut:
            yield data if cut == len(data) else data[:cut]


def read_whole(fd: int, suffix: str) -> bytes:
    """All of a record file's bytes (decompressed), torn tail included.

    A plain file that grows while it is read is read up to where it stopped.

    Raises:
        OSError, EOFError, ValueError, zlib.error, zstandard.ZstdError: :data:`READ_ERRORS`.
    """
    data, exc = read_readable(fd, suffix)
    if exc is not None:
        raise exc
    return data


def read_readable(fd: int, suffix: str) -> tuple[bytes, Exception | None]:
    """What can be read of a record file (decompressed), and what stopped it.

    Returns:
        The bytes read (torn tail included), and ``None``, or the
        :data:`READ_ERRORS` exception met before the end (a damaged file:
        the bytes are those before the damage).
    """
    pieces: list[bytes] = []
    try:
        if suffix == "":
            pieces.extend(plain_reads(fd, max(os.fstat(fd).st_size, 1 << 16)))
            return b"".join(pieces), None
        stream = Stream(fd, suffix)
        try:
            while data := stream.read(1 << 20):
                pieces.append(data)
        finally:
            stream.close()
    except READ_ERRORS as exc:
        return b"".join(pieces), exc
    return b"".join(pieces), None


# -- one uid's records, once each --------------------------------------------------


def _listing(d: Path) -> list[tuple[Path, int]]:
    """``(path, last_seq)`` of each file to read, oldest first; current last (seq -1)."""
    try:
        names = os.listdir(d)
    except (FileNotFoundError, NotADirectoryError):
        return []
    out = [(d / r.format(), r.last_seq) for r in rotated_files(names)]
    if _layout.CURRENT in names:
        out.append((d / _layout.CURRENT, -1))
    return out


def uid_files(log_dir: str | os.PathLike[str], uid: int) -> list[Path]:
    """The record files of *uid*, oldest first (``current.jsonl`` last), each once."""
    return [p for p, _ in _listing(Path(log_dir) / str(uid))]


def _open(path: Path) -> int | None:
    """An fd of *path*; ``None`` if it vanished.

    Raises:
        DamagedFile: a symlink, not a regular file, or it cannot be opened.
    """
    dir_fd = os.open(path.parent, DIR_FLAGS)
    try:
        return open_record_file(dir_fd, path.name, str(path.parent))
    finally:
        os.close(dir_fd)


def _lines_above(fd: int, path: Path, last: int) -> Iterator[tuple[bytes, int]]:
    """Complete lines of a file above seq *last*: ``(line without LF, its seq or -1)``.

    Raises:
        DamagedFile: it is damaged (after the lines before the damage).
    """
    suffix = suffix_of(path.name)
    stream = Stream(fd, suffix) if suffix else None
    try:
        reads = plain_reads(fd) if stream is None else stream.reads()
        for chunk in whole_lines(reads):
            for line in chunk.split(b"\n")[:-1]:
                seq = line_seq(line)
                if seq is None:
                    yield line, -1
                elif seq > last:
                    yield line, seq
    except READ_ERRORS as exc:
        raise DamagedFile(str(path), read_error(exc)) from exc
    finally:
        if stream is not None:
            stream.close()
        os.close(fd)


def read_uid_records(
    log_dir: str | os.PathLike[str],
    uid: int,
    after: int = 0,
    damaged: list[DamagedFile] | None = None,
) -> Iterator[bytes]:
    """Yield every complete record line of *uid* (without LF) above seq *after*, once each.

    It runs while the daemon writes, rotates, compresses and deletes: a file
    that vanishes between the listing and the opening makes it list the
    directory again and go on from the last ``seq`` it returned, and a line
    is returned only if its ``seq`` is above the last one returned. Only
    lines ending in LF are records; symlinks are never followed.


    Args:
        log_dir: the store's root.
        uid: whose records.
        after: seek: start after this seq (0: from the oldest record).
        damaged: where a damaged file is told (its records up to the damage
            are yielded, then the next file's): the caller says so. Without
            it, damaged files are passed over all the same.

    Yields:
        Record lines in ``seq`` order. A line whose ``seq`` cannot be read
        (not the daemon's layout) is yielded where it stands.
    """
    d = Path(log_dir) / str(uid)
    current = d / _layout.CURRENT
    last = after
    listing = _listing(d)
    for _ in range(_RELISTS):  # each turn of this loop is one race lost to the daemon
        for path, file_last in listing:
            if 0 <= file_last <= last:
                continue  # read already (under another name, or before a re-listing)
            if file_last < 0:  # current.jsonl
                break
            try:
                fd = _open(path)
                if fd is None:
                    break  # compressed or deleted meanwhile: list again
                for line, seq in _lines_above(fd, path, last):
                    last = max(last, seq)
                    yield line
            except DamagedFile as exc:
                if damaged is not None:
                    damaged.append(exc)
            last = max(last, file_last)  # the name says so, even if its lines did not
        else:
            return  # no current file
        if path == current:
            try:
                cur = _open(current)  # None: being rotated, list again
            except DamagedFile as exc:
                if damaged is not None:
                    damaged.append(exc)
                return
            if cur is not None:
                # a rotation between the listing and this open would make us skip
                # the rotated file: check that no file newer than what we read appeared
                listing = _listing(d)
                if not any(file_last > last for _, file_last in listing):
                    for line, seq in _lines_above(cur, current, last):
                        last = max(last, seq)
                        yield line
                    return
                os.close(cur)
                continue
        listing = _listing(d)
