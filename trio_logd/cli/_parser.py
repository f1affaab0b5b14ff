"""The CLIs' ``argparse.ArgumentParser``, without argparse's ``import shutil``.

How this works: argparse makes a ``HelpFormatter`` for every ``add_argument``
(to check the metavar), and the formatter imports ``shutil`` for the
terminal's width when none is given: with zlib, bz2, lzma and fnmatch, about
3 ms of every command's start-up (``tests/cli/test_startup.py``). This
parser's formatter is given the width, found as ``shutil.get_terminal_size``
finds it (``COLUMNS``, else standard output's terminal, else 80), with
``os`` alone; the help text is the same. Subparsers are of the same class
(argparse's default), so ``trio-logd``'s subcommands get it too.
"""

from __future__ import annotations

import argparse
import os
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (the CLIs' start-up)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["ArgumentParser", "HelpFormatter", "terminal_columns"]


def terminal_columns() -> int:
    """The terminal's width as ``shutil.get_terminal_size().columns`` gives it."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
        columns = columns or 80
    return columns


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, its default width taken without importing ``shutil``."""

    def __init__(
        self,
        prog: str,
        indent_increment: int = 2,
        max_help_position: int = 24,
        width: int | None = None,
    ) -> None:
        if width is None:
            width = terminal_columns() - 2  # as argparse.HelpFormatter does
        super().__init__(prog, indent_increment, max_help_position, width)


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` with :class:`HelpFormatter` as its default formatter."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # Any: argparse's own arguments
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
