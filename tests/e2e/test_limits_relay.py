"""End to end: relays ([identity] may_claim) file records under the uid they claim."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from tests._daemon import DaemonProcess, poll, world
from tests._uids import free_uids, named_uid
from tests.e2e._limits_helpers import uid_stats

RELAY, TENANT, STRANGER = free_uids(3)
#: a uid with a passwd entry on the test machines (Debian's first user), primary gid 1000
USER_UID = named_uid()

pytestmark = pytest.mark.usefixtures("as_root")

CLAIM_5424 = (
    b'<14>1 2026-11-27T10:00:00Z box app 7 - [logd-claim@32473 uid="%d" pid="42"]'
    b'[meta x="1"] from the tenant\n'
)
CLAIM_CEE = (
    b'<14>app[7]: @cee: {"logd-claim@32473": {"uid": %d, "gid": 77}, "msg": "cee", "k": 1}\n'
)


@pytest.fixture
def relay_daemon() -> Iterator[DaemonProcess]:
    """A daemon where RELAY may relay and the tenant's rate is tight."""
    with world() as root:
        d = DaemonProcess(
            root,
            extra=f"""
[limits.uid.{TENANT}]
rate_messages = 1
burst_messages = 20
on_rate = "drop"

[identity]
may_claim = ["uid:{RELAY}"]
""",
        ).start()
        try:
            yield d
        finally:
            rc = d.stop()
            assert rc == 0, d.stderr()


def send_as(d: DaemonProcess, uid: int, data: bytes) -> int:
    """Send *data* from a child as *uid*; return the child's pid."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(d.socket)
            s.sendall(data)
            s.close()
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return pid


def test_allowed_relay_files_records_under_the_claimed_uid(relay_daemon: DaemonProcess) -> None:
    """A may_claim relay's claim (SD element or @cee: key) sets uid/gid/pid; the relay is kept
    in relay_uid/relay_pid; its unclaimed records stay its own."""
    d = relay_daemon
    relay_pid = send_as(
        d, RELAY, CLAIM_5424 % TENANT + CLAIM_CEE % TENANT + b"<13>the relay itself\n"
    )
    sd, cee = d.wait_records(TENANT, 2)
    assert {k: sd[k] for k in ("uid", "gid", "pid", "relay_uid", "relay_pid", "msg", "fields")} == {
        "uid": TENANT,
        "gid": 65534,  # no gid claimed and no passwd entry: the kernel's "unknown"
        "pid": 42,
        "relay_uid": RELAY,
        "relay_pid": relay_pid,
        "msg": "from the tenant",
        "fields": {"meta": {"x": "1"}},
    }
    assert sd["claimed_pid"] == 7  # the header's PROCID: a claim, beside the claimed pid
    assert [k for k in ("exe", "comm", "conn_uid", "conn_pid") if k in sd] == []
    assert {k: cee[k] for k in ("uid", "gid", "pid", "relay_uid", "msg", "fields")} == {
        "uid": TENANT, "gid": 77, "pid": 0, "relay_uid": RELAY, "msg": "cee", "fields": {"k": 1},
    }  # fmt: skip
    (own,) = d.wait_records(RELAY, 1)
    assert (own["uid"], own["pid"], own["msg"], "relay_uid" in own) == (
        RELAY, relay_pid, "the relay itself", False,
    )  # fmt: skip
    assert uid_stats(d, TENANT)["records"] == 2


def test_claimed_uid_with_passwd_entry_gets_its_primary_gid(relay_daemon: DaemonProcess) -> None:
    """Without a claimed gid, a relayed record gets the claimed user's primary gid."""
    import pwd

    if USER_UID is None:
        pytest.skip("no user besides root in the passwd database")
    gid = pwd.getpwuid(USER_UID).pw_gid
    send_as(relay_daemon, RELAY, CLAIM_5424 % USER_UID)
    (rec,) = relay_daemon.wait_records(USER_UID, 1)
    assert (rec["uid"], rec["gid"], rec["relay_uid"]) == (USER_UID, gid, RELAY)


def test_relayed_records_count_against_the_claimed_uid(relay_daemon: DaemonProcess) -> None:
    """A relay's claims spend the claimed uid's tokens: over its rate they are dropped for it."""
    d = relay_daemon
    send_as(d, RELAY, b"".join(CLAIM_5424 % TENANT for _ in range(100)))
    poll(lambda: sum(uid_stats(d, TENANT).get("dropped", {}).values()) >= 78)
    stored = d.wait_records(TENANT, 20)
    assert 20 <= len(stored) <= 22
    assert uid_stats(d, TENANT)["dropped"] == {"rate": 100 - len(stored)}
    assert uid_stats(d, RELAY)["dropped"] == {}


def test_refused_claimant_keeps_its_own_uid_and_the_claim_stays_a_claim(
    relay_daemon: DaemonProcess,
) -> None:
    """A uid not in may_claim stays itself; its claim element stays under fields, untouched."""
    d = relay_daemon
    pid = send_as(d, STRANGER, CLAIM_5424 % TENANT + CLAIM_CEE % 0)
    sd, cee = d.wait_records(STRANGER, 2)
    assert (sd["uid"], sd["gid"], sd["pid"], "relay_uid" in sd) == (STRANGER, STRANGER, pid, False)
    assert sd["fields"] == {
        "logd-claim@32473": {"uid": str(TENANT), "pid": "42"}, "meta": {"x": "1"},
    }  # fmt: skip
    assert (cee["uid"], cee["fields"]) == (
        STRANGER, {"logd-claim@32473": {"uid": 0, "gid": 77}, "k": 1},
    )  # fmt: skip
    assert d.records(TENANT) == []
    assert [r for r in d.records(0) if "event" not in r] == []


def test_malformed_claim_from_a_relay_is_filed_as_its_own(relay_daemon: DaemonProcess) -> None:
    """A relay's claim with an unknown parameter or a bad number is no claim: kept as sent."""
    d = relay_daemon
    send_as(
        d,
        RELAY,
        b'<14>1 - - app - - [logd-claim@32473 uid="-1"] negative\n'
        b'<14>1 - - app - - [logd-claim@32473 uid="5" user="x"] extra param\n',
    )
    neg, extra = d.wait_records(RELAY, 2)
    assert (neg["uid"], neg["fields"]) == (RELAY, {"logd-claim@32473": {"uid": "-1"}})
    assert (extra["uid"], extra["fields"]) == (
        RELAY, {"logd-claim@32473": {"uid": "5", "user": "x"}},
    )  # fmt: skip
    assert d.records(5) == []
