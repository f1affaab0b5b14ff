"""Names and safe opening of the store's directories and files.

How this works: ``log_dir`` holds one directory per uid, named by the decimal
uid. Every directory and file is opened relative to an already-verified
directory fd with ``O_NOFOLLOW``, so a symlink planted anywhere below
``log_dir`` is refused rather than followed, and checked after opening
(``fstat`` on the fd, not the path): owned by us, not writable by others, a
regular file with a single link. Directories are 0700 and files 0600: users
read their records through the daemon, which checks their credentials.
"""

from __future__ import annotations

import calendar
import contextlib
import errno
import os
import re
import stat
import time
from typing import Final, NamedTuple

import structlog

from trio_logd.errors import UnsafeLogDir

__all__ = [
    "COMPRESSED_SUFFIXES",
    "CURRENT",
    "DIR_MODE",
    "FILE_MODE",
    "TMP_SUFFIX",
    "TORN_PREFIX",
    "RotatedName",
    "fsync_dir",
    "link_unnamed",
    "make_log_dir",
    "make_unnamed",
    "open_dir",
    "open_file",
    "open_log_dir",
    "open_uid_dir",
    "sync_step",
    "write_all",
]

log = structlog.get_logger("trio_logd.store")

#: The file being appended in each uid directory.
CURRENT: Final = "current.jsonl"
DIR_MODE: Final = 0o700
FILE_MODE: Final = 0o600
#: Suffixes of compressed rotated files, by ``[store] compress`` value.
COMPRESSED_SUFFIXES: Final = {"gzip": ".gz", "zstd": ".zst"}
#: A file being compressed is written as ``<final name>.<pid>.tmp`` (the
#: compressing process's pid: see ``_compress``) and renamed into place only
#: once complete (and synced, per policy): a ``.tmp`` is never read and is
#: removed at start.
TMP_SUFFIX: Final = ".tmp"
#: A torn last line cut off ``current.jsonl`` at start is kept aside as
#: ``torn-<microseconds>.partial``: evidence, never parsed as a record.
TORN_PREFIX: Final = "torn-"

#: Rotated files: ``<first_seq>-<last_seq>.<first_ts>-<last_ts>.jsonl[.gz|.zst]``,
#: seq zero-padded to 16 digits so that sorting names sorts by seq, times in
#: UTC to the second (``20261127T204740Z``; the first rounded down, the last
#: up) so that a reader can skip files outside a time range from the name alone.
_ROTATED_RE: Final = re.compile(
    r"^(\d{16})-(\d{16})\.(\d{8}T\d{6}Z)-(\d{8}T\d{6}Z)\.jsonl(\.gz|\.zst)?$"
)
_TS_NAME: Final = "%Y%m%dT%H%M%SZ"


class RotatedName(NamedTuple):
    """What a rotated file's name says: its seq range, time span and compression."""

    first_seq: int
    last_seq: int
    first_time: int  # epoch seconds, rounded down
    last_time: int  # epoch seconds, rounded up
    suffix: str  # "", ".gz" or ".zst"

    @property
    def key(self) -> tuple[int, int, int, int]:
        """What identifies the file whatever its compression: the name without suffix."""
        return (self.first_seq, self.last_seq, self.first_time, self.last_time)

    def with_suffix(self, suffix: str) -> RotatedName:
        """The same file under another compression suffix."""
        return self._replace(suffix=suffix)

    def format(self) -> str:
        """The file name."""
        t0 = time.strftime(_TS_NAME, time.gmtime(self.first_time))
        t1 = time.strftime(_TS_NAME, time.gmtime(self.last_time))
        return f"{self.first_seq:016d}-{self.last_seq:016d}.{t0}-{t1}.jsonl{self.suffix}"

    @classmethod
    def parse(cls, name: str) -> RotatedName | None:
        """Parse a rotated file's name; ``None`` for any other name."""
        m = _ROTATED_RE.match(name)
        if m is None:
            return None
        t0 = calendar.timegm(time.strptime(m[3], _TS_NAME))
        t1 = calendar.timegm(time.strptime(m[4], _TS_NAME))
        return cls(int(m[1]), int(m[2]), t0, t1, m[5] or "")


def sync_step(fd: int, kind: str) -> None:
    """One step of a sync (``StoreWriter.sync_steps``).

    ``data``: ``fdatasync`` the file *fd*; ``dir``: ``fsync`` the directory *fd*.
    """
    if kind == "data":
        os.fdatasync(fd)
    else:
        fsync_dir(fd)


def fsync_dir(dir_fd: int) -> None:
    """Make renames, creations and unlinks in a directory durable (``fsync`` its fd)."""
    os.fsync(dir_fd)


_DIR_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _check_dir(fd: int, what: str) -> None:
    st = os.fstat(fd)
    if not stat.S_ISDIR(st.st_mode):
        msg = f"{what}: not a directory"
        raise UnsafeLogDir(msg)
    euid = os.geteuid()
    if st.st_uid != euid:
        msg = f"{what}: owned by uid {st.st_uid}, expected the daemon's uid {euid}"
        raise UnsafeLogDir(msg)
    if st.st_mode & 0o022:
        msg = f"{what}: writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})"
        raise UnsafeLogDir(msg)


