"""Binding the daemon's Unix sockets, and the control socket as a pid file.

How this works: a socket is bound under a temporary name in its final
directory, given its mode, put in listening state, and only then renamed over
its path, so a client never finds a half-made socket, and a stale one left by
a crashed daemon is replaced atomically. Before binding anything the daemon
probes the control socket path: a socket that answers belongs to a running
daemon (whose pid ``SO_PEERCRED`` tells), one that refuses connections is
stale.

``SO_PASSCRED`` is set on listening ingest sockets before ``listen()``: an
accepted socket inherits it, so even its first bytes carry the writer's
``SCM_CREDENTIALS`` (set late, the kernel reports pid 0 / uid 65534 for bytes
queued before).

On a datagram socket the daemon also asks for each sender's LSM label
(``SO_PASSSEC``), but only where the kernel lets it refuse passed fds first
(``SO_PASSRIGHTS`` off, Linux 6.16): an ancillary buffer with room for a
label has room for ``SCM_RIGHTS`` fds too, which the kernel would install
in the daemon, and closing a sender's fd can hang (a FUSE file's ``flush``
waits for its server: the attacker). Where it cannot, the buffer keeps room
for the credentials only, the kernel discards passed fds, and datagram
records carry no ``label``. Where the kernel has no LSM that labels sockets
(``peer.lsm_labels``), ``SO_PASSSEC`` stays off and the buffer small: room
for a label in every read, for a label that never comes, cost datagrams 1-2 %.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from dataclasses import dataclass
from typing import Final

from trio_logd.errors import LogdError
from trio_logd.peer import SO_PASSRIGHTS, SO_PASSSEC, PeerCred, lsm_labels, probe_socket

__all__ = [
    "AlreadyRunning",
    "BoundSocket",
    "bind_unix",
    "pass_labels",
    "probe_datagram",
    "unlink_if_ours",
]

#: listen() backlog: clients reconnecting after a restart arrive in bursts.
BACKLOG: Final = 1024


class AlreadyRunning(LogdError):
    """Another daemon answers on the control socket."""

    def __init__(self, path: str, peer: PeerCred) -> None:
        # the uid tells a daemon from a squatter of the path (another user's process)
        super().__init__(f"already running (pid {peer.pid}): {path} answers (uid {peer.uid})")
        self.path = path
        self.peer = peer


@dataclass(frozen=True, slots=True)
class BoundSocket:
    """A listening socket and what identifies the path we bound."""

    sock: socket.socket
    path: str
    inode: int


def probe_datagram(path: str) -> bool:
    """Whether a process has a datagram socket bound at *path* (a stale one refuses).

    A datagram socket has no ``SO_PEERCRED``: who serves it cannot be told.
    """
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    try:
        s.connect(path)
    except OSError:  # ECONNREFUSED (stale), ENOENT, EPROTOTYPE (a stream socket) ...
        return False
    else:
        return True
    finally:
        s.close()


def pass_labels(sock: socket.socket) -> bool:
    """Refuse passed fds on the datagram socket *sock*, then ask for labels (module doc).

    Returns:
        Whether ``SO_PASSSEC`` is on: the kernel refuses ``SCM_RIGHTS``
        (``SO_PASSRIGHTS`` off; a sender gets ``EPERM``) and has an LSM
        that labels sockets. ``False`` on a kernel without ``SO_PASSRIGHTS``
        (no labels; passed fds are discarded by the kernel as they do not
        fit the buffer) or without such an LSM (fds refused all the same).
    """
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_PASSRIGHTS, 0)
    except OSError:  # ENOPROTOOPT before Linux 6.16
        return False
    if not lsm_labels():
        return False
    sock.setsockopt(socket.SOL_SOCKET, SO_PASSSEC, 1)
    return True


def bind_unix(
    path: str, *, kind: int = socket.SOCK_STREAM, mode: int = 0o666, passcred: bool = False
) -> BoundSocket:
    """Bind and (for streams) listen on a Unix socket at *path*, atomically.

    Args:
        path: absolute path of the socket; its directory is created (0755).
        kind: ``SOCK_STREAM`` or ``SOCK_DGRAM``.
        mode: permission bits of the socket file.
        passcred: set ``SO_PASSCRED`` before ``listen()`` (and, on a
            datagram socket, :func:`pass_labels` before ``bind()``).

    Raises:
        LogdError: *path* is served by a live process, or exists and is not a socket.
        OSError: binding failed.
    """
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o755, exist_ok=True)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            msg = f"{path}: exists and is not a socket; refusing to replace it"
            raise LogdError(msg)
        if kind == socket.SOCK_STREAM:
            peer = probe_socket(path)
            if peer is not None:
                msg = f"{path}: in use by pid {peer.pid} (uid {peer.uid})"
                raise LogdError(msg)
        elif probe_datagram(path):
            msg = f"{path}: a datagram socket another process serves (journald, rsyslog?)"
            raise LogdError(msg)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    sock = socket.socket(socket.AF_UNIX, kind | socket.SOCK_CLOEXEC)
    try:
        if passcred:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            if kind == socket.SOCK_DGRAM:
                pass_labels(sock)
        sock.bind(tmp)
        os.chmod(tmp, mode)
        if kind == socket.SOCK_STREAM:
            sock.listen(BACKLOG)
        os.rename(tmp, path)
        inode = os.stat(path).st_ino
    except BaseException:
        sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return BoundSocket(sock, path, inode)


def unlink_if_ours(bound: BoundSocket) -> None:
    """Remove the socket path if it is still the one we bound (not a successor's)."""
    try:
        if os.stat(bound.path).st_ino == bound.inode:
            os.unlink(bound.path)
    except OSError:
        pass
