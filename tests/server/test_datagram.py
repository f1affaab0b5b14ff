"""The datagram socket's reader: real sockets, in process, other uids by fork.

Datagrams are sent before the reader looks (the kernel queues them), then
``wait_all_tasks_blocked`` lets the reader drain the socket and block again.
The kernel queues at most ``net.unix.max_dgram_qlen`` datagrams (10 by
default) before a sender blocks, so no test sends more than that unread.
"""

from __future__ import annotations

import array
import os
import pwd
import socket
import struct
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio
import trio.testing

from tests._daemon import run_as, world
from trio_logd.config import loads
from trio_logd.limits import SuppressionTracker
from trio_logd.peer import (
    SCM_CREDENTIALS_SPACE,
    SCM_LABELLED_SPACE,
    SO_PASSRIGHTS,
    SO_PASSSEC,
    PeerCred,
)
from trio_logd.server import _datagram, _sockets
from trio_logd.server._datagram import DatagramReader, serve_datagrams, strip_terminator
from trio_logd.server._ingest import IngestContext
from trio_logd.server._limits import UNKNOWN, Limiter, UidIdentity
from trio_logd.server._pipeline import Pipeline
from trio_logd.server._sockets import bind_unix, pass_labels
from trio_logd.subids import SubidFiles, parse_subids

ME = PeerCred(os.getpid(), os.geteuid(), os.getegid())
NOBODY = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: forks other uids")

LIMITS = """
[limits.default]
rate_messages = 1000000
burst_messages = 1000000
rate_bytes = 1000000000
burst_bytes = 1000000000
[limits.uid.{me}]
rate_messages = 1
burst_messages = 10
on_rate = "{on_rate}"
"""


def make_ctx(
    *, on_rate: str = "drop", max_message_bytes: int = 65536, resolve: Any = None
) -> IngestContext:
    config = loads(LIMITS.format(me=ME.uid, on_rate=on_rate), base_dir="/")
    suppression = SuppressionTracker()
    limiter = Limiter(config, suppression, lambda uid: 0, resolve=resolve or (lambda uid: UNKNOWN))
    if resolve is None:
        limiter.seed({ME.uid: UNKNOWN, NOBODY: UNKNOWN})
    daemon = PeerCred(1, ME.uid, ME.gid)
    return IngestContext(
        Pipeline(lambda uid: 0), max_message_bytes, daemon, suppression, limiter=limiter
    )


def queued(ctx: IngestContext, uid: int) -> list[dict[str, Any]]:
    """The records queued for *uid*, decoded."""
    return [orjson.loads(line) for b in ctx.pipeline.state(uid).pending for line in b.lines]


@pytest.fixture
def sock_path() -> Iterator[str]:
    """A datagram socket path in a directory every uid can reach."""
    with world() as root:
        yield str(root / "dgram.sock")


@pytest.fixture
async def served(sock_path: str) -> AsyncIterator[tuple[str, list[IngestContext]]]:
    """Binds the socket; the test puts its context in the list and starts the reader."""
    bound = bind_unix(sock_path, kind=socket.SOCK_DGRAM, mode=0o666, passcred=True)
    try:
        yield sock_path, []
    finally:
        bound.sock.close()


def send(path: str, *datagrams: bytes) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        for d in datagrams:
            s.sendto(d, path)


@pytest.mark.parametrize(
    ("raw", "stripped"),
    [
        (b"msg", b"msg"),
        (b"msg\0", b"msg"),
        (b"msg\n", b"msg"),
        (b"msg\r\n", b"msg"),
        (b"msg\n\0", b"msg"),
        (b"msg\0\0", b"msg\0"),
        (b"msg\n\n", b"msg\n"),
        (b"a\0b", b"a\0b"),
        (b"\0", b""),
    ],
)
def test_strip_terminator(raw: bytes, stripped: bytes) -> None:
    """One NUL, then one LF, then one CR come off the end; nothing else."""
    assert strip_terminator(raw) == stripped


async def test_each_datagram_is_one_record_stamped_by_the_kernel(sock_path: str) -> None:
    """Each non-empty datagram is one record with the sender's uid/gid/pid; no conn_* fields."""
    ctx = make_ctx()
    bound = bind_unix(sock_path, kind=socket.SOCK_DGRAM, passcred=True)
    with bound.sock:
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_datagrams, bound.sock, ctx)
            send(sock_path, b"<13>one\0", b"<13>two\n", b"", b"<13>three\r\n", b"<11>app: four")
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
    recs = queued(ctx, ME.uid)
    assert [r["msg"] for r in recs] == ["one", "two", "three", "four"]
    assert [r["seq"] for r in recs] == [1, 2, 3, 4]
    assert {(r["uid"], r["gid"], r["pid"]) for r in recs} == {(ME.uid, ME.gid, ME.pid)}
    assert (recs[3]["sev"], recs[3]["app"]) == ("err", "app")
    assert not any("conn_uid" in r or "exe" in r for r in recs)


