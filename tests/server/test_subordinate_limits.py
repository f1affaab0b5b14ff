"""Subordinate uids in the limiter: limited, counted and quota'd as their owner (pure wiring)."""

from __future__ import annotations

from pathlib import Path

from trio_logd.config import Config, loads
from trio_logd.limits import SuppressionTracker
from trio_logd.peer import PeerCred
from trio_logd.protocol.framing import Frame
from trio_logd.record import Stamp
from trio_logd.server._ingest import Connection, IngestContext
from trio_logd.server._limits import UNKNOWN, Limiter, UidIdentity
from trio_logd.server._pipeline import Pipeline
from trio_logd.subids import SubidFiles, parse_subids

OWNER = 1000
BASE = 100000
DAEMON = PeerCred(1, 0, 0)

CONFIG = """
[limits.default]
rate_messages = 1
burst_messages = 10
max_connections = 2
[limits.uid.1000]
quota_bytes = 1000
on_quota = "{on_quota}"
[identity]
subordinate_ids = "{mode}"
"""


def make_config(mode: str = "owner", on_quota: str = "rotate") -> Config:
    return loads(CONFIG.format(mode=mode, on_quota=on_quota), base_dir="/")


def names(uid: int) -> UidIdentity:
    """NSS stand-in: 1000 is alice; 100005 is bob, a real user inside alice's range."""
    return {
        OWNER: UidIdentity("alice", ("alice",), OWNER),
        BASE + 5: UidIdentity("bob", ("bob",), BASE + 5),
    }.get(uid, UNKNOWN)


def make_limiter(config: Config, usage: dict[int, int] | None = None) -> Limiter:
    disk = usage if usage is not None else {}
    limiter = Limiter(config, SuppressionTracker(), lambda uid: disk.get(uid, 0), resolve=names)
    limiter.seed({uid: names(uid) for uid in (OWNER, BASE, BASE + 1, BASE + 5, 7)})
    table = parse_subids(f"alice:{BASE}:65536\n", {"alice": OWNER}.get)
    limiter.set_subids(SubidFiles(table, parse_subids(f"{OWNER}:{BASE}:65536\n", str.__len__)))
    return limiter


def sub(k: int, gid: int | None = None) -> PeerCred:
    return PeerCred(500 + k, BASE + k, BASE + k if gid is None else gid)


def test_owner_of_a_subordinate_uid() -> None:
    """Delegated and nameless: its owner; the owner herself, a named uid, others: none."""
    limiter = make_limiter(make_config())
    assert limiter.owner_of(sub(1), limiter.policies[BASE + 1]) == OWNER
    assert limiter.owner_of(PeerCred(9, OWNER, OWNER), limiter.policies[OWNER]) is None
    assert limiter.owner_of(sub(5), limiter.policies[BASE + 5]) is None  # bob is bob
    assert limiter.owner_of(PeerCred(9, 7, BASE + 3), limiter.policies[7]) == OWNER  # subgid
    assert (limiter.accounts, limiter.members) == (
        {BASE + 1: OWNER, 7: OWNER},
        {OWNER: {BASE + 1, 7}},
    )


def test_separate_mode_has_no_owners() -> None:
    """subordinate_ids = "separate": every uid is its own account."""
    limiter = make_limiter(make_config("separate"))
    assert limiter.owner_of(sub(1), limiter.policies[BASE + 1]) is None
    assert limiter.account_for(BASE + 1) == BASE + 1
    assert limiter.delegated_to(OWNER) == ()


async def test_connections_count_under_the_owner() -> None:
    """Two subordinate uids share the owner's max_connections (2 here)."""
    limiter = make_limiter(make_config())
    owner_policy = limiter.policies[OWNER]
    opened = [
        limiter.open_connection(cred, owner_policy, tuple, OWNER)
        for cred in (sub(0), sub(1), sub(1))
    ]
    assert opened == [True, True, False]
    assert limiter.suppression.dropped(BASE + 1) == {"connections": 1}
    limiter.close_connection(OWNER)
    assert limiter.open_connection(sub(0), owner_policy, tuple, OWNER)


