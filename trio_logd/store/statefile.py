"""Small state files of the daemon under ``log_dir`` (sync): written whole, atomically.

How this works: state lives in a private directory of ``log_dir`` whose name
is not a uid (``log_dir/.forward/`` for the forwarders' cursors), so the
store and ``logq`` never take it for records. It is created 0700 and opened
like every store directory (``_layout``: no symlink followed, owned by the
daemon, not writable by others). A file is replaced whole: written to
``NAME.tmp``, ``fsync``-ed, renamed over ``NAME``, and the directory
``fsync``-ed, so that after a crash ``NAME`` is the old or the new content,
never a mix.
"""

from __future__ import annotations

import contextlib
import os
import time

from trio_logd.errors import StoreError
from trio_logd.store import _layout

__all__ = ["StateDir"]


class StateDir:
    """One private state directory under ``log_dir``.

    Args:
        log_dir: the store's root directory (made safe by the daemon at start).
        name: the directory's name under it (not all digits).
    """

    def __init__(self, log_dir: str, name: str) -> None:
        if name.isdigit():
            msg = f"state directory {name!r} would look like a uid directory"
            raise ValueError(msg)
        self.path = os.path.join(log_dir, name)
        self._log_dir = log_dir
        self._name = name

    def _open(self) -> int:
        try:
            root = os.open(self._log_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            msg = f"{self._log_dir}: cannot open: {exc.strerror or exc}"
            raise StoreError(msg) from exc
        try:
            return _layout.open_dir(root, self._name, create=True, what=self.path)
        except OSError as exc:
            msg = f"{self.path}: cannot open: {exc.strerror or exc}"
            raise StoreError(msg) from exc
        finally:
            os.close(root)

    def read(self, filename: str) -> bytes | None:
        """The content of *filename*, or ``None`` when it does not exist.

        Raises:
            StoreError: it cannot be read, or is unsafe (a symlink, not ours).
        """
        dir_fd = self._open()
        try:
            fd = _layout.open_file(dir_fd, filename, os.O_RDONLY, what=f"{self.path}/{filename}")
        except FileNotFoundError:
            return None
        except OSError as exc:
            msg = f"{self.path}/{filename}: cannot open: {exc.strerror or exc}"
            raise StoreError(msg) from exc
        finally:
            os.close(dir_fd)
        try:
            with open(fd, "rb", closefd=True) as f:
                return f.read()
        except OSError as exc:
            msg = f"{self.path}/{filename}: cannot read: {exc.strerror or exc}"
            raise StoreError(msg) from exc

    def write(self, filename: str, data: bytes) -> None:
        """Replace *filename* by *data*, atomically and durably.

        Raises:
            StoreError: the file system refused (full, read-only …).
        """
        tmp = f"{filename}.tmp"
        dir_fd = self._open()
        try:
            fd = _layout.open_file(
                dir_fd, tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, what=f"{self.path}/{tmp}"
            )
            try:
                _layout.write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, filename, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            os.fsync(dir_fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dir_fd)
            msg = f"{self.path}/{filename}: cannot write: {exc.strerror or exc}"
            raise StoreError(msg) from exc
        finally:
            os.close(dir_fd)

    def set_aside(self, filename: str) -> str:
        """Rename an unreadable *filename* to ``NAME.bad-<time>``; return the new name.

        Raises:
            StoreError: the rename failed.
        """
        aside = f"{filename}.bad-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
        dir_fd = self._open()
        try:
            os.rename(filename, aside, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except OSError as exc:
            msg = f"{self.path}/{filename}: cannot rename: {exc.strerror or exc}"
            raise StoreError(msg) from exc
        finally:
            os.close(dir_fd)
        return aside
