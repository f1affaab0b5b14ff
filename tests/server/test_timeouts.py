"""Per-connection deadlines: ``[daemon] frame_timeout`` against slowloris, ``idle_timeout``.

A real connection (a Unix socket pair with ``SO_PASSCRED``) served by
``handle_connection`` in process; ``autojump_clock`` makes the trickling
sender's seconds and the deadlines instant and exact.
"""

from __future__ import annotations

import trio
import trio.testing

from tests.server._conn import DAEMON, UID, make_ctx, records, serving, summary, trickle


async def test_frame_timeout_files_the_partial_truncated_and_closes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A frame trickled one byte per second: at its deadline what arrived is filed
    truncated, one protocol_error names the timeout, and the connection is closed."""
    ctx = make_ctx(frame=4.5)
    async with serving(ctx) as conn:
        conn.client.send(b"<13>whole\n<13>slow")
        start = trio.current_time()
        with trio.move_on_after(60):
            await trickle(conn.client, b"ly, slowly, never ending", 1.0)
        await conn.done.wait()
        assert conn.closed_at is not None
        assert conn.closed_at - start == 4.5
        assert conn.closed_by_daemon()
    # "l" went at 0 s with the rest, then "y", ",", " ", "s" at 1, 2, 3 and 4 s
    assert summary(ctx) == [
        ("whole", False),
        ("slowly, s", True),
        ("protocol_error", "frame_timeout", "b'<13>slowly, s'"),
    ]
    err = records(ctx)[-1]
    assert err["msg"] == (
        "frame not completed within 4.5 s (frame_timeout): 13 bytes of it held, "
        "filed truncated; connection closed"
    )
    assert (err["uid"], err["conn_uid"], err["pid"], err["count"]) == (UID, UID, DAEMON.pid, 1)


async def test_frame_deadline_counts_from_the_frames_first_byte(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Each new frame gets the whole timeout: frames that each end in time never time out,
    however long the connection lives."""
    ctx = make_ctx(frame=5.0)
    async with serving(ctx) as conn:
        for i in range(20):  # 80 s in all, every frame takes 4 s
            conn.client.send(b"<13>frame %d" % i)
            await trio.sleep(4.0)
            conn.client.send(b"\n")
        await trio.testing.wait_all_tasks_blocked()
        assert not conn.done.is_set()
    assert summary(ctx) == [(f"frame {i}", False) for i in range(20)]


async def test_a_frame_that_ends_restarts_the_deadline_for_the_next(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A read that ends one frame and starts the next gives the next its own deadline."""
    ctx = make_ctx(frame=5.0)
    async with serving(ctx) as conn:
        conn.client.send(b"<13>a")
        await trio.sleep(4.0)
        conn.client.send(b"b\n<13>c")  # "ab" ends at 4 s, "c" starts: deadline 9 s, not 5 s
        await trio.sleep(4.5)
        conn.client.send(b"d\n")
        await trio.testing.wait_all_tasks_blocked()
        assert not conn.done.is_set()
    assert summary(ctx) == [("ab", False), ("cd", False)]


async def test_an_oversized_frame_trickled_is_cut_off_too(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Skipping the rest of an oversized frame runs under the same deadline: the cut part
    is filed at once, the connection closed at the deadline, memory stays bounded."""
    ctx = make_ctx(frame=3.0, max_bytes=16)
    async with serving(ctx) as conn:
        conn.client.send(b"<13>" + b"x" * 40)
        with trio.move_on_after(30):
            await trickle(conn.client, b"y" * 100, 0.5)
        await conn.done.wait()
    assert summary(ctx) == [
        ("x" * 12, True),
        ("protocol_error", "frame_timeout", ""),
    ]


async def test_an_unfinished_octet_count_times_out(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Digits of an octet count and then nothing: a protocol_error naming them, then closed."""
    ctx = make_ctx(frame=2.0)
    async with serving(ctx) as conn:
        conn.client.send(b"5 <13>a12")
        await conn.done.wait()
        assert conn.closed_by_daemon()
    assert summary(ctx) == [("a", False), ("protocol_error", "frame_timeout", "b'12'")]


async def test_frame_timeout_zero_waits_forever(autojump_clock: trio.testing.MockClock) -> None:
    """frame_timeout = 0: a frame may take a day."""
    ctx = make_ctx(frame=0.0)
    async with serving(ctx) as conn:
        conn.client.send(b"<13>patient")
        await trio.sleep(86400)
        assert not conn.done.is_set()
        conn.client.send(b" sender\n")
    assert summary(ctx) == [("patient sender", False)]


async def test_idle_timeout_closes_a_silent_connection_quietly(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """idle_timeout: a connection that sends nothing for that long is closed, without a record;
    one that sends within it stays."""
    ctx = make_ctx(idle=10.0)
    async with serving(ctx) as busy, serving(ctx) as silent:
        start = trio.current_time()
        for i in range(5):
            busy.client.send(b"<13>tick %d\n" % i)
            await trio.sleep(9.0)
        assert silent.closed_at == start + 10.0
        assert silent.closed_by_daemon()
        assert not busy.done.is_set()
    assert summary(ctx) == [(f"tick {i}", False) for i in range(5)]


async def test_idle_timeout_with_a_frame_open_files_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Silent in the middle of a frame: the idle deadline files the frame truncated and says so."""
    ctx = make_ctx(idle=3.0, frame=30.0)
    async with serving(ctx) as conn:
        conn.client.send(b"<13>half a fr")
        await conn.done.wait()
    assert summary(ctx) == [
        ("half a fr", True),
        ("protocol_error", "idle_timeout", "b'<13>half a fr'"),
    ]


async def test_one_connection_timing_out_leaves_the_others_alone(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A slowloris connection is closed at its deadline; a steady one beside it loses nothing."""
    ctx = make_ctx(frame=2.2)
    async with serving(ctx) as steady, serving(ctx) as slow:
        slow.client.send(b"<13>never")
        for i in range(10):
            steady.client.send(b"<13>steady %d\n" % i)
            await trio.sleep(0.5)
        assert slow.done.is_set()
        assert not steady.done.is_set()
    assert summary(ctx) == [
        *((f"steady {i}", False) for i in range(5)),
        ("never", True),
        ("protocol_error", "frame_timeout", "b'<13>never'"),
        *((f"steady {i}", False) for i in range(5, 10)),
    ]
