"""The forwarding lines that `trio-logd status` prints."""

from __future__ import annotations

from trio_logd.cli._forward import render_forward_lines

NOW = 1_800_000_000.0


def item(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "name": "central", "address": "logs:6514", "protocol": "tls", "state": "connected",
        "connected_since": NOW - 90, "lag_records": 12, "sent_records": 1000,
        "delivered_records": 988, "resent_records": 3, "missing_records": 0,
        "last_error": None, "last_error_at": None, "retry_at": None, "cursor_saved_at": NOW - 1,
    }  # fmt: skip
    base.update(kw)
    return base


def test_no_destination_no_lines() -> None:
    """Without [[forward]] nothing is printed."""
    assert render_forward_lines([], now=NOW) == []


def test_connected_destination() -> None:
    """A connected destination: since when, its lag and what it delivered."""
    assert render_forward_lines([item()], now=NOW) == [
        "  forward:",
        "    central -> logs:6514 (tls): connected since 90s ago",
        "      lag 12 records; delivered 988, sent 1000, resent 3, missing 0; cursor saved 1s ago",
    ]


def test_failing_destination_shows_its_error_and_retry() -> None:
    """A destination that cannot connect says why and when it tries again."""
    lines = render_forward_lines(
        [item(state="waiting", retry_at=NOW + 4, last_error="refused", last_error_at=NOW - 600)],
        now=NOW,
    )
    assert lines[1] == "    central -> logs:6514 (tls): waiting, retry in 4s"
    assert lines[3] == "      last error (10m ago): refused"
