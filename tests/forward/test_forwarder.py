"""The forwarder's trio wiring against in-process collectors: delivery, loss, cursor, TLS."""

from __future__ import annotations

import os
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio
from structlog.testing import capture_logs

from tests._tls import TestCA
from tests.forward._sink import Sink
from tests.query._store import T0, Rec, line
from trio_logd.config import ForwardConfig
from trio_logd.server._forward import STATE_DIR, ForwardService, serve_forwarders
from trio_logd.store.writer import StoreWriter

UID, OTHER = 1000, 1001


class Store:
    """A real StoreWriter, and the writer task's hook call after each append."""

    def __init__(self, log_dir: Path) -> None:
        self.writer = StoreWriter(str(log_dir), fsync="never")
        self.writer.open()
        self.hooks: list[Callable[[int, list[bytes]], None]] = []

    def add(self, uid: int, count: int, *, sev: str = "info") -> None:
        first = (self.writer.last_seq(uid) or 0) + 1
        lines = [
            line(uid, s, Rec(T0 + s, f"record {s}", sev=sev)) for s in range(first, first + count)
        ]
        self.writer.append(uid, lines, first + count - 1)
        for hook in self.hooks:
            hook(uid, lines)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "log")
    yield s
    s.writer.close()


def destination(sink: Sink, **kw: Any) -> ForwardConfig:
    kw.setdefault("commit_delay", 0.05)
    return ForwardConfig(name="central", address=f"127.0.0.1:{sink.port}", **kw)


@asynccontextmanager
async def forwarding(store: Store, *configs: ForwardConfig) -> AsyncIterator[ForwardService]:
    """Run a ForwardService on *store*; stop it (drain, save) on the way out."""
    service = ForwardService(configs, store.writer, hostname="testhost")
    store.hooks.append(service.hook)
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_forwarders, service)
        try:
            yield service
        finally:
            service.stop()
    store.hooks.remove(service.hook)


async def until(predicate: Callable[[], object]) -> None:
    """Poll an in-process condition (the caller's fail_after bounds it)."""
    while True:
        if predicate():
            return
        await trio.sleep(0.01)


def cursor(store: Store) -> dict[str, Any]:
    data = (Path(store.writer.log_dir) / STATE_DIR / "central.cursor").read_bytes()
    uids: dict[str, Any] = orjson.loads(data)["uids"]
    return uids


@asynccontextmanager
async def running(sink: Sink) -> AsyncIterator[Sink]:
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.serve)
        yield sink
        nursery.cancel_scope.cancel()


async def test_stored_then_live_records_arrive_in_order(store: Store) -> None:
    """Records stored before the start, then live ones, arrive once each, in seq order."""
    store.add(UID, 300)
    with trio.fail_after(20):
        async with running(Sink()) as sink, forwarding(store, destination(sink)) as service:
            await sink.wait_for(300)
            store.add(UID, 200)
            await sink.wait_for(500)
            (dest,) = service.destinations
            await until(lambda: dest.lag() == 0)
    assert sink.seqs(UID) == list(range(1, 501))
    assert cursor(store) == {str(UID): 500}
    stats = service.stats()[0]
    assert (stats["sent_records"], stats["delivered_records"], stats["resent_records"]) == (
        500, 500, 0,
    )  # fmt: skip
    assert (stats["state"], stats["lag_records"], stats["connects"]) == ("stopped", 0, 1)


async def test_collector_gone_mid_stream_everything_arrives(store: Store) -> None:
    """The collector hangs up mid-stream: the forwarder reconnects and resends what was unsure."""
    store.add(UID, 2000)
    with trio.fail_after(30):
        sink = Sink(close_after=700)
        async with running(sink), forwarding(store, destination(sink, commit_delay=0.5)) as service:
            await until(lambda: set(range(1, 2001)) <= set(sink.seqs(UID)))
            (dest,) = service.destinations
            await until(lambda: dest.lag() == 0)
    seqs = sink.seqs(UID)
    assert set(seqs) == set(range(1, 2001))
    stats = service.stats()[0]
    assert stats["connects"] == 2
    # unread bytes in its buffer make the kernel answer the hang-up with a reset
    assert stats["last_error"] in (
        f"127.0.0.1:{sink.port}: the collector closed the connection",
        f"127.0.0.1:{sink.port}: connection lost: Connection reset by peer",
    )
    # what was resent is what arrived twice, plus what the collector lost in flight
    assert stats["resent_records"] >= len(seqs) - 2000
    assert cursor(store) == {str(UID): 2000}


async def test_cursor_survives_a_restart(store: Store) -> None:
    """A second run starts where the first stopped: nothing is sent twice."""
    store.add(UID, 100)
    with trio.fail_after(20):
        async with running(Sink()) as sink:
            async with forwarding(store, destination(sink)):
                await sink.wait_for(100)
            assert cursor(store) == {str(UID): 100}
            store.add(UID, 50)
            async with forwarding(store, destination(sink)):
                await sink.wait_for(150)
    assert sink.seqs(UID) == list(range(1, 151))


