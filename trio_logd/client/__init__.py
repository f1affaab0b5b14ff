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

from typing import TYPE_CHECKING, Final

from trio_logd._lazy import lazy_getattr

# Light: what the CLIs and the control client use (no trio, no structlog).
from trio_logd.client._connect import (
    PeerRefused,
    check_server,
    default_socket_path,
    socket_origin,
)

if TYPE_CHECKING:  # for the type checker, the same objects as __getattr__ gives
    from trio_logd.client._base import ClientStatistics
    from trio_logd.client._handler import LogdHandler
    from trio_logd.client._structlog import LogdLogger, LogdLoggerFactory
    from trio_logd.client._sync import LogdClient
    from trio_logd.client._trio import AsyncLogdClient

#: The clients, imported on first use (``__getattr__``): the trio client pulls in
#: trio and the structlog factory structlog, which a query CLI must not pay for
#: (``tests/cli/test_startup.py``).
_LAZY: Final = {
    "AsyncLogdClient": "trio_logd.client._trio",
    "ClientStatistics": "trio_logd.client._base",
    "LogdClient": "trio_logd.client._sync",
    "LogdHandler": "trio_logd.client._handler",
    "LogdLogger": "trio_logd.client._structlog",
    "LogdLoggerFactory": "trio_logd.client._structlog",
}

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


__getattr__ = lazy_getattr(__name__, _LAZY, globals())
