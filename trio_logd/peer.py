"""Kernel-attested identity of the process at the other end of a Unix socket.

How this works: ``SO_PEERCRED`` gives the pid/uid/gid of whoever called
``connect()`` (or ``listen()``, for the client's view of a server);
``SCM_CREDENTIALS`` ancillary data (with ``SO_PASSCRED`` on the listener) gives
the credentials of the process that wrote each read's bytes. Neither can be
forged by an unprivileged process. ``exe`` and ``comm``, and the
:class:`Attribution` (cgroup and the systemd names in it, audit login uid and
session), come from ``/proc`` and are only trusted when a pidfd
(``SO_PEERPIDFD``, Linux >= 6.5) proves that the pid still names the same
process after we read them; otherwise they are left out, never guessed. The
LSM label comes from the kernel with the socket (``SO_PEERSEC``), or with
each datagram (``SCM_SECURITY``: :func:`datagram_writer`).
"""

from __future__ import annotations

import errno
import functools
import os
import signal
import socket
import struct
from typing import Final, NamedTuple, Protocol

from trio_logd.credentials import NO_ATTRIBUTION, Attribution, PeerCred

__all__ = [
    "MAX_LABEL_BYTES",
    "NO_ATTRIBUTION",
    "OVERFLOW_ID",
    "SCM_CREDENTIALS_SPACE",
    "SCM_LABELLED_SPACE",
    "SCM_SECURITY",
    "SO_PASSRIGHTS",
    "SO_PASSSEC",
    "Attribution",
    "HasSockopts",
    "PeerCred",
    "ProcessIdentity",
    "creds_from_ancdata",
    "datagram_writer",
    "decode_writer_key",
    "lsm_labels",
    "probe_socket",
    "read_peer_cred",
    "read_peer_groups",
    "read_peer_label",
    "read_process_identity",
    "read_writer_identity",
    "read_writer_pidns",
]

#: ``SO_PEERPIDFD`` from <asm-generic/socket.h> (Linux 6.5); Python 3.11 lacks the name.
SO_PEERPIDFD: Final = getattr(socket, "SO_PEERPIDFD", 77)
#: ``SO_PEERGROUPS`` from <asm-generic/socket.h> (Linux 4.13).
SO_PEERGROUPS: Final = getattr(socket, "SO_PEERGROUPS", 59)
#: ``SO_PASSSEC`` from <asm-generic/socket.h> (Linux 2.6.18): ``SCM_SECURITY`` on each read.
SO_PASSSEC: Final = getattr(socket, "SO_PASSSEC", 34)
#: ``SO_PASSRIGHTS`` from <asm-generic/socket.h> (Linux 6.16): off, a sender's
#: ``SCM_RIGHTS`` fails with ``EPERM`` instead of installing fds in the receiver.
SO_PASSRIGHTS: Final = getattr(socket, "SO_PASSRIGHTS", 83)
#: ``SCM_SECURITY`` from <linux/socket.h>: the sender's LSM label (``SO_PASSSEC``).
SCM_SECURITY: Final = getattr(socket, "SCM_SECURITY", 0x03)

#: ``struct ucred { pid_t pid; uid_t uid; gid_t gid; }`` (socket(7)).
_UCRED: Final = struct.Struct("iII")
#: Ancillary buffer size for one SCM_CREDENTIALS message.
SCM_CREDENTIALS_SPACE: Final = socket.CMSG_SPACE(_UCRED.size)
#: The kernel's overflow uid/gid (/proc/sys/kernel/overflowuid): an id that is
#: not mapped into our user namespace. With pid 0 it means "unknown".
OVERFLOW_ID: Final = 65534
#: ``AUDIT_UID_UNSET`` / the unset session id: ``(unsigned)-1`` (include/linux/audit.h).
AUDIT_UNSET: Final = 4294967295
#: Bytes of ``/proc/PID/cgroup`` read: every hierarchy's line, and a v2 path
#: well past ``MAX_CGROUP_BYTES`` (a longer file is cut: no ``cgroup``).
_CGROUP_READ: Final = 65536
#: The room for an LSM label, its NUL included (SELinux contexts are < 256
#: bytes, AppArmor profile names and Smack labels shorter still); a longer one
#: is left out, never cut. 1024 is also the most Python's ``getsockopt`` takes
#: (a larger buffer is refused before the call, as "buflen out of range").
MAX_LABEL_BYTES: Final = 1024
#: Ancillary buffer size for ``SCM_CREDENTIALS`` and an ``SCM_SECURITY`` label
#: (the kernel puts them in that order; a label that does not fit is cut, and
#: a cut one fills the room: ``decode_label`` leaves it out).
SCM_LABELLED_SPACE: Final = SCM_CREDENTIALS_SPACE + socket.CMSG_SPACE(MAX_LABEL_BYTES)
#: One ``int`` of an ``SCM_RIGHTS`` message.
_FD: Final = struct.Struct("i")


