"""An in-process collector for forwarder tests: trio TCP (or TLS), octet-counted frames."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field

import trio

from trio_logd.forward import SD_ID
from trio_logd.protocol.rfc5424 import parse_rfc5424

__all__ = ["Sink"]


@dataclass(eq=False)
class Sink:
    """Collects RFC 6587 octet-counted frames from every connection.

    Args:
        ssl_context: serve TLS with it (plain TCP when ``None``).
        close_after: close the first connection after this many frames
            (a collector that goes away mid-stream), then accept again.
    """

    ssl_context: ssl.SSLContext | None = None
    close_after: int | None = None
    frames: list[bytes] = field(default_factory=list)
    connections: int = 0
    port: int = 0
    changed: trio.Event = field(default_factory=trio.Event)
    errors: list[str] = field(default_factory=list)

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen on 127.0.0.1 (a free port, then in :attr:`port`) until cancelled."""
        tcp = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = tcp[0].socket.getsockname()[1]
        listeners: list[trio.abc.Listener[trio.abc.Stream]] = list(tcp)
        if self.ssl_context is not None:
            listeners = [trio.SSLListener(t, self.ssl_context) for t in tcp]
        task_status.started()
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, stream: trio.abc.Stream) -> None:
        self.connections += 1
        first = self.connections == 1
        buf = b""
        try:
            while True:
                data = await stream.receive_some(65536)
                if not data:
                    return
                buf += data
                if not buf[:1].isdigit():
                    return  # not octet counting (a TLS hello to a plain sink): hang up
                while (sp := buf.find(b" ")) > 0 and len(buf) >= sp + 1 + int(buf[:sp]):
                    end = sp + 1 + int(buf[:sp])
                    self.frames.append(buf[sp + 1 : end])
                    buf = buf[end:]
                    self._changed()
                    if (
                        first
                        and self.close_after is not None
                        and len(self.frames) >= self.close_after
                    ):
                        return  # hang up mid-stream: what was in flight is lost
        except (trio.BrokenResourceError, ssl.SSLError) as exc:
            self.errors.append(repr(exc))
        finally:
            await trio.aclose_forcefully(stream)
            self._changed()

    def _changed(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    def seqs(self, uid: int | None = None) -> list[int]:
        """The seq of every frame received (of *uid*, if given), in arrival order."""
        out = []
        for frame in self.frames:
            m = parse_rfc5424(frame.decode())
            assert m is not None, frame
            assert m.fields is not None, frame
            trusted = m.fields[SD_ID]
            if uid is None or trusted["uid"] == str(uid):
                out.append(int(trusted["seq"]))
        return out

    async def wait_for(self, n: int) -> None:
        """Wait until at least *n* frames arrived (the caller's fail_after bounds it)."""
        while len(self.frames) < n:
            await self.changed.wait()