async def test_oversized_datagrams_are_cut_and_marked(sock_path: str) -> None:
    """Longer than max_message_bytes (also longer than the read buffer): cut, truncated=true."""
    ctx = make_ctx(max_message_bytes=480)
    bound = bind_unix(sock_path, kind=socket.SOCK_DGRAM, passcred=True)
    with bound.sock:
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_datagrams, bound.sock, ctx)
            send(sock_path, b"<13>" + b"a" * 600, b"<13>" + b"b" * 100_000, b"<13>" + b"c" * 476)
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
    recs = queued(ctx, ME.uid)
    assert [(r["msg"], r.get("truncated", False)) for r in recs] == [
        ("a" * 476, True),
        ("b" * 476, True),
        ("c" * 476, False),
    ]


@needs_root
async def test_writers_are_told_apart_and_keep_their_order(sock_path: str) -> None:
    """Datagrams of two processes of two uids, interleaved: each filed under its own writer."""
    ctx = make_ctx()
    bound = bind_unix(sock_path, kind=socket.SOCK_DGRAM, mode=0o666, passcred=True)
    r, w = os.pipe()

    def child() -> None:
        os.write(w, b"%d" % os.getpid())
        for i in range(3):
            send(sock_path, b"<13>nobody %d" % i)

    with bound.sock:
        send(sock_path, b"<13>me 0")
        run_as(NOBODY, NOBODY, child)
        send(sock_path, b"<13>me 1")
        child_pid = int(os.read(r, 20))
        os.close(r)
        os.close(w)
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_datagrams, bound.sock, ctx)
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
    nobody = queued(ctx, NOBODY)
    assert [(r["msg"], r["uid"], r["gid"], r["pid"]) for r in nobody] == [
        (f"nobody {i}", NOBODY, NOBODY, child_pid) for i in range(3)
    ]
    assert [(r["msg"], r["pid"]) for r in queued(ctx, ME.uid)] == [
        ("me 0", ME.pid),
        ("me 1", ME.pid),
    ]


@needs_root
@pytest.mark.parametrize("on_rate", ["drop", "block"])
async def test_over_its_rate_a_uid_is_dropped_and_never_stalls_another(
    sock_path: str, on_rate: str
) -> None:
    """Over its burst, a uid's datagrams are dropped and counted (block too); another uid's
    datagrams behind them are filed in the same pass; the reader never sleeps for tokens."""
    ctx = make_ctx(on_rate=on_rate)
    bound = bind_unix(sock_path, kind=socket.SOCK_DGRAM, mode=0o666, passcred=True)
    with bound.sock:
        bound.sock.setblocking(False)
        reader = DatagramReader(ctx, bound.sock)
        for turn in range(3):  # file() is sync: it cannot wait for tokens
            send(sock_path, *(b"<13>flood %d" % i for i in range(9)))
            if turn == 2:
                run_as(NOBODY, NOBODY, lambda: send(sock_path, b"<13>quiet"))
            n, by_writer = reader.read_turn()
            assert n == 9 + (turn == 2)
            assert reader.file(by_writer, 0.0) is None
    assert len(queued(ctx, ME.uid)) == 10
    assert dict(ctx.suppression.dropped(ME.uid)) == {"rate": 17}
    assert [r["msg"] for r in queued(ctx, NOBODY)] == ["quiet"]


async def test_a_deep_queue_pauses_reading_until_the_writer_takes_a_round(
    sock_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once a uid's queue to the writer is over the limit, the reader waits for a round."""
    monkeypatch.setattr(_datagram, "UID_PENDING_BYTES", 1000)
    ctx = make_ctx()
    ctx.limiter.config = loads("", base_dir="/")  # default limits: no drops
    ctx.limiter.seed({ME.uid: UNKNOWN})
    bound = bind_unix(sock_path, kind=socket.SOCK_DGRAM, passcred=True)
    with bound.sock:
        send(sock_path, *(b"<13>" + b"x" * 300 for _ in range(8)))
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_datagrams, bound.sock, ctx)
            await trio.testing.wait_all_tasks_blocked()
            assert len(queued(ctx, ME.uid)) == 8  # one turn read them all, then it waits
            send(sock_path, b"<13>after")
            await trio.testing.wait_all_tasks_blocked()
            assert len(queued(ctx, ME.uid)) == 8  # not read: the reader waits for room
            ctx.pipeline.take_round()
            await trio.testing.wait_all_tasks_blocked()
            assert [r["msg"] for r in queued(ctx, ME.uid)] == ["after"]
            nursery.cancel_scope.cancel()