class ProcessIdentity(NamedTuple):
    """What ``/proc`` said about a peer, each ``None`` when it could not be verified.

    ``pidns`` is ``True`` when the peer is in another pid namespace than the
    daemon (a descendant one: the kernel reports pid 0 for the others).
    """

    exe: str | None
    comm: str | None
    pidns: bool | None = None
    attribution: Attribution = NO_ATTRIBUTION


class HasSockopts(Protocol):
    """A socket (stdlib or ``trio.socket``): what the readers here need of it."""

    def getsockopt(self, level: int, optname: int, buflen: int, /) -> bytes: ...


def read_peer_cred(sock: HasSockopts) -> PeerCred:
    """Return ``SO_PEERCRED`` of a connected Unix socket.

    Args:
        sock: a connected ``AF_UNIX`` socket (or anything with ``getsockopt``).

    Returns:
        The peer's pid, uid and gid at ``connect()``/``listen()`` time.

    Raises:
        OSError: the socket is not a connected Unix socket.
    """
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    return PeerCred(*_UCRED.unpack(raw))


def probe_socket(path: str, timeout: float = 2.0) -> PeerCred | None:
    """Connect to *path*: return the server's credentials, or ``None`` if nobody answers.

    ``None`` covers a missing path and a stale socket (``ECONNREFUSED``).
    Used by the daemon before it binds and by ``trio-logd status``.

    Raises:
        OSError: the path exists but is not a socket we can probe (e.g. EACCES).
    """
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    s.settimeout(timeout)
    try:
        s.connect(path)
    except (FileNotFoundError, ConnectionRefusedError):
        return None
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTSOCK):
            return None
        raise
    else:
        return read_peer_cred(s)
    finally:
        s.close()


def read_peer_groups(sock: HasSockopts) -> tuple[int, ...]:
    """Return the peer's supplementary groups from ``SO_PEERGROUPS``.

    The list comes from the kernel (the peer's credentials at connect time),
    not from ``/etc/group``. Returns ``()`` where the kernel lacks the option.
    """
    size = 64 * 4
    while True:
        try:
            raw = sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, size)
        except OSError as exc:
            if exc.errno == 34 and size < 65536 * 4:  # ERANGE: more groups than room
                size *= 4
                continue
            return ()
        return struct.unpack(f"{len(raw) // 4}I", raw)


def open_peer_pidfd(sock: HasSockopts) -> int | None:
    """Return a pidfd for the peer (``SO_PEERPIDFD``), or ``None`` where unsupported."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, SO_PEERPIDFD, 4)
    except OSError:
        return None
    fd: int = struct.unpack("i", raw)[0]
    return fd if fd >= 0 else None


def read_peer_label(sock: HasSockopts) -> str | None:
    """Return the peer's LSM security label (``SO_PEERSEC``), or ``None``.

    The kernel takes it from the peer's credentials at ``connect()``; on a
    host without an LSM that provides one (:func:`lsm_labels`) the call is
    skipped. A label longer than ``MAX_LABEL_BYTES`` (``ERANGE``) is left out.
    """
    if not lsm_labels():
        return None
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERSEC, MAX_LABEL_BYTES)
    except OSError:
        return None
    return decode_label(raw)


@functools.cache
def lsm_labels() -> bool:
    """Whether the kernel has an LSM that labels sockets (SELinux, AppArmor, Smack).

    Asked once, of a socket pair of our own: ``SO_PEERSEC`` answers there
    exactly when it would for a client; without such an LSM it fails with
    ``ENOPROTOOPT`` (and ``SCM_SECURITY`` never comes with a datagram).
    """
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with a, b:
        try:
            a.getsockopt(socket.SOL_SOCKET, socket.SO_PEERSEC, MAX_LABEL_BYTES)
        except OSError as exc:
            return exc.errno != errno.ENOPROTOOPT
    return True


def decode_label(raw: bytes) -> str | None:
    """An LSM label as the kernel gives it (maybe NUL-terminated), as text; ``None`` if empty."""
    raw = raw.split(b"\0", 1)[0]
    if not raw or len(raw) >= MAX_LABEL_BYTES:
        return None
    return raw.decode("utf-8", "replace")


def _read_small(path: str, size: int) -> bytes | None:
    """Up to *size* bytes of a ``/proc`` file (one ``read``: the kernel fills it at once)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return os.read(fd, size)
    except OSError:
        return None
    finally:
        os.close(fd)


def _audit_id(raw: bytes | None) -> int | None:
    if raw is None or not raw.strip().isdigit():
        return None
    value = int(raw)
    return None if value == AUDIT_UNSET else value


