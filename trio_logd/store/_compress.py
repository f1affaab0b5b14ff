"""Compressing a rotated file, s6-log style, and undoing what a crash left.

How this works: a rotated file is first renamed into place complete and
uncompressed (``X.jsonl``). Compression writes ``X.jsonl.zst.<pid>.tmp`` (or
``.gz``), syncs it (policy permitting), renames it to ``X.jsonl.zst``,
syncs the directory, and only then unlinks ``X.jsonl``. So at every instant
each rotated file exists complete under at least one name: a crash leaves at
worst a ``.tmp`` (removed at start), or both ``X.jsonl`` and ``X.jsonl.zst``
(both complete; the uncompressed one is removed at start, and a reader never
reads both). Runs in the store's helper process, or a worker thread of the
daemon's own, never the writer's.

Fencing (issue 15): the daemon may be killed while its helper compresses,
and a new daemon's helper may then start on the same file while the old one
still runs (or is stopped). So a compression first *claims* its source: an
exclusive ``flock`` on ``X.jsonl``, taken without waiting (a claim held by
another process means "busy, try later") and held until ``X.jsonl`` is
unlinked; the claimant then checks that the name still leads to the file it
locked. Only the claimant writes a ``.tmp`` for that file, and its name
carries the claimant's pid, so no process ever renames or removes another
live process's unfinished file; ``.tmp`` files left by claimants that died
are removed by the next claimant (and at start).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import threading
import zlib
from typing import Final

import zstandard

from trio_logd.store import _layout
from trio_logd.store._layout import RotatedName

__all__ = ["BUSY", "compress_file", "tmp_name"]

#: zstd level 3 (the library's default): ~10x on log lines at several hundred
#: MB/s per core; gzip level 6 (gzip(1)'s default), not Python's slow 9.
ZSTD_LEVEL: Final = 3
GZIP_LEVEL: Final = 6
_CHUNK: Final = 1 << 20
#: The ``strerror`` of a compression refused because another process holds
#: the file's claim (errno ``EWOULDBLOCK``).
BUSY: Final = "being compressed by another process"


_local = threading.local()


def _zstd() -> zstandard.ZstdCompressor:
    """This thread's compressor: made once (its tables cost ~10 % of a 1 MiB file's work)."""
    cctx: zstandard.ZstdCompressor | None = getattr(_local, "zstd", None)
    if cctx is None:
        # with its content checksum (XXH64: a few GB/s), as gzip has its CRC: a byte
        # changed on disk is then an error for every reader, not a changed record
        cctx = _local.zstd = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True)
    return cctx


def _copy(src: int, dst: int, method: str) -> None:
    if method == "zstd":
        cctx = _zstd()
        fin = os.fdopen(src, "rb", closefd=False)
        fout = os.fdopen(dst, "wb", closefd=False)
        with fin, fout:
            cctx.copy_stream(fin, fout, read_size=_CHUNK, write_size=_CHUNK)
        return
    # wbits 31: a gzip member (header + deflate + CRC), readable by gzip.open and zcat
    z = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
    while chunk := os.read(src, _CHUNK):
        _layout.write_all(dst, z.compress(chunk))
    _layout.write_all(dst, z.flush())


def tmp_name(dst_name: str, pid: int) -> str:
    """The unfinished compressed file of process *pid* (a name no other process writes)."""
    return f"{dst_name}.{pid}{_layout.TMP_SUFFIX}"


def _claim(dir_fd: int, fin: int, src_name: str) -> bool:
    """Take *src*'s claim (see the module doc); False if *src* was compressed meanwhile.

    Raises:
        BlockingIOError: another process holds the claim.
    """
    try:
        fcntl.flock(fin, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        raise BlockingIOError(errno.EWOULDBLOCK, BUSY, src_name) from exc
    st = os.fstat(fin)
    try:
        now = os.stat(src_name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        now = None
    # False: compressed and unlinked by a claimant that finished before we locked
    return now is not None and (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino)


def _remove_stale(dir_fd: int, dst_name: str) -> None:
    """Remove the ``.tmp`` files of earlier claimants of the same file: all dead (the claim)."""
    prefix = dst_name + "."
    for name in os.listdir(dir_fd):
        if name.startswith(prefix) and name.endswith(_layout.TMP_SUFFIX):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=dir_fd)


def _already_done(dir_fd: int, dst_name: str) -> tuple[RotatedName, int] | None:
    """*src* is gone: if its compressed file is in place (complete: it is only ever renamed
    there complete), another claimant finished the job; its name and size."""
    dst = RotatedName.parse(dst_name)
    try:
        st = os.stat(dst_name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    return (dst, st.st_size) if dst is not None else None


def compress_file(
    dir_fd: int, src: RotatedName, method: str, *, sync: bool, what: str
) -> tuple[RotatedName, int]:
    """Compress the uncompressed rotated file *src* in *dir_fd*; unlink it once done.

    Args:
        dir_fd: the uid directory (verified).
        src: an uncompressed rotated file (``suffix == ""``).
        method: ``gzip`` or ``zstd``.
        sync: ``fsync`` the compressed file before its rename and the
            directory after it (``[store] fsync`` is not ``never``).
        what: how to name the uid directory in errors.

    Returns:
        The compressed file's name and size (also when another process
        compressed it meanwhile: *src* gone, its compressed file in place).

    Raises:
        BlockingIOError: another process is compressing *src* (its claim is
            held, ``strerror`` :data:`BUSY`); nothing was done, try later.
        FileNotFoundError: *src* is gone (retention deleted it).
        OSError: reading, writing or renaming failed; our ``.tmp`` is removed
            and *src* is left as it was (complete, to be compressed later).
        UnsafeLogDir: *src* is a symlink or otherwise unsafe.
    """
    dst = src.with_suffix(_layout.COMPRESSED_SUFFIXES[method])
    src_name, dst_name = src.format(), dst.format()
    tmp = tmp_name(dst_name, os.getpid())
    try:
        fin = _layout.open_file(dir_fd, src_name, os.O_RDONLY, what=f"{what}/{src_name}")
    except FileNotFoundError:
        fin = -1
    try:  # closing fin drops the claim: only once src is unlinked (or left untouched)
        if fin < 0 or not _claim(dir_fd, fin, src_name):
            if (done := _already_done(dir_fd, dst_name)) is not None:
                return done
            raise FileNotFoundError(errno.ENOENT, "gone", src_name)
        _remove_stale(dir_fd, dst_name)
        fout = _layout.open_file(
            dir_fd, tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, what=f"{what}/{tmp}"
        )
        try:
            _copy(fin, fout, method)
            if sync:
                os.fsync(fout)
            size = os.fstat(fout).st_size
        except BaseException:
            os.close(fout)
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dir_fd)
            raise
        os.close(fout)
        try:
            os.rename(tmp, dst_name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dir_fd)
            raise
        if sync:
            _layout.fsync_dir(dir_fd)
        with contextlib.suppress(FileNotFoundError):  # a restart's scan took the twin
            os.unlink(src_name, dir_fd=dir_fd)
    finally:
        if fin >= 0:
            os.close(fin)
    return dst, size
