"""Chain files in a uid directory: made, recovered after a crash, read (see ``_chain``).

How this works: the writer makes ``current.chain`` whenever it opens a new
``current.jsonl`` (:func:`create_chain`), with the predecessor's seal in the
header. At start, :func:`recover_chain` makes the existing one agree with
what ``current.jsonl`` holds after its torn tail was cut:

* no chain file (a crash between a rotation and the new chain, or a store
  written before chains), or an empty one (its blocks never reached the disk,
  or a file-system repair such as ``fsck`` emptied it): a new one, whose
  first block covers what the record file already holds, marked as chained
  at start;
* a chain that ends with a seal (a crash in the middle of a rotation): when
  the sealed file was renamed, the chain follows it to its rotated name and
  a new one starts; when it was not, the rotation did not happen and the
  seal is dropped;
* blocks beyond the record file's end (a power cut took data the chain file
  kept): dropped, marks kept;
* records beyond the last block (a crash before their block was written):
  chained in a block of their own, marked as chained at start;
* a chain file that cannot be read (damaged, or edited): set aside as a torn
  file (``torn-<us>.chain.partial``: evidence, deleted first by retention,
  reported by ``logq --verify``) and a new chain starts.

Every rewrite goes through a ``.tmp`` file renamed into place (a ``.tmp`` is
removed at start).
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from typing import Final

from trio_logd.store import _layout
from trio_logd.store._chain import (
    CURRENT_CHAIN,
    GENESIS,
    ChainFile,
    ChainWriter,
    Seal,
    block_line,
    chain_name,
    deletion_line,
    header_line,
    parse_chain,
)

__all__ = ["create_chain", "read_seal", "recover_chain"]

#: A seal line is short: the tail read to find it.
_SEAL_TAIL: Final = 4096
_READ: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


def _read(dir_fd: int, name: str) -> bytes | None:
    """A file's bytes; ``None`` if absent; ``b"\\0"`` (never a chain) for a symlink."""
    try:
        fd = os.open(name, _READ, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # planted: set aside like a damaged chain
            return b"\0"
        raise
    try:
        size = os.fstat(fd).st_size
        return os.pread(fd, size, 0) if size else b""
    finally:
        os.close(fd)


def _exists(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def read_seal(dir_fd: int, record_name: str) -> Seal | None:
    """The seal at the end of a rotated file's chain; ``None`` if it has none.

    Args:
        dir_fd: the uid directory.
        record_name: the rotated file's name, uncompressed.
    """
    try:
        fd = os.open(chain_name(record_name), _READ, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        size = os.fstat(fd).st_size
        tail = os.pread(fd, min(size, _SEAL_TAIL), max(0, size - _SEAL_TAIL))
    except OSError:
        return None
    finally:
        os.close(fd)
    last = tail.rstrip(b"\n").rsplit(b"\n", 1)[-1]
    return parse_chain(last + b"\n").seal


def _start(prev: Seal | None) -> bytes:
    return bytes.fromhex(prev.hash) if prev is not None and prev.hash else GENESIS


def _write_new(dir_fd: int, name: str, data: bytes, what: str) -> int:
    """Write *data* as *name* (through a .tmp renamed into place); return an append fd."""
    tmp = name + _layout.TMP_SUFFIX
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp, dir_fd=dir_fd)
    fd = _layout.open_file(dir_fd, tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, what=what)
    try:
        try:
            _layout.write_all(fd, data)
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):  # a full disk leaves no .tmp behind
            os.unlink(tmp, dir_fd=dir_fd)
        raise
    return _layout.open_file(dir_fd, name, os.O_WRONLY | os.O_APPEND, what=what)


def create_chain(
    dir_fd: int, uid: int, prev: Seal | None, *, what: str, spare: int | None = None
) -> ChainWriter:
    """Start ``current.chain`` for an empty ``current.jsonl``: the header, nothing else.

    Args:
        dir_fd: the uid directory.
        uid: whose.
        prev: the seal of the file before (``None``: the uid's first file).
        what: how to name it in errors.
        spare: an unnamed file of *dir_fd* (``O_TMPFILE``, append mode) to
            write the header to and link into place; the function owns it.
            Without one (or if linking fails) the file is created.

    Raises:
        OSError: it could not be written.
    """
    start = _start(prev)
    header = header_line(uid, prev, start)
    fd = -1
    if spare is not None:
        try:
            _layout.write_all(spare, header)
            linked = _layout.link_unnamed(spare, dir_fd, CURRENT_CHAIN) == 0
        except OSError:
            linked = False
        if linked:
            fd = spare
        else:
            os.close(spare)
    if fd < 0:
        fd = _write_new(dir_fd, CURRENT_CHAIN, header, what)
    return ChainWriter(fd, start, end=0, records=0, size=len(header), what=what)


def _set_aside(dir_fd: int, raw: bytes) -> tuple[str, int]:
    name = f"{_layout.TORN_PREFIX}{time.time_ns() // 1000}.chain.partial"
    os.rename(CURRENT_CHAIN, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    return name, os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_size


def _rebuilt(cf: ChainFile, uid: int, size: int) -> bytes:
    """The chain file again, without blocks beyond *size* (the marks kept)."""
    out = [header_line(uid, cf.prev, bytes.fromhex(cf.start))]
    for b in cf.blocks:
        if b.end > size:
            break
        seqs = b.seqs.start if isinstance(b.seqs, range) else b.seqs
        out.append(
            block_line(b.n, seqs, b.end, bytes.fromhex(b.hash), b.checks, recovered=b.recovered)
        )
    out.extend(deletion_line(s, cf.rules.get(s.file)) for s in cf.deleted)
    return b"".join(out)


def recover_chain(
    dir_fd: int, uid: int, size: int, prev: Seal | None, *, what: str
) -> tuple[ChainWriter, tuple[str, int] | None]:
    """Make ``current.chain`` agree with ``current.jsonl`` of *size* bytes (see the module doc).

    Args:
        dir_fd: the uid directory.
        uid: whose.
        size: bytes of complete lines in ``current.jsonl``.
        prev: the newest rotated file's seal, for a chain started anew.
        what: how to name the chain file in errors.

    Returns:
        The writer, and the name and size of a chain file set aside (if any).

    Raises:
        OSError: reading or writing failed.
    """
    raw = _read(dir_fd, CURRENT_CHAIN)
    aside: tuple[str, int] | None = None
    cf: ChainFile | None = None
    if raw == b"":
        raw = None  # emptied: nothing to keep, nothing to set aside; made anew below
    if raw is not None:
        cf = parse_chain(raw)
        if cf.problems or not cf.has_header:
            aside = _set_aside(dir_fd, raw)
            cf = None
        elif cf.seal is not None:  # a crash in the middle of a rotation
            sealed = cf.seal
            renamed = any(
                _exists(dir_fd, sealed.file + s)
                for s in ("", *_layout.COMPRESSED_SUFFIXES.values())
            )
            if renamed and not _exists(dir_fd, chain_name(sealed.file)):
                os.rename(
                    CURRENT_CHAIN, chain_name(sealed.file), src_dir_fd=dir_fd, dst_dir_fd=dir_fd
                )
                prev, cf = sealed, None
            elif renamed:  # a stray copy: keep it aside
                aside = _set_aside(dir_fd, raw)
                cf = None
            else:  # the record file was not renamed: no rotation happened
                cf.seal = None
                cf.torn = True  # rewritten below
    if cf is None:
        writer = create_chain(dir_fd, uid, prev, what=what)
        if size:
            _chain_from_disk(dir_fd, writer, 0, size)
        return writer, aside
    if cf.torn or cf.end > size:
        fd = _write_new(dir_fd, CURRENT_CHAIN, _rebuilt(cf, uid, size), what)
        cf = parse_chain(_read(dir_fd, CURRENT_CHAIN) or b"")
    else:
        fd = _layout.open_file(dir_fd, CURRENT_CHAIN, os.O_WRONLY | os.O_APPEND, what=what)
    writer = ChainWriter(
        fd,
        bytes.fromhex(cf.head),
        end=cf.end,
        records=cf.records,
        size=os.fstat(fd).st_size,
        what=what,
    )
    if cf.end < size:
        _chain_from_disk(dir_fd, writer, cf.end, size)
    return writer, aside


def _chain_from_disk(dir_fd: int, writer: ChainWriter, start: int, end: int) -> None:
    """Chain ``current.jsonl``'s bytes start..end (complete lines) as a recovered block."""
    fd = os.open(_layout.CURRENT, _READ, dir_fd=dir_fd)
    try:
        data = os.pread(fd, end - start, start)
    finally:
        os.close(fd)
    lines = _lf_lines(data)
    if lines:
        writer.add_block(lines, data, recovered=True)


def _lf_lines(data: bytes) -> list[bytes]:
    """Split after each LF only (``bytes.splitlines`` also splits at CR)."""
    parts = data.split(b"\n")
    return [p + b"\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])