def _read_attribution(pid: int, label: str | None) -> Attribution:
    """Read a process's cgroup, login uid and session from ``/proc`` (verify after!)."""
    # here, not at the top: the clients import this module for SO_PEERCRED, and
    # the cgroup parser's patterns were 3 ms of `trio-logd status`'s start-up
    from trio_logd.cgroup import MAX_CGROUP_BYTES, NO_NAMES, cgroup_path, unit_names

    raw = _read_small(f"/proc/{pid}/cgroup", _CGROUP_READ)
    path = None if raw is None else cgroup_path(raw)
    names = NO_NAMES if path is None else unit_names(path)
    if path is not None and len(path.encode()) > MAX_CGROUP_BYTES:
        path = None  # too long to put in every record; its names were read
    loginuid = _audit_id(_read_small(f"/proc/{pid}/loginuid", 16))
    # the kernel gives a session id when it sets a login uid, and unsets it
    # with it (audit_set_loginuid; both inherited at fork): a service that was
    # never logged in (loginuid unset) saves the read (~20 us here)
    session = None if loginuid is None else _audit_id(_read_small(f"/proc/{pid}/sessionid", 16))
    return Attribution(path, *names, loginuid=loginuid, session=session, label=label)


def read_process_identity(sock: HasSockopts, pid: int) -> ProcessIdentity:
    """Read the peer's ``exe``, ``comm`` and attribution, verified through a pidfd.

    We read ``/proc/PID/exe``, ``comm``, ``cgroup``, ``loginuid`` and
    ``sessionid`` and then check, through the pidfd the kernel bound to the
    socket's peer, that the process is still alive: if it is, the pid cannot
    have been recycled in between, so what we read belongs to the sender.
    Without a pidfd (kernel < 6.5) nothing can be verified and those fields
    are ``None``. The label (``SO_PEERSEC``) needs no pidfd: the kernel
    keeps it with the socket.

    Args:
        sock: the accepted connection.
        pid: the peer's pid from ``SO_PEERCRED``.

    Returns:
        The verified fields; each is ``None`` when unreadable or unverifiable.
    """
    label = read_peer_label(sock)
    unverified = ProcessIdentity(None, None, None, Attribution(label=label))
    if pid <= 0:
        return unverified
    pidfd = open_peer_pidfd(sock)
    if pidfd is None:
        return unverified
    try:
        try:
            exe: str | None = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            exe = None
        try:
            with open(f"/proc/{pid}/comm", "rb") as f:
                comm: str | None = f.read(64).rstrip(b"\n").decode("utf-8", "replace")
        except OSError:
            comm = None
        pidns = _in_other_pidns(pid)
        attribution = _read_attribution(pid, label)
        if not _alive(pidfd):  # gone: the pid may name another process now
            return unverified
        return ProcessIdentity(exe, comm, pidns, attribution)
    finally:
        os.close(pidfd)


def read_writer_identity(writer: PeerCred) -> ProcessIdentity:
    """Read a writer's pid namespace and attribution (no ``exe``/``comm``: see below).

    For a writer other than the connection's peer (``SCM_CREDENTIALS`` of a
    read) there is no pidfd from the socket: one is opened on the pid now
    (``pidfd_open``), ``/proc`` read, and the pidfd checked to be still
    alive and the process to hold the writer's uid (real, effective, saved
    or file-system), so that the answer is about a process that held the
    pid from before the read to after it. A writer that exited before we
    looked, whose pid was then reused by a process of the same uid, is the
    one case this cannot tell apart (docs/security.md); ``exe``/``comm``
    stay out, as before.

    Returns:
        ``exe``/``comm`` ``None``; ``pidns`` and the attribution, each
        ``None`` when it cannot be verified (gone, no pidfd support, another
        uid on the pid, a ``/proc`` of another pid namespace).
    """
    pid = writer.pid
    if pid <= 0:
        return ProcessIdentity(None, None)
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return ProcessIdentity(None, None)
    try:
        pidns = _in_other_pidns(pid)
        attribution = _read_attribution(pid, None)
        if not _alive(pidfd) or not _holds_uid(pid, writer.uid):
            return ProcessIdentity(None, None)
        return ProcessIdentity(None, None, pidns, attribution)
    finally:
        os.close(pidfd)


def _holds_uid(pid: int, uid: int) -> bool:
    """Whether *uid* is one of the process's four uids (``Uid:`` of ``/proc/PID/status``)."""
    status = _read_small(f"/proc/{pid}/status", 8192) or b""
    start = status.find(b"\nUid:")
    if start < 0:
        return False
    end = status.find(b"\n", start + 1)
    return str(uid).encode() in status[start + 5 : end].split()


