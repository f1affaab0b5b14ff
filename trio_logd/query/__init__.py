"""Queries over records, pure: what to select, how to parse times, how to print.

The engine that reads files with these is ``trio_logd.store.scan``; the
daemon serves it on the control socket (``server._query``) and ``logq``
(``cli.logq``) asks for it, or runs it on a directory itself.

The names below are imported on first use (``__getattr__``): importing one
module of the package (``query.modes`` for ``logq --help``) must not import
the filters with re2 and the formatters with orjson (``tests/cli/test_startup.py``).
"""

from __future__ import annotations

from trio_logd._lazy import lazy_getattr

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (the CLIs' start-up)
if TYPE_CHECKING:  # for the type checker, the same objects as __getattr__ gives
    from trio_logd.query.filters import (
        MAX_GREP_CHARS,
        MAX_LINES,
        LineFilter,
        QuerySpec,
        compile_grep,
        parse_priority,
        required_literal,
    )
    from trio_logd.query.modes import FORMATS
    from trio_logd.query.output import escape, format_short, format_verbose, make_formatter
    from trio_logd.query.timespec import parse_time, ts_bound, ts_to_epoch

_LAZY = {
    "FORMATS": "trio_logd.query.modes",
    "MAX_GREP_CHARS": "trio_logd.query.filters",
    "MAX_LINES": "trio_logd.query.filters",
    "LineFilter": "trio_logd.query.filters",
    "QuerySpec": "trio_logd.query.filters",
    "compile_grep": "trio_logd.query.filters",
    "parse_priority": "trio_logd.query.filters",
    "required_literal": "trio_logd.query.filters",
    "escape": "trio_logd.query.output",
    "format_short": "trio_logd.query.output",
    "format_verbose": "trio_logd.query.output",
    "make_formatter": "trio_logd.query.output",
    "parse_time": "trio_logd.query.timespec",
    "ts_bound": "trio_logd.query.timespec",
    "ts_to_epoch": "trio_logd.query.timespec",
}

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


__getattr__ = lazy_getattr(__name__, _LAZY, globals())
