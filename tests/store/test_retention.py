"""plan_retention: max_age, per-uid quota, max_bytes and keep_free_bytes, who loses what."""

from __future__ import annotations

from collections.abc import Callable

from tests.store._lines import T0
from trio_logd.store.retention import Plan, RetentionPolicy, StoredFile, UidFiles, plan_retention

OFF = RetentionPolicy(max_age=0, max_bytes=1 << 60, keep_free_bytes=0)
DAY = 86400.0


def uid(u: int, current: int, *sizes: int, newest: float = T0) -> UidFiles:
    """A uid with a current file and rotated files of *sizes*, oldest first (seq 10, 20, ...)."""
    files = tuple(
        StoredFile(u, f"f{u}-{i}", s, newest + i, 10 * (i + 1)) for i, s in enumerate(sizes)
    )
    return UidFiles(u, current, files)


def quotas(q: dict[int, tuple[int, str]]) -> Callable[[int], tuple[int, str]]:
    """quota_for: the given uids' quotas, everyone else unlimited with rotate."""
    return lambda u: q.get(u, (1 << 60, "rotate"))


def names(plan: Plan) -> list[str]:
    return [f.name for f in plan.delete]


def test_nothing_to_do_within_every_limit() -> None:
    """Within all limits the plan is empty."""
    plan = plan_retention([uid(1, 10, 100, 100)], OFF, quotas({}), now=T0, free_bytes=10**9)
    assert plan == Plan()


def test_max_age_deletes_old_files_of_every_uid_whatever_the_policy() -> None:
    """Files whose newest record is older than max_age go, for rotate and drop uids alike."""
    policy = RetentionPolicy(max_age=30 * DAY, max_bytes=1 << 60, keep_free_bytes=0)
    uids = [uid(1, 5, 10, 10, newest=T0 - 31 * DAY), uid(2, 5, 10, newest=T0 - 40 * DAY)]
    plan = plan_retention(uids, policy, quotas({2: (10**9, "drop")}), now=T0, free_bytes=None)
    assert names(plan) == ["f1-0", "f1-1", "f2-0"]


def test_quota_deletes_the_uids_oldest_files_until_within() -> None:
    """A uid over quota_bytes (rotate) loses its oldest files, no more than needed."""
    uids = [uid(1, 50, 100, 100, 100), uid(2, 50, 100, 100, 100)]
    plan = plan_retention(uids, OFF, quotas({1: (200, "rotate")}), now=T0, free_bytes=None)
    assert plan == Plan(delete=uids[0].files[:2])


def test_bytes_beside_the_current_file_count_towards_the_quota() -> None:
    """The current file's chain counts in the uid's usage: one more old file goes for it."""
    plain = uid(1, 50, 100, 100, 100)
    chained = UidFiles(1, 50, plain.files, beside=60)
    plan = plan_retention([chained], OFF, quotas({1: (200, "rotate")}), now=T0, free_bytes=None)
    assert (chained.usage, plan) == (410, Plan(delete=plain.files[:3]))


def test_quota_never_deletes_files_of_a_drop_uid() -> None:
    """on_quota = "drop": the files stay (ingest drops new records instead)."""
    uids = [uid(1, 50, 100, 100, 100)]
    plan = plan_retention(uids, OFF, quotas({1: (100, "drop")}), now=T0, free_bytes=None)
    assert plan == Plan()


def test_current_file_alone_over_quota_is_rotated_first() -> None:
    """When current alone is over quota, every rotated file goes and current is rotated."""
    uids = [uid(1, 500, 100, 100)]
    plan = plan_retention(uids, OFF, quotas({1: (300, "rotate")}), now=T0, free_bytes=None)
    assert plan == Plan(delete=uids[0].files, rotate=(1,))


def test_the_high_water_file_stays_while_current_is_empty() -> None:
    """The newest rotated file holds the last seq while current is empty: never deleted then."""
    uids = [uid(1, 0, 100, 100)]
    plan = plan_retention(uids, OFF, quotas({1: (10, "rotate")}), now=T0, free_bytes=None)
    assert plan == Plan(delete=uids[0].files[:1])


