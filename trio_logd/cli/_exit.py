"""How every command ends when its reader goes away or the user presses Ctrl-C.

How this works: Python ignores ``SIGPIPE``, so a closed pipe
(``trio-logd stats | head -1``) shows up as ``BrokenPipeError`` at the next
write to standard output, or at the interpreter's last flush of it; Ctrl-C
shows up as ``KeyboardInterrupt`` wherever the program happens to be.
Neither is a failure worth a traceback. :func:`run_guarded` runs a command,
flushes its output while it can still catch the error, and then:

- a broken standard output (the reader is gone, as ``poll`` reports for a
  pipe without readers): stdout is pointed at ``/dev/null`` so that the
  interpreter's own last flush cannot fail again, and the command exits 0,
  quietly, as journalctl does (``cat`` would die of the signal instead);
- a ``BrokenPipeError`` from anything else (a socket) is a one-line error;
- Ctrl-C: exit 130 (128 + ``SIGINT``, what the shell reports), no traceback.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (the CLIs' start-up)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Final

__all__ = ["EXIT_INTERRUPTED", "run_guarded", "stdout_gone"]

#: 128 + SIGINT: what a shell reports for a command ended by Ctrl-C.
EXIT_INTERRUPTED: Final = 130


def stdout_gone() -> bool:
    """True when standard output is a pipe or socket whose reader has gone."""
    try:
        fd = sys.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        events = poller.poll(0)
    except (OSError, ValueError, AttributeError):  # closed, or not a real file
        return False
    return any(mask & (select.POLLERR | select.POLLHUP) for _, mask in events)


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def run_guarded(prog: str, command: Callable[[], int]) -> int:
    """Run *command* and return its exit code, ending quietly on EPIPE and Ctrl-C.

    Args:
        prog: the program's name, for the one line printed on an unexpected
            ``BrokenPipeError``.
        command: the command; returns its exit code.

    Returns:
        The command's exit code; 0 when standard output's reader went away;
        :data:`EXIT_INTERRUPTED` on Ctrl-C.
    """
    try:
        try:
            rc = command()
        finally:  # also after SystemExit (argparse's --help): surface a broken pipe here,
            sys.stdout.flush()  # not in the interpreter's own last flush
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError as exc:
        if stdout_gone():
            _silence_stdout()
            return 0
        with contextlib.suppress(OSError):
            print(f"{prog}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return rc
