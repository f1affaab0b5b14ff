"""End to end: a real daemon forwards to a real rsyslogd (from Debian) over TCP, without loss."""

from __future__ import annotations

import os
import socket
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._collector import Rsyslog
from tests._daemon import DaemonProcess, poll, run_as, world
from tests._uids import free_uids
from tests.e2e._forward import (
    forward_stats,
    forward_toml,
    forwarded,
    needs_rsyslog,
    send,
    wait_numbers,
)
from trio_logd.forward import CLAIMS_SD_ID, FIELDS_SD_ID, SD_ID

ROOT = os.geteuid()
(ALICE,) = free_uids(1)
#: Trusted fields read from the sender's cgroup and /proc (this test's: whatever they are).
ATTRIBUTION = ("cgroup", "unit", "slice", "user_unit", "user_slice", "loginuid", "session")

pytestmark = needs_rsyslog


@pytest.fixture
def root() -> Iterator[Path]:
    with world() as d:
        yield d


@pytest.fixture
def collector(root: Path) -> Iterator[Rsyslog]:
    with Rsyslog(root / "collector") as rs:
        yield rs


def test_numbered_records_arrive_with_their_trusted_fields(root: Path, collector: Rsyslog) -> None:
    """Records stored by the daemon reach rsyslog once each, in seq order, kernel fields in SD."""
    with DaemonProcess(root, extra=forward_toml("central", collector.address)) as d:
        send(d, 0, 300)
        msgs = wait_numbers(collector, ROOT, 300)
        stored = [r for r in d.records(ROOT) if "event" not in r]
    assert [m["msg"] for m in msgs] == [f"n={i}" for i in range(300)]
    assert [int(m["sd"][SD_ID]["seq"]) for m in msgs] == [r["seq"] for r in stored]
    first, rec = msgs[0], stored[0]
    assert first["sd"][SD_ID] == {
        "uid": str(ROOT),
        "gid": str(os.getegid()),
        "pid": str(os.getpid()),
        "seq": str(rec["seq"]),
        "exe": rec["exe"],
        "comm": rec["comm"],
        **{k: str(rec[k]) for k in ATTRIBUTION if k in rec},
    }
    assert "cgroup" in rec
    assert (first["procid"], first["app"], first["pri"]) == (os.getpid(), "numbers", "user.info")
    assert first["ts"] == rec["ts"]
    assert first["host"] == socket.gethostname()


def test_collector_killed_and_restarted_mid_stream(root: Path, collector: Rsyslog) -> None:
    """Collector killed mid-stream: after its restart every record arrives; copies share a seq."""
    toml = forward_toml("central", collector.address, commit_delay="1s")
    with DaemonProcess(root, extra=toml) as d:
        send(d, 0, 3000)
        poll(lambda: len(collector.lines()) >= 500, timeout=30)
        collector.kill()
        send(d, 3000, 2000)  # stored while the collector is down
        d.wait_records(ROOT, 5000)
        collector.start()
        msgs = wait_numbers(collector, ROOT, 5000, timeout=60)
        stats = forward_stats(d)[0]
    by_seq: dict[str, set[str]] = defaultdict(set)
    for m in msgs:
        by_seq[m["sd"][SD_ID]["seq"]].add(m["msg"])
    assert len(by_seq) == 5000
    assert all(len(texts) == 1 for texts in by_seq.values())  # a copy is the same record
    copies = sum(Counter(m["sd"][SD_ID]["seq"] for m in msgs).values()) - 5000
    assert stats["connects"] >= 2
    # killed with records not yet committed (commit_delay): those were sent again
    assert stats["resent_records"] > 0
    assert stats["resent_records"] >= copies
    assert stats["last_error"] is not None


