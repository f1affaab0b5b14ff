"""Queries over records, pure: what to select, how to parse times, how to print.

The engine that reads files with these is ``trio_logd.store.scan``; the
daemon serves it on the control socket (``server._query``) and ``logq``
(``cli.logq``) asks for it, or runs it on a directory itself.
"""

from __future__ import annotations

from trio_logd.query.filters import (
    MAX_GREP_CHARS,
    MAX_LINES,
    LineFilter,
    QuerySpec,
    compile_grep,
    parse_priority,
    required_literal,
)
from trio_logd.query.output import FORMATS, escape, format_short, format_verbose, make_formatter
from trio_logd.query.timespec import parse_time, ts_bound, ts_to_epoch

__all__ = [
    "FORMATS",
    "MAX_GREP_CHARS",
    "MAX_LINES",
    "LineFilter",
    "QuerySpec",
    "compile_grep",
    "escape",
    "format_short",
    "format_verbose",
    "make_formatter",
    "parse_priority",
    "parse_time",
    "required_literal",
    "ts_bound",
    "ts_to_epoch",
]