def _fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def _lsm(monkeypatch: pytest.MonkeyPatch, present: bool) -> None:
    """As if the kernel had (or had not) an LSM that labels sockets (``peer.lsm_labels``)."""
    for module in (_sockets, _datagram):
        monkeypatch.setattr(module, "lsm_labels", lambda: present)


@pytest.fixture
def pretend_lsm(monkeypatch: pytest.MonkeyPatch) -> None:
    """The label path on a host without an LSM (no label comes; the room and fds do)."""
    _lsm(monkeypatch, True)


def _refuses_fds(sock: socket.socket) -> bool:
    try:
        return not sock.getsockopt(socket.SOL_SOCKET, SO_PASSRIGHTS)
    except OSError:  # no SO_PASSRIGHTS before Linux 6.16
        return False


def _rights(n: int) -> tuple[list[int], list[tuple[int, int, bytes]]]:
    fds = [os.open(os.devnull, os.O_RDONLY) for _ in range(n)]
    return fds, [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]


async def test_passed_file_descriptors_are_refused_or_never_kept(sock_path: str) -> None:
    """Fds attached to a datagram: refused (EPERM) where labels are on, else never installed."""
    ctx = make_ctx()
    bound = bind_unix(sock_path, kind=socket.SOCK_DGRAM, passcred=True)
    refusing = _refuses_fds(bound.sock)
    fds, rights = _rights(20)
    refused = 0
    try:
        with bound.sock, socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            before = _fd_count()
            for _ in range(5):
                try:
                    s.sendmsg([b"<13>with fds"], rights, 0, sock_path)
                except PermissionError:
                    refused += 1
            s.sendto(b"<13>plain", sock_path)
            async with trio.open_nursery() as nursery:
                await nursery.start(serve_datagrams, bound.sock, ctx)
                await trio.testing.wait_all_tasks_blocked()
                nursery.cancel_scope.cancel()
            after = _fd_count()
    finally:
        for fd in fds:
            os.close(fd)
    # SO_PASSRIGHTS (Linux 6.16) lets the socket refuse them; before it, no labels
    # either, and the kernel discards them (they do not fit the buffer)
    assert refused == (5 if refusing else 0)
    assert [r["msg"] for r in queued(ctx, ME.uid)] == ["with fds"] * (5 - refused) + ["plain"]
    assert after == before


async def test_fds_that_got_in_are_closed_and_their_records_filed(
    tmp_path: Path, pretend_lsm: None
) -> None:
    """Datagrams queued with fds before the socket refused them (socket activation): each fd
    is closed as it is read, and the records are filed."""
    ctx = make_ctx()
    path = str(tmp_path / "open.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as srv:
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        srv.bind(path)
        fds, rights = _rights(200)
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                before = _fd_count()
                for i in range(8):
                    s.sendmsg([b"<13>fds %d" % i], rights, 0, path)
                s.sendmsg([b""], rights, 0, path)  # empty: ignored, its fds closed too
                if not pass_labels(srv):  # as the daemon does with a socket from systemd
                    pytest.skip("no SO_PASSRIGHTS (Linux < 6.16): no room for fds to get in")
                reader = DatagramReader(ctx, srv)
                srv.setblocking(False)
                n, by_writer = reader.read_turn()
                after = _fd_count()
                reader.file(by_writer, 0.0)
        finally:
            for fd in fds:
                os.close(fd)
    assert n == 9
    assert after == before
    assert [r["msg"] for r in queued(ctx, ME.uid)] == [f"fds {i}" for i in range(8)]
    assert not any("label" in r for r in queued(ctx, ME.uid))  # no LSM here: no label


def test_passsec_without_refused_fds_keeps_the_small_buffer(pretend_lsm: None) -> None:
    """SO_PASSSEC set by someone else, fds not refused: no room for a label (nor for fds)."""
    ctx = make_ctx()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, SO_PASSSEC, 1)
        assert DatagramReader(ctx, sock).ancsize == SCM_CREDENTIALS_SPACE
        if pass_labels(sock):
            assert DatagramReader(ctx, sock).ancsize == SCM_LABELLED_SPACE


