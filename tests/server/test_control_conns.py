"""The control server's connection caps, greeting, deadlines and descriptor reserve, in process.

Each connection is one end of a Unix socket pair served by
``ControlServer.handle``; the caller is this process (``SO_PEERCRED``), and
whether it counts as root or admin is the test's ``is_privileged``.
``autojump_clock`` makes the deadlines instant and exact.
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest
import trio
import trio.testing

from trio_logd.config import DEFAULT_CONTROL
from trio_logd.peer import PeerCred
from trio_logd.protocol.control import GREETING
from trio_logd.server._accept import Accepted
from trio_logd.server._control import ControlCall, ControlServer
from trio_logd.server._fdlimit import FdCounters, FdReserve


class _Who:
    """The test's answer to "root or admin?", changeable mid-test."""

    def __init__(self) -> None:
        self.privileged = False

    def __call__(self, cred: PeerCred, groups: Sequence[int]) -> bool:
        return self.privileged


def make_server(who: _Who, **settings: Any) -> ControlServer:
    server = ControlServer(
        settings=dataclasses.replace(DEFAULT_CONTROL, **settings), is_privileged=who
    )

    async def status(call: ControlCall) -> None:
        await call.send("ok", privileged=call.privileged)

    server.register("status", status)
    return server


_CLIENTS: list[trio.SocketStream] = []


@asynccontextmanager
async def serving(server: ControlServer) -> AsyncIterator[trio.Nursery]:
    """A nursery for the server's tasks; the clients are closed at the end."""
    try:
        async with trio.open_nursery() as nursery:
            yield nursery
            nursery.cancel_scope.cancel()
    finally:
        while _CLIENTS:
            await trio.aclose_forcefully(_CLIENTS.pop())


async def connect(server: ControlServer, nursery: trio.Nursery) -> trio.SocketStream:
    """A client end whose server end ``server.handle`` serves."""
    a, b = trio.socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    nursery.start_soon(server.handle, Accepted.from_socket(b))
    client = trio.SocketStream(a)
    _CLIENTS.append(client)
    return client


async def read_all(client: trio.SocketStream) -> list[dict[str, Any]]:
    """Every line until the server closes."""
    data = b""
    while chunk := await client.receive_some(65536):
        data += chunk
    return [orjson.loads(line) for line in data.splitlines()]


async def greeted(client: trio.SocketStream) -> bool:
    return await client.receive_some(len(GREETING)) == GREETING


async def test_per_uid_cap_refuses_with_one_json_line() -> None:
    """A uid at max_connections_per_uid gets one error line naming the limit, then EOF."""
    who = _Who()
    server = make_server(who, max_connections_per_uid=2)
    async with serving(server) as nursery:
        held = [await connect(server, nursery) for _ in range(2)]
        assert [await greeted(c) for c in held] == [True, True]
        with trio.fail_after(5):
            lines = await read_all(await connect(server, nursery))
        assert len(lines) == 1
        assert lines[0]["type"] == "error"
        assert (lines[0]["code"], lines[0]["limit"]) == (
            "too_many_connections",
            "max_connections_per_uid",
        )
        assert "max_connections_per_uid = 2" in lines[0]["error"]
        stats = server.statistics()
        assert (stats["connections"], stats["refused"]) == (2, {"max_connections_per_uid": 1})
        await held[0].aclose()
        await trio.testing.wait_all_tasks_blocked()
        again = await connect(server, nursery)
        assert await greeted(again)


async def test_connections_count_against_the_account_the_server_is_given() -> None:
    """account_for decides whose per-uid cap a connection uses (a subordinate uid's owner)."""
    who = _Who()
    server = make_server(who, max_connections_per_uid=2)
    server.account_for = lambda cred: 4242
    async with serving(server) as nursery:
        held = [await connect(server, nursery) for _ in range(2)]
        assert [await greeted(c) for c in held] == [True, True]
        assert server.conns.count(4242) == 2
        with trio.fail_after(5):
            lines = await read_all(await connect(server, nursery))
        assert lines[0]["limit"] == "max_connections_per_uid"
        assert "uid 4242 (the owner of uid " in lines[0]["error"]


async def test_headroom_lets_root_in_when_the_ordinary_share_is_full() -> None:
    """Ordinary callers fill max_connections - headroom; a privileged one still gets in."""
    who = _Who()
    server = make_server(who, max_connections=4, connection_headroom=2, max_connections_per_uid=100)
    async with serving(server) as nursery:
        held = [await connect(server, nursery) for _ in range(2)]
        assert [await greeted(c) for c in held] == [True, True]
        refused = await read_all(await connect(server, nursery))
        assert refused[0]["limit"] == "max_connections"
        who.privileged = True
        root = await connect(server, nursery)
        assert await greeted(root)
        await root.send_all(b'{"op":"status"}\n')
        assert await read_all(root) == [{"type": "ok", "privileged": True}]


async def _trickle(client: trio.SocketStream, data: bytes) -> None:
    """Send *data* a byte a second, until the server closes."""
    for byte in data:
        await trio.sleep(1.0)
        try:
            await client.send_all(bytes([byte]))
        except trio.BrokenResourceError:
            return


@pytest.mark.parametrize(
    ("sent", "closed_after", "limit"),
    [(b"", 2.0, "first_byte_timeout"), (b'{"op":"status"}', 5.0, "request_timeout")],
)
async def test_slow_client_is_closed_at_its_deadline(
    autojump_clock: trio.testing.MockClock, sent: bytes, closed_after: float, limit: str
) -> None:
    """Silent: a timeout line at first_byte_timeout; trickling: at request_timeout; then EOF."""
    server = make_server(_Who(), first_byte_timeout=2.0, request_timeout=5.0)
    async with serving(server) as nursery:
        client = await connect(server, nursery)
        start = trio.current_time()
        assert await greeted(client)
        nursery.start_soon(_trickle, client, sent)
        lines = await read_all(client)
        assert trio.current_time() - start == closed_after
        assert [(x["code"], x["limit"]) for x in lines] == [("timeout", limit)]
        assert server.statistics()["timeouts"] == {limit: 1}
        assert server.statistics()["connections"] == 0


async def test_connection_in_the_descriptor_reserve_is_refused() -> None:
    """A connection numbered in the reserve gets a refusal naming fd_reserve, counted."""
    who = _Who()
    server = make_server(who)
    server.fds = FdCounters(FdReserve(soft=8))  # every descriptor we get is above 6
    async with serving(server) as nursery:
        for privileged in (False, True):
            who.privileged = privileged
            lines = await read_all(await connect(server, nursery))
            assert [(x["code"], x["limit"]) for x in lines] == [
                ("too_many_connections", "fd_reserve")
            ]
    assert server.fds.snapshot()["refused"] == {"control": 2}
    assert server.statistics()["refused"] == {"fd_reserve": 2}


async def test_reload_changes_the_caps_and_keeps_open_connections() -> None:
    """configure() with a smaller per-uid cap refuses new connections only."""
    who = _Who()
    server = make_server(who, max_connections_per_uid=3)
    async with serving(server) as nursery:
        held = [await connect(server, nursery) for _ in range(2)]
        assert [await greeted(c) for c in held] == [True, True]
        server.configure(dataclasses.replace(DEFAULT_CONTROL, max_connections_per_uid=1))
        refused = await read_all(await connect(server, nursery))
        assert refused[0]["limit"] == "max_connections_per_uid"
        await held[0].send_all(b'{"op":"status"}\n')
        assert await read_all(held[0]) == [{"type": "ok", "privileged": False}]
