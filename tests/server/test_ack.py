"""Acknowledged delivery, the daemon's side: a real daemon in process, real sockets."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
import trio

from trio_logd.config import load
from trio_logd.protocol.ack import ACK_HELLO, ACK_WELCOME
from trio_logd.protocol.framing import Frame
from trio_logd.server import Daemon, serve
from trio_logd.server._ack import ACK_BACKLOG_LIMIT, AckSlot
from trio_logd.server._pipeline import Batch
from trio_logd.store.files import read_uid_records

UID = __import__("os").geteuid()


def frame(text: str) -> bytes:
    payload = f"<14>1 - - acktest - - - {text}".encode()
    return b"%d %s" % (len(payload), payload)


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    """A daemon serving in this process (fsync = batch), shut down cleanly afterwards."""
    conf = tmp_path / "logd.toml"
    conf.write_text(
        f'[daemon]\nsocket = "{tmp_path}/log.sock"\ncontrol_socket = "{tmp_path}/ctl.sock"\n'
        f'log_dir = "{tmp_path}/log"\n[store]\nfsync = "batch"\n'
        "[limits.default]\nrate_messages = 1000000\nburst_messages = 1000000\n"
    )
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        d: Daemon = await nursery.start(lambda task_status: serve(
            load(str(conf)), task_status=task_status, shutdown_trigger=stop
        ))  # fmt: skip
        yield d
        stop.set()


async def connect(d: Daemon) -> trio.socket.SocketType:
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    await sock.connect(d.sockets["socket"])
    return sock


async def read_until(sock: trio.socket.SocketType, end: bytes) -> bytes:
    data = b""
    with trio.fail_after(10):
        while not data.endswith(end):
            chunk = await sock.recv(65536)
            assert chunk, f"EOF after {data!r}"
            data += chunk
    return data


def stored(d: Daemon) -> list[str]:
    lines = read_uid_records(d.store.log_dir, UID)
    return [r["msg"] for r in map(orjson.loads, lines) if "event" not in r]


async def wait_stored(d: Daemon, n: int) -> list[str]:
    """Wait (woken by the writer's hook, with a deadline) until *n* records are on disk."""
    written = trio.Event()

    def hook(uid: int, lines: list[bytes]) -> None:
        written.set()

    d.pipeline.written_hooks.append(hook)
    try:
        with trio.fail_after(10):
            while len(msgs := stored(d)) < n:
                await written.wait()
                written = trio.Event()
    finally:
        d.pipeline.written_hooks.remove(hook)
    return msgs


async def test_hello_turns_on_acks_after_storage(daemon: Daemon) -> None:
    """After the hello, `ack N` comes once N records are on disk; the hello is not a record."""
    sock = await connect(daemon)
    await sock.send(ACK_HELLO + b"".join(frame(f"r{i}") for i in range(3)))
    data = await read_until(sock, b"ack 3\n")
    assert data.startswith(ACK_WELCOME)
    assert data[len(ACK_WELCOME) :].split(b"\n")[-2] == b"ack 3"
    assert stored(daemon) == ["r0", "r1", "r2"]  # acknowledged means readable from disk
    await sock.send(frame("r3"))
    assert (await read_until(sock, b"\n")) == b"ack 4\n"
    sock.close()


async def test_acks_cover_records_across_many_reads(daemon: Daemon) -> None:
    """Records written one per send are all acknowledged, cumulatively."""
    sock = await connect(daemon)
    await sock.send(ACK_HELLO)
    for i in range(200):
        await sock.send(frame(f"n{i}"))
    data = await read_until(sock, b"ack 200\n")
    acks = [int(line[4:]) for line in data.splitlines()[1:]]
    assert acks == sorted(acks)
    assert acks[-1] == 200
    assert stored(daemon) == [f"n{i}" for i in range(200)]
    sock.close()


async def test_half_closed_client_still_gets_the_last_ack(daemon: Daemon) -> None:
    """A client that shuts down its write side gets acks for everything, then EOF."""
    sock = await connect(daemon)
    await sock.send(ACK_HELLO + b"".join(frame(f"h{i}") for i in range(50)))
    sock.shutdown(socket.SHUT_WR)
    data = b""
    with trio.fail_after(10):
        while chunk := await sock.recv(65536):
            data += chunk
    assert data.endswith(b"ack 50\n")
    sock.close()


async def test_plain_connections_get_nothing_back(daemon: Daemon) -> None:
    """Without the hello the daemon never writes to the connection."""
    sock = await connect(daemon)
    await sock.send(frame("plain") + b"<13>lf framed\n")
    sock.shutdown(socket.SHUT_WR)
    with trio.fail_after(10):
        assert await sock.recv(65536) == b""
    assert await wait_stored(daemon, 2) == ["plain", "lf framed"]
    sock.close()


async def test_a_hello_after_the_first_frame_is_an_ordinary_record(daemon: Daemon) -> None:
    """Only the first frame can be the hello; later it is stored like any record."""
    sock = await connect(daemon)
    await sock.send(frame("first") + ACK_HELLO)
    sock.shutdown(socket.SHUT_WR)
    with trio.fail_after(10):
        assert await sock.recv(65536) == b""
    assert await wait_stored(daemon, 2) == ["first", "\x00trio-logd ack 1"]
    sock.close()


async def test_a_client_that_reads_late_gets_the_final_ack(daemon: Daemon) -> None:
    """Not reading acks for a while costs the daemon no buffer: one line catches up later."""
    sock = await connect(daemon)
    other = await connect(daemon)
    await sock.send(ACK_HELLO)
    for i in range(3000):
        await sock.send(frame(f"late{i}"))
    await other.send(frame("others flow meanwhile"))
    other.shutdown(socket.SHUT_WR)
    with trio.fail_after(10):
        assert await other.recv(100) == b""
    data = await read_until(sock, b"ack 3000\n")
    assert len(data) < 3000 * len(b"ack 3000\n")  # lines were merged, not queued per batch
    assert len(await wait_stored(daemon, 3001)) == 3001
    sock.close()
    other.close()


async def test_drops_are_numbered_in_order_with_stored_records() -> None:
    """Records dropped before the store keep their numbers: `drop` lines, then `ack`."""
    a, b = trio.socket.socketpair()
    async with trio.open_nursery() as nursery:
        slot = AckSlot(trio.SocketStream(a), nursery)
        assert slot.hello([Frame(b"\x00trio-logd ack 1", False)]) == []
        first = Batch([b"1\n", b"2\n"], 4, 2, b"")
        slot.queued(first, 2)
        slot.dropped(3, "rate")
        second = Batch([b"6\n"], 2, 3, b"")
        slot.queued(second, 1)
        assert second.on_stored is not None
        assert first.on_stored is not None
        second.on_stored(1)
        first.on_stored(2)
        data = await read_until(b, b"ack 6\n")
        assert data == ACK_WELCOME + b"drop 3 5 rate\nack 6\n"
        nursery.cancel_scope.cancel()
    a.close()
    b.close()


async def test_a_client_that_never_reads_is_cut_off() -> None:
    """Past the backlog limit of unwritten drop/store alternations the connection is cut."""
    a, b = trio.socket.socketpair()
    async with trio.open_nursery() as nursery:
        slot = AckSlot(trio.SocketStream(a), nursery)
        slot.on = True  # acknowledged mode without its writer: nothing is ever written
        for _ in range(ACK_BACKLOG_LIMIT + 1):
            batch = Batch([b"x\n"], 2, 1, b"")
            slot.queued(batch, 1)
            assert batch.on_stored is not None
            batch.on_stored(1)
            slot.dropped(1, "rate")
            if nursery.cancel_scope.cancel_called:
                break
        assert nursery.cancel_scope.cancel_called
        assert slot.ledger.backlog > ACK_BACKLOG_LIMIT
    a.close()
    b.close()
