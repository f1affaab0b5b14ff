"""End to end: the application keeps running whatever the daemon does; acks lose nothing."""

from __future__ import annotations

import logging
import os
import signal
import time
from functools import partial
from typing import Any

import pytest
import trio

from tests._daemon import DaemonProcess, poll, world
from tests.client._fixtures import no_sender_thread_left  # noqa: F401  # autouse
from trio_logd.client import AsyncLogdClient, LogdClient, LogdHandler

ROOT = os.geteuid()
#: The clients' timeout in these tests: no call may block longer.
TIMEOUT = 0.25


def timed(fn: Any, *args: Any, **kw: Any) -> float:
    t = time.monotonic()
    fn(*args, **kw)
    return time.monotonic() - t


def emit_timed(client: LogdClient, n: int, **fields: Any) -> tuple[list[int], float]:
    """Emit *n* numbered records; return the numbers accepted and the slowest call's time."""
    accepted: list[int] = []
    slowest = 0.0
    for i in range(n):
        t = time.monotonic()
        ok = client.emit("numbered", fields={"i": i, **fields})
        slowest = max(slowest, time.monotonic() - t)
        if ok:
            accepted.append(i)
    return accepted, slowest


def test_logging_goes_on_while_the_daemon_is_stopped_and_restarted() -> None:
    """Daemon down: calls return at once, the buffer keeps what fits; back up: it all
    arrives in order, followed by one record counting the drops exactly."""
    with world() as root:
        d = DaemonProcess(root).start()
        client = LogdClient(d.socket, timeout=TIMEOUT, buffer_bytes=16 * 1024, reconnect_max=0.2)
        handler = LogdHandler(client=client)
        lg = logging.getLogger("resilience.restart")
        lg.propagate = False
        lg.setLevel(logging.INFO)
        lg.addHandler(handler)
        try:
            lg.info("before")
            d.wait_records(ROOT, 1)
            assert d.stop() == 0
            poll(lambda: not client.statistics().connected)
            slowest = max(timed(lg.info, "while down", extra={"i": i}) for i in range(1000))
            # (nothing is written while the daemon is down: the first records fit, the rest not)
            assert slowest < TIMEOUT
            stats = client.statistics()
            kept = stats.pending
            assert 0 < kept < 1000
            assert stats.dropped == 1000 - kept
            d.start()
            recs = d.wait_records(ROOT, 1 + kept + 1)
            assert [r["fields"]["i"] for r in recs if r["msg"] == "while down"] == list(range(kept))
            (report,) = [r for r in recs if r.get("msgid") == "dropped"]
            assert (report["sev"], report["fields"]) == (
                "warning", {"dropped": 1000 - kept, "reason": "buffer_full", "buffer_bytes": 16384},
            )  # fmt: skip
            lg.info("after")
            assert client.flush(10)
            assert d.wait_records(ROOT, kept + 3)[-1]["msg"] == "after"
        finally:
            lg.removeHandler(handler)
            handler.close()
            client.close()
            d.stop()


def test_logging_goes_on_while_the_daemon_is_sigstopped(
    daemon: DaemonProcess, request: pytest.FixtureRequest
) -> None:
    """Daemon frozen: emit never blocks, flush gives up at the timeout; thawed, every
    accepted record arrives and the drops are reported."""
    client = LogdClient(daemon.socket, app="frozen", timeout=TIMEOUT, buffer_bytes=64 * 1024)
    request.addfinalizer(client.close)
    assert client.send("warm")
    os.kill(daemon.pid, signal.SIGSTOP)
    try:
        accepted, slowest = emit_timed(client, 20000, pad="x" * 100)
        assert slowest < TIMEOUT
        waited = timed(client.flush)
        assert TIMEOUT <= waited < TIMEOUT + 0.5
        stats = client.statistics()
        assert stats.dropped == 20000 - len(accepted) > 0  # the kernel's buffer and ours filled
    finally:
        os.kill(daemon.pid, signal.SIGCONT)
    assert client.flush(10)

    def reported() -> list[dict[str, Any]] | None:
        recs = daemon.records(ROOT)
        counts = [r["fields"]["dropped"] for r in recs if r.get("msgid") == "dropped"]
        numbered = sum(r["msg"] == "numbered" for r in recs)
        # one report per burst of drops; done when they add up and everything accepted is in
        return recs if sum(counts) == stats.dropped and numbered >= len(accepted) else None

    recs = poll(reported, timeout=20)
    assert [r["fields"]["i"] for r in recs if r["msg"] == "numbered"] == accepted
    client.close()


async def test_trio_client_waits_at_most_its_timeout_while_the_daemon_is_down() -> None:
    """AsyncLogdClient: emit returns at once, send gives up at the timeout; both records
    are stored, once each, when the daemon comes."""
    with world() as root:
        d = DaemonProcess(root)
        async with AsyncLogdClient(
            d.socket, app="trio-down", ack=True, timeout=TIMEOUT, reconnect_max=0.1
        ) as log:
            assert log.emit("queued while down")
            start = trio.current_time()
            assert await log.send("not stored yet") is False
            assert TIMEOUT <= trio.current_time() - start < TIMEOUT + 0.5
            await trio.to_thread.run_sync(d.start)
            with trio.fail_after(10):
                while not await log.flush():
                    pass
        try:
            recs = await trio.to_thread.run_sync(d.wait_records, ROOT, 2)
            assert [r["msg"] for r in recs] == ["queued while down", "not stored yet"]
        finally:
            d.stop()


def _delivered_beyond(client: LogdClient, n: int) -> bool:
    return client.statistics().delivered > n


def _connected_more_than(client: LogdClient, n: int) -> bool:
    return client.statistics().connects > n


def test_acknowledged_records_survive_kill9_restarts() -> None:
    """ack=True while the daemon is killed -9 and restarted 4 times: every record is on
    disk, and any duplicate carries the same delivery_id (so it can be recognised)."""
    with world() as root:
        d = DaemonProcess(root).start()
        client = LogdClient(d.socket, app="acked", ack=True, timeout=30, reconnect_max=0.1)
        n = 0
        try:
            for round_ in range(4):
                for _ in range(1000):
                    assert client.emit("numbered", fields={"n": n})
                    n += 1
                # kill once this daemon stored some of them: the rest are in flight
                poll(partial(_delivered_beyond, client, n - 1000), interval=0.001)
                d.kill9()
                d.start()
                poll(partial(_connected_more_than, client, round_ + 1))
            assert client.flush()
            stats = client.statistics()
            assert (stats.delivered, stats.dropped, stats.daemon_dropped) == (n, 0, {})
            assert stats.connects >= 5
        finally:
            client.close()
            d.stop()
        recs = [r for r in d.records(ROOT) if r.get("app") == "acked"]
        by_id: dict[str, int] = {}
        for r in recs:
            assert (
                by_id.setdefault(r["fields"]["delivery_id"], r["fields"]["n"]) == r["fields"]["n"]
            )
        assert sorted(by_id.values()) == list(range(n))
        client_id = next(iter(by_id)).split(":")[0]
        assert by_id == {f"{client_id}:{k + 1}": k for k in range(n)}
