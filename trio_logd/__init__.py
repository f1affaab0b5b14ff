"""trio-logd: an authenticated, syslog-style logging daemon for Linux.

Every record is stamped with the uid, gid and pid the kernel reports for the
sending socket; what the sender claims is kept apart, as a claim.
"""

from __future__ import annotations

from trio_logd.errors import (
    AccessDenied,
    ClientError,
    ConfigError,
    ConnectFailed,
    DiskFull,
    FramingError,
    LimitExceeded,
    LogdError,
    ParseError,
    ProtocolError,
    ReadOnlyStore,
    StoreError,
    StoreInUse,
    UnsafeLogDir,
)

__version__ = "0.1.0"

__all__ = [
    "AccessDenied",
    "ClientError",
    "ConfigError",
    "ConnectFailed",
    "DiskFull",
    "FramingError",
    "LimitExceeded",
    "LogdError",
    "ParseError",
    "ProtocolError",
    "ReadOnlyStore",
    "StoreError",
    "StoreInUse",
    "UnsafeLogDir",
    "__version__",
]
