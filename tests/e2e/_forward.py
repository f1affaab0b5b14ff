"""Helpers of the forwarding end-to-end tests: config snippets, senders, what the collector got."""

from __future__ import annotations

from typing import Any

import pytest

from tests._collector import Rsyslog, rsyslog_missing
from tests._daemon import DaemonProcess, poll
from trio_logd.control_client import request_one
from trio_logd.forward import SD_ID

__all__ = [
    "forward_stats",
    "forward_toml",
    "forwarded",
    "needs_rsyslog",
    "send",
    "wait_numbers",
]

#: Skip only where rsyslogd is missing and nobody could install it (not root).
needs_rsyslog = pytest.mark.skipif(rsyslog_missing() is not None, reason=str(rsyslog_missing()))


def forward_toml(name: str, address: str, **keys: object) -> str:
    """A [[forward]] table (quick commit and retry for tests; *keys* add or override)."""
    lines = [f'[[forward]]\nname = "{name}"\naddress = "{address}"']
    for key, value in {"commit_delay": "0.2s", "retry_max": "1s", **keys}.items():
        rendered = f'"{value}"' if isinstance(value, str) else str(value).lower()
        lines.append(f"{key} = {rendered}")
    return "\n".join(lines) + "\n"


def send(daemon: DaemonProcess, first: int, count: int, *, tag: str = "numbers") -> None:
    """Records "n=<i>" for i in [first, first + count), LF-framed, on one connection."""
    with daemon.connect() as s:
        s.sendall(
            b"".join(b"<14>%s: n=%d\n" % (tag.encode(), i) for i in range(first, first + count))
        )


def forwarded(rs: Rsyslog, uid: int) -> list[dict[str, Any]]:
    """Messages of *uid* at the collector, in arrival order, not the daemon's own."""
    return [
        m
        for m in rs.messages()
        if m["sd"].get(SD_ID, {}).get("uid") == str(uid) and "event" not in m["sd"][SD_ID]
    ]


def wait_numbers(rs: Rsyslog, uid: int, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Poll until n=0..count-1 of *uid* all arrived (duplicates allowed)."""
    want = {f"n={i}" for i in range(count)}

    def arrived() -> list[dict[str, Any]] | None:
        msgs = forwarded(rs, uid)
        return msgs if want <= {m["msg"] for m in msgs} else None

    result: list[dict[str, Any]] = poll(arrived, timeout=timeout, interval=0.05)
    return result


def forward_stats(daemon: DaemonProcess) -> list[dict[str, Any]]:
    """The `forward` items of the daemon's `stats` reply."""
    reply = request_one(daemon.control, "stats")
    assert reply["type"] == "ok", reply
    items: list[dict[str, Any]] = reply["forward"]
    return items
