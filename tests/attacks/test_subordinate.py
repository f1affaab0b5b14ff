"""Subordinate uids (``/etc/subuid``, rootless containers): a user's uid range is still her.

The attacker (uid 1000) has 65 536 subordinate uids in a test copy of
``/etc/subuid`` and maps them into a user namespace as ``newuidmap`` would;
processes of hers then reach the daemon as uids ``base``, ``base + 1`` …
Defined outcome (``[identity] subordinate_ids = "owner"``, the default): they
are limited as her — their connections count against her ``max_connections``,
their records against her token buckets — so another user still connects and
logs; their records keep the kernel's uid and carry ``owner_uid``, and she
(not anyone else) may read them with ``logq``. With ``"separate"`` each is a
user of its own. The files are re-read when they change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from tests._daemon import DaemonProcess, poll
from tests.attacks._helpers import ATTACKER, BYSTANDER, Bystander, run_child, wait_records
from tests.attacks._userns import (
    SubordinateHolder,
    free_id_range,
    subid_config,
    write_subid_files,
)
from tests.attacks.conftest import AttackRow, DaemonFactory
from trio_logd.cli import logq
from trio_logd.control_client import request_one

pytestmark = pytest.mark.usefixtures("as_root")

#: attack 2 of the issue: 16 subordinate uids with the per-uid connection cap each
SUBUIDS = 16
PER_UID = 8
GLOBAL = 40


@pytest.fixture
def base() -> int:
    """The first id of the attacker's subordinate range: ids nobody uses on this host."""
    return free_id_range()


def _stats(daemon: DaemonProcess) -> dict[int, dict[str, Any]]:
    return {u["uid"]: u for u in request_one(daemon.control, "stats")["uids"]}


def _logq(daemon: DaemonProcess, uid: int, *argv: str) -> tuple[int, list[dict[str, Any]], str]:
    got = run_child(
        uid, lambda: logq.main(["--no-pager", "--config", str(daemon.config), "-o", "json", *argv])
    )
    return got.rc, [orjson.loads(line) for line in got.out.splitlines() if line], got.err


def test_subordinate_uids_share_the_owners_connection_cap(
    start_daemon: DaemonFactory, root_dir: Path, base: int, attack_report: AttackRow
) -> None:
    """16 subordinate uids x 8 connections get 8 in all: another user still connects and logs."""
    subuid, subgid = write_subid_files(root_dir, ATTACKER, base)
    daemon = start_daemon(
        daemon_extra=f"max_connections = {GLOBAL}\nconnection_headroom = 4",
        limits_extra=f"max_connections = {PER_UID}",
        extra=subid_config(subuid, subgid),
    )
    by = Bystander(daemon)
    by.send(2)
    holder = SubordinateHolder(daemon, ATTACKER, base, uids=SUBUIDS, conns=PER_UID)
    members = range(base, base + SUBUIDS)
    try:

        def all_decided() -> bool:
            st = _stats(daemon)
            kept = sum(st.get(u, {}).get("connections", 0) for u in members)
            refused = sum(st.get(u, {}).get("dropped", {}).get("connections", 0) for u in members)
            return bool(kept + refused == SUBUIDS * PER_UID)

        poll(all_decided, timeout=30)
        st = _stats(daemon)
        kept = sum(st.get(u, {}).get("connections", 0) for u in members)
        for _ in range(2):  # new connections of another user, during the attack
            by.reconnect()
            by.send(2)
    finally:
        holder.release()
    lost = by.lost()
    attack_report.report(
        f"{SUBUIDS} subordinate uids x {PER_UID} connections vs a global cap of {GLOBAL}",
        "counted against the owner's max_connections; others still connect",
        lost,
    )
    assert kept == PER_UID
    assert lost == 0
    by.assert_intact()


