"""The query service's parts: authorization, the follow hub's bounded buffers, encoding."""

from __future__ import annotations

import grp
import pwd

import orjson
import pytest

from tests._uids import free_uids
from trio_logd.config import loads
from trio_logd.errors import AccessDenied
from trio_logd.query.budget import ByteBudget
from trio_logd.query.filters import QuerySpec
from trio_logd.server._query import (
    Follower,
    FollowHub,
    authorize_uids,
    encode_records,
    reader_gids,
    user_names,
)

CONFIG = loads('[access]\nreaders = ["adm", "no-such-group-here"]\n')
ADM = grp.getgrnam("adm").gr_gid
READERS = {ADM: "adm"}


def test_reader_gids_resolves_existing_groups_only() -> None:
    """Configured reader group names map to gids; names that do not exist are ignored."""
    assert reader_gids(CONFIG) == READERS


@pytest.mark.parametrize(
    ("uid", "gids", "spec", "expected"),
    [
        (1000, [1000], QuerySpec(), [1000]),
        (1000, [1000], QuerySpec(uids=(1000,)), [1000]),
        (0, [0], QuerySpec(uids=(1000, 1001)), [1000, 1001]),
        (0, [0], QuerySpec(all_uids=True), None),
        (0, [0], QuerySpec(), [0]),
        (1001, [1001, ADM], QuerySpec(uids=(1000,)), [1000]),
        (1001, [ADM], QuerySpec(all_uids=True), None),
    ],
)
def test_authorized(uid: int, gids: list[int], spec: QuerySpec, expected: list[int] | None) -> None:
    """Own records always; root and reader-group members (primary or supplementary) anything."""
    assert authorize_uids(CONFIG, uid, gids, spec, READERS) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (QuerySpec(uids=(1000,)), "uid 1001 (bob) may not read uid 1000"),
        (QuerySpec(uids=(1001, 0)), "uid 1001 (bob) may not read uid 0 (root)"),
        (QuerySpec(all_uids=True), "uid 1001 (bob) may not read all uids"),
    ],
)
def test_refused(spec: QuerySpec, message: str) -> None:
    """Anyone else is refused with who (by uid and name) may not read what, and who may."""
    with pytest.raises(AccessDenied) as info:
        authorize_uids(CONFIG, 1001, [1001, 100], spec, READERS, names={1001: "bob", 0: "root"})
    assert str(info.value) == (
        f"permission denied: {message} (root and members of the [access] readers groups "
        "may: adm, no-such-group-here)"
    )


def test_user_names_leaves_out_uids_without_a_name() -> None:
    """user_names maps the uids that have a passwd entry; the others are left out."""
    (free,) = free_uids(1)
    assert user_names([0, free]) == {0: pwd.getpwuid(0).pw_name}


def test_follower_buffer_is_bounded_and_counts_what_it_missed() -> None:
    """Past max_records or max_bytes, lines are dropped and counted, never queued."""
    budget = ByteBudget(1 << 20)
    f = Follower(frozenset({1}), 1000, budget, max_records=5)
    f.push(1, [b"a\n"] * 3)
    f.push(1, [b"b\n"] * 4)  # 2 fit
    f.push(1, [b"c\n"])  # none fit
    assert budget.used == 10
    chunks, missed, nbytes = f.take()
    assert (chunks, missed, nbytes) == ([(1, [b"a\n"] * 3), (1, [b"b\n"] * 2)], 3, 10)
    budget.release(nbytes)
    f.push(1, [b"x" * 600, b"y" * 600])  # fits by count, not by bytes
    assert f.take() == ([], 2, 0)
    assert f.take() == ([], 0, 0)
    assert budget.used == 0


def test_follower_is_held_to_the_daemon_wide_budget() -> None:
    """Lines within a follower's share but over the daemon-wide budget are missed."""
    budget = ByteBudget(1500)
    a, b = Follower(None, 1000, budget), Follower(None, 1000, budget)
    a.push(1, [b"x" * 900])
    b.push(1, [b"y" * 900])  # its own share has room; the budget does not
    assert (budget.used, a.nbytes, b.missed) == (900, 900, 1)
    a.drop()
    assert budget.used == 0
    b.push(1, [b"z" * 900])
    assert b.take() == ([(1, [b"z" * 900])], 1, 900)


async def test_hub_fans_out_by_uid_and_to_everyone() -> None:
    """A uid's lines reach its followers and the all-uids followers, nobody else."""
    hub = FollowHub()
    budget = ByteBudget(1 << 20)
    mine, other, everyone = (
        Follower(frozenset({1}), 1000, budget),
        Follower(frozenset({2}), 1000, budget),
        Follower(None, 1000, budget),
    )
    for f in (mine, other, everyone):
        hub.add(f)
    assert len(hub) == 3
    hub.hook(1, [b"l1\n"])
    assert mine.wake.is_set()
    assert not other.wake.is_set()
    assert (mine.take()[0], other.take()[0], everyone.take()[0]) == (
        [(1, [b"l1\n"])],
        [],
        [(1, [b"l1\n"])],
    )
    for f in (mine, other, everyone):
        hub.remove(f)
        hub.remove(f)
    assert len(hub) == 0
    hub.hook(1, [b"l2\n"])
    assert mine.take() == ([], 0, 0)


def test_encode_records_embeds_lines_unchanged() -> None:
    """record lines carry the stored bytes as the record, valid JSON either way."""
    stored = [b'{"ts":"x","seq":1,"msg":"\\u001b"}', b'{"seq":2}']
    data = encode_records(stored)
    assert data == (
        b'{"type":"record","record":{"ts":"x","seq":1,"msg":"\\u001b"}}\n'
        b'{"type":"record","record":{"seq":2}}\n'
    )
    assert [orjson.loads(x)["record"]["seq"] for x in data.splitlines()] == [1, 2]
    assert encode_records([]) == b""