async def test_start_now_skips_history(store: Store) -> None:
    """start = "now": a new destination forwards only what is stored from then on."""
    store.add(UID, 100)
    with trio.fail_after(20):
        sink = Sink()
        async with running(sink), forwarding(store, destination(sink, start="now")):
            await until(lambda: (Path(store.writer.log_dir) / STATE_DIR).exists())
            store.add(UID, 5)
            await sink.wait_for(5)
    assert sink.seqs(UID) == [101, 102, 103, 104, 105]


async def test_filters_per_destination(store: Store) -> None:
    """Each destination gets its uids and severities; filtered records still move its cursor."""
    store.add(UID, 10, sev="info")
    store.add(UID, 5, sev="err")
    store.add(OTHER, 10, sev="err")
    with trio.fail_after(20):
        async with running(Sink()) as errors, running(Sink()) as mine:
            configs = (
                ForwardConfig(
                    name="errors", address=f"127.0.0.1:{errors.port}", min_severity="err",
                    commit_delay=0.05,
                ),
                ForwardConfig(
                    name="mine", address=f"127.0.0.1:{mine.port}", uids=(UID,), commit_delay=0.05
                ),
            )  # fmt: skip
            async with forwarding(store, *configs) as service:
                await errors.wait_for(15)
                await mine.wait_for(15)
                await until(lambda: all(d.lag() == 0 for d in service.destinations))
    assert sorted(errors.seqs(UID)) == [11, 12, 13, 14, 15]
    assert sorted(errors.seqs(OTHER)) == list(range(1, 11))
    assert mine.seqs(UID) == list(range(1, 16))
    assert mine.seqs(OTHER) == []
    state = Path(store.writer.log_dir) / STATE_DIR
    assert orjson.loads((state / "errors.cursor").read_bytes())["uids"] == {"1000": 15, "1001": 10}
    assert orjson.loads((state / "mine.cursor").read_bytes())["uids"] == {"1000": 15}


async def test_unreachable_collector_keeps_records_and_reports(store: Store) -> None:
    """Nobody listens: nothing is lost, the lag and the error show in the stats."""
    store.add(UID, 7)
    with trio.fail_after(20):
        sink = Sink()
        async with running(sink):
            port = sink.port
        config = ForwardConfig(name="central", address=f"127.0.0.1:{port}")
        async with forwarding(store, config) as service:
            (dest,) = service.destinations
            await until(lambda: dest.failures >= 1)
            stats = service.stats()[0]
    assert stats["state"] == "waiting"
    assert stats["lag_records"] == 7
    assert stats["last_error"] == f"127.0.0.1:{port} (tcp): connection refused"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("pki")
    ca, other = TestCA(d, "good"), TestCA(d, "other")
    server = ca.issue("collector", server=True, hosts=("localhost", "127.0.0.1"))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(server.cert, server.key)
    return {"ca": ca, "other": other, "server_ctx": ctx}


async def test_tls_with_the_right_ca(store: Store, pki: dict[str, Any]) -> None:
    """TLS to a collector whose certificate our CA signed: records arrive."""
    store.add(UID, 20)
    with trio.fail_after(20):
        async with running(Sink(ssl_context=pki["server_ctx"])) as sink:
            config = destination(sink, protocol="tls", ca_file=str(pki["ca"].ca_file))
            async with forwarding(store, config):
                await sink.wait_for(20)
    assert sink.seqs(UID) == list(range(1, 21))


async def test_tls_with_the_wrong_ca_sends_nothing(store: Store, pki: dict[str, Any]) -> None:
    """A collector whose certificate another CA signed is refused before any record is sent."""
    store.add(UID, 20)
    with trio.fail_after(20):
        async with running(Sink(ssl_context=pki["server_ctx"])) as sink:
            config = destination(sink, protocol="tls", ca_file=str(pki["other"].ca_file))
            async with forwarding(store, config) as service:
                (dest,) = service.destinations
                await until(lambda: dest.failures >= 1)
                stats = service.stats()[0]
    assert sink.frames == []
    assert stats["last_error"] == (
        f"127.0.0.1:{sink.port} (tls): TLS handshake failed: certificate verify failed: "
        "unable to get local issuer certificate"
    )
    assert (stats["sent_records"], stats["lag_records"]) == (0, 20)


async def test_tls_files_missing_is_an_error_not_a_crash(store: Store) -> None:
    """A CA file that cannot be read is reported, and retried, while the rest goes on."""
    config = ForwardConfig(
        name="central", address="127.0.0.1:9", protocol="tls", ca_file="/nonexistent/ca.pem"
    )
    with trio.fail_after(20):
        async with forwarding(store, config) as service:
            (dest,) = service.destinations
            await until(lambda: dest.failures >= 1)
    assert service.stats()[0]["last_error"] == (
        "cannot load TLS files (ca_file /nonexistent/ca.pem): No such file or directory"
    )


