"""A real ingest connection served in process, for tests under trio's mock clock.

A Unix socket pair with ``SO_PASSCRED`` on the daemon's end, served by
``handle_connection`` against an :class:`IngestContext` whose pipeline keeps
every line it is given (:class:`LinePipeline`).
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import orjson
import trio

from trio_logd.config import Config, default_config
from trio_logd.limits import SuppressionTracker
from trio_logd.peer import PeerCred
from trio_logd.server._accept import Accepted
from trio_logd.server._ingest import IngestContext, handle_connection
from trio_logd.server._limits import UNKNOWN, Limiter
from trio_logd.server._pipeline import Batch, Pipeline, UidState

UID = os.geteuid()
DAEMON = PeerCred(1, UID, os.getegid())
#: Mock seconds after which a test that waits for a deadline fails instead of hanging.
GUARD = 100_000.0


class LinePipeline(Pipeline):
    """A pipeline that keeps every submitted line, decoded, in order."""

    def __init__(self) -> None:
        super().__init__(lambda uid: 0)
        self.records: list[dict[str, Any]] = []

    def submit(self, st: UidState, batch: Batch) -> None:
        self.records.extend(orjson.loads(line) for line in batch.lines)
        super().submit(st, batch)


def make_ctx(
    *,
    frame: float = 0.0,
    idle: float = 0.0,
    max_bytes: int = 65536,
    config: Config | None = None,
) -> IngestContext:
    """An ingest context on *config* (default: the embedded one) with these timeouts."""
    suppression = SuppressionTracker()
    limiter = Limiter(config or default_config(), suppression, lambda uid: 0)
    limiter.seed({UID: UNKNOWN})  # no NSS thread: the mock clock would run on meanwhile
    return IngestContext(
        LinePipeline(),
        max_bytes,
        DAEMON,
        suppression,
        limiter=limiter,
        frame_timeout=frame,
        idle_timeout=idle,
    )


def records(ctx: IngestContext) -> list[dict[str, Any]]:
    assert isinstance(ctx.pipeline, LinePipeline)
    return ctx.pipeline.records


def summary(ctx: IngestContext) -> list[tuple[Any, ...]]:
    """(msg, truncated) of sender records, (event, reason, excerpt) of the daemon's."""
    return [
        (r["event"], r["reason"], r["excerpt"])
        if "event" in r
        else (r["msg"], r.get("truncated", False))
        for r in records(ctx)
    ]


@contextmanager
def socket_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    server, client = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    try:
        yield server, client
    finally:
        server.close()
        client.close()


class Served:
    """One connection served by ``handle_connection``; ``closed_at`` once it returned."""

    def __init__(self, client: socket.socket) -> None:
        self.client = client
        self.closed_at: float | None = None
        self.done = trio.Event()

    def closed_by_daemon(self) -> bool:
        """The daemon closed its end: the client reads EOF."""
        self.client.setblocking(False)
        try:
            return self.client.recv(1) == b""
        except BlockingIOError:
            return False


@asynccontextmanager
async def serving(ctx: IngestContext) -> AsyncIterator[Served]:
    with socket_pair() as (server, client):
        served = Served(client)

        async def run() -> None:
            await handle_connection(
                Accepted.from_socket(trio.socket.from_stdlib_socket(server)), ctx
            )
            served.closed_at = trio.current_time()
            served.done.set()

        # a guard: a deadline that never fires must fail the test, not hang it
        with trio.fail_after(GUARD):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(run)
                yield served
                client.shutdown(socket.SHUT_WR)  # EOF, if the daemon has not closed already
                await served.done.wait()


async def trickle(client: socket.socket, data: bytes, every: float) -> None:
    """Send *data* one byte at a time, one byte every *every* seconds, until the daemon closes."""
    for i in range(len(data)):
        try:
            client.send(data[i : i + 1])
        except (BrokenPipeError, ConnectionResetError):
            return
        await trio.sleep(every)
