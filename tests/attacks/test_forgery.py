"""Forged identities: claimed pid/uid/host/app, fake trusted keys in ``@cee:`` and 5424 SD.

Defined outcome: the record is filed under the uid the kernel reports and
stamped with the kernel's uid/gid/pid; what the sender claims stays a claim
(``host``, ``app``, ``claimed_pid``, ``claimed_ts``, ``fields``). A
``logd-claim@32473`` element from a sender not in ``[identity] may_claim``
is not read: it stays in ``fields`` and no ``relay_uid`` appears. Forwarded,
a sender's own ``logd@32473`` element is moved into ``logd-fields@32473``,
so the collector sees exactly one trusted element, the daemon's.
"""

from __future__ import annotations

import re

import orjson
import pytest

from tests._daemon import DaemonProcess
from tests.attacks._helpers import (
    ATTACKER,
    Bystander,
    assert_contiguous,
    send_as,
    wait_records,
)
from tests.attacks.conftest import AttackRow
from trio_logd.forward.rfc5424 import encode_record
from trio_logd.record import TRUSTED_KEYS

pytestmark = pytest.mark.usefixtures("as_root")

TRUSTED_FAKES: dict[str, object] = {
    k: 0 for k in sorted(TRUSTED_KEYS - {"ts", "event", "exe", "comm", "reason"})
}
TRUSTED_FAKES.update(ts="1999-01-01T00:00:00.000000Z", event="started", exe="/sbin/init")
TRUSTED_FAKES.update(comm="systemd", reason="rate")
FRAMES = [
    # claimed pid, host, app, timestamp in both header formats
    b"<38>1 2020-01-01T00:00:00Z otherhost sshd 1 ID47 - Accepted password for root",
    b"<38>Jan  1 00:00:00 otherhost sshd[1]: Accepted password for root",
    # every trusted key, and a claim, inside @cee
    b"<13>app: @cee: "
    + orjson.dumps({**TRUSTED_FAKES, "msg": "cee", "logd-claim@32473": {"uid": 0, "pid": 1}}),
    # the same in RFC 5424 structured data, claim element included
    b'<13>1 - - app - - [logd@32473 uid="0" gid="0" pid="1" seq="1"]'
    b'[logd-claim@32473 uid="0" pid="1"][origin uid="0"] sd',
]


def test_forged_identity_and_trusted_keys(daemon: DaemonProcess, attack_report: AttackRow) -> None:
    """Every claim stays a claim; the kernel's uid/gid/pid are on every record."""
    by = Bystander(daemon)
    by.send(10)
    sender = send_as(daemon, ATTACKER, [f + b"\n" for f in FRAMES])
    by.send(10)
    recs = wait_records(daemon, ATTACKER, len(FRAMES))
    lost = len(FRAMES) - len(recs) + by.lost()
    attack_report.report(
        "claimed pid/uid/host/app, fake trusted keys (@cee, 5424 SD, logd-claim)",
        "kernel ids stamped; claims kept as claims; non-relay logd-claim stays in fields",
        lost,
    )
    pid = sender["pid"]
    for r in recs:
        assert (r["uid"], r["gid"], r["pid"]) == (ATTACKER, ATTACKER, pid)
        assert "relay_uid" not in r
        assert "event" not in r
        assert "conn_uid" not in r
    h5424, h3164, cee, sd = recs
    assert (h5424["host"], h5424["app"], h5424["claimed_pid"], h5424["msgid"]) == (
        "otherhost", "sshd", 1, "ID47",
    )  # fmt: skip
    assert h5424["claimed_ts"] == "2020-01-01T00:00:00Z"
    assert (h3164["host"], h3164["app"], h3164["claimed_pid"]) == ("otherhost", "sshd", 1)
    assert (h3164["fac"], h3164["sev"]) == ("auth", "info")
    assert cee["msg"] == "cee"
    assert cee["fields"] == {**TRUSTED_FAKES, "logd-claim@32473": {"uid": 0, "pid": 1}}
    assert cee["ts"] != TRUSTED_FAKES["ts"]
    assert sd["fields"] == {
        "logd@32473": {"uid": "0", "gid": "0", "pid": "1", "seq": "1"},
        "logd-claim@32473": {"uid": "0", "pid": "1"},
        "origin": {"uid": "0"},
    }
    assert_contiguous(daemon.records(ATTACKER))
    assert all("event" in r for r in daemon.records(0))  # root: the daemon's records only
    # forwarded: exactly one trusted element, the daemon's, naming the kernel's ids
    stored = [line for line in _lines(daemon) if b'"msg":"sd"' in line]
    wire = encode_record(stored[0], "thishost").decode()
    assert len(re.findall(r"\[logd@32473 ", wire)) == 1
    trusted = re.search(r"\[logd@32473 ([^\]]*)\]", wire)
    assert trusted is not None
    assert f'uid="{ATTACKER}"' in trusted.group(1)
    assert f'pid="{pid}"' in trusted.group(1)
    assert lost == 0
    by.assert_intact()


def _lines(daemon: DaemonProcess) -> list[bytes]:
    return (daemon.log_dir / str(ATTACKER) / "current.jsonl").read_bytes().splitlines()
