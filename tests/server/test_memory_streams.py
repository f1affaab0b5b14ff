"""Ingest and control served over trio memory streams, through ``serve_listener``.

The accept seam (``server/_accept.py``): a listener gives ``Accepted`` values,
here a memory stream with the credentials the test chooses (as trio's own
``serve_listeners`` tests use a ``MemoryListener``), so the handlers run
without sockets, under ``autojump_clock`` where deadlines matter.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import orjson
import trio
import trio.testing

from tests.server._conn import UID, make_ctx, records, summary
from trio_logd.config import DEFAULT_CONTROL
from trio_logd.peer import PeerCred
from trio_logd.protocol.control import GREETING
from trio_logd.server._accept import Accepted, serve_listener
from trio_logd.server._control import ControlCall, ControlServer
from trio_logd.server._ingest import IngestContext, handle_connection

#: Who the test's clients are: our uid (the limiter knows it), a pid no process has here.
CLIENT = PeerCred(424242, UID, UID)
#: A control client that is not root (root is not held to the per-uid caps).
USER = PeerCred(424243, 1234, 1234)


class MemoryPeerListener(trio.abc.Listener[Accepted]):
    """Connections are memory stream pairs; the server end comes with *cred*."""

    def __init__(self) -> None:
        self.send, self.receive = trio.open_memory_channel[Accepted](1)

    async def connect(self, cred: PeerCred) -> trio.StapledStream[Any, Any]:
        client, server = trio.testing.memory_stream_pair()
        await self.send.send(Accepted.for_stream(server, cred))
        return client

    async def accept(self) -> Accepted:
        return await self.receive.receive()

    async def aclose(self) -> None:
        await self.send.aclose()


@asynccontextmanager
async def listening(handler: Any, *, guard: float = 1000.0) -> AsyncIterator[MemoryPeerListener]:
    """``serve_listener`` on a memory listener, its handlers in the same nursery."""
    listener = MemoryPeerListener()
    with trio.fail_after(guard):  # a deadline that never fires fails the test
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_listener, listener, nursery, handler)
            yield listener
            nursery.cancel_scope.cancel()


async def read_to_eof(stream: trio.abc.ReceiveStream) -> bytes:
    data = b""
    while chunk := await stream.receive_some():
        data += chunk
    return data


# --------------------------------------------------------------------------- ingest


async def _ingest(ctx: IngestContext, chunks: list[bytes]) -> bytes:
    """Send *chunks* on one connection, then EOF; what the daemon sent back."""
    async with listening(partial(handle_connection, ctx=ctx)) as listener:
        client = await listener.connect(CLIENT)
        for chunk in chunks:
            await client.send_all(chunk)
            await trio.testing.wait_all_tasks_blocked()
        await client.send_eof()
        return await read_to_eof(client)


async def test_ingest_frames_split_anywhere_are_filed_whole() -> None:
    """Frames split across reads at any offset come out whole, stamped with the accepted cred."""
    data = b"<13>first\n11 <13>octet\nx<13>third\n"
    for cut in range(1, len(data)):
        ctx = make_ctx()
        assert await _ingest(ctx, [data[:cut], data[cut:]]) == b""
        assert summary(ctx) == [("first", False), ("octet\nx", False), ("third", False)], cut
        assert {(r["uid"], r["pid"]) for r in records(ctx)} == {(UID, CLIENT.pid)}


async def test_ingest_a_lying_octet_count_closes_with_a_protocol_error() -> None:
    """A count that is not a number: what came before is kept, one protocol_error, EOF."""
    ctx = make_ctx()
    assert await _ingest(ctx, [b"<13>before\n12x <13>no space\n<13>after\n"]) == b""
    assert [r[:2] for r in summary(ctx)] == [("before", False), ("protocol_error", "framing")]
    assert (records(ctx)[-1]["conn_uid"], records(ctx)[-1]["conn_pid"]) == (UID, CLIENT.pid)


async def test_ingest_frame_timeout_on_a_stream(autojump_clock: trio.testing.MockClock) -> None:
    """A frame that never ends is cut at frame_timeout: filed truncated, then closed."""
    ctx = make_ctx(frame=3.0)
    async with listening(partial(handle_connection, ctx=ctx)) as listener:
        client = await listener.connect(CLIENT)
        start = trio.current_time()
        await client.send_all(b"<13>whole\n<13>never ending")
        assert await read_to_eof(client) == b""  # the daemon closed
        assert trio.current_time() - start == 3.0
    assert summary(ctx) == [
        ("whole", False),
        ("never ending", True),
        ("protocol_error", "frame_timeout", "b'<13>never ending'"),
    ]


# --------------------------------------------------------------------------- control


def _control(**settings: Any) -> ControlServer:
    server = ControlServer(settings=dataclasses.replace(DEFAULT_CONTROL, **settings))

    async def whoami(call: ControlCall) -> None:
        await call.send("ok", uid=call.caller.uid, pid=call.caller.pid)

    server.register("whoami", whoami)
    return server


async def test_control_answers_as_the_accepted_peer() -> None:
    """Greeting first, then the answer, for the credentials the connection was accepted with."""
    async with listening(_control().handle) as listener:
        client = await listener.connect(PeerCred(77, 1234, 1234))
        await client.send_all(b'{"op":"whoami"}\n')
        data = await read_to_eof(client)
    assert data.startswith(GREETING)
    assert orjson.loads(data[len(GREETING) :]) == {"type": "ok", "uid": 1234, "pid": 77}


async def test_control_refuses_over_the_per_uid_cap() -> None:
    """A uid at max_connections_per_uid gets one error line naming the limit, no greeting."""
    server = _control(max_connections_per_uid=1, first_byte_timeout=600.0)
    async with listening(server.handle) as listener:
        held = await listener.connect(USER)
        assert await held.receive_some(len(GREETING)) == GREETING
        refused = orjson.loads(await read_to_eof(await listener.connect(USER)))
        assert (refused["type"], refused["code"], refused["limit"]) == (
            "error",
            "too_many_connections",
            "max_connections_per_uid",
        )
        other = await listener.connect(PeerCred(78, 1235, 1235))  # another uid: its own cap
        assert await other.receive_some(len(GREETING)) == GREETING


async def test_control_unknown_operation_is_an_error_line() -> None:
    """An operation the server does not have: one error line listing the known ones."""
    async with listening(_control().handle) as listener:
        client = await listener.connect(USER)
        await client.send_all(b'{"op":"nope"}\n')
        data = await read_to_eof(client)
    reply = orjson.loads(data[len(GREETING) :])
    assert (reply["type"], reply["code"]) == ("error", "unknown_op")
    assert "expected one of whoami" in reply["error"]
