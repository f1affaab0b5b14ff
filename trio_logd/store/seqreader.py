"""One uid's records after a given ``seq``, read in bounded steps (sync): the forwarders' source.

How this works: a :class:`SeqReader` keeps a position (``after``: the seq of
the last record it returned) and one open *source*: a rotated file (plain,
``.zst`` or ``.gz``, decompressed as a stream) or ``current.jsonl``.
:meth:`SeqReader.read` returns the next complete lines, at most about
``max_bytes``; when the source is exhausted it lists the uid's directory and
opens the first rotated file whose name says it holds a seq above the
position, else the current file.

The store moves under it, and each move is safe:

* rotation renames ``current.jsonl``: the open fd still reads the same
  inode. When it has nothing new and the name now points to another inode
  (or to none), the old file is read once more to its end, then the next
  file is found by listing (the old one, now rotated, is passed over by seq);
* compression replaces ``X.jsonl`` by ``X.jsonl.zst`` and retention deletes
  files: an open fd keeps reading; a file that vanished between the listing
  and the opening makes the directory be listed again;
* a damaged rotated file (cut short, bad CRC, not a file, unreadable) is
  read up to the damage, told in :attr:`SeqReader.damaged` and passed over:
  the records it could not give are counted in ``missing``;
* a current file cut shorter under the reader (a batch the writer could not
  write whole, taken back) is read on from its new end;
* the first new line of a source whose seq is not the next one may mean that
  a rotation happened between the listing and the opening of the current
  file: the directory is listed again once, and a rotated file that covers
  the gap is read first. A gap nobody covers (retention deleted records
  before they were read, or a write failed) is counted in ``missing``.

Only lines ending in LF are records: a line being written is left for the
next read. Lines are returned without their LF. Between reads the reader may
be :meth:`closed <SeqReader.close>` to free its descriptors: a plain file is
then reopened at the same offset (same inode), a compressed one is read
again from its start, skipping what was returned.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from typing import Final

from trio_logd.errors import StoreError
from trio_logd.store import _layout
from trio_logd.store.files import (
    DIR_FLAGS,
    READ_ERRORS,
    DamagedFile,
    Stream,
    files_after,
    open_record_file,
    read_error,
    rotated_files,
    seek_seq,
)
from trio_logd.store.files import seq_of as line_seq

__all__ = ["SeqReader"]

#: Smallest read of a plain file; doubled until a whole line fits.
_MIN_READ: Final = 64 << 10
#: Decompressed bytes asked of a stream per read.
_STREAM_READ: Final = 1 << 20
#: How often one read lists the directory again because files vanished.
_MAX_RELIST: Final = 20

_DIR_FLAGS: Final = DIR_FLAGS | os.O_NOFOLLOW


@dataclass(slots=True, eq=False)
class _Source:
    name: str
    fd: int
    ino: int
    current: bool
    rotated: _layout.RotatedName | None = None  # rotated files: their name
    stream: Stream | None = None  # compressed files
    offset: int = 0  # plain files: where the next read starts
    carry: bytes = b""  # compressed files: the start of a line not complete yet
    gap_checked: bool = False


class SeqReader:
    """The record lines of one uid with ``seq`` above a position, oldest first.

    Args:
        log_dir: the store's root directory.
        uid: whose records.
        after: start after this seq (0: from the oldest record).

    Attributes:
        after: the seq of the last line returned (or the start).
        missing: records not found in the store although their seq was
            passed (deleted by retention before they were read, or lost).
        damaged: rotated files found damaged and passed over (the caller
            says so and clears the list); each is passed over once per reader.
    """

    def __init__(self, log_dir: str, uid: int, after: int = 0) -> None:
        self.uid = uid
        self.after = after
        self.missing = 0
        self.damaged: list[DamagedFile] = []
        self._passed: set[tuple[int, int, int, int]] = set()  # damaged files' keys
        self._where = f"{log_dir}/{uid}"
        self._dir: int | None = None
        self._src: _Source | None = None
        self._resume: tuple[int, int, int] | None = None  # (ino, offset, after) of a plain file
        self._in_current = False  # the last source read was the current file

    # -- public -----------------------------------------------------------

    def read(self, max_bytes: int, upto: int | None = None) -> list[bytes]:
        """Return the next lines (without LF), about *max_bytes* at most; ``[]`` when caught up.

        Args:
            max_bytes: stop after about this many bytes.
            upto: return no line with a seq above this (lines the writer has
                not reported stored yet); they are read again next time.

        Raises:
            StoreError: the uid's directory or a file cannot be read.
        """
        out: list[bytes] = []
        size = 0
        relists = 0
        while size < max_bytes:
            src = self._src
            if src is None:
                src = self._open_next()
                if src is None:
                    break
            data = self._read_chunk(src, max_bytes - size)
            if not data:
                if src.current and not self._replaced(src):
                    break  # caught up with the file being written
                if src.current:  # rotated meanwhile: what was appended before is still ours
                    data = self._read_chunk(src, max_bytes - size)
                if not data:
                    self._passed_file(src)
                    self._close_source(remember=False)
                    self._in_current = False  # the next file is found by listing
                    continue
            lines = data.split(b"\n")
            lines.pop()  # data ends with LF: the last item is empty
            if line_seq(lines[0]) <= self.after:
                lines = lines[seek_seq(lines, self.after) :]
                if not lines:
                    continue
            if upto is not None and line_seq(lines[-1]) > upto:
                keep = seek_seq(lines, upto)
                self._unread(src, lines[keep:])
                lines = lines[:keep]
                if not lines:
                    break
                max_bytes = 0  # what follows is not ours yet: stop after these
            first = line_seq(lines[0])
            if first > self.after + 1 and not src.gap_checked and relists < _MAX_RELIST:
                # a rotation between our listing and our opening of the current
                # file, or records really missing: look once more
                src.gap_checked = True
                relists += 1
                if self._gap_covered(first):
                    self._close_source(remember=False)
                    continue
            src.gap_checked = True
            last = line_seq(lines[-1])
            if self.after:  # before the first record read, older ones are not ours to miss
                self.missing += (last - self.after) - len(lines)
            else:
                self.missing += (last - first + 1) - len(lines)
            self.after = last
            out.extend(lines)
            size += len(data)
        return out

    @property
    def live(self) -> bool:
        """Reading (or caught up with) the current file: what remains is recent and cached.

        ``False`` while older, rotated (maybe compressed) files are being read.
        """
        return self._in_current

    def seek(self, after: int) -> None:
        """Go back (or forward) to just after seq *after*."""
        self.close()
        self._resume = None
        self._in_current = False
        self.after = after

    def close(self) -> None:
        """Close every descriptor; the next :meth:`read` goes on from :attr:`after`."""
        self._close_source(remember=True)

    # -- files ------------------------------------------------------------

    def _open_dir(self) -> int | None:
        if self._dir is None:
            try:
                self._dir = os.open(self._where, _DIR_FLAGS)
            except FileNotFoundError:
                return None
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    msg = f"{self._where}: not a directory (a symlink?); refusing to follow it"
                else:
                    msg = f"{self._where}: cannot open: {exc.strerror or exc}"
                raise StoreError(msg) from exc
        return self._dir

    def _listing(self, dir_fd: int) -> list[_layout.RotatedName]:
        try:
            names = os.listdir(dir_fd)
        except OSError as exc:
            msg = f"{self._where}: cannot list: {exc.strerror or exc}"
            raise StoreError(msg) from exc
        # compression leaves X.jsonl beside X.jsonl.zst for a moment: read one,
        # the plain one if we may be in the middle of it (it was our current
        # file), else the compressed one (the plain one is about to go)
        listed = rotated_files(names, prefer_plain=self._resume is not None)
        return [r for r in listed if r.key not in self._passed] if self._passed else listed

    def _open_next(self) -> _Source | None:
        """Open the first file holding a seq above :attr:`after`; ``None`` if there is none."""
        for _ in range(_MAX_RELIST):
            dir_fd = self._open_dir()
            if dir_fd is None:
                return None
            for r in files_after(self._listing(dir_fd), self.after):
                try:
                    src = self._open_file(dir_fd, r.format(), current=False, suffix=r.suffix)
                except DamagedFile as exc:
                    self._pass_over(r.key, exc)
                    continue
                if src is None:
                    break  # vanished: list again
                src.rotated = r
                return src
            else:
                return self._open_file(dir_fd, _layout.CURRENT, current=True, suffix="")
        return None

    def _open_file(self, dir_fd: int, name: str, *, current: bool, suffix: str) -> _Source | None:
        fd = open_record_file(dir_fd, name, self._where)
        if fd is None:
            return None
        st = os.fstat(fd)
        src = _Source(name, fd, st.st_ino, current)
        if suffix:
            src.stream = Stream(fd, suffix, _STREAM_READ)
        elif self._resume is not None:
            ino, offset, after = self._resume
            if ino == st.st_ino and after == self.after and offset <= st.st_size:
                src.offset = offset
                src.gap_checked = True
        self._resume = None
        self._src = src
        self._in_current = current
        return src

    def _passed_file(self, src: _Source) -> None:
        """*src* is read to its end: a rotated file's name says up to which seq it held.

        Its records missing at its end (a file cut short) are counted; without
        this, the next listing would find the same file again, and again.
        """
        if src.rotated is None or src.rotated.last_seq <= self.after:
            return
        if self.after:  # before the first record read, older ones are not ours to miss
            self.missing += src.rotated.last_seq - self.after
        self.after = src.rotated.last_seq

    def _pass_over(self, key: tuple[int, int, int, int], exc: DamagedFile) -> None:
        self.damaged.append(exc)
        self._passed.add(key)

    def _replaced(self, src: _Source) -> bool:
        """Tell whether ``current.jsonl`` now names another file than *src*'s."""
        assert self._dir is not None
        try:
            st = os.stat(_layout.CURRENT, dir_fd=self._dir, follow_symlinks=False)
        except FileNotFoundError:
            return True
        return st.st_ino != src.ino

    def _gap_covered(self, first: int) -> bool:
        """Is a rotated file holding seqs between :attr:`after` and *first* listed now?"""
        assert self._dir is not None
        return any(
            r.last_seq > self.after and r.first_seq < first for r in self._listing(self._dir)
        )

    def _read_chunk(self, src: _Source, want: int) -> bytes:
        """Complete lines (ending in LF) from *src*; ``b""`` when none is complete yet."""
        try:
            if src.stream is None:
                return self._read_plain(src, max(want, _MIN_READ))
            return self._read_stream(src)
        except READ_ERRORS as exc:
            if src.rotated is None:  # the current file: nothing comes after it
                msg = f"{self._where}/{src.name}: cannot read: {exc}"
                raise StoreError(msg) from exc
            # what it held up to the damage was returned: the next file's records follow
            damaged = DamagedFile(f"{self._where}/{src.name}", read_error(exc))
            self._pass_over(src.rotated.key, damaged)
            return b""

    def _unread(self, src: _Source, lines: list[bytes]) -> None:
        """Give *lines* (read, not returned) back to *src*: the next read starts with them."""
        if src.stream is None:
            src.offset -= sum(map(len, lines)) + len(lines)  # each with its LF
        else:
            src.carry = b"\n".join(lines) + b"\n" + src.carry

    def _read_plain(self, src: _Source, want: int) -> bytes:
        while True:
            data = os.pread(src.fd, want, src.offset)
            if not data and src.offset and os.fstat(src.fd).st_size < src.offset:
                # cut under us (the writer takes back a batch it could not write
                # whole): what follows is appended at the new end
                src.offset = os.fstat(src.fd).st_size
                continue
            cut = data.rfind(b"\n") + 1
            if cut:
                src.offset += cut
                return data if cut == len(data) else data[:cut]
            if len(data) < want:
                return b""  # nothing, or a line still being written
            want *= 2  # one line longer than the read

    def _read_stream(self, src: _Source) -> bytes:
        assert src.stream is not None
        cut = src.carry.rfind(b"\n") + 1
        if cut:  # lines given back by _unread come first
            data, src.carry = src.carry[:cut], src.carry[cut:]
            return data
        while True:
            data = src.stream.read(_STREAM_READ)
            if not data:
                return b""  # a torn tail (never written whole) is not a record
            if src.carry:
                data = src.carry + data
            cut = data.rfind(b"\n") + 1
            src.carry = data[cut:]
            if cut:
                return data if cut == len(data) else data[:cut]

    def _close_source(self, *, remember: bool) -> None:
        src = self._src
        if src is not None:
            self._src = None
            if remember and src.stream is None:
                self._resume = (src.ino, src.offset, self.after)
            if src.stream is not None:
                src.stream.close()
            os.close(src.fd)
        if self._dir is not None:
            os.close(self._dir)
            self._dir = None
