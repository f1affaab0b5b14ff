"""Metrics for Prometheus: an HTTP endpoint and a node_exporter textfile.

How this works. The HTTP endpoint (``[metrics] listen``) is a deliberately
small HTTP/1.0 server: one request per connection, ``GET``/``HEAD`` of
``/metrics`` (``/`` says where to look), the request head read within
``REQUEST_TIMEOUT`` and at most ``MAX_HEAD_BYTES``, at most ``MAX_CLIENTS``
served at once (more are closed at once), ``Connection: close``. TCP carries
no credentials, so it shows every uid to whoever can connect: bind it to
loopback (the default suggestion) or firewall it.

The textfile (``[metrics] textfile``) is rewritten every ``interval``: a
temporary file in the same directory, then ``rename()`` over the target, so
node_exporter never reads half a file. Write failures are logged when they
start and when they stop, not at every interval.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Awaitable, Callable
from typing import Final

import structlog
import trio

from trio_logd.metrics import CONTENT_TYPE

__all__ = ["serve_metrics_http", "serve_textfile", "write_textfile"]

log = structlog.get_logger("trio_logd.metrics")

Render = Callable[[], Awaitable[str]]

#: A scraper sends its request at once; a client that trickles is dropped.
REQUEST_TIMEOUT: Final = 5.0
#: Prometheus's request head is a few hundred bytes.
MAX_HEAD_BYTES: Final = 8192
#: Concurrent HTTP clients; a scraper needs one.
MAX_CLIENTS: Final = 8

_INDEX: Final = b"trio-logd: metrics at /metrics\n"


def _response(status: str, body: bytes, content_type: str, *, head: bool = False) -> bytes:
    header = (
        f"HTTP/1.0 {status}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode("ascii")
    return header if head else header + body


async def _read_head(stream: trio.SocketStream) -> bytes | None:
    buf = bytearray()
    while b"\r\n\r\n" not in buf and b"\n\n" not in buf:
        data = await stream.receive_some(4096)
        if not data:
            return None
        buf += data
        if len(buf) > MAX_HEAD_BYTES:
            return None
    return bytes(buf)


async def _answer(stream: trio.SocketStream, render: Render) -> None:
    with trio.move_on_after(REQUEST_TIMEOUT):
        head = await _read_head(stream)
        if head is None:
            return
        parts = head.split(b"\r\n", 1)[0].split(b"\n", 1)[0].split()
        method, target = (parts[0], parts[1]) if len(parts) >= 2 else (b"", b"")
        path = target.split(b"?", 1)[0]
        text = "text/plain; charset=utf-8"
        if method not in (b"GET", b"HEAD"):
            reply = _response("405 Method Not Allowed", b"GET or HEAD only\n", text)
        elif path == b"/metrics":
            body = (await render()).encode("utf-8")
            reply = _response("200 OK", body, CONTENT_TYPE, head=method == b"HEAD")
        elif path == b"/":
            reply = _response("200 OK", _INDEX, text, head=method == b"HEAD")
        else:
            reply = _response("404 Not Found", b"not found: try /metrics\n", text)
        await stream.send_all(reply)


async def _handle(stream: trio.SocketStream, render: Render, limiter: trio.CapacityLimiter) -> None:
    try:
        limiter.acquire_nowait()
    except trio.WouldBlock:
        await trio.aclose_forcefully(stream)
        return
    try:
        await _answer(stream, render)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # the scraper went away
    except Exception as exc:  # one client's failure never reaches the nursery
        log.warning("metrics_request_failed", error=repr(exc))
    finally:
        limiter.release()
        await trio.aclose_forcefully(stream)


async def serve_metrics_http(
    render: Render,
    host: str,
    port: int,
    *,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``GET /metrics`` on *host*:*port* forever.

    Args:
        render: returns the exposition text.
        host: an IP address.
        port: a port; 0 picks a free one.
        task_status: receives the ``(host, port)`` bound.

    Raises:
        OSError: the address cannot be bound (before ``task_status.started``).
    """
    listeners = await trio.open_tcp_listeners(port, host=host)
    address = listeners[0].socket.getsockname()
    limiter = trio.CapacityLimiter(MAX_CLIENTS)

    async def handler(stream: trio.SocketStream) -> None:
        await _handle(stream, render, limiter)

    log.info("metrics_listening", host=address[0], port=address[1])
    task_status.started((address[0], address[1]))
    await trio.serve_listeners(handler, listeners)


def write_textfile(path: str, text: str) -> None:
    """Replace *path* with *text* atomically (temporary file + ``rename``), mode 0644.

    Raises:
        OSError: the directory is missing or not writable, the disk is full.
    """
    directory, name = os.path.split(path)
    tmp = os.path.join(directory, f".{name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        try:
            view = memoryview(text.encode("utf-8"))
            while view:
                view = view[os.write(fd, view) :]
            os.fchmod(fd, 0o644)  # whatever the umask: node_exporter runs as another user
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


async def serve_textfile(
    render: Render,
    path: str,
    interval: float,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Write the metrics to *path* now and every *interval* seconds (cancel to stop).

    The first write is done (or has failed, and is logged) before
    ``task_status.started()``.
    """
    failing: str | None = None
    started = False
    while True:
        text = await render()
        try:
            await trio.to_thread.run_sync(write_textfile, path, text)
        except OSError as exc:
            error = f"{exc.strerror or exc}"
            if error != failing:
                log.error("metrics_textfile_failed", path=path, error=error)
                failing = error
        else:
            if failing is not None:
                log.info("metrics_textfile_recovered", path=path)
                failing = None
        if not started:
            task_status.started()
            started = True
        await trio.sleep(interval)