async def test_invalid_cursor_is_set_aside(store: Store) -> None:
    """A damaged cursor file is kept aside and the destination starts over (at least once)."""
    store.add(UID, 3)
    state = Path(store.writer.log_dir) / STATE_DIR
    state.mkdir(mode=0o700)
    (state / "central.cursor").write_bytes(b"not json")
    os.chmod(state / "central.cursor", 0o600)
    with trio.fail_after(20):
        async with running(Sink()) as sink, forwarding(store, destination(sink)):
            await sink.wait_for(3)
    assert sink.seqs(UID) == [1, 2, 3]
    assert [n for n in os.listdir(state) if n.startswith("central.cursor.bad-")] != []


async def test_unreadable_uid_does_not_stop_the_others(store: Store) -> None:
    """A uid directory replaced by a symlink is refused and reported; other uids go on."""
    store.add(OTHER, 3)
    store.add(UID, 4)
    log_dir = Path(store.writer.log_dir)
    os.rename(log_dir / str(OTHER), log_dir / "moved")
    os.symlink(log_dir / "moved", log_dir / str(OTHER))
    with trio.fail_after(20):
        async with running(Sink()) as sink, forwarding(store, destination(sink)) as service:
            await sink.wait_for(4)
            (dest,) = service.destinations
            await until(lambda: dest.failures >= 1 and dest.lag() == 3)
            stats = service.stats()[0]
    assert sink.seqs(UID) == [1, 2, 3, 4]
    assert sink.seqs(OTHER) == []
    assert stats["last_error"] == (
        f"{log_dir}/{OTHER}: not a directory (a symlink?); refusing to follow it"
    )
    assert stats["lag_records"] == 3


async def test_tls_to_a_plain_tcp_collector_says_so(store: Store) -> None:
    """protocol = "tls" to a plain TCP collector that hangs up: the error says what happened."""
    store.add(UID, 1)
    with trio.fail_after(20):
        async with running(Sink()) as sink:
            config = destination(sink, protocol="tls", verify=False)
            async with forwarding(store, config) as service:
                (dest,) = service.destinations
                await until(lambda: dest.failures >= 1)
    assert service.stats()[0]["last_error"] == (
        f"127.0.0.1:{sink.port} (tls): TLS handshake failed: TLS error: unexpected eof while "
        "reading (the collector closed the connection)"
    )


async def test_tls_to_a_silent_plain_collector_times_out_with_a_hint(store: Store) -> None:
    """A plain TCP collector takes the TLS hello for a message and waits: timeout, with a hint."""
    store.add(UID, 1)
    held: list[trio.SocketStream] = []

    async def hold(stream: trio.SocketStream) -> None:
        held.append(stream)
        await trio.sleep_forever()

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            serve = partial(trio.serve_tcp, hold, 0, host="127.0.0.1")
            (listener,) = await nursery.start(serve)
            port = listener.socket.getsockname()[1]
            config = ForwardConfig(name="central", address=f"127.0.0.1:{port}", protocol="tls",
                                   verify=False, timeout=1.0)  # fmt: skip
            async with forwarding(store, config) as service:
                (dest,) = service.destinations
                await until(lambda: dest.failures >= 1)
            nursery.cancel_scope.cancel()
    assert service.stats()[0]["last_error"] == (
        f"127.0.0.1:{port} (tls): TLS handshake timed out after 1s "
        "(does the collector speak TLS on this port?)"
    )


async def test_a_damaged_rotated_file_is_passed_over_and_reported(tmp_path: Path) -> None:
    """A compressed file cut in the middle: the records before the damage and every later
    file's are forwarded, the file is logged (forward_file_damaged) and the last error."""
    log_dir = tmp_path / "log"
    lines = [line(UID, s, Rec(T0 + s, f"record {s}")) for s in range(1, 31)]
    w = StoreWriter(str(log_dir), max_file_bytes=10 * len(lines[0]), compress="zstd")
    w.open()
    w.append(UID, lines, 30)
    while w.compress_next() is not None:
        pass
    w.close()
    middle = sorted((log_dir / str(UID)).glob("*.jsonl.zst"))[1]
    first, last = (int(x) for x in middle.name.split(".")[0].split("-"))
    middle.write_bytes(middle.read_bytes()[:20])  # inside its first block: nothing readable
    expected = [s for s in range(1, 31) if not first <= s <= last]
    store = Store(log_dir)
    try:
        with trio.fail_after(20), capture_logs() as logs:
            async with running(Sink()) as sink, forwarding(store, destination(sink)) as service:
                await sink.wait_for(len(expected))
                stats = service.stats()[0]
    finally:
        store.writer.close()
    assert sink.seqs(UID) == expected
    (event,) = [e for e in logs if e["event"] == "forward_file_damaged"]
    assert (event["uid"], event["file"]) == (UID, str(middle))
    assert event["error"] == "cut short: the file ends inside a zstd frame"
    assert stats["last_error"] == f"{middle}: damaged: {event['error']}"