def read_writer_pidns(pid: int) -> bool | None:
    """Whether the process *pid* (a writer's ``SCM_CREDENTIALS``) is in another pid namespace.

    For a writer other than the connection's peer there is no pidfd from the
    socket: one is opened on the pid now (``pidfd_open``), the namespace read,
    and the pidfd checked to be still alive, so that the answer is about the
    process that holds the pid from before the read to after it. A writer
    that exited before we looked (and whose pid was then reused) is the one
    case this cannot tell apart (docs/security.md).

    Returns:
        ``True``/``False``; ``None`` when it cannot be verified (gone, no
        pidfd support, a ``/proc`` of another pid namespace).
    """
    if pid <= 0:
        return None
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return None
    try:
        pidns = _in_other_pidns(pid)
        return pidns if _alive(pidfd) else None
    finally:
        os.close(pidfd)


def _alive(pidfd: int) -> bool:
    try:
        signal.pidfd_send_signal(pidfd, 0)
    except ProcessLookupError:  # ESRCH
        return False
    except PermissionError:
        pass  # EPERM (an unprivileged daemon, another uid's process): alive
    return True


def _nspid(path: str) -> list[str] | None:
    """The ``NSpid:`` line of a ``/proc/…/status`` file, split, or ``None``."""
    try:
        with open(path, "rb") as f:
            status = f.read(8192)
    except OSError:
        return None
    start = status.find(b"\nNSpid:")
    if start < 0:
        return None
    end = status.find(b"\n", start + 1)
    return status[start + 7 : end if end >= 0 else None].decode("ascii", "replace").split()


@functools.cache
def _own_pidns_depth() -> int | None:
    """How many pid namespaces ``/proc`` shows the daemon in; ``None`` if /proc is not ours.

    ``/proc/PID/status`` lists a process's pid in every namespace from the
    one ``/proc`` was mounted for down to its own (``NSpid``). When that
    first pid is not our own, this ``/proc`` belongs to another namespace
    and its pids are not the ones the kernel reports to us.
    """
    nspid = _nspid("/proc/self/status")
    if not nspid or nspid[0] != str(os.getpid()):
        return None
    return len(nspid)


def _in_other_pidns(pid: int) -> bool | None:
    """Whether *pid* (a pid in our namespace) is in a deeper pid namespace than ours.

    A pid the kernel reports to us is in our namespace or a descendant (any
    other peer is reported as pid 0), so one more ``NSpid`` entry than ours
    means another namespace. ``NSpid`` is world-readable, unlike
    ``/proc/PID/ns/pid`` (ptrace access), so an unprivileged daemon can read it.
    """
    own = _own_pidns_depth()
    if own is None:
        return None
    nspid = _nspid(f"/proc/{pid}/status")
    if not nspid:
        return None
    return len(nspid) > own


def creds_from_ancdata(ancdata: list[tuple[int, int, bytes]]) -> PeerCred | None:
    """Return the ``SCM_CREDENTIALS`` in a ``recvmsg()`` ancillary list, if any."""
    for level, kind, data in ancdata:
        if (
            level == socket.SOL_SOCKET
            and kind == socket.SCM_CREDENTIALS
            and len(data) >= _UCRED.size
        ):
            return PeerCred(*_UCRED.unpack_from(data))
    return None


def datagram_writer(ancdata: list[tuple[int, int, bytes]]) -> tuple[bytes, list[int]]:
    """Split a datagram's ancillary data into its writer's key and the fds to close.

    The key is the raw ``SCM_CREDENTIALS`` followed by the raw ``SCM_SECURITY``
    label, if any (``b""`` without credentials: an unknown writer, its label
    not kept): equal keys mean one writer with one label, so a stamp can be
    kept per key (:func:`decode_writer_key`). Every fd of an ``SCM_RIGHTS``
    message (a sender may attach some; with ``SO_PASSRIGHTS`` on, the kernel
    installs them in the reader) is returned, whole ``int``s only, so that the
    caller closes each.

    Returns:
        ``(key, fds)``.
    """
    creds = label = b""
    fds: list[int] = []
    for level, kind, data in ancdata:
        if level != socket.SOL_SOCKET:
            continue
        if kind == socket.SCM_CREDENTIALS and len(data) >= _UCRED.size:
            creds = data[: _UCRED.size]
        elif kind == SCM_SECURITY:
            label = data
        elif kind == socket.SCM_RIGHTS:
            whole = len(data) - len(data) % _FD.size
            fds.extend(fd for (fd,) in _FD.iter_unpack(data[:whole]))
    return (creds + label if creds else b""), fds


def decode_writer_key(key: bytes) -> tuple[PeerCred | None, str | None]:
    """The credentials and LSM label in a key of :func:`datagram_writer`.

    Returns:
        ``(cred, label)``; ``cred`` is ``None`` for the empty key, ``label``
        ``None`` when there was none, it was empty, or too long (cut).
    """
    if len(key) < _UCRED.size:
        return None, None
    rest = key[_UCRED.size :]
    return PeerCred(*_UCRED.unpack_from(key)), (decode_label(rest) if rest else None)
