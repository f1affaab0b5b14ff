"""The limits wiring: Limiter (policies, admission, caps, reload) and the connection's filing.

Time is trio's clock: ``autojump_clock`` makes token refill and ``block`` waits
instant and exact.
"""

from __future__ import annotations

import math
import threading

import pytest
import trio
import trio.testing

from trio_logd.config import Config, loads
from trio_logd.limits import SuppressionTracker
from trio_logd.peer import PeerCred
from trio_logd.protocol.framing import Frame
from trio_logd.record import Stamp
from trio_logd.server._ingest import Connection, IngestContext
from trio_logd.server._limits import (
    BUCKET_PRUNE_INTERVAL,
    UNKNOWN,
    Limiter,
    Prepared,
    UidIdentity,
    UidPolicy,
)
from trio_logd.server._pipeline import Batch, Pipeline, UidState

ALICE = PeerCred(4242, 1000, 1000)
BOB = PeerCred(4343, 1001, 1001)
RELAY = PeerCred(77, 2000, 2000)
DAEMON = PeerCred(1, 0, 0)

LIMITS = """
[limits.default]
rate_messages = 100
burst_messages = 10
rate_bytes = 1000000
burst_bytes = 1000000
on_rate = "{on_rate}"
[limits.user.bob]
rate_messages = 1000000
burst_messages = 1000000
[identity]
may_claim = ["uid:2000"]
[access]
admins = ["wheel"]
"""


def make_config(on_rate: str = "drop", extra: str = "") -> Config:
    return loads(LIMITS.format(on_rate=on_rate) + extra, base_dir="/")


def names(uid: int) -> UidIdentity:
    """A stand-in for NSS: uid 1001 is bob, in group dev."""
    if uid == 1001:
        return UidIdentity("bob", ("bob", "dev"), 1001)
    return UNKNOWN


class RecordingPipeline(Pipeline):
    """A pipeline that notes (time, uid, records) of every submitted batch."""

    def __init__(self) -> None:
        super().__init__(lambda uid: 0)
        self.log: list[tuple[float, int, int]] = []

    def submit(self, st: UidState, batch: Batch) -> None:
        self.log.append((trio.current_time(), st.uid, len(batch.lines)))
        super().submit(st, batch)


def make_ctx(config: Config, usage: dict[int, int] | None = None) -> IngestContext:
    suppression = SuppressionTracker()
    disk = usage if usage is not None else {}
    limiter = Limiter(config, suppression, lambda uid: disk.get(uid, 0), resolve=names)
    # known up front: under autojump_clock a lookup thread would let the clock run
    limiter.seed({uid: names(uid) for uid in (0, 1000, 1001, 2000)})
    return IngestContext(RecordingPipeline(), 65536, DAEMON, suppression, limiter=limiter)


def frames(n: int, text: bytes = b"<13>hello") -> list[Frame]:
    return [Frame(text, False) for _ in range(n)]


def filed(ctx: IngestContext, uid: int) -> int:
    return ctx.pipeline.state(uid).records


async def test_drop_admits_burst_then_rate_and_counts_the_rest(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """on_rate=drop: never more than burst + rate*t filed; filed + dropped = sent, exactly."""
    ctx = make_ctx(make_config("drop"))
    conn = Connection(ctx, ALICE, Stamp(ALICE))
    start = trio.current_time()
    sent = 0
    for _ in range(50):
        offered = trio.current_time() - start
        await conn.file(frames(7), 0.0)
        sent += 7
        assert filed(ctx, 1000) <= 10 + 100 * offered + 1e-6
        await trio.sleep(0.013)
    dropped = ctx.suppression.dropped(1000)
    assert filed(ctx, 1000) + dropped["rate"] == sent == 350
    assert dict(dropped) == {"rate": sent - filed(ctx, 1000)}
    # every token was used: 10 at once, then 100/s until the last batch was offered
    assert filed(ctx, 1000) >= 10 + math.floor(100 * offered) - 1


async def test_drop_pauses_the_uids_reading(autojump_clock: trio.testing.MockClock) -> None:
    """After a read with drops the uid's connections pause: one such read per 10 ms per uid,
    whatever the number of connections; another uid is not paused."""
    ctx = make_ctx(make_config("drop"))
    one, two = (Connection(ctx, ALICE, Stamp(ALICE)) for _ in range(2))
    bob = Connection(ctx, BOB, Stamp(BOB))
    done: dict[str, float] = {}
    start = trio.current_time()

    async def read(name: str, conn: Connection, n: int) -> None:
        await conn.file(frames(n), 0.0)
        done[name] = trio.current_time() - start

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read, "one", one, 50)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(read, "two", two, 50)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(read, "bob", bob, 50)
    assert done == {"one": pytest.approx(0.01), "two": pytest.approx(0.02), "bob": 0.0}
    assert dict(ctx.suppression.dropped(1000)) == {"rate": 90}