def test_without_an_lsm_no_room_for_labels(monkeypatch: pytest.MonkeyPatch) -> None:
    """No LSM labels sockets: SO_PASSSEC stays off (fds refused all the same) and the
    buffer holds the credentials only, even where a socket unit set SO_PASSSEC."""
    _lsm(monkeypatch, False)
    ctx = make_ctx()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        assert pass_labels(sock) is False
        assert sock.getsockopt(socket.SOL_SOCKET, SO_PASSSEC) == 0
        assert DatagramReader(ctx, sock).ancsize == SCM_CREDENTIALS_SPACE
        sock.setsockopt(socket.SOL_SOCKET, SO_PASSSEC, 1)  # PassSecurity=yes
        assert DatagramReader(ctx, sock).ancsize == SCM_CREDENTIALS_SPACE
        # fds refused where the kernel can (Linux 6.16); before, it discards them
        assert _refuses_fds(sock) or not hasattr(socket, "SO_PASSRIGHTS")


def test_one_writer_with_two_labels_gets_two_stamps() -> None:
    """The same credentials with another label (a relabelled process) are stamped apart."""
    ctx = make_ctx()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        reader = DatagramReader(ctx, sock)
        creds = struct.pack("iII", ME.pid, ME.uid, ME.gid)
        plain = reader._stamp(creds)
        a = reader._stamp(creds + b"unconfined_t\0")
        b = reader._stamp(creds + b"sandbox_t\0")
        assert reader._stamp(creds + b"sandbox_t\0") is b
    assert b'"label"' not in plain.fragment
    assert b'"label":"unconfined_t"' in a.fragment
    assert b'"label":"sandbox_t"' in b.fragment
    assert a.cred == b.cred == plain.cred == ME


@needs_root
async def test_a_new_uid_is_not_held_up_by_its_lookup(sock_path: str) -> None:
    """A uid not yet looked up is filed at once under the defaults; the lookup runs aside."""
    release = threading.Event()
    asked: list[int] = []

    def slow_nss(uid: int) -> UidIdentity:
        asked.append(uid)
        release.wait(10)
        return UNKNOWN

    ctx = make_ctx(resolve=slow_nss)
    bound = bind_unix(sock_path, kind=socket.SOCK_DGRAM, mode=0o666, passcred=True)
    with bound.sock:
        run_as(NOBODY, NOBODY, lambda: send(sock_path, b"<13>first"))
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_datagrams, bound.sock, ctx)
            await trio.testing.wait_all_tasks_blocked()  # the lookup waits in its thread
            assert [r["msg"] for r in queued(ctx, NOBODY)] == ["first"]
            assert NOBODY not in ctx.limiter.policies  # still being looked up
            release.set()
            with trio.fail_after(5):
                await ctx.limiter.policy(NOBODY)  # joins the lookup under way
            nursery.cancel_scope.cancel()
    assert asked == [NOBODY]


async def test_shutdown_files_what_the_kernel_still_holds(sock_path: str) -> None:
    """Datagrams queued when shutdown starts are filed; then the reader returns."""
    ctx = make_ctx()
    ctx.limiter.config = loads("", base_dir="/")
    ctx.limiter.seed({ME.uid: UNKNOWN})
    bound = bind_unix(sock_path, kind=socket.SOCK_DGRAM, passcred=True)
    with bound.sock:
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_datagrams, bound.sock, ctx)
            await trio.testing.wait_all_tasks_blocked()
            send(sock_path, *(b"<13>late %d" % i for i in range(10)))
            ctx.stop_receiving()
        assert len(queued(ctx, ME.uid)) == 10


async def test_a_subordinate_uid_pays_from_its_owners_bucket(sock_path: str) -> None:
    """A uid delegated to us in /etc/subuid: its datagrams come out of our burst, owner_uid set."""
    taken = {p.pw_uid for p in pwd.getpwall()}
    sub = next(u for u in range(400_000, 500_000) if u not in taken)
    ctx = make_ctx()
    limiter = ctx.limiter
    limiter.seed({sub: UNKNOWN})
    limiter.set_subids(SubidFiles(parse_subids(f"{ME.uid}:{sub}:1\n", lambda name: None)))
    bound = bind_unix(sock_path, kind=socket.SOCK_DGRAM, mode=0o666, passcred=True)
    with bound.sock:
        bound.sock.setblocking(False)
        reader = DatagramReader(ctx, bound.sock)
        send(sock_path, *(b"<13>owner %d" % i for i in range(6)))
        run_as(sub, sub, lambda: send(sock_path, *(b"<13>sub %d" % i for i in range(6))))
        n, by_writer = reader.read_turn()
        assert n == 12
        reader.file(by_writer, 0.0)
    subs = queued(ctx, sub)
    assert len(queued(ctx, ME.uid)) + len(subs) == 10  # one burst (10) for both
    assert dict(ctx.suppression.dropped(sub)) == {"rate": 2}
    assert {(r["uid"], r["owner_uid"]) for r in subs} == {(sub, ME.uid)}
