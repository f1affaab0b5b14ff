"""``LogdHandler``: stdlib ``logging`` to trio-logd.

How this works: the handler turns a ``LogRecord`` into a frame itself,
without a ``Formatter`` and without ``logging.Handler``'s lock (the client
has its own): level → severity from a table, logger name → APP-NAME, the
attributes ``extra={...}`` added → typed ``fields``, the exception →
``exc_type`` and ``exception`` fields, ``record.created`` → the header's
timestamp.

The handler starts with a formatter of its own (:data:`MESSAGE_ONLY`), so
that ``logging.basicConfig(handlers=[LogdHandler()])``, which gives its
``%(levelname)s:%(name)s:%(message)s`` formatter to every handler that has
none, leaves this one alone: ``msg`` stays the message, and level and name
stay in ``sev`` and ``app``. A formatter set on purpose (``setFormatter``,
``dictConfig``'s ``formatter``) shapes ``msg``; the traceback and stack still
go to fields only, never into ``msg``. The frame goes to a :class:`LogdClient`'s buffer; the
client's thread does the I/O. Whatever happens, ``emit`` returns: a record
that cannot be built is counted as dropped and reported once.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any, Final

from trio_logd.client._encode import exception_fields, level_severity
from trio_logd.client._sync import LogdClient

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack for **kwargs needs Python 3.12

    from trio_logd.client._base import ClientOptions

__all__ = ["LogdHandler"]

_PLAIN: Final = logging.LogRecord("", 0, "", 0, "", (), None)
#: Attributes every LogRecord has (plus those formatters add): the rest came from ``extra``.
_STANDARD: Final = frozenset(_PLAIN.__dict__) | {"message", "asctime", "taskName"}
#: A record with exactly this many attributes has no extras: no scan needed.
_N_STANDARD: Final = len(_PLAIN.__dict__)
_LEVELS: Final = tuple(level_severity(n) for n in range(61))


class _MessageOnly(logging.Formatter):
    """The handler's own formatter: the message, nothing added (see the module doc)."""

    def format(self, record: logging.LogRecord) -> str:
        return record.getMessage()


#: The formatter every handler starts with; ``msg`` is ``record.getMessage()``.
MESSAGE_ONLY: Final = _MessageOnly()


class LogdHandler(logging.Handler):
    """A ``logging.Handler`` that sends records to trio-logd.

    Severity comes from the level (``CRITICAL`` → crit, ``ERROR`` → err,
    ``WARNING`` → warning, ``INFO`` → info, ``DEBUG`` → debug, 25 → notice),
    APP-NAME from the logger's name (the root logger's records carry the
    client's ``app``, the program name by default), ``fields`` from
    ``extra={...}`` with their JSON types. An exception (``exc_info``,
    ``logger.exception``) goes in the fields ``exc_type`` and ``exception``
    (the formatted traceback); ``stack_info`` in ``stack``. The message is
    ``record.getMessage()`` (``logging.basicConfig`` does not change that),
    or the output of a formatter set with ``setFormatter``, without the
    traceback (that is in the fields).

    Never raises into the application and never blocks on I/O: see
    :class:`LogdClient` for the buffer, timeouts and reconnects.

    Args:
        socket_path: the ingest socket (default: found as the CLIs find it).
        level: the handler's level.
        app: APP-NAME for every record instead of the logger's name.
        location: also send ``code_file``, ``code_line``, ``code_func`` and
            ``thread`` (the thread's name) as fields, as journald does.
        client: a client to send through (shared, not closed by the handler);
            *options* are then ignored.
        options: for the :class:`LogdClient` the handler makes:
            ``facility``, ``timeout``, ``ack``, ``expected_uid``,
            ``buffer_bytes``, ``config``, ``reconnect_max``, ``on_error``.
    """

    def __init__(
        self,
        socket_path: str | os.PathLike[str] | None = None,
        *,
        level: int | str = logging.NOTSET,
        app: str | None = None,
        location: bool = False,
        client: LogdClient | None = None,
        **options: Unpack[ClientOptions],
    ) -> None:
        super().__init__(level)
        self.formatter = MESSAGE_ONLY  # so basicConfig gives it none of its own
        self._owns_client = client is None
        self.client = client or LogdClient(socket_path, **options)
        self._encoder = self.client._encoder
        self.app = app
        self.location = location

    def createLock(self) -> None:
        """No handler lock: the client serialises what needs it."""
        self.lock = None

    def handle(self, record: logging.LogRecord) -> bool:
        """Filter, then emit, without taking a handler lock."""
        if self.filters:
            rv: Any = self.filter(record)
            if not rv:
                return False
            if isinstance(rv, logging.LogRecord):  # Python >= 3.12 filters may replace it
                record = rv
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        """Encode *record* and queue it. Never raises, never waits for I/O."""
        try:
            # the common case inline: no extras, no exception, no formatter
            if (
                len(record.__dict__) != _N_STANDARD
                or record.exc_info
                or record.stack_info
                or self.location
                or self.formatter is not MESSAGE_ONLY
            ):
                msg, fields = self._slow_parts(record)
            else:
                fields = None
                msg = record.msg
                if record.args or type(msg) is not str:
                    try:
                        msg = record.getMessage()
                    except Exception:  # bad arguments for the format: the slow path keeps both
                        msg, fields = self._slow_parts(record)
            levelno = record.levelno
            name = record.name
            frame = self._encoder.encode(
                _LEVELS[levelno] if 0 <= levelno <= 60 else level_severity(levelno),
                msg,
                fields,
                self.app or (name if name != "root" else None),
                None,
                record.created,
            )
        except Exception as exc:
            self.client._internal_error(exc)
            return
        self.client._offer(frame)

    def _slow_parts(self, record: logging.LogRecord) -> tuple[str, dict[str, Any] | None]:
        """Text and fields of a record with extras, an exception, or a formatter."""
        d = record.__dict__
        fields: dict[str, Any] = {k: v for k, v in d.items() if k not in _STANDARD}
        if record.exc_info:
            fields.update(exception_fields(record.exc_info))
        if record.stack_info:
            fields["stack"] = record.stack_info
        if self.location:
            fields["code_file"] = record.pathname
            fields["code_line"] = record.lineno
            fields["code_func"] = record.funcName
            fields["thread"] = record.threadName
        formatter = self.formatter
        if formatter is not MESSAGE_ONLY and formatter is not None:
            # the formatter's text without the traceback or stack it would append
            bare = logging.makeLogRecord(d)
            bare.exc_info = bare.exc_text = bare.stack_info = None
            msg = formatter.format(bare)
        else:
            try:
                msg = record.getMessage()
            except Exception as exc:  # bad arguments for the format: keep both
                msg = str(record.msg)
                fields["format_error"] = repr(exc)
                fields["args"] = repr(record.args)
        return msg, fields or None

    def flush(self) -> None:
        """Wait (at most the client's timeout) until queued records are delivered."""
        try:
            self.client.flush()
        except Exception as exc:
            self.client._tell(exc)

    def close(self) -> None:
        """Deliver what is queued (at most the client's timeout) and close the client."""
        try:
            if self._owns_client:
                self.client.close()
        except Exception as exc:
            self.client._tell(exc)
        super().close()

    def __repr__(self) -> str:
        return f"<LogdHandler {self.client.path!r} ({logging.getLevelName(self.level)})>"