@pytest.mark.parametrize("stop", ["sigterm", "kill -9"])
def test_cursor_survives_a_daemon_restart(root: Path, collector: Rsyslog, stop: str) -> None:
    """A restarted daemon goes on from its cursor: nothing already delivered is sent again."""
    toml = forward_toml("central", collector.address)
    cursor_file = root / "var" / "log" / ".forward" / "central.cursor"
    with DaemonProcess(root, extra=toml) as d:
        send(d, 0, 200)
        wait_numbers(collector, ROOT, 200)
        poll(lambda: forward_stats(d)[0]["lag_records"] == 0, timeout=30)
        first_run = forward_stats(d)[0]
        if stop == "kill -9":  # the cursor on disk is all there is: wait for its save
            poll(lambda: f'"{ROOT}":201' in cursor_file.read_text(), timeout=30)
            d.kill9()
    d2 = DaemonProcess(root, extra=toml)
    with d2:
        send(d2, 200, 100)
        wait_numbers(collector, ROOT, 300)
        poll(lambda: forward_stats(d2)[0]["lag_records"] == 0, timeout=30)
        second_run = forward_stats(d2)[0]
    seqs = Counter(m["sd"][SD_ID]["seq"] for m in collector.messages())
    copies = {seq: n for seq, n in seqs.items() if n > 1}
    assert (len(seqs), copies) == (300 + 2, {}), (first_run, second_run)  # + 2 `started`
    assert f'"{ROOT}":{len(d2.records(ROOT))}' in cursor_file.read_text()


@pytest.mark.usefixtures("as_root")
def test_filters_per_destination(root: Path) -> None:
    """One destination gets err and worse of every uid, the other all of alice's records."""
    with Rsyslog(root / "errors") as errors, Rsyslog(root / "alice") as alice_rs:
        toml = forward_toml("errors", errors.address, min_severity="err") + forward_toml(
            "alice", alice_rs.address, uids=[ALICE]
        )
        with DaemonProcess(root, extra=toml) as d:

            def as_alice() -> None:
                with d.connect() as s:
                    s.sendall(b"<11>alice: a-err\n<14>alice: a-info\n")

            run_as(ALICE, ALICE, as_alice)
            with d.connect() as s:
                s.sendall(b"<11>root: r-err\n<14>root: r-info\n")
            d.wait_records(ALICE, 2)
            d.wait_records(ROOT, 2)
            poll(lambda: all(f["lag_records"] == 0 for f in forward_stats(d)))
        got_errors = sorted(m["msg"] for m in errors.messages())
        got_alice = [(m["sd"][SD_ID]["uid"], m["msg"]) for m in alice_rs.messages()]
    assert got_errors == ["a-err", "r-err"]
    assert got_alice == [(str(ALICE), "a-err"), (str(ALICE), "a-info")]


@pytest.mark.usefixtures("as_root")
def test_forged_identity_stays_a_claim(root: Path, collector: Rsyslog) -> None:
    """Alice claims uid 0, pid 1 and another host: the collector sees her kernel identity."""
    with DaemonProcess(root, extra=forward_toml("central", collector.address)) as d:
        r, w = os.pipe()

        def as_alice() -> None:
            os.write(w, str(os.getpid()).encode())
            forged = (
                b"<10>1 2020-01-01T00:00:00Z root-server sshd 1 - "
                b'[logd@32473 uid="0" gid="0" pid="1" seq="1"] I am root'
            )
            with d.connect() as s:
                s.sendall(b"%d %s" % (len(forged), forged))

        run_as(ALICE, ALICE, as_alice)
        os.close(w)
        alice_pid = int(os.read(r, 64))
        os.close(r)
        (m,) = poll(lambda: forwarded(collector, ALICE))
    assert m["sd"][SD_ID] == {
        "uid": str(ALICE),
        "gid": str(ALICE),
        "pid": str(alice_pid),
        "seq": "1",
        **{k: v for k, v in m["sd"][SD_ID].items() if k in ("exe", "comm", *ATTRIBUTION)},
    }
    assert m["procid"] == alice_pid
    assert m["sd"][CLAIMS_SD_ID] == {
        "host": "root-server",
        "claimed_pid": "1",
        "claimed_ts": "2020-01-01T00:00:00Z",
    }
    assert m["sd"][FIELDS_SD_ID] == {"logd@32473": '{"uid":"0","gid":"0","pid":"1","seq":"1"}'}
    assert (m["app"], m["pri"], m["msg"]) == ("sshd", "user.crit", "I am root")
