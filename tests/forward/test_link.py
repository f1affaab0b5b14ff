"""Link.written: acknowledged + queued from one instant, even when an ACK lands between reads."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from trio_logd.server._forward_link import Link


class RacingLink(Link):
    """A link whose peer acknowledges *step* bytes right after each queue read."""

    def __init__(self, total: int, acked: int, step: int, races: int) -> None:
        super().__init__(stream=None, sock=None)  # type: ignore[arg-type]
        self.total, self.acked, self.step, self.races = total, acked, step, races

    def acknowledged(self) -> int:
        return self.acked

    def queued(self) -> int:
        queued = self.total - self.acked
        if self.races:  # the ACK arrives between this read and the next acknowledged()
            self.races -= 1
            self.acked = min(self.total, self.acked + self.step)
        return queued


@pytest.mark.parametrize("races", [0, 1, 3])
def test_written_is_the_bytes_handed_over_even_when_acks_race(races: int) -> None:
    """1 (SYN) + 1000 bytes written, 400 acknowledged: written is 1001 however ACKs interleave."""
    link = RacingLink(total=1001, acked=401, step=150, races=races)
    assert link.written() == 1001
    link.acked = 1001
    assert link.acknowledged() >= link.written()  # the last batch can commit


async def test_written_on_a_real_connection_is_reached_by_the_acknowledgements() -> None:
    """Over loopback TCP, once the peer reads everything, acknowledged() reaches written()."""
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]
    client = await trio.open_tcp_stream("127.0.0.1", port)
    server = await listener.accept()
    link = Link(client, client.socket)
    payload = b"x" * 300_000
    got = 0

    async def read_all(stream: Any) -> None:
        nonlocal got
        while got < len(payload):
            got += len(await stream.receive_some(65536))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_all, server)
        await client.send_all(payload)
    written = link.written()
    assert written == len(payload) + 1  # + the SYN
    with trio.fail_after(5):
        while link.acknowledged() < written:  # noqa: ASYNC110  # a kernel counter: polled
            await trio.sleep(0.01)
    for s in (client, server, listener):
        await s.aclose()
