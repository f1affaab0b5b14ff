"""``trio-logd top``: the ``stats`` table, refreshed in place (curses).

How this works: curses (the standard library's, so nothing to install and
it works over ssh with any terminfo terminal) draws the table of
``cli._stats.render_table`` each ``interval``; between refreshes it waits
for a key with ``getch`` and a timeout, so a key is handled at once: ``q``
(or Esc) quits, anything else refreshes now. The table is laid out for the
screen's width every frame (columns dropped by priority, see ``_stats``); a
resize (``SIGWINCH``, which curses turns into ``KEY_RESIZE``) is repainted
whole at the new size, at once (or with the next frame, when the signal
races curses' wait for a key). When the daemon stops answering the
last table stays, with the error on top, and ``top`` keeps asking.
"""

from __future__ import annotations

import contextlib
import curses
import sys
import time
from typing import Any

from trio_logd.cli._stats import StatsUnavailable, fetch, render_table

__all__ = ["run_top"]

_QUIT = frozenset({ord("q"), ord("Q"), 27})


def _draw(screen: curses.window, lines: list[str], error: str | None, interval: float) -> None:
    screen.erase()
    height, width = screen.getmaxyx()
    footer = f"refresh {interval:g}s - q quits - any key refreshes - {time.strftime('%H:%M:%S')}"
    rows = [error or footer, *lines]
    header = rows.index("") + 1 if "" in rows else -1  # after the summary's blank line
    for y, text in enumerate(rows[: height - 1]):
        attr = curses.A_REVERSE if y == 0 and error else 0
        if y == header:
            attr = curses.A_BOLD
        with contextlib.suppress(curses.error):  # a terminal smaller than one character
            screen.addnstr(y, 0, text, max(1, width - 1), attr)
    screen.refresh()


def _loop(screen: curses.window, path: str, interval: float) -> int:
    with contextlib.suppress(curses.error):  # terminals without an invisible cursor
        curses.curs_set(0)
    screen.timeout(max(50, int(interval * 1000)))
    stats: dict[str, Any] | None = None
    key = -1
    while True:
        error = None
        if key != curses.KEY_RESIZE or stats is None:  # a resize redraws what it has
            try:
                stats = fetch(path, timeout=max(2.0, interval))
            except StatsUnavailable as exc:
                error = str(exc)
        if key == curses.KEY_RESIZE:  # what the terminal shows now is unknown: repaint all
            screen.clear()
        width = screen.getmaxyx()[1] - 1  # the last column of the screen stays empty
        lines = render_table(stats, width=width) if stats is not None else []
        _draw(screen, lines, error, interval)
        key = screen.getch()
        if key in _QUIT:
            return 0


def run_top(path: str, interval: float) -> int:
    """Show the live view until ``q``; return the exit code.

    Args:
        path: the control socket.
        interval: seconds between refreshes.
    """
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        print("trio-logd: top needs a terminal; use `trio-logd stats` in scripts", file=sys.stderr)
        return 2
    try:  # Ctrl-C: curses.wrapper restores the terminal, the CLI exits 130 (cli._exit)
        return curses.wrapper(_loop, path, interval)
    except curses.error as exc:
        print(f"trio-logd: top cannot use this terminal: {exc}", file=sys.stderr)
        return 1
