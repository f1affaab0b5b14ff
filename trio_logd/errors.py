"""The one exception tree of trio-logd, grouped by what the caller can do.

::

    LogdError
    ├── ProtocolError    FramingError, ParseError       (bad client bytes: offset, excerpt)
    ├── LimitExceeded    (uid, limit)   a request over a cap (records over one are
                                        dropped and counted, never raised)
    ├── StoreError       DiskFull, ReadOnlyStore, UnsafeLogDir, StoreInUse, SeqConflict
    ├── ConfigError      (file, key, reason)
    ├── AccessDenied     (control socket: who asked, for what)
    └── ClientError      ConnectFailed                  (client shim)
                         ConnectFailed: DaemonBusy, NotControlSocket, ControlRefused

Defined outcomes of bad input (truncation, replacement characters, ``suppressed``
records) are flags and events, not exceptions: an exception here means the
operation (or the connection) cannot go on.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (the CLIs' start-up)
if TYPE_CHECKING:
    from typing import Final

__all__ = [
    "AccessDenied",
    "ClientError",
    "ConfigError",
    "ConnectFailed",
    "ControlRefused",
    "DaemonBusy",
    "DiskFull",
    "FramingError",
    "LimitExceeded",
    "LogdError",
    "NotControlSocket",
    "ParseError",
    "ProtocolError",
    "ReadOnlyStore",
    "SeqConflict",
    "StoreError",
    "StoreInUse",
    "UnsafeLogDir",
    "excerpt",
]

#: Excerpts of bad input are capped near this many bytes, so an error message
#: (or a protocol_error record) never carries an attacker's megabyte.
EXCERPT_BYTES: Final = 80


def excerpt(data: bytes | bytearray | memoryview, limit: int = EXCERPT_BYTES) -> str:
    """Return ``repr`` of at most *limit* bytes of *data*, marked when cut."""
    raw = bytes(data[:limit])
    text = repr(raw)
    return text + "..." if len(data) > limit else text


class LogdError(Exception):
    """Base of every error trio-logd raises on purpose."""


class ProtocolError(LogdError):
    """A client sent bytes that cannot be framed or parsed.

    Raised by the sans-IO protocol layer when a connection cannot go on (for
    example a lying octet count). ``offset`` is the position in the
    connection's stream (or -1 when unknown) and ``excerpt`` a capped ``repr``
    of the offending bytes.
    """

    def __init__(self, message: str, *, offset: int = -1, excerpt: str = "") -> None:
        super().__init__(message)
        self.offset = offset
        self.excerpt = excerpt


class FramingError(ProtocolError):
    """The byte stream cannot be split into frames any more (RFC 6587)."""


class ParseError(ProtocolError):
    """A frame or control request is not well formed.

    Syslog payloads never raise this (anything is a message, at worst with
    defaults); it is used for the control-socket protocol.
    """


class LimitExceeded(LogdError):
    """A per-uid or global limit refused something; ``uid`` and ``limit`` say which."""

    def __init__(self, message: str, *, uid: int, limit: str) -> None:
        super().__init__(message)
        self.uid = uid
        self.limit = limit


class StoreError(LogdError):
    """The store cannot write or read as asked."""


class DiskFull(StoreError):
    """The file system under ``log_dir`` has no space left (ENOSPC, EDQUOT)."""


class ReadOnlyStore(StoreError):
    """The file system under ``log_dir`` is read-only (EROFS) or denies writes."""


class UnsafeLogDir(StoreError):
    """``log_dir`` or a uid directory is writable by others, a symlink, or not ours."""


class StoreInUse(StoreError):
    """Another process holds ``log_dir``'s lock: a second daemon must not write the store.

    Unlike :class:`UnsafeLogDir`, the directory is fine; it belongs to a running daemon.
    """

    def __init__(self, message: str, *, pid: int | None) -> None:
        super().__init__(message)
        self.pid = pid


class SeqConflict(StoreError):
    """Lines numbered at or below their uid's ``seq`` high-water mark on disk: not written.

    Writing them would reuse a ``seq``, so nothing of them is written; ``mark``
    is the uid's last ``seq`` on disk, where numbering must continue. Unlike
    ``DiskFull``, writing the same lines again can never succeed.
    """

    def __init__(self, message: str, *, uid: int, mark: int) -> None:
        super().__init__(message)
        self.uid = uid
        self.mark = mark


class ConfigError(LogdError):
    """A config file (or value) is invalid.

    The message names the file, the key (``[table] key``) and the reason, e.g.
    ``logd.toml: [limits.uid.1000] rate_messages: expected a positive integer, got -5``.
    """

    def __init__(self, file: str, key: str, reason: str) -> None:
        where = f"{file}: {key}: " if key else f"{file}: "
        super().__init__(where + reason)
        self.file = file
        self.key = key
        self.reason = reason


class AccessDenied(LogdError):
    """The caller's peer credentials do not allow the control-socket request."""

    def __init__(self, message: str, *, uid: int, what: str) -> None:
        super().__init__(message)
        self.uid = uid
        self.what = what


class ClientError(LogdError):
    """Base of the client shim's errors."""


class ConnectFailed(ClientError):
    """The client could not connect, or refused a socket served by the wrong uid."""


class DaemonBusy(ConnectFailed):
    """The socket's listen backlog stayed full (``EAGAIN``) until the client's deadline.

    Unlike a plain :class:`ConnectFailed` the daemon runs (something
    listens); it does not accept fast enough, or is stuck.
    """


class NotControlSocket(ConnectFailed):
    """The socket accepted, but did not greet as a trio-logd control socket.

    Raised by control clients (``logq``, ``trio-logd status`` …) pointed at
    another socket, such as the ingest socket: nothing was sent to it.
    """


class ControlRefused(ConnectFailed):
    """The daemon refused the control connection over a limit (its one-line error).

    Attributes:
        code: the error's ``code`` (``too_many_connections``, ``timeout``).
        limit: the limit it names (``max_connections_per_uid`` …), or ``""``.
    """

    def __init__(self, message: str, *, code: str, limit: str) -> None:
        super().__init__(message)
        self.code = code
        self.limit = limit
