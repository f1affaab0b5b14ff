"""Accepting connections: the seam between the listening sockets and the handlers.

How this works: :func:`serve_listener` takes any ``trio.abc.Listener`` whose
``accept`` gives an :class:`Accepted`: a stream, and who the kernel says is at
the other end. The daemon's listener is :class:`PeerListener` over a real Unix
socket: it reads ``SO_PEERCRED`` from the accepted socket, and
``SO_PEERGROUPS`` when a handler asks. Nothing the client sends can change
either. Tests hand the handlers memory streams instead
(``trio.testing.memory_stream_pair``), each with a :class:`~trio_logd.peer.PeerCred`
the test chooses (:meth:`Accepted.for_stream`): there is no socket to ask, so
the credentials are given explicitly, never taken from the stream's bytes.

The accept loop keeps the daemon's own bookkeeping: running out of
descriptors (``EMFILE``/``ENFILE``) or memory is counted in ``FdCounters``
and retried, never fatal.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

import structlog
import trio

from trio_logd.peer import PeerCred, read_peer_cred, read_peer_groups
from trio_logd.server._fdlimit import FdCounters

__all__ = ["ACCEPT_RETRY", "Accepted", "PeerListener", "serve_listener"]

log = structlog.get_logger("trio_logd.ingest")

#: accept() errors that mean "out of a resource for now", not "listener broken"
#: (the same set trio's SocketListener sleeps on).
_ACCEPT_CAPACITY_ERRORS: Final = frozenset(
    {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
)
#: Seconds the accept loop waits after running out of descriptors before it tries again.
ACCEPT_RETRY: Final = 0.05


def _no_groups() -> tuple[int, ...]:
    return ()


@dataclass(frozen=True, eq=False, slots=True)
class Accepted(trio.abc.AsyncResource):
    """One accepted connection: its stream and the kernel's word on its peer.

    Attributes:
        stream: the connection; closing it closes the socket.
        cred: the peer's pid, uid and gid (``SO_PEERCRED`` at accept).
        read_groups: the peer's supplementary groups (``SO_PEERGROUPS``),
            read when called: most connections never need them.
        socket: the accepted socket, for what only a socket has (its
            descriptor, ``recvmsg`` with ``SCM_CREDENTIALS``, the peer's
            pidfd); ``None`` for a memory stream.
    """

    stream: trio.abc.HalfCloseableStream
    cred: PeerCred
    read_groups: Callable[[], tuple[int, ...]] = _no_groups
    socket: trio.socket.SocketType | None = None

    @classmethod
    def from_socket(cls, sock: trio.socket.SocketType) -> Accepted:
        """An accepted Unix socket, its peer's credentials read from the kernel.

        Raises:
            OSError: ``SO_PEERCRED`` could not be read.
        """
        cred = read_peer_cred(sock)
        return cls(trio.SocketStream(sock), cred, lambda: read_peer_groups(sock), sock)

    @classmethod
    def for_stream(
        cls, stream: trio.abc.HalfCloseableStream, cred: PeerCred, groups: tuple[int, ...] = ()
    ) -> Accepted:
        """A stream without a socket (tests), with the credentials it is to be served as."""
        return cls(stream, cred, lambda: groups)

    async def aclose(self) -> None:
        """Close the connection."""
        await self.stream.aclose()


class PeerListener(trio.abc.Listener[Accepted]):
    """A listening Unix socket whose connections come with their peer's credentials.

    ``accept`` raises the ``OSError`` of ``accept(2)`` as it is, so that
    :func:`serve_listener` can count a shortage of descriptors.
    """

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self.socket = sock

    async def accept(self) -> Accepted:
        """Wait for the next connection and read its peer's credentials."""
        while True:
            sock, _addr = await self.socket.accept()
            try:
                return Accepted.from_socket(sock)
            except OSError as exc:  # gone already: nothing to serve
                sock.close()
                log.debug("peer_cred_failed", error=repr(exc))

    async def aclose(self) -> None:
        """Close the listening socket."""
        self.socket.close()
        await trio.lowlevel.checkpoint()


async def serve_listener(
    listener: trio.abc.Listener[Accepted],
    handler_nursery: trio.Nursery,
    handler: Callable[[Accepted], Awaitable[object]],
    *,
    fds: FdCounters | None = None,
    name: str = "ingest",
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Accept connections forever, starting ``handler(accepted)`` in *handler_nursery*.

    The loop never waits on a client: the handler decides, in its own task,
    whether to keep the connection. Running out of file descriptors (or
    memory) does not stop the listener: it counts the error in *fds* (as
    ``NAME_accept``), logs the first of a run, waits a little, and tries
    again (as trio's ``SocketListener`` does); connections already accepted
    go on.
    """
    task_status.started()
    failing = False
    while True:
        try:
            accepted = await listener.accept()
        except OSError as exc:
            if exc.errno in _ACCEPT_CAPACITY_ERRORS:
                if fds is not None:
                    fds.note_exhausted(f"{name}_accept")
                if not failing:
                    log.error("accept_failed", listener=name, error=os.strerror(exc.errno or 0))
                failing = True
                await trio.sleep(ACCEPT_RETRY)
                continue
            raise
        failing = False
        handler_nursery.start_soon(handler, accepted)
