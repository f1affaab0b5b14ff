"""The daemon's own logging (structlog): readable on a terminal, JSON otherwise.

Debug logging costs nothing when off: ``make_filtering_bound_logger`` turns
the calls below the level into no-ops at configuration time.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog

__all__ = ["configure_logging"]


def configure_logging(level: str = "info", stream: TextIO | None = None) -> None:
    """Configure structlog for the daemon's own events.

    Args:
        level: ``debug``, ``info``, ``warning`` or ``error``.
        stream: where to write (default ``sys.stderr``); a tty gets colours
            and aligned columns, anything else one JSON object per line.
    """
    out = stream if stream is not None else sys.stderr
    renderer: structlog.typing.Processor
    if out.isatty():
        renderer = structlog.dev.ConsoleRenderer()
    else:
        renderer = structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=True,
    )
