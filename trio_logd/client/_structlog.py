"""``LogdLoggerFactory``: structlog's event dicts to trio-logd, as typed fields.

How this works: structlog hands the wrapped logger whatever its last
processor returned. With no renderer at the end of the chain (the setup in
docs/client.md) that is the event dict itself, as keyword arguments: the
logger takes ``event`` as the text and every other key as a field, with its
JSON type. If a renderer did turn the event into a string, that string is
the text and there are no fields. The method name gives the severity
(``info`` → info, ``warning`` → warning, ``error``/``exception`` → err, …),
``exc_info`` becomes the ``exc_type``/``exception`` fields, as in
:class:`LogdHandler`. A method name the logger does not know logs at info.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from trio_logd.client._encode import exception_fields
from trio_logd.client._sync import LogdClient

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack for **kwargs needs Python 3.12

    from trio_logd.client._base import ClientOptions

__all__ = ["LogdLogger", "LogdLoggerFactory"]

#: structlog method name → severity code (RFC 5424).
_METHODS: Final = {
    "debug": 7, "info": 6, "msg": 6, "notice": 5, "warning": 4, "warn": 4,
    "error": 3, "err": 3, "exception": 3, "critical": 2, "crit": 2, "fatal": 2,
    "alert": 1, "emerg": 0, "emergency": 0, "failure": 3,
}  # fmt: skip


class LogdLogger:
    """The wrapped logger structlog calls: one method per level name.

    Made by :class:`LogdLoggerFactory`; each call sends one record and
    returns ``None``, never raising and never waiting for I/O.
    """

    __slots__ = ("_app", "_client", "_encoder")

    def __init__(self, client: LogdClient, app: str | None) -> None:
        self._client = client
        self._encoder = client._encoder
        self._app = app

    def _log(self, sev: int, args: tuple[Any, ...], kw: dict[str, Any]) -> None:
        client = self._client
        try:
            event = kw.pop("event", None)
            if args:  # a renderer made the event a string (or bytes)
                first = args[0]
                msg = (
                    bytes(first).decode("utf-8", "replace")
                    if isinstance(first, (bytes, bytearray))
                    else str(first)
                )
                if event is not None:
                    kw["event"] = event
            elif event is None:
                msg = ""
            else:
                msg = event if type(event) is str else str(event)
            if "exc_info" in kw:
                exc_info = kw.pop("exc_info")
                if exc_info:
                    kw.update(exception_fields(exc_info))
            frame = self._encoder.encode(sev, msg, kw, self._app, None, time.time())
        except Exception as exc:
            client._internal_error(exc)
            return
        client._offer(frame)

    def __getattr__(self, name: str) -> Callable[..., None]:
        # structlog may call any method name the wrapper class defines
        if name.startswith("__"):
            raise AttributeError(name)
        return lambda *args, **kw: self._log(6, args, kw)

    def __repr__(self) -> str:
        return f"<LogdLogger app={self._app!r} {self._client!r}>"


def _method(sev: int) -> Callable[..., None]:
    def log(self: LogdLogger, *args: Any, **kw: Any) -> None:
        self._log(sev, args, kw)

    return log


for _name, _sev in _METHODS.items():
    setattr(LogdLogger, _name, _method(_sev))


class LogdLoggerFactory:
    """A structlog ``logger_factory``: loggers that send event dicts as typed fields.

    ``structlog.get_logger("name")`` gives records with APP-NAME ``name``;
    without a name, the factory's ``app`` (default: the program name). All
    loggers of one factory share one :class:`LogdClient` (one connection,
    one buffer).

    Args:
        socket_path: the ingest socket (default: found as the CLIs find it).
        app: APP-NAME for loggers made without a name; with ``force_app``,
            for all of them.
        force_app: use *app* even for named loggers.
        client: a client to send through; *options* are then ignored.
        options: for the :class:`LogdClient` the factory makes:
            ``facility``, ``timeout``, ``ack``, ``expected_uid``,
            ``buffer_bytes``, ``config``, ``reconnect_max``, ``on_error``.
    """

    def __init__(
        self,
        socket_path: str | os.PathLike[str] | None = None,
        *,
        app: str | None = None,
        force_app: bool = False,
        client: LogdClient | None = None,
        **options: Unpack[ClientOptions],
    ) -> None:
        self.client = client or LogdClient(socket_path, app=app, **options)
        self.app = app
        self.force_app = force_app

    def __call__(self, *args: Any) -> LogdLogger:
        """Make a logger; ``args[0]``, if a string, names it (APP-NAME)."""
        name = args[0] if args and isinstance(args[0], str) else None
        app = self.app if (self.force_app or name is None) else name
        return LogdLogger(self.client, app)

    def __repr__(self) -> str:
        return f"<LogdLoggerFactory {self.client!r}>"