def test_max_bytes_takes_from_the_largest_users_first() -> None:
    """Global pressure deletes one oldest file at a time from whoever is largest then."""
    uids = [uid(1, 10, 100, 100, 100), uid(2, 10, 100, 100), uid(3, 10, 50)]
    # 310 + 210 + 60 = 580, 280 over: uid 1 (310) gives f1-0; uids 1 and 2 tie at 210,
    # the lower uid gives f1-1; uid 2 (210) is now the largest and gives f2-0
    policy = RetentionPolicy(max_age=0, max_bytes=300, keep_free_bytes=0)
    plan = plan_retention(uids, policy, quotas({}), now=T0, free_bytes=None)
    assert names(plan) == ["f1-0", "f1-1", "f2-0"]


def test_a_small_user_keeps_its_files_under_global_pressure() -> None:
    """A uid within its quota loses nothing while a larger uid still has files to give."""
    uids = [uid(1, 10, 10), uid(2, 10, 100, 100, 100, 100)]
    policy = RetentionPolicy(max_age=0, max_bytes=150, keep_free_bytes=0)
    plan = plan_retention(uids, policy, quotas({}), now=T0, free_bytes=None)
    assert names(plan) == ["f2-0", "f2-1", "f2-2"]


def test_keep_free_bytes_frees_what_is_missing() -> None:
    """Less than keep_free_bytes free: the largest users give up files until the reserve is met."""
    uids = [uid(1, 10, 100, 100), uid(2, 10, 300, 300)]
    policy = RetentionPolicy(max_age=0, max_bytes=1 << 60, keep_free_bytes=1000)
    plan = plan_retention(uids, policy, quotas({}), now=T0, free_bytes=450)
    assert names(plan) == ["f2-0", "f2-1"]  # 600 freed >= 550 missing


def test_global_pressure_spares_drop_uids_and_rotates_a_lone_current_file() -> None:
    """Drop uids are exempt; a rotate uid with only a current file gets it rotated."""
    uids = [uid(1, 1000, 500, 500), uid(2, 300)]
    policy = RetentionPolicy(max_age=0, max_bytes=1000, keep_free_bytes=0)
    plan = plan_retention(uids, policy, quotas({1: (10**9, "drop")}), now=T0, free_bytes=None)
    assert plan == Plan(rotate=(2,))


SUBORDINATE = {50: 1, 51: 1, 52: 1}


def owner_of(u: int) -> int:
    return SUBORDINATE.get(u, u)


def test_subordinate_uids_share_their_owners_quota() -> None:
    """An owner's subordinate uids are held to her quota together, the oldest file first."""
    uids = [
        uid(1, 10, 100, newest=T0 + 5),
        uid(50, 10, 100, 100, newest=T0),
        uid(51, 10, 100, newest=T0 + 2),
    ]
    quota = quotas({u: (250, "rotate") for u in (1, 50, 51)})
    assert plan_retention(uids, OFF, quota, now=T0, free_bytes=None) == Plan()  # each alone fits
    plan = plan_retention(uids, OFF, quota, now=T0, free_bytes=None, account_for=owner_of)
    assert names(plan) == ["f50-0", "f50-1"]
    assert plan.rotate == ()


def test_global_pressure_takes_from_the_largest_account() -> None:
    """Spread over subordinate uids, an owner is still the largest user under max_bytes."""
    uids = [
        uid(2, 0, 100, 100, 100),
        *(uid(u, 0, 50, 50, 50, newest=T0 + 10) for u in (50, 51, 52)),
    ]
    policy = RetentionPolicy(max_age=0, max_bytes=650, keep_free_bytes=0)
    alone = plan_retention(uids, policy, quotas({}), now=T0, free_bytes=None)
    assert names(alone) == ["f2-0"]  # uid 2 (300 bytes) is the largest uid: it lost 100
    plan = plan_retention(uids, policy, quotas({}), now=T0, free_bytes=None, account_for=owner_of)
    # owner 1's account holds 450 bytes: its two oldest files, whichever uid's they are
    assert names(plan) == ["f50-0", "f51-0"]
