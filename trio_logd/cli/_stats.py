"""``trio-logd stats`` and ``trio-logd metrics``, and the table ``top`` shows.

How this works: one ``stats`` (or ``metrics``) request on the control
socket; the daemon's pid is taken from ``SO_PEERCRED``, not from the reply.
:func:`render_table` turns a ``stats`` object into lines of text (pure, so
``top`` redraws the same table and tests read it without a daemon).

Given a ``width`` (``top`` passes the terminal's, every frame, so a resize
takes effect at the next one) the table fits it: the compact column widths
(:data:`_COMPACT`), then columns dropped in :data:`_DROP_ORDER` until the rest
fit, the DROPS column taking what is left, cells cut with "…", and the
summary wrapped at its commas. UID, REC/S, USE and DROPS stay to the end.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

from trio_logd.cli._forward import render_forward_lines
from trio_logd.control_client import request_one
from trio_logd.errors import (
    ConnectFailed,
    ControlRefused,
    DaemonBusy,
    LogdError,
    NotControlSocket,
)

__all__ = ["fetch", "render_table", "show_metrics", "show_stats"]

#: Columns of the per-uid table, full width: (title, width, right-aligned).
_COLUMNS: Final = (
    ("UID", 7, True),
    ("USER", 12, False),
    ("CONN", 5, True),
    ("REC/S", 7, True),
    ("1MIN", 7, True),
    ("RECORDS", 8, True),
    ("BYTES", 8, True),
    ("DISK/QUOTA", 17, True),
    ("USE", 5, True),
    ("DROPS", 24, False),
    ("LAST DROP", 17, False),
)


#: Column widths when a width is given (``top``); LAST DROP then shows only "5m ago".
_COMPACT: Final = {
    "UID": 7, "USER": 9, "CONN": 4, "REC/S": 6, "1MIN": 6, "RECORDS": 7, "BYTES": 6,
    "DISK/QUOTA": 11, "USE": 4, "DROPS": 10, "LAST DROP": 9,
}  # fmt: skip
#: Columns left out, in this order, until the rest fit the width.
_DROP_ORDER: Final = (
    "1MIN", "RECORDS", "BYTES", "CONN", "LAST DROP", "USER", "DISK/QUOTA",
)  # fmt: skip
#: The most the DROPS column takes of spare width.
_DROPS_MAX: Final = 30


class _Layout:
    """Which columns, how wide: full (no width given) or fitted to a width."""

    def __init__(self, width: int | None) -> None:
        self.width = width
        if width is None:
            self.columns = list(_COLUMNS)
            return
        cols = [(title, _COMPACT[title], right) for title, _, right in _COLUMNS]
        for title in _DROP_ORDER:
            if self._total(cols) <= width:
                break
            cols = [c for c in cols if c[0] != title]
        spare = width - self._total(cols)
        if spare > 0:  # the rest to DROPS (the widest, most telling text)
            cols = [(t, min(_DROPS_MAX, w + spare) if t == "DROPS" else w, r) for t, w, r in cols]
        self.columns = cols

    @staticmethod
    def _total(cols: list[tuple[str, int, bool]]) -> int:
        return sum(w for _, w, _ in cols) + len(cols) - 1

    def row(self, cells: Mapping[str, str]) -> str:
        out = []
        for title, width, right in self.columns:
            cell = cells[title]
            if self.width is not None and len(cell) > width and title != "UID":
                cell = cell[: width - 1] + "…"
            out.append(cell.rjust(width) if right else cell.ljust(width))
        line = " ".join(out).rstrip()
        return line if self.width is None else line[: self.width]

    def header(self) -> str:
        return self.row({title: title for title, _, _ in _COLUMNS})

    def wrap(self, text: str) -> list[str]:
        """*text* in lines of at most the width, broken after commas."""
        if self.width is None or len(text) <= self.width:
            return [text]
        lines, line = [], ""
        for part in text.split(", "):
            candidate = f"{line}, {part}" if line else part
            if line and len(candidate) >= self.width:  # room for the comma that ends a line
                lines.append(line + ",")
                line = part
            else:
                line = candidate
        lines.append(line)
        return [x[: self.width] for x in lines]


class StatsUnavailable(LogdError):
    """The daemon could not be asked, or refused."""


def fetch(path: str, op: str = "stats", *, timeout: float = 10.0) -> dict[str, Any]:
    """Ask the daemon on *path* for *op*; return the reply without ``type``.

    The reply's ``pid`` is replaced by the pid the kernel reports for the
    socket's server.

    Raises:
        StatsUnavailable: nobody answers, or the daemon answered with an error.
    """
    try:
        reply = request_one(path, op, timeout=timeout)
    except (ControlRefused, DaemonBusy, NotControlSocket) as exc:
        raise StatsUnavailable(str(exc)) from exc
    except ConnectFailed as exc:
        msg = f"{exc}; is the daemon running? (trio-logd status)"
        raise StatsUnavailable(msg) from exc
    server = reply.pop("_server")
    if reply.pop("type", None) != "ok":
        msg = f"{path}: {reply.get('error') or 'the daemon refused'}"
        raise StatsUnavailable(msg)
    if "pid" in reply:
        reply["pid"] = server.pid
    return reply


def _count(n: float) -> str:
    """1234 -> ``1.2k``; counts, 1000-based."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n:.0f}" if n == int(n) or n >= 10 else f"{n:.1f}"