def test_subordinate_uids_share_the_owners_rate(
    start_daemon: DaemonFactory, root_dir: Path, base: int, attack_report: AttackRow
) -> None:
    """4 subordinate uids each sending a burst get one burst in all; the rest is counted."""
    subuid, subgid = write_subid_files(root_dir, ATTACKER, base)
    owner_limits = f"[limits.uid.{ATTACKER}]\nrate_messages = 1\nburst_messages = 20\n"
    daemon = start_daemon(extra=subid_config(subuid, subgid) + owner_limits)
    by = Bystander(daemon)
    frames = [b"<14>ctr: %d\n" % i for i in range(20)]
    holder = SubordinateHolder(daemon, ATTACKER, base, uids=4, conns=1, frames=frames)
    members = range(base, base + 4)
    try:

        def all_counted() -> bool:
            st = _stats(daemon)
            counted = sum(
                st.get(u, {}).get("records", 0) + st.get(u, {}).get("dropped", {}).get("rate", 0)
                for u in members
            )
            return bool(counted == 80)

        poll(all_counted, timeout=30)
        by.send(5)
    finally:
        holder.release()
    stored = sum(len(wait_records(daemon, u, 0, timeout=0)) for u in members)
    lost = by.lost()
    attack_report.report(
        "4 subordinate uids x a full burst (burst_messages = 20)",
        "one token bucket, the owner's: about 20 stored, the rest dropped and counted",
        lost,
    )
    assert 20 <= stored <= 25  # one burst, and 1/s while it ran
    assert lost == 0
    by.assert_intact()


def test_owner_uid_stamped_and_readable_by_the_owner_only(
    start_daemon: DaemonFactory, root_dir: Path, base: int, attack_report: AttackRow
) -> None:
    """Records keep the kernel's uid, gain owner_uid; logq finds them for the owner, not others."""
    subuid, subgid = write_subid_files(root_dir, ATTACKER, base)
    daemon = start_daemon(extra=subid_config(subuid, subgid))
    holder = SubordinateHolder(
        daemon, ATTACKER, base, uids=2, conns=1, frames=[b"<14>ctr: in the container\n"]
    )
    holder.release()
    recs = {u: wait_records(daemon, u, 1) for u in (base, base + 1)}
    attack_report.report(
        "records of subordinate uids", "kernel uid kept, owner_uid added, owner may read", 0
    )
    for uid, got in recs.items():
        assert [(r["uid"], r["gid"], r["owner_uid"], r["msg"]) for r in got] == [
            (uid, uid, ATTACKER, "in the container")
        ]
        assert "pidns" not in got[0]  # a user namespace only: same pid namespace
    rc, mine, err = _logq(daemon, ATTACKER)
    assert rc == 0, err
    assert {r["uid"] for r in mine if r.get("owner_uid") == ATTACKER} == {base, base + 1}
    rc, one, err = _logq(daemon, ATTACKER, "--uid", str(base + 1))
    assert (rc, [r["uid"] for r in one]) == (0, [base + 1]), err
    rc, other, err = _logq(daemon, BYSTANDER, "--uid", str(base))
    assert rc != 0
    assert other == []
    assert "permission denied" in err


def test_separate_subordinate_ids_are_users_of_their_own(
    start_daemon: DaemonFactory, root_dir: Path, base: int
) -> None:
    """subordinate_ids = "separate": no owner_uid, and the owner may not read them."""
    subuid, subgid = write_subid_files(root_dir, ATTACKER, base)
    daemon = start_daemon(extra=subid_config(subuid, subgid, "separate"))
    SubordinateHolder(daemon, ATTACKER, base, uids=1, conns=1, frames=[b"<14>ctr: x\n"]).release()
    (rec,) = wait_records(daemon, base, 1)
    assert "owner_uid" not in rec
    rc, _recs, err = _logq(daemon, ATTACKER, "--uid", str(base))
    assert rc != 0
    assert "permission denied" in err


def test_subuid_file_is_reread_when_it_changes(
    start_daemon: DaemonFactory, root_dir: Path, base: int
) -> None:
    """A range added to the file applies to new connections without a reload."""
    subuid, subgid = root_dir / "subuid", root_dir / "subgid"
    subuid.write_text("")
    subgid.write_text("")
    daemon = start_daemon(extra=subid_config(subuid, subgid))
    SubordinateHolder(daemon, ATTACKER, base, uids=1, conns=1, frames=[b"<14>ctr: 0\n"]).release()
    (before,) = wait_records(daemon, base, 1)
    assert "owner_uid" not in before
    write_subid_files(root_dir, ATTACKER, base)
    sent = [1]

    def owned() -> bool:
        frame = b"<14>ctr: %d\n" % sent[0]
        SubordinateHolder(daemon, ATTACKER, base, uids=1, conns=1, frames=[frame]).release()
        recs = wait_records(daemon, base, sent[0] + 1)
        sent[0] += 1
        return recs[-1].get("owner_uid") == ATTACKER

    poll(owned, timeout=20)