def make_log_dir(path: str) -> list[str]:
    """Create ``log_dir`` (0700) and any missing parents (mode from the umask).

    Returns:
        The directories created, outermost first; besides *path* itself these
        are worth a warning: a typo in ``log_dir`` makes a whole new tree.

    Raises:
        UnsafeLogDir: a directory cannot be created.
    """
    missing: list[str] = []
    here = os.path.abspath(path)
    while not os.path.lexists(here):
        missing.append(here)
        parent = os.path.dirname(here)
        if parent == here:
            break
        here = parent
    created: list[str] = []
    for directory in reversed(missing):
        try:
            os.mkdir(directory, DIR_MODE if directory == missing[0] else 0o777)
        except FileExistsError:  # made meanwhile (another start): fine, checked below
            continue
        except OSError as exc:
            msg = f"log_dir {path!r}: cannot create {directory!r}: {exc.strerror}"
            raise UnsafeLogDir(msg) from exc
        created.append(directory)
    return created


def open_log_dir(path: str) -> int:
    """Create (0700) or open ``log_dir`` and check it is safe to write under.

    Missing parents are created too, and logged as a warning (``log_dir_created``)
    naming each: a typo should not go unnoticed.

    Returns:
        A directory fd; the caller closes it.

    Raises:
        UnsafeLogDir: it is a symlink, not a directory, not owned by the
            daemon's uid, or writable by group or others.
    """
    created = make_log_dir(path)
    if len(created) > 1:
        log.warning(
            "log_dir_created",
            log_dir=path,
            created=created,
            hint="its parents were created too: if [daemon] log_dir has a typo, fix it",
        )
    try:
        fd = os.open(path, _DIR_FLAGS)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            msg = f"log_dir {path!r}: is a symlink or not a directory; refusing to follow it"
        else:
            msg = f"log_dir {path!r}: cannot open: {exc.strerror}"
        raise UnsafeLogDir(msg) from exc
    try:
        _check_dir(fd, f"log_dir {path!r}")
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_dir(parent_fd: int, name: str, *, create: bool, what: str) -> int:
    """Open (creating with mode 0700 if asked) directory *name* below *parent_fd*.

    Raises:
        UnsafeLogDir: it is a symlink, not a directory, or unsafe (see module doc).
        FileNotFoundError: it does not exist and *create* is false.
    """
    if create:
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, DIR_MODE, dir_fd=parent_fd)
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            msg = f"{what}: is a symlink or not a directory; refusing to follow it"
            raise UnsafeLogDir(msg) from exc
        raise
    try:
        _check_dir(fd, what)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_uid_dir(log_dir_fd: int, uid: int, *, create: bool = True) -> int:
    """Open the directory of *uid* below ``log_dir`` (see :func:`open_dir`)."""
    return open_dir(log_dir_fd, str(uid), create=create, what=f"uid directory {uid}")


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Write all of *data* to *fd* (``os.write`` may write less)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def make_unnamed(dir_fd: int, count: int) -> list[int]:
    """Make *count* unnamed files in *dir_fd* (``O_TMPFILE``, append mode, 0600).

    Nothing is left behind if they are closed unlinked (or the process
    dies): :func:`link_unnamed` names one.

    Raises:
        OSError: ``EOPNOTSUPP``, ``EISDIR`` or ``EINVAL`` where the file
            system (or kernel) has no ``O_TMPFILE``; no file is left open.
    """
    fds: list[int] = []
    flags = os.O_TMPFILE | os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC
    try:
        fds.extend(os.open(".", flags, FILE_MODE, dir_fd=dir_fd) for _ in range(count))
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return fds


def link_unnamed(fd: int, dir_fd: int, name: str) -> int:
    """Give the unnamed file *fd* (``O_TMPFILE``) the name *name* in *dir_fd*.

    ``linkat`` through ``/proc/self/fd`` (linking an fd directly,
    ``AT_EMPTY_PATH``, needs ``CAP_DAC_READ_SEARCH``). Never replaces a file.

    Returns:
        0, or the errno of the failure (``EEXIST``: *name* exists).
    """
    try:
        os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=dir_fd, follow_symlinks=True)
    except OSError as exc:
        return exc.errno or errno.EIO
    return 0


def open_file(dir_fd: int, name: str, flags: int, *, what: str) -> int:
    """Open *name* below *dir_fd* without following a symlink, and check it.

    Args:
        dir_fd: a verified directory fd.
        name: a plain file name (no ``/``).
        flags: ``os.O_*`` access flags; ``O_NOFOLLOW`` and ``O_CLOEXEC`` are added.
        what: how to name the file in errors.

    Raises:
        UnsafeLogDir: a symlink, not a regular file, more than one link, or
            owned by someone else.
        OSError: anything else (``ENOENT``, ``ENOSPC`` …).
    """
    try:
        fd = os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            msg = f"{what}: is a symlink; refusing to follow it"
            raise UnsafeLogDir(msg) from exc
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            msg = f"{what}: not a regular file"
            raise UnsafeLogDir(msg)
        if st.st_nlink > 1:
            msg = f"{what}: has {st.st_nlink} hard links; refusing to write through it"
            raise UnsafeLogDir(msg)
        if st.st_uid != os.geteuid():
            msg = f"{what}: owned by uid {st.st_uid}, not by the daemon"
            raise UnsafeLogDir(msg)
    except BaseException:
        os.close(fd)
        raise
    return fd
