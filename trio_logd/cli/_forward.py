"""The forwarding lines of ``trio-logd status`` (and of the ``stats`` table).

How this works: :func:`render_forward_lines` turns the ``forward`` items of a
``status`` or ``stats`` reply (``ForwardService.stats``) into lines of text;
it is pure, so any command can print them and tests read them without a
daemon.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["render_forward_lines"]


def _ago(t: object, now: float) -> str:
    if not isinstance(t, int | float):
        return "never"
    seconds = max(0, int(now - t))
    if seconds < 120:
        return f"{seconds}s ago"
    if seconds < 7200:
        return f"{seconds // 60}m ago"
    return f"{seconds // 3600}h ago"


def render_forward_lines(
    items: Sequence[Mapping[str, Any]], *, now: float | None = None
) -> list[str]:
    """Lines describing each destination: state, lag, delivered, last error.

    Args:
        items: the ``forward`` list of a ``status`` or ``stats`` reply.
        now: the wall-clock time ages are relative to (``time.time()``).

    Returns:
        One header line and two or three lines per destination; nothing
        when there is no destination.
    """
    if not items:
        return []
    now = time.time() if now is None else now
    lines = ["  forward:"]
    for f in items:
        state = str(f.get("state"))
        if state == "connected":
            state += f" since {_ago(f.get('connected_since'), now)}"
        elif state == "waiting" and isinstance(f.get("retry_at"), int | float):
            state += f", retry in {max(0.0, f['retry_at'] - now):.0f}s"
        lines.append(f"    {f.get('name')} -> {f.get('address')} ({f.get('protocol')}): {state}")
        saved = _ago(f.get("cursor_saved_at"), now)
        lines.append(
            f"      lag {f.get('lag_records')} records; delivered {f.get('delivered_records')}, "
            f"sent {f.get('sent_records')}, resent {f.get('resent_records')}, "
            f"missing {f.get('missing_records')}; cursor saved {saved}"
        )
        if f.get("last_error"):
            lines.append(
                f"      last error ({_ago(f.get('last_error_at'), now)}): {f['last_error']}"
            )
    return lines