async def test_subordinate_uids_share_the_owners_bucket() -> None:
    """Records of two subordinate uids come out of one burst (10): the rest is dropped."""
    limiter = make_limiter(make_config())
    ctx = IngestContext(
        Pipeline(lambda uid: 0), 65536, DAEMON, limiter.suppression, limiter=limiter
    )
    for k in (0, 1):
        cred = sub(k)
        owner = limiter.owner_of(
            cred, limiter.policies.get(cred.uid) or await limiter.policy(cred.uid)
        )
        conn = Connection(ctx, cred, Stamp(cred, owner=owner))
        await conn.file([Frame(b"<13>x", False)] * 8, 0.0)
    filed = [ctx.pipeline.state(BASE + k).records for k in (0, 1)]
    assert filed == [8, 2]
    assert limiter.suppression.dropped(BASE + 1) == {"rate": 6}


def test_quota_is_over_the_owner_and_her_subordinate_uids() -> None:
    """on_quota = drop: her files and her subordinate uids' files together reach her quota."""
    usage = {OWNER: 400, BASE + 1: 600}
    limiter = make_limiter(make_config(on_quota="drop"), usage)
    limits = limiter.policies[OWNER].limits
    assert limiter.admit(BASE + 2, 0, [5], limits, 0.0, OWNER).admitted == 1  # 400 < 1000
    limiter.owner_of(sub(1), limiter.policies[BASE + 1])  # uid BASE+1 seen writing
    assert limiter.usage_of(OWNER) == 1000
    assert limiter.admit(BASE + 2, 0, [5], limits, 0.0, OWNER).dropped == "quota"
    assert limiter.quota_for(BASE + 9) == (1000, "drop")  # the owner's, for retention
    assert limiter.account_for(BASE + 9) == OWNER
    assert limiter.account_for(BASE + 5) == BASE + 5  # bob


def test_new_tables_rebuild_the_owners_seen() -> None:
    """A changed /etc/subuid moves the uids seen to their new owner, or to themselves."""
    limiter = make_limiter(make_config())
    limiter.owner_of(sub(1), limiter.policies[BASE + 1])
    limiter.set_subids(SubidFiles(parse_subids(f"{OWNER}:{BASE + 1}:1\n", str.__len__)))
    assert limiter.accounts == {BASE + 1: OWNER}
    limiter.set_subids(SubidFiles())
    assert (limiter.accounts, limiter.members, limiter.account_for(BASE + 1)) == ({}, {}, BASE + 1)


async def test_reload_reads_the_files_it_names(tmp_path: Path) -> None:
    """prepare/apply (start and reload) read subuid_file; "separate" reads nothing."""
    subuid = tmp_path / "subuid"
    subuid.write_text(f"{OWNER}:{BASE}:10\n")
    names_ = f'subuid_file = "{subuid}"\nsubgid_file = "{tmp_path / "none"}"\n'
    config = loads(CONFIG.format(mode="owner", on_quota="rotate") + names_, base_dir="/")
    limiter = Limiter(config, SuppressionTracker(), lambda uid: 0, resolve=names)
    limiter.apply(await limiter.prepare(config))
    assert (limiter.subids.uids.owner_of(BASE + 9), limiter.delegated_to(OWNER)) == (
        OWNER, ((BASE, BASE + 10),),
    )  # fmt: skip
    separate = loads(CONFIG.format(mode="separate", on_quota="rotate") + names_, base_dir="/")
    limiter.apply(await limiter.prepare(separate))
    assert len(limiter.subids.uids) == 0


def test_control_connections_count_against_the_owner() -> None:
    """A subordinate uid's control connections use its owner's cap, seen or not at ingest."""
    limiter = make_limiter(make_config())
    assert limiter.control_account(sub(1)) == OWNER  # policy known (seeded)
    assert limiter.control_account(sub(77)) == OWNER  # never seen: the range decides
    assert limiter.control_account(sub(5)) == BASE + 5  # bob has a passwd entry
    assert limiter.control_account(PeerCred(9, 7, 7)) == 7
    separate = make_limiter(make_config(mode="separate"))
    assert separate.control_account(sub(77)) == BASE + 77
