"""Compressing a rotated file, s6-log style, and undoing what a crash left.

How this works: a rotated file is first renamed into place complete and
uncompressed (``X.jsonl``). Compression writes ``X.jsonl.zst.tmp`` (or
``.gz.tmp``), syncs it (policy permitting), renames it to ``X.jsonl.zst``,
syncs the directory, and only then unlinks ``X.jsonl``. So at every instant
each rotated file exists complete under at least one name: a crash leaves at
worst a ``.tmp`` (removed at start), or both ``X.jsonl`` and ``X.jsonl.zst``
(both complete; the uncompressed one is removed at start, and a reader never
reads both). Runs in a worker thread of its own, never the writer's.
"""

from __future__ import annotations

import contextlib
import os
import threading
import zlib
from typing import Final

import zstandard

from trio_logd.store import _layout
from trio_logd.store._layout import RotatedName

__all__ = ["compress_file"]

#: zstd level 3 (the library's default): ~10x on log lines at several hundred
#: MB/s per core; gzip level 6 (gzip(1)'s default), not Python's slow 9.
ZSTD_LEVEL: Final = 3
GZIP_LEVEL: Final = 6
_CHUNK: Final = 1 << 20


_local = threading.local()


def _zstd() -> zstandard.ZstdCompressor:
    """This thread's compressor: made once (its tables cost ~10 % of a 1 MiB file's work)."""
    cctx: zstandard.ZstdCompressor | None = getattr(_local, "zstd", None)
    if cctx is None:
        cctx = _local.zstd = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
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
        The compressed file's name and size.

    Raises:
        OSError: reading, writing or renaming failed; the ``.tmp`` is removed
            and *src* is left as it was (complete, to be compressed later).
        UnsafeLogDir: *src* is a symlink or otherwise unsafe.
    """
    dst = src.with_suffix(_layout.COMPRESSED_SUFFIXES[method])
    src_name, dst_name = src.format(), dst.format()
    tmp = dst_name + _layout.TMP_SUFFIX
    fin = _layout.open_file(dir_fd, src_name, os.O_RDONLY, what=f"{what}/{src_name}")
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dir_fd)  # ours: a crashed attempt
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
    finally:
        os.close(fin)
    if sync:
        _layout.fsync_dir(dir_fd)
    os.unlink(src_name, dir_fd=dir_fd)
    return dst, size
