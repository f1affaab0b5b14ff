"""What the sync and the trio client share: settings, encoder, errors, connecting.

How this works: :class:`ClientBase` resolves the socket path once (a broken
config is reported, never raised: the client then holds and drops records
like one whose daemon is down), makes the frame encoder, and opens
connections: the non-blocking connect and ``SO_PEERCRED`` check of
``_connect.py``, then, in acknowledged mode, the hello. A fresh socket's
buffer is empty, so the hello's 19 bytes always go in one ``send()``; the
I/O layers (a thread, a trio task) only ever see a ready connection.
Problems a human should hear about are told once per kind (``_tell``).
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, TypedDict

from trio_logd.client._connect import (
    NoSocket,
    PeerRefused,
    connect,
    default_socket_path,
    socket_origin,
)
from trio_logd.client._encode import FrameEncoder
from trio_logd.client._outbox import Outbox
from trio_logd.errors import ClientError, ConfigError, ConnectFailed, LogdError
from trio_logd.protocol.ack import ACK_HELLO

__all__ = [
    "CHUNK_BYTES",
    "DEFAULT_BUFFER_BYTES",
    "DEFAULT_TIMEOUT",
    "ClientBase",
    "ClientOptions",
    "ClientStatistics",
]

#: One ``send()`` takes up to this much: ~2000 typical records per system call.
CHUNK_BYTES: Final = 256 * 1024
#: Records held while the daemon is away or slow: about 40 000 typical records.
DEFAULT_BUFFER_BYTES: Final = 8 * 1024 * 1024
#: The longest any call waits for delivery, by default (``send``, ``flush``, ``close``).
DEFAULT_TIMEOUT: Final = 1.0
#: A connection that lasted this long worked: the reconnect backoff starts over.
HEALTHY_AFTER: Final = 1.0


@dataclass(frozen=True, slots=True)
class ClientStatistics:
    """A snapshot of a client's counters (all since it was made, or since ``fork()``).

    Attributes:
        connected: a connection is open now.
        connects: connections made.
        accepted: records taken into the buffer.
        delivered: records written to the daemon (acknowledged mode: stored).
        pending: records accepted but not yet delivered (queued or in flight).
        pending_bytes: their size.
        dropped: records refused (buffer full, client closed, not encodable)
            or thrown away at close.
        daemon_dropped: acknowledged mode: records the daemon dropped by
            policy, by reason (``rate``, ``quota``, ``disk``…).
        last_error: the last reason a connection failed or broke, if any.
    """

    connected: bool
    connects: int
    accepted: int
    delivered: int
    pending: int
    pending_bytes: int
    dropped: int
    daemon_dropped: dict[str, int] = field(default_factory=dict)
    last_error: str | None = None


class ClientOptions(TypedDict, total=False):
    """Client settings that ``LogdHandler`` and ``LogdLoggerFactory`` pass on."""

    facility: str | int
    timeout: float
    ack: bool
    expected_uid: int | None
    buffer_bytes: int
    config: str | None
    reconnect_max: float
    on_error: Callable[[BaseException], None] | None


def print_error(exc: BaseException) -> None:
    """The default ``on_error``: one line on stderr."""
    with contextlib.suppress(Exception):  # stderr closed or broken: nothing left to tell
        print(f"trio-logd client: {exc}", file=sys.stderr, flush=True)


class ClientBase:
    """Settings and connecting, for :class:`LogdClient` and :class:`AsyncLogdClient`.

    Args:
        socket_path: the ingest socket; default: found as the CLIs find it
            (``$TRIO_LOGD_CONFIG``, ``/etc/trio-logd/logd.toml``, defaults).
        app: APP-NAME of records that name none (default: the program name).
        facility: facility keyword (``user``, ``daemon``, ``local0``…).
        timeout: the longest ``send``, ``flush`` and ``close`` wait, seconds.
        ack: acknowledged mode: records count as delivered once the daemon
            confirms they are stored; unconfirmed ones are sent again after
            a reconnect, with a ``delivery_id`` field to spot duplicates.
        expected_uid: the daemon's uid; the default trusts the owner of the
            socket's directory. Root is always trusted.
        buffer_bytes: records held while they cannot be sent; beyond it new
            records are dropped, counted and reported once the daemon is back.
        config: a config file to find the socket in.
        reconnect_max: the longest pause between connection attempts, seconds.
        on_error: called (from any thread) once per kind of problem worth a
            human's attention: a socket served by an untrusted uid, a broken
            config; default: one line on stderr.

    Raises:
        ValueError: unknown facility.
    """

    def __init__(
        self,
        socket_path: str | os.PathLike[str] | None = None,
        *,
        app: str | None = None,
        facility: str | int = "user",
        timeout: float = DEFAULT_TIMEOUT,
        ack: bool = False,
        expected_uid: int | None = None,
        buffer_bytes: int = DEFAULT_BUFFER_BYTES,
        config: str | None = None,
        reconnect_max: float = 5.0,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.timeout = timeout
        self.ack = ack
        self.expected_uid = expected_uid
        self.reconnect_max = reconnect_max
        self._on_error = on_error or print_error
        self._told: set[str] = set()
        self._last_error: str | None = None
        self._config_error: LogdError | None = None
        self._connects = 0
        self.path: str | None
        #: where a default path came from, for the message when nothing is there
        self._origin: str | None = None
        if socket_path is not None:
            self.path = os.fspath(socket_path)
        else:
            try:
                self.path = default_socket_path(config)
                self._origin = socket_origin(config)
            except ConfigError as exc:
                self.path = None
                self._config_error = exc
                self._tell(exc)
        self._encoder = FrameEncoder(facility=facility, default_app=app, delivery_ids=ack)
        self.app = self._encoder.default_app
        self._setup(Outbox(buffer_bytes, ack=ack))

    def _setup(self, outbox: Outbox) -> None:
        """The I/O side's own state, around *outbox*."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path!r} ack={self.ack}>"

    def _tell(self, exc: BaseException) -> None:
        """Report a problem worth a human's attention, once per kind."""
        key = type(exc).__name__
        if key in self._told:
            return
        self._told.add(key)
        with contextlib.suppress(Exception):
            self._on_error(exc)

    def _open(self) -> socket.socket:
        """A checked connection, in acknowledged mode with the hello sent.

        Raises:
            PeerRefused: served by an untrusted uid (told once).
            ConnectFailed: no daemon (or no config) to connect to.
        """
        try:
            if self.path is None:
                msg = f"no socket: {self._config_error}"
                raise ConnectFailed(msg)
            sock = connect(self.path, self.expected_uid)
            if self.ack:
                try:
                    sent = sock.send(ACK_HELLO)  # a new socket's buffer is empty: all of it goes
                except OSError as exc:
                    sock.close()
                    msg = f"{self.path}: {exc.strerror or exc}"
                    raise ConnectFailed(msg) from exc
                if sent != len(ACK_HELLO):
                    sock.close()
                    msg = f"{self.path}: could not write the acknowledgement hello"
                    raise ConnectFailed(msg)
        except NoSocket as exc:  # told at once: the daemon is not there, or the path is wrong
            origin = f" ({self._origin})" if self._origin else ""
            msg = f"{exc}: is the daemon running?{origin}"
            self._last_error = msg
            self._tell(NoSocket(msg))
            raise NoSocket(msg) from exc
        except ClientError as exc:
            self._last_error = str(exc)
            if isinstance(exc, PeerRefused):
                self._tell(exc)
            raise
        self._connects += 1
        return sock

    def _statistics(self, box: Outbox, connected: bool) -> ClientStatistics:
        return ClientStatistics(
            connected=connected,
            connects=self._connects,
            accepted=box.accepted,
            delivered=box.delivered,
            pending=len(box.queued) + len(box.inflight),
            pending_bytes=box.held,
            dropped=box.dropped,
            daemon_dropped=dict(box.daemon_dropped),
            last_error=self._last_error,
        )