async def test_block_waits_for_tokens_and_loses_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """on_rate=block: the batch is filed in steps as tokens come; the task sleeps meanwhile."""
    ctx = make_ctx(make_config("block"))
    conn = Connection(ctx, ALICE, Stamp(ALICE))
    start = trio.current_time()
    await conn.file(frames(1000), 0.0)
    took = trio.current_time() - start
    assert filed(ctx, 1000) == 1000
    assert ctx.suppression.dropped(1000) == {}
    assert 9.89 <= took <= 9.92  # (1000 - 10) / 100 per second
    log = ctx.pipeline.log  # type: ignore[attr-defined]
    total = 0
    for t, uid, n in log:
        total += n
        assert uid == 1000
        assert total <= 10 + 100 * (t - start) + 1e-6


async def test_block_of_one_uid_does_not_hold_another(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """While alice's connection waits for tokens, bob's records are filed at once."""
    ctx = make_ctx(make_config("block"))
    alice = Connection(ctx, ALICE, Stamp(ALICE))
    bob = Connection(ctx, BOB, Stamp(BOB))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(alice.file, frames(500), 0.0)
        await trio.testing.wait_all_tasks_blocked()
        t0 = trio.current_time()
        await bob.file(frames(5000), 0.0)
        assert trio.current_time() == t0
        assert filed(ctx, 1001) == 5000
        assert filed(ctx, 1000) == 10
    assert filed(ctx, 1000) == 500


async def test_cancelled_while_blocked_counts_what_it_held(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Shutdown cancels a blocked connection: the records it held are counted as dropped."""
    ctx = make_ctx(make_config("block"))
    conn = Connection(ctx, ALICE, Stamp(ALICE))
    with trio.move_on_after(1.0):
        await conn.file(frames(1000), 0.0)
    assert filed(ctx, 1000) + ctx.suppression.dropped(1000)["rate"] == 1000
    assert 100 <= filed(ctx, 1000) <= 111


async def test_quota_drop_drops_whole_batches_once_over() -> None:
    """on_quota=drop: a batch is dropped (reason quota) once disk use + queued bytes reach
    the quota; tokens are not spent on it."""
    usage = {1000: 0}
    config = make_config("drop", '[limits.uid.1000]\nquota_bytes = 1000\non_quota = "drop"\n')
    ctx = make_ctx(config, usage)
    conn = Connection(ctx, ALICE, Stamp(ALICE))
    await conn.file(frames(3), 0.0)
    assert filed(ctx, 1000) == 3
    usage[1000] = 1000 - ctx.pipeline.state(1000).pending_bytes  # on disk + queued = quota
    await conn.file(frames(4), 0.0)
    assert (filed(ctx, 1000), dict(ctx.suppression.dropped(1000))) == (3, {"quota": 4})
    usage[1000] = 0  # retention freed space
    await conn.file(frames(7), 0.0)
    assert filed(ctx, 1000) == 10  # all 7 within the burst: the dropped 4 cost no tokens


async def test_policy_looks_a_uid_up_once() -> None:
    """Concurrent first connections of a uid share one NSS lookup; the result is cached."""
    calls: list[int] = []
    release = threading.Event()

    def slow(uid: int) -> UidIdentity:
        calls.append(uid)
        release.wait(10)
        return names(uid)

    limiter = Limiter(make_config(), SuppressionTracker(), lambda uid: 0, resolve=slow)
    policies: list[UidPolicy] = []

    async def connect() -> None:
        policies.append(await limiter.policy(1001))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(connect)
            await trio.testing.wait_all_tasks_blocked()
            release.set()
    assert calls == [1001]
    assert [p.limits.rate_messages for p in policies] == [1000000] * 5
    assert all(p is limiter.policies[1001] for p in policies)


async def test_failing_lookup_gives_uid_and_default_limits() -> None:
    """An NSS error is no connection failure: the uid gets its uid table and the defaults."""

    def broken(uid: int) -> UidIdentity:
        raise OSError("ldap down")

    limiter = Limiter(make_config(), SuppressionTracker(), lambda uid: 0, resolve=broken)
    policy = await limiter.policy(1001)
    assert (policy.limits.rate_messages, policy.may_claim, policy.gid) == (100, False, None)


async def test_connection_caps_and_headroom() -> None:
    """Per-uid cap, global cap with headroom for root and admins; groups read only near it."""
    config = make_config("drop", "[daemon]\nmax_connections = 4\nconnection_headroom = 2\n")
    limiter = Limiter(config, SuppressionTracker(), lambda uid: 0, resolve=names)
    limiter.apply(await limiter.prepare(config))
    limiter.admin_gids = frozenset({10})  # "wheel" on this imaginary host
    reads: list[int] = []

    def groups_of(gids: tuple[int, ...]) -> object:
        def read() -> tuple[int, ...]:
            reads.append(1)
            return gids

        return read

    alice = await limiter.policy(1000)
    assert limiter.open_connection(ALICE, alice, groups_of(()))  # type: ignore[arg-type]
    assert limiter.open_connection(ALICE, alice, groups_of(()))  # type: ignore[arg-type]
    assert reads == []
    assert not limiter.open_connection(BOB, alice, groups_of(()))  # type: ignore[arg-type]
    assert limiter.open_connection(BOB, alice, groups_of((10,)))  # type: ignore[arg-type]
    assert limiter.open_connection(PeerCred(5, 0, 0), alice, groups_of(()))  # type: ignore[arg-type]
    assert not limiter.open_connection(PeerCred(6, 0, 0), alice, groups_of(()))  # type: ignore[arg-type]
    assert reads == [1, 1, 1, 1]
    assert dict(limiter.suppression.dropped(1001)) == {"connections": 1}
    assert dict(limiter.suppression.dropped(0)) == {"connections": 1}
    limiter.close_connection(1000)
    assert limiter.conns.total == 3


async def test_per_uid_connection_cap() -> None:
    """max_connections of the uid's policy: one over is refused and counted."""
    config = make_config("drop", "[limits.uid.1000]\nmax_connections = 2\n")
    limiter = Limiter(config, SuppressionTracker(), lambda uid: 0, resolve=names)
    alice = await limiter.policy(1000)
    opened = [limiter.open_connection(ALICE, alice, lambda: ()) for _ in range(3)]
    assert opened == [True, True, False]
    assert dict(limiter.suppression.dropped(1000)) == {"connections": 1}


async def test_apply_keeps_bucket_balance_and_open_connections(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A reload to a larger burst adds no tokens; connections stay counted over a lower cap."""
    ctx = make_ctx(make_config("drop"))
    limiter = ctx.limiter
    conn = Connection(ctx, ALICE, Stamp(ALICE))
    await conn.file(frames(10), 0.0)  # empties the bucket of 10
    alice = await limiter.policy(1000)
    assert limiter.open_connection(ALICE, alice, lambda: ())
    new = make_config("drop", "[limits.uid.1000]\nburst_messages = 1000\nmax_connections = 1\n")
    limiter.apply(Prepared(new, {}, frozenset()))  # prepare()'s thread would let autojump run
    await conn.file(frames(50), 0.0)
    assert filed(ctx, 1000) == 10  # no free burst from the reload
    await trio.sleep(1.0)
    await conn.file(frames(500), 0.0)
    # 100/s for the 10 ms drop pause and the 1 s sleep, now up to the new burst
    assert filed(ctx, 1000) == 111
    assert limiter.conns.count(1000) == 1
    assert not limiter.open_connection(ALICE, limiter.policies[1000], lambda: ())


async def test_relay_files_claims_under_the_claimed_uid() -> None:
    """A may_claim writer's claimed records go to the claimed uid's queue, stamped with
    relay_uid/relay_pid, and spend that uid's tokens; unclaimed ones stay the relay's."""
    ctx = make_ctx(make_config("drop"))
    conn = Connection(ctx, RELAY, Stamp(RELAY))
    claim = b'<14>1 - - app - - [logd-claim@32473 uid="1000" pid="9"] hi'
    await conn.file([Frame(claim, False)] * 12 + [Frame(b"<13>mine", False)], 0.0)
    assert (filed(ctx, 1000), filed(ctx, 2000)) == (10, 1)
    assert dict(ctx.suppression.dropped(1000)) == {"rate": 2}
    line = ctx.pipeline.state(1000).pending[0].lines[0]
    assert b'"uid":1000,"gid":65534,"pid":9,"relay_uid":2000,"relay_pid":77,' in line
    assert b"logd-claim" not in line
    own = ctx.pipeline.state(2000).pending[0].lines[0]
    assert b'"uid":2000,"gid":2000,"pid":77,"fac"' in own


async def test_non_relay_claim_stays_a_claim() -> None:
    """Without may_claim the element is never read: the record is the writer's, fields intact."""
    ctx = make_ctx(make_config("drop"))
    conn = Connection(ctx, ALICE, Stamp(ALICE))
    await conn.file([Frame(b'<14>1 - - app - - [logd-claim@32473 uid="0"] x', False)], 0.0)
    assert (filed(ctx, 1000), filed(ctx, 0)) == (1, 0)
    line = ctx.pipeline.state(1000).pending[0].lines[0]
    assert b'"fields":{"logd-claim@32473":{"uid":"0"}}' in line


@pytest.mark.parametrize("on_rate", ["drop", "block"])
async def test_reload_reaches_a_connection_between_batches(
    on_rate: str, autojump_clock: trio.testing.MockClock
) -> None:
    """New limits apply to a live connection at its next batch (policy read per batch)."""
    ctx = make_ctx(make_config(on_rate))
    conn = Connection(ctx, ALICE, Stamp(ALICE))
    await conn.file(frames(10), 0.0)
    loose = make_config(on_rate, "[limits.uid.1000]\nrate_messages = 1000000\n")
    ctx.limiter.apply(Prepared(loose, {}, frozenset()))
    await trio.sleep(0.001)
    t0 = trio.current_time()
    await conn.file(frames(10), 0.0)
    assert (filed(ctx, 1000), trio.current_time()) == (20, t0)


def test_rate_limiter_reconfigure_counts_old_rate_until_now() -> None:
    """RateLimiter.reconfigure: time before `now` at the old rate, after at the new one;
    uids without buckets get none."""
    old, new = make_config("drop"), make_config("drop", "[limits.uid.1000]\nrate_messages = 1000\n")
    limiter = Limiter(old, SuppressionTracker(), lambda uid: 0, resolve=names)
    limiter.seed({1000: UNKNOWN})
    rate = limiter.rate
    limits = limiter.policies[1000].limits
    assert rate.admit(1000, [1] * 10, limits, now=0.0) == 10  # bucket empty at t=0
    fresh = Limiter(new, SuppressionTracker(), lambda uid: 0, resolve=names)
    fresh.seed({1000: UNKNOWN})
    rate.reconfigure(lambda uid: fresh.policies[1000].limits, now=0.05)  # 5 tokens at 100/s
    assert len(rate) == 1
    # 5 tokens from the old rate, then 0.002 s at 1000/s: 2 more (at the old rate: 0.2)
    assert rate.admit(1000, [1] * 20, fresh.policies[1000].limits, now=0.052) == 7


def test_others_active_tells_whether_another_uid_read_recently() -> None:
    """IngestContext.others_active: true while a uid other than the reader's read within
    ACTIVE_WINDOW, whatever the order of reads."""
    from trio_logd.server._ingest import ACTIVE_WINDOW

    ctx = make_ctx(make_config())
    w = ACTIVE_WINDOW
    assert [
        ctx.others_active(1, 0.0),  # nobody else yet
        ctx.others_active(1, 0.1),
        ctx.others_active(2, 0.2),  # 1 read at 0.1
        ctx.others_active(1, 0.3),  # 2 read at 0.2
        ctx.others_active(1, 0.2 + w + 0.01),  # 2's read is too old now
        ctx.others_active(3, 0.2 + w + 0.02),  # 1 read just now
        ctx.others_active(2, 0.2 + w + 0.03),  # 3 read just now
    ] == [False, False, True, True, False, True, True]


async def test_idle_uids_buckets_are_forgotten_but_a_busy_ones_are_kept(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The pruning task drops buckets that refilled (a fresh start is the same) every
    BUCKET_PRUNE_INTERVAL, and keeps one that is still being drained."""
    ctx = make_ctx(make_config("drop"))
    limiter = ctx.limiter
    alice = Connection(ctx, ALICE, Stamp(ALICE))
    bob = Connection(ctx, BOB, Stamp(BOB))
    await alice.file(frames(5), 0.0)
    await bob.file(frames(5), 0.0)
    assert len(limiter.rate) == 2
    async with trio.open_nursery() as nursery:
        await nursery.start(limiter.serve_pruning)
        # alice keeps her bucket below full: 100/s refill, she takes 10 every 0.1 s
        for _ in range(int(BUCKET_PRUNE_INTERVAL * 1.5 * 10)):
            await alice.file(frames(10), 0.0)
            await trio.sleep(0.1)
        assert len(limiter.rate) == 1  # bob (idle) forgotten, alice kept
        await trio.sleep(BUCKET_PRUNE_INTERVAL)
        assert len(limiter.rate) == 0  # alice idle for a whole interval: forgotten too
        nursery.cancel_scope.cancel()


def test_quota_nowait_never_asks_nss() -> None:
    """The event loop's quota figure: a cached policy if there is one, else the uid table or
    the defaults; NSS (which may hang on a slow directory) is never asked."""

    def no_nss(uid: int) -> UidIdentity:
        raise AssertionError(f"NSS asked for uid {uid}")

    config = make_config(
        extra="[limits.uid.1234]\nquota_bytes = 7000000\n"
        "[limits.group.dev]\nquota_bytes = 9000000\n"
    )
    limiter = Limiter(config, SuppressionTracker(), lambda uid: 0, resolve=no_nss)
    assert limiter.quota_nowait(1234) == 7_000_000  # [limits.uid.1234]
    assert limiter.quota_nowait(5678) == config.limits_default.quota_bytes
    limiter.seed({1001: names(1001)})
    assert limiter.quota_nowait(1001) == 9_000_000  # bob is in group dev