def _size(n: float) -> str:
    """1536 -> ``1.5K``; bytes, 1024-based (as in journalctl and du -h)."""
    for unit, size in (("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= size:
            value = n / size
            return f"{value:.1f}{unit}" if value < 100 else f"{value:.0f}{unit}"
    return f"{n:.0f}B"


def _ago(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s ago"
    if s < 3600:
        return f"{s // 60}m ago"
    if s < 86400:
        return f"{s // 3600}h ago"
    return f"{s // 86400}d ago"


def _duration(seconds: float) -> str:
    s = int(seconds)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    if d:
        return f"{d}d {h}h"
    if h:
        return f"{h}h {m}m"
    if m:
        return f"{m}m {s}s"
    return f"{s}s"


#: Shorter names of drop reasons, for fitted (``top``) tables.
_SHORT_REASONS: Final = {"connections": "conn"}


def _drops(dropped: Mapping[str, int], *, short: bool = False) -> str:
    names = _SHORT_REASONS if short else {}
    parts = [
        f"{names.get(reason, reason)}:{_count(n)}" for reason, n in sorted(dropped.items()) if n
    ]
    return " ".join(parts) or "-"


def _uid_row(item: Mapping[str, Any], now: float, layout: _Layout) -> str:
    disk, quota = item.get("disk_bytes", 0), item.get("quota_bytes")
    use = f"{100 * disk / quota:.0f}%" if quota else "-"
    last = item.get("last_drop")
    when = "-"
    if last is not None:
        when = _ago(now - last)
        if layout.width is None:
            when = f"{time.strftime('%H:%M:%S', time.localtime(last))} {when}"
    user = item.get("user") or "?"
    return layout.row(
        {
            "UID": str(item["uid"]),
            "USER": user if len(user) <= 12 else user[:11] + "…",
            "CONN": str(item.get("connections", 0)),
            "REC/S": _count(item.get("records_per_s", 0.0)),
            "1MIN": _count(item.get("records_per_s_1m", 0.0)),
            "RECORDS": _count(item.get("records", 0)),
            "BYTES": _size(item.get("bytes", 0)),
            "DISK/QUOTA": f"{_size(disk)}/{_size(quota) if quota else '-'}",
            "USE": use,
            "DROPS": _drops(item.get("dropped") or {}, short=layout.width is not None),
            "LAST DROP": when,
        }
    )


#: Unit rows ``top`` shows (those with the most drops, then the most records).
UNIT_ROWS: Final = 10
#: Unit names are valid unit names (no controls); a long one is cut to this.
_UNIT_WIDTH: Final = 40


def _unit_key(item: Mapping[str, Any]) -> tuple[int, int, str]:
    drops = sum((item.get("dropped") or {}).values())
    return (-drops, -int(item.get("records", 0)), str(item.get("unit")))


def render_unit_lines(units: Sequence[Mapping[str, Any]], *, limit: int | None) -> list[str]:
    """One line per system unit (``stats`` ``units``), most drops first; at most *limit*."""
    shown = sorted(units, key=_unit_key)[:limit]
    out = [f"{'UNIT':<{_UNIT_WIDTH}} {'CONN':>5} {'RECORDS':>8} {'BYTES':>8}  DROPS"]
    for item in shown:
        name = str(item.get("unit"))
        if len(name) > _UNIT_WIDTH:
            name = name[: _UNIT_WIDTH - 1] + "…"
        out.append(
            f"{name:<{_UNIT_WIDTH}} {item.get('connections', 0):>5} "
            f"{_count(item.get('records', 0)):>8} {_size(item.get('bytes', 0)):>8}  "
            f"{_drops(item.get('dropped') or {})}"
        )
    if limit is not None and len(units) > limit:
        out.append(f"({len(units) - limit} more units: trio-logd stats)")
    return out


def sort_key(item: Mapping[str, Any]) -> tuple[float, float, int]:
    """Busiest first: records/s now, then over the last minute, then uid."""
    return (-item.get("records_per_s", 0.0), -item.get("records_per_s_1m", 0.0), item["uid"])


def render_table(
    stats: Mapping[str, Any], *, now: float | None = None, width: int | None = None
) -> list[str]:
    """The ``stats`` table: a summary, a blank line, a header, one row per uid (busiest first).

    Args:
        stats: a ``stats`` object (what :func:`fetch` returns).
        now: the wall-clock time for "… ago" (``time.time()`` when ``None``).
        width: fit lines to this many columns (see the module doc); ``None``:
            every column at full width.

    Returns:
        Lines without newlines. With *width*, the summary may take several
        lines; the header is the line after the first blank one.
    """
    now = time.time() if now is None else now
    layout = _Layout(width)
    d: Mapping[str, Any] = stats.get("daemon") or {}
    summary = (
        f"trio-logd {stats.get('version', '?')} pid {stats.get('pid', '?')}, "
        f"up {_duration(float(stats.get('uptime', 0)))}, "
        f"{d.get('connections', 0)} connections, {d.get('uids', 0)} uids, "
        f"{_count(d.get('records_per_s', 0.0))} records/s "
        f"(1 min: {_count(d.get('records_per_s_1m', 0.0))}/s), "
        f"drops {_drops(d.get('dropped') or {})}, "
        f"store errors {d.get('store_errors', 0)}, reloads {d.get('reloads', 0)}"
    )
    lines = [*layout.wrap(summary), "", layout.header()]
    items = sorted(stats.get("uids") or (), key=sort_key)
    lines.extend(_uid_row(item, now, layout) for item in items)
    if not items:
        lines.append("(no uid has logged since the daemon started)")
    units = stats.get("units") or []
    if units:
        lines.append("")
        unit_lines = render_unit_lines(units, limit=None if width is None else UNIT_ROWS)
        lines.extend(unit_lines if width is None else [x[:width] for x in unit_lines])
    forward = stats.get("forward") or []
    if forward:
        lines.append("")
        forward_lines = render_forward_lines(forward, now=now)
        lines.extend(forward_lines if width is None else [x[:width] for x in forward_lines])
    return lines


def show_stats(path: str, *, as_json: bool) -> int:
    """Print the stats of the daemon on *path*; return the exit code."""
    try:
        stats = fetch(path)
    except StatsUnavailable as exc:
        print(f"trio-logd: {exc}", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps(stats))
    else:  # on a terminal, fit its width as top does; into a pipe, every column
        width = None
        if sys.stdout.isatty():  # shutil only for a terminal (start-up: tests/cli/test_startup.py)
            import shutil

            width = shutil.get_terminal_size().columns
        print("\n".join(render_table(stats, width=width)))
    return 0


def show_metrics(path: str) -> int:
    """Print the Prometheus text of the daemon on *path*; return the exit code."""
    try:
        reply = fetch(path, "metrics")
    except StatsUnavailable as exc:
        print(f"trio-logd: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(str(reply.get("text", "")))
    return 0
