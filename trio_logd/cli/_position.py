"""``logq``'s journalctl options for position and order: cursors, boots, ``-r``, and more output.

How this works: :func:`add_arguments` adds the options; :func:`plan` checks
them and turns them into a :class:`Plan` (the cursor to resume from, what to
do after the records) and the query's adjustments (a cursor reads forwards:
``-n N`` then means the first N after it, as in journalctl; ``-b`` becomes
a time range). :class:`RecordOutput` is where every record line shown goes:
it notes each for the cursor (``query.cursor.CursorTracker``), holds them
for ``--reverse`` (in memory, then in an unnamed temporary file: the output
of a large query is never held in memory), stops after ``-n N`` records past
a cursor, and at the end prints ``-- cursor: C`` and writes the cursor file
(a temporary file renamed over it: a reader never sees half a cursor).
"""

from __future__ import annotations

import os
import time

from trio_logd.errors import LogdError
from trio_logd.query.modes import FIELD_FORMATS

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (logq's start-up)
if TYPE_CHECKING:
    import argparse
    import datetime as _dt
    from collections.abc import Callable, Iterator, Mapping
    from typing import IO, Final

    from trio_logd.query.boots import Boot
    from trio_logd.query.cursor import Cursor, CursorRequest
    from trio_logd.query.filters import QuerySpec

# logq's start-up (tests/cli/test_startup.py): ``add_arguments`` runs for every
# logq, ``--help`` included; the cursor, boot and output modules are imported
# only by the functions of the options that need them, and :class:`Plan` is a
# plain class (a dataclass would import ``dataclasses``, with ``inspect``).

__all__ = ["Plan", "RecordOutput", "add_arguments", "format_boots", "narrow_to_boot", "plan"]

#: ``--reverse`` keeps this many bytes of records in memory, then spills to a file.
REVERSE_MEMORY: Final = 8 << 20
#: With ``-f``, the cursor file is rewritten at most this often (seconds), and at exit.
CURSOR_FILE_INTERVAL: Final = 1.0
_BOOT_TIME: Final = "%a %Y-%m-%d %H:%M:%S %Z"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the position, order and extra output options to ``logq``'s parser."""
    pos = p.add_argument_group("position and order (as journalctl)")
    pos.add_argument(
        "--show-cursor", action="store_true",
        help="after the records, print '-- cursor: C': the cursor of the last one",
    )  # fmt: skip
    pos.add_argument("-c", "--cursor", metavar="C", help="from the record cursor C names on")
    pos.add_argument("--after-cursor", metavar="C", help="after the record cursor C names")
    pos.add_argument(
        "--cursor-file", metavar="FILE",
        help="after the cursor in FILE, if there is one; then write the cursor of the last "
        "record shown into FILE",
    )  # fmt: skip
    pos.add_argument(
        "-b", "--boot", nargs="?", const="0", metavar="ID|±N",
        help="records of one boot: 0 (or nothing) the last, -1 the one before, 1 the first, "
        "or a boot id (ID±N: N after or before it)",
    )  # fmt: skip
    pos.add_argument(
        "--list-boots", action="store_true",
        help="list the boots the daemon ran in: index, boot id, its first and last own record",
    )  # fmt: skip
    pos.add_argument("-r", "--reverse", action="store_true", help="newest records first")
    out = p.add_argument_group("output, more (as journalctl)")
    out.add_argument(
        "--output-fields", metavar="F,…",
        help="json, json-pretty, verbose: only these fields (and ts, seq, uid); fields.NAME "
        "for a field of the sender's",
    )  # fmt: skip
    out.add_argument(
        "--no-hostname", action="store_true",
        help="short modes: leave out uid=N (where journalctl shows the host name)",
    )  # fmt: skip
    out.add_argument(
        "-q", "--quiet", action="store_true",
        help="no notices on stderr (records a follower missed, the end of a stream); "
        "errors are still printed",
    )  # fmt: skip


class Plan:
    """What the position options ask for.

    Attributes:
        request: the query's position arguments (cursor, store identities),
            or ``None`` when no position option is given.
        cursor_file: ``--cursor-file``.
        show_cursor: ``--show-cursor``.
        head: show only the first N records after the cursor.
        reverse: newest first.
        fields: ``--output-fields``.
        quiet: ``-q``.
    """

    __slots__ = ("cursor_file", "fields", "head", "quiet", "request", "reverse", "show_cursor")

    def __init__(
        self,
        *,
        request: CursorRequest | None = None,
        cursor_file: str | None = None,
        show_cursor: bool = False,
        head: int | None = None,
        reverse: bool = False,
        fields: tuple[str, ...] = (),
        quiet: bool = False,
    ) -> None:
        self.request = request
        self.cursor_file = cursor_file
        self.show_cursor = show_cursor
        self.head = head
        self.reverse = reverse
        self.fields = fields
        self.quiet = quiet

    @property
    def tracks(self) -> bool:
        """Whether a cursor is made of the records shown."""
        return self.show_cursor or self.cursor_file is not None


def _read_cursor_file(path: str) -> Cursor | None:
    from trio_logd.query.cursor import Cursor

    try:
        with open(path, "rb") as f:
            text = f.read(64 << 10).decode("ascii", "replace").strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        msg = f"--cursor-file {path}: {exc.strerror or exc}"
        raise ValueError(msg) from None
    if not text:
        return None
    try:
        return Cursor.decode(text)
    except ValueError as exc:
        msg = f"--cursor-file {path}: {exc}"
        raise ValueError(msg) from None


def plan(args: argparse.Namespace, spec: QuerySpec) -> tuple[Plan, QuerySpec]:
    """Check the position options; return the plan and the query adjusted to it.

    Raises:
        ValueError: a bad combination or value (the message names it).
    """
    given = [o for o in ("cursor", "after_cursor", "cursor_file") if getattr(args, o) is not None]
    if len(given) > 1:
        names = " and ".join("--" + o.replace("_", "-") for o in given)
        msg = f"{names}: give one of them"
        raise ValueError(msg)
    fields: tuple[str, ...] = ()
    if args.output_fields:
        from trio_logd.query.output import parse_output_fields

        fields = parse_output_fields(args.output_fields)
    if fields and args.output not in FIELD_FORMATS:
        msg = f"--output-fields applies to -o {', '.join(FIELD_FORMATS)}, not -o {args.output}"
        raise ValueError(msg)
    text = args.cursor if args.cursor is not None else args.after_cursor
    cursor = None
    if text is not None:
        from trio_logd.query.cursor import Cursor

        cursor = Cursor.decode(text)
    if args.cursor_file is not None:
        cursor = _read_cursor_file(args.cursor_file)
        where = os.path.dirname(os.path.abspath(args.cursor_file))
        if not os.access(where, os.W_OK | os.X_OK):
            msg = f"--cursor-file {args.cursor_file}: cannot write in {where}"
            raise ValueError(msg)
    if args.reverse and spec.follow:
        msg = "--reverse and --follow: give one or the other (as journalctl)"
        raise ValueError(msg)
    if args.reverse and (cursor is not None or args.cursor_file is not None):
        msg = "--reverse with a cursor: not supported (a cursor reads forwards from its place)"
        raise ValueError(msg)
    head = None
    if cursor is not None:  # forwards from the cursor: -n N is the first N (journalctl)
        import dataclasses

        head = spec.lines if args.lines is not None and not spec.follow else None
        spec = dataclasses.replace(spec, lines=None)
    request = None
    stores = args.show_cursor or args.cursor_file is not None
    if cursor is not None or stores:
        from trio_logd.query.cursor import CursorRequest

        request = CursorRequest(cursor, inclusive=args.cursor is not None, stores=stores)
    out = Plan(
        request=request,
        cursor_file=args.cursor_file,
        show_cursor=args.show_cursor,
        head=head,
        reverse=args.reverse,
        fields=fields,
        quiet=args.quiet,
    )
    return out, spec


def narrow_to_boot(spec: QuerySpec, boots: list[Boot], arg: str) -> QuerySpec:
    """*spec* limited to the time span of the boot ``-b ARG`` names.

    Raises:
        ValueError: no such boot.
    """
    import dataclasses

    from trio_logd.query.boots import boot_window, select_boot

    since, until = boot_window(boots, select_boot(boots, arg))
    if spec.since is not None:
        since = max(since, spec.since)
    if spec.until is not None:
        until = spec.until if until is None else min(until, spec.until)
    return dataclasses.replace(spec, since=since, until=until)


def _local(ts: str, tz: _dt.tzinfo | None) -> str:
    import datetime as _dt

    try:
        t = _dt.datetime.fromisoformat(ts[:-1] + "+00:00")
    except ValueError:
        return ts
    return t.astimezone(tz).strftime(_BOOT_TIME)


def format_boots(boots: list[Boot], output: str, *, tz: _dt.tzinfo | None = None) -> bytes:
    """``--list-boots``: a table (index, boot id, first and last), or JSON for the json modes."""
    n = len(boots)
    if output in ("json", "json-pretty"):
        import orjson

        items = [{"index": i - n + 1, **b.as_dict()} for i, b in enumerate(boots)]
        option = orjson.OPT_INDENT_2 if output == "json-pretty" else 0
        return orjson.dumps(items, option=option) + b"\n"
    rows = [f"{'IDX':>3} {'BOOT ID':<32} {'FIRST ENTRY':<28} LAST ENTRY"]
    for i, b in enumerate(boots):
        rows.append(
            f"{i - n + 1:>3} {b.boot_id:<32} {_local(b.first, tz):<28} {_local(b.last, tz)}"
        )
    return ("\n".join(rows) + "\n").encode()


class _Spool:
    """Record lines held for ``--reverse``: in memory, then in an unnamed temporary file."""

    def __init__(self, memory: int) -> None:
        self._memory = memory
        self._lines: list[bytes] = []
        self._bytes = 0
        import array

        self._file: IO[bytes] | None = None
        self._ends = array.array("Q")

    def add(self, line: bytes) -> None:
        if self._file is None:
            self._lines.append(line)
            self._bytes += len(line)
            if self._bytes > self._memory:
                self._spill()
            return
        self._file.write(line)
        self._ends.append(self._ends[-1] + len(line) if self._ends else len(line))

    def _spill(self) -> None:
        import tempfile  # only a large --reverse needs it (logq's start-up)

        self._file = tempfile.TemporaryFile()  # noqa: SIM115  # closed by newest_first
        lines, self._lines = self._lines, []
        for line in lines:
            self.add(line)

    def newest_first(self) -> Iterator[bytes]:
        if self._file is None:
            yield from reversed(self._lines)
            return
        f = self._file
        f.flush()
        fd = f.fileno()
        try:
            for i in range(len(self._ends) - 1, -1, -1):
                start = self._ends[i - 1] if i else 0
                yield os.pread(fd, self._ends[i] - start, start)
        finally:
            f.close()


def write_cursor_file(path: str, text: str) -> None:
    """Write *text* into *path* atomically: a temporary file beside it, synced, renamed over it.

    Raises:
        OSError: the directory cannot be written.
    """
    tmp = f"{path}.tmp.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, text.encode("ascii") + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


class RecordOutput:
    """Where the record lines shown go (see the module doc).

    Args:
        write: writes bytes to the output.
        fmt: the ``-o`` formatter.
        plan: the position options.
        flush: called after each record (``-f``), or ``None``.
        reverse_memory: bytes of records ``--reverse`` holds in memory
            before it spills them to a temporary file.
    """

    def __init__(
        self,
        write: Callable[[bytes], object],
        fmt: Callable[[bytes], bytes],
        plan: Plan,
        flush: Callable[[], object] | None = None,
        *,
        reverse_memory: int = REVERSE_MEMORY,
    ) -> None:
        self._write, self._fmt, self._plan, self._flush = write, fmt, plan, flush
        self.tracker = None
        if plan.tracks:
            from trio_logd.query.cursor import CursorTracker

            cursor = plan.request.cursor if plan.request is not None else None
            self.tracker = CursorTracker({}, cursor)
        self._spool = _Spool(reverse_memory) if plan.reverse else None
        self._count = 0
        self._saved = time.monotonic()

    @property
    def request(self) -> CursorRequest | None:
        """The query's position arguments (``None``: no position option)."""
        return self._plan.request

    def stores(self, ids: Mapping[int, int]) -> None:
        """The uids' store identities (the ``ok`` line, or the scan's)."""
        if self.tracker is not None:
            self.tracker.add_stores(ids.items())

    def __call__(self, line: bytes) -> bool:
        """Show one record line; return whether more are wanted."""
        if self._spool is not None:
            self._spool.add(line)
        else:
            if self.tracker is not None:
                self.tracker.see(line)
            self._write(self._fmt(line))
            if self._flush is not None:
                self._flush()
                if self._plan.cursor_file is not None:
                    now = time.monotonic()
                    if now - self._saved >= CURSOR_FILE_INTERVAL:
                        self._saved = now
                        self._save()
        self._count += 1
        return self._plan.head is None or self._count < self._plan.head

    def _cursor(self) -> Cursor | None:
        """The cursor after the last record shown by this run (``None``: none shown)."""
        t = self.tracker
        return t.cursor() if t is not None and t.shown else None

    def _save(self) -> None:
        cursor = self._cursor()
        path = self._plan.cursor_file
        if cursor is not None and path is not None:
            try:
                write_cursor_file(path, cursor.encode())
            except OSError as exc:
                msg = f"--cursor-file {path}: cannot write it: {exc.strerror or exc}"
                raise LogdError(msg) from exc

    def finish(self) -> None:
        """After the last record: the reversed records, ``-- cursor: C``, the cursor file."""
        if self._spool is not None:
            for line in self._spool.newest_first():
                if self.tracker is not None:  # the cursor names the last shown: the oldest
                    self.tracker.see(line)
                self._write(self._fmt(line))
        cursor = self._cursor()
        if cursor is not None and self._plan.show_cursor:
            self._write(b"-- cursor: " + cursor.encode().encode() + b"\n")
        self._save()
