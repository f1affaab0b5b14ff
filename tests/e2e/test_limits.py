"""End to end: per-uid rate limits, connection caps and quotas, with children of other uids."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator

import pytest

from tests._daemon import DaemonProcess, poll, world
from tests._uids import free_uids
from tests.e2e._limits_helpers import Holder, background_as, payloads, send_as, uid_stats

ROOT = os.geteuid()
FLOOD, QUIET, OTHER = free_uids(3)
#: gid of the "adm" group on Debian (and most distributions)
ADM = 4

pytestmark = pytest.mark.usefixtures("as_root")


MakeDaemon = Callable[..., DaemonProcess]


@pytest.fixture
def make_daemon() -> Iterator[MakeDaemon]:
    """Start daemons with a given config; stop each with SIGTERM and expect exit 0."""
    started: list[DaemonProcess] = []
    with world() as root:

        def make(**kw: str) -> DaemonProcess:
            d = DaemonProcess(root, **kw).start()
            started.append(d)
            return d

        yield make
        for d in started:
            if d.proc is not None and d.proc.poll() is None:
                rc = d.stop()
                assert rc == 0, f"daemon exited {rc}: {d.stderr()}"


def messages(d: DaemonProcess, uid: int) -> list[dict[str, object]]:
    return [r for r in d.records(uid) if "event" not in r]


def suppressed(d: DaemonProcess, uid: int) -> list[dict[str, object]]:
    return [r for r in d.records(uid) if r.get("event") == "suppressed"]


def test_rate_drop_counts_every_record_and_spares_other_uids(
    make_daemon: MakeDaemon,
) -> None:
    """Over its rate, a uid's records are dropped and reported exactly; another uid loses none."""
    d = make_daemon(
        extra=f"""
[limits.uid.{FLOOD}]
rate_messages = 10
burst_messages = 100
on_rate = "drop"
"""
    )
    sent_at = time.time()
    send_as(d, FLOOD, payloads(1000, "flood"), conns=2)
    send_as(d, QUIET, payloads(500, "quiet"))
    quiet = d.wait_records(QUIET, 500)
    assert [r["msg"] for r in quiet] == [f"quiet {i} " for i in range(500)]
    (report,) = poll(lambda: suppressed(d, FLOOD), timeout=12)
    stored = messages(d, FLOOD)
    assert 100 <= len(stored) < 1000
    assert (report["reason"], report["uid"], report["pid"], report["count"]) == (
        "rate", FLOOD, d.pid, 1000 - len(stored),
    )  # fmt: skip
    filed = time.mktime(time.strptime(str(report["ts"])[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    assert filed - sent_at <= 10
    assert uid_stats(d, FLOOD)["dropped"] == {"rate": 1000 - len(stored)}
    assert uid_stats(d, QUIET)["dropped"] == {}
    assert suppressed(d, QUIET) == []


def test_rate_block_holds_a_uid_to_its_rate_and_loses_nothing(
    make_daemon: MakeDaemon,
) -> None:
    """`on_rate = "block"`: the sender is held back by the kernel buffer, nothing is dropped,
    and another uid's records flow meanwhile."""
    n, rate, burst = 3000, 1000, 100
    d = make_daemon(
        extra=f"""
[limits.uid.{FLOOD}]
rate_messages = {rate}
burst_messages = {burst}
on_rate = "block"
"""
    )
    records = payloads(n, "held", size=200)
    r, w = os.pipe()

    def flood() -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(d.socket)
        t0 = time.monotonic()
        s.sendall(b"".join(records))
        os.write(w, b"%f" % (time.monotonic() - t0))
        s.close()

    t0 = time.monotonic()
    with background_as(FLOOD, flood) as join:
        poll(lambda: uid_stats(d, FLOOD).get("records", 0) > 0)
        send_as(d, QUIET, payloads(100, "quiet"))
        d.wait_records(QUIET, 100)
        assert uid_stats(d, FLOOD)["records"] < n  # the quiet uid did not wait for the flood
        join()
    os.close(w)
    send_seconds = float(os.read(r, 64))
    os.close(r)
    stored = d.wait_records(FLOOD, n, timeout=30)
    elapsed = time.monotonic() - t0
    assert [r["msg"] for r in stored] == [p[4:-1].decode() for p in records]
    assert elapsed >= (n - burst) / rate * 0.95
    # the socket buffer holds ~200 KiB of the 600 KB: the rest waited for tokens
    assert send_seconds >= 1.0
    assert uid_stats(d, FLOOD)["dropped"] == {}


def test_buckets_are_per_uid_not_per_connection(make_daemon: MakeDaemon) -> None:
    """Spreading records over many connections buys a uid nothing: one bucket per uid."""
    d = make_daemon(
        extra=f"""
[limits.uid.{FLOOD}]
rate_messages = 1
burst_messages = 50
on_rate = "drop"
"""
    )
    send_as(d, FLOOD, payloads(400, "spread"), conns=8)

    def accounted() -> int:
        dropped: dict[str, int] = uid_stats(d, FLOOD).get("dropped", {})
        return sum(dropped.values()) + len(messages(d, FLOOD))

    poll(lambda: accounted() >= 400)
    assert accounted() == 400
    assert 50 <= len(messages(d, FLOOD)) <= 55


def test_per_uid_connection_cap(make_daemon: MakeDaemon) -> None:
    """One connection over `max_connections` is accepted and closed (EOF), counted and
    reported; other uids still connect; closing one makes room."""
    d = make_daemon(
        extra=f"""
[limits.uid.{FLOOD}]
max_connections = 3
"""
    )
    holder = Holder(d, FLOOD, FLOOD)
    try:
        assert [holder.open_and_settle() for _ in range(4)] == [True, True, True, False]
        assert holder.newest_reads() == "EOF"
        assert uid_stats(d, FLOOD)["dropped"] == {"connections": 1}
        send_as(d, QUIET, payloads(1, "still welcome"))
        d.wait_records(QUIET, 1)
        holder.close_oldest()
        poll(lambda: uid_stats(d, FLOOD)["connections"] == 2)
        assert holder.open_and_settle() is True
        holder.send()
        (rec,) = d.wait_records(FLOOD, 1)
        assert rec["msg"] == "held connection says hi"
    finally:
        holder.stop()
    d.stop()
    (report,) = suppressed(d, FLOOD)
    assert (report["reason"], report["count"]) == ("connections", 1)


def test_global_cap_keeps_headroom_for_root_and_admins(make_daemon: MakeDaemon) -> None:
    """Ordinary uids fill the global cap only up to its headroom; root and [access] admins
    members use the rest."""
    d = make_daemon(
        daemon_extra="max_connections = 8\nconnection_headroom = 3",
        extra='[access]\nadmins = ["adm"]',
    )
    flood = Holder(d, FLOOD, FLOOD)
    quiet = Holder(d, QUIET, QUIET)
    admin = Holder(d, OTHER, OTHER, groups=[ADM])
    root = Holder(d, ROOT, os.getegid())
    try:
        assert [flood.open_and_settle() for _ in range(6)] == [True] * 5 + [False]
        assert flood.newest_reads() == "EOF"
        assert quiet.open_and_settle() is False  # a second ordinary uid is locked out too
        assert root.open_and_settle() is True
        assert admin.open_and_settle() is True
        assert root.open_and_settle() is True
        assert root.open_and_settle() is False  # the global cap binds root as well
        assert admin.open_and_settle() is False
        assert request_status(d)["connections"] == 8
    finally:
        for h in (flood, quiet, admin, root):
            h.stop()


def request_status(d: DaemonProcess) -> dict[str, object]:
    from trio_logd.control_client import request_one

    return request_one(d.control, "status")


def test_idle_connections_of_one_uid_do_not_lock_others_out(
    make_daemon: MakeDaemon,
) -> None:
    """Hundreds of idle connections from one uid stop at its own cap; others keep logging."""
    d = make_daemon(daemon_extra="max_connections = 1000")
    holder = Holder(d, FLOOD, FLOOD)
    try:
        for _ in range(300):
            holder.open()
        poll(lambda: uid_stats(d, FLOOD).get("dropped", {}).get("connections", 0) == 300 - 64)
        assert uid_stats(d, FLOOD)["connections"] == 64
        send_as(d, QUIET, payloads(10, "quiet"))
        assert len(d.wait_records(QUIET, 10)) == 10
    finally:
        holder.stop()


def test_quota_drop_stops_storing_once_over_quota(make_daemon: MakeDaemon) -> None:
    """`on_quota = "drop"`: a uid over its quota has its records dropped (reason quota),
    others are unaffected."""
    d = make_daemon(
        extra=f"""
[limits.uid.{FLOOD}]
quota_bytes = 4096
on_quota = "drop"
"""
    )
    send_as(d, FLOOD, payloads(40, "first"))  # ~6 KB on disk: over the quota
    d.wait_records(FLOOD, 40)
    send_as(d, FLOOD, payloads(25, "second"))
    send_as(d, QUIET, payloads(25, "quiet"))
    d.wait_records(QUIET, 25)
    poll(lambda: uid_stats(d, FLOOD)["dropped"] == {"quota": 25})
    assert [r["msg"] for r in messages(d, FLOOD)] == [f"first {i} " for i in range(40)]
    d.stop()
    (report,) = suppressed(d, FLOOD)
    assert (report["reason"], report["count"]) == ("quota", 25)


def test_acknowledged_client_hears_which_records_were_dropped(make_daemon: MakeDaemon) -> None:
    """In acknowledged mode, records dropped by the rate limit are named in a `drop` line
    before the `ack` that covers them; the stored ones are acknowledged."""
    from trio_logd.protocol.ack import ACK_HELLO

    d = make_daemon(
        extra=f"""
[limits.uid.{ROOT}]
rate_messages = 1
burst_messages = 10
on_rate = "drop"
"""
    )
    s = d.connect()
    s.sendall(ACK_HELLO + b"".join(payloads(50, "acked")))
    s.settimeout(10)
    reply = b""
    while not reply.endswith(b"ack 50\n"):
        chunk = s.recv(4096)
        assert chunk, reply
        reply += chunk
    s.close()
    stored = [r for r in messages(d, ROOT) if str(r["msg"]).startswith("acked")]
    assert 10 <= len(stored) <= 11
    assert reply.decode().splitlines() == [
        "trio-logd ack 1", f"drop {len(stored) + 1} 50 rate", "ack 50",
    ]  # fmt: skip
