"""``trio-logd stats`` and ``trio-logd metrics``, and the table ``top`` shows.

How this works: one ``stats`` (or ``metrics``) request on the control
socket; the daemon's pid is taken from ``SO_PEERCRED``, not from the reply.
:func:`render_table` turns a ``stats`` object into lines of text (pure, so
``top`` redraws the same table and tests read it without a daemon).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
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

#: Columns of the per-uid table: (title, width, right-aligned).
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


def _drops(dropped: Mapping[str, int]) -> str:
    parts = [f"{reason}:{_count(n)}" for reason, n in sorted(dropped.items()) if n]
    return " ".join(parts) or "-"


def _row(cells: list[str]) -> str:
    out = []
    for (_, width, right), cell in zip(_COLUMNS, cells, strict=True):
        out.append(cell.rjust(width) if right else cell.ljust(width))
    return " ".join(out).rstrip()


def _uid_row(item: Mapping[str, Any], now: float) -> str:
    disk, quota = item.get("disk_bytes", 0), item.get("quota_bytes")
    use = f"{100 * disk / quota:.0f}%" if quota else "-"
    last = item.get("last_drop")
    when = "-"
    if last is not None:
        when = f"{time.strftime('%H:%M:%S', time.localtime(last))} {_ago(now - last)}"
    user = item.get("user") or "?"
    return _row(
        [
            str(item["uid"]),
            user if len(user) <= 12 else user[:11] + "…",
            str(item.get("connections", 0)),
            _count(item.get("records_per_s", 0.0)),
            _count(item.get("records_per_s_1m", 0.0)),
            _count(item.get("records", 0)),
            _size(item.get("bytes", 0)),
            f"{_size(disk)}/{_size(quota) if quota else '-'}",
            use,
            _drops(item.get("dropped") or {}),
            when,
        ]
    )


def sort_key(item: Mapping[str, Any]) -> tuple[float, float, int]:
    """Busiest first: records/s now, then over the last minute, then uid."""
    return (-item.get("records_per_s", 0.0), -item.get("records_per_s_1m", 0.0), item["uid"])


def render_table(stats: Mapping[str, Any], *, now: float | None = None) -> list[str]:
    """The ``stats`` table: a summary line, a header, one row per uid (busiest first).

    Args:
        stats: a ``stats`` object (what :func:`fetch` returns).
        now: the wall-clock time for "… ago" (``time.time()`` when ``None``).

    Returns:
        Lines without newlines.
    """
    now = time.time() if now is None else now
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
    lines = [summary, "", _row([title for title, _, _ in _COLUMNS])]
    items = sorted(stats.get("uids") or (), key=sort_key)
    lines.extend(_uid_row(item, now) for item in items)
    if not items:
        lines.append("(no uid has logged since the daemon started)")
    forward = stats.get("forward") or []
    if forward:
        lines.append("")
        lines.extend(render_forward_lines(forward, now=now))
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
    else:
        print("\n".join(render_table(stats)))
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
