"""The metrics HTTP endpoint and the node_exporter textfile."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import trio

from trio_logd.server._exporter import (
    MAX_HEAD_BYTES,
    serve_metrics_http,
    serve_textfile,
    write_textfile,
)

TEXT = "# HELP x An x.\n# TYPE x gauge\nx 1\n"


async def render() -> str:
    return TEXT


async def request(port: int, raw: bytes) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(raw)
        chunks = []
        while data := await stream.receive_some(65536):
            chunks.append(data)
    return b"".join(chunks)


async def test_get_head_404_405() -> None:
    """GET /metrics serves the text with the exposition content type; HEAD, 404 and 405 too."""
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            host, port = await nursery.start(serve_metrics_http, render, "127.0.0.1", 0)
            assert host == "127.0.0.1"
            got = await request(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            body = TEXT.encode()
            assert got == (
                b"HTTP/1.0 200 OK\r\n"
                b"Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
            )
            head = await request(port, b"HEAD /metrics?x=1 HTTP/1.1\r\n\r\n")
            assert head.startswith(b"HTTP/1.0 200 OK\r\n")
            assert head.endswith(b"\r\n\r\n")
            assert (await request(port, b"GET /nope HTTP/1.1\r\n\r\n")).startswith(
                b"HTTP/1.0 404 Not Found\r\n"
            )
            assert (await request(port, b"POST /metrics HTTP/1.1\r\n\r\n")).startswith(
                b"HTTP/1.0 405 Method Not Allowed\r\n"
            )
            nursery.cancel_scope.cancel()


async def test_oversized_or_silent_clients_are_dropped(autojump_clock: trio.abc.Clock) -> None:
    """An overlong request head, or one that never ends: the connection is closed unanswered."""
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            _, port = await nursery.start(serve_metrics_http, render, "127.0.0.1", 0)
            assert await request(port, b"GET /" + b"a" * MAX_HEAD_BYTES + b" HTTP/1.1\r\n") == b""
            silent = await trio.open_tcp_stream("127.0.0.1", port)
            async with silent:
                await silent.send_all(b"GET /metrics HTTP/1.1\r\n")
                assert await silent.receive_some(100) == b""  # closed after the timeout
            nursery.cancel_scope.cancel()


def test_write_textfile_is_atomic_and_world_readable(tmp_path: Path) -> None:
    """The file is replaced whole (no temporary left), mode 0644 whatever the umask."""
    target = tmp_path / "trio_logd.prom"
    target.write_text("old\n")
    old = os.umask(0o077)
    try:
        write_textfile(str(target), TEXT)
    finally:
        os.umask(old)
    assert target.read_text() == TEXT
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trio_logd.prom"]


def test_write_textfile_into_a_missing_directory_raises(tmp_path: Path) -> None:
    """A missing directory is an OSError for the caller (which logs it), nothing left behind."""
    with pytest.raises(FileNotFoundError):
        write_textfile(str(tmp_path / "nope" / "x.prom"), TEXT)


async def test_serve_textfile_rewrites_every_interval(tmp_path: Path) -> None:
    """The textfile is written before the task reports started, then again each interval."""
    target = tmp_path / "m.prom"
    n = 0
    third = trio.Event()

    async def counting() -> str:
        nonlocal n
        n += 1
        if n == 3:  # the loop renders, writes, sleeps: write 2 is done
            third.set()
        return f"x {n}\n"

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_textfile, counting, str(target), 0.05)
            assert target.read_text() == "x 1\n"
            await third.wait()
            assert target.read_text() == "x 2\n"
            nursery.cancel_scope.cancel()
