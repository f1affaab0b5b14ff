"""The client shim: log to trio-logd from Python (SPEC §8).

* :class:`LogdClient`: the thread-safe sync client (a background sender
  thread; ``emit`` never waits for I/O; fork-safe);
* :class:`AsyncLogdClient`: the trio client;
* :class:`LogdHandler`: a ``logging.Handler``;
* :class:`LogdLoggerFactory`: a structlog logger factory.

Each takes the ingest socket path as its first argument (default: found as
the CLIs find it), checks with ``SO_PEERCRED`` that the socket is served by
the expected daemon uid, and sends ``extra``/event-dict values as typed
``fields``. ``ack=True`` turns on acknowledged delivery. See docs/client.md.

For the CLIs and the control client: :func:`default_socket_path` and
:func:`socket_origin` (where the socket is, and why), :func:`check_server`
(whether a socket's server uid is trusted) and :class:`PeerRefused`.
"""

from __future__ import annotations

from trio_logd.client._base import ClientStatistics
from trio_logd.client._connect import (
    PeerRefused,
    check_server,
    default_socket_path,
    socket_origin,
)
from trio_logd.client._handler import LogdHandler
from trio_logd.client._structlog import LogdLogger, LogdLoggerFactory
from trio_logd.client._sync import LogdClient
from trio_logd.client._trio import AsyncLogdClient

__all__ = [
    "AsyncLogdClient",
    "ClientStatistics",
    "LogdClient",
    "LogdHandler",
    "LogdLogger",
    "LogdLoggerFactory",
    "PeerRefused",
    "check_server",
    "default_socket_path",
    "socket_origin",
]
