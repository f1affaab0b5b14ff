"""End to end: logq's field matches, -u/--user-unit, -t, -F and --disk-usage against a real
daemon (and --directory), as several uids: a user's matches reach only her own records."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests._daemon import PYTHON, DaemonProcess, world
from tests.e2e.test_logq import (
    ALICE,
    BOB,
    MAY,
    ROOT,
    Result,
    _Lines,
    cfg,
    logq_as,
    send_as,
)
from trio_logd.record import encode_line, format_ts
from trio_logd.store.writer import StoreWriter

pytestmark = pytest.mark.usefixtures("as_root")

#: An hour ago: recent enough that the daemon does not rotate (and compress) the files
#: by age while a test compares their sizes.
T0 = float(int(time.time()) - 3600)

#: ALICE's records: (trusted stamp fields, claims); seq is the position + 1.
ALICE_RECORDS: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({"pid": 7, "unit": "web.service", "slice": "system.slice"},
     {"app": "web", "msg": "a1", "fields": {"user": "bob", "n": 1}}),
    ({"pid": 7, "unit": "api.service", "slice": "system.slice"},
     {"app": "api", "msg": "a2", "fields": {"n": 2}}),
    ({"pid": 8, "unit": "web.service", "slice": "system.slice"},
     {"app": "web", "msg": "a3", "fields": {"n": "1"}}),
    ({"pid": 9, "user_unit": "timer.service", "user_slice": "app.slice"},
     {"app": "cron", "msg": "a4"}),
    ({"pid": 7}, {"app": "web", "msg": "a5", "fields": {"user": "carol"}}),
    ({"pid": 10, "unit": "sshd.service", "slice": "system.slice"},
     {"app": "sshd", "msg": "a6", "fields": {"secret": "mine"}}),
]  # fmt: skip
#: BOB's records: what ALICE must not learn anything about.
BOB_RECORDS: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({"pid": 20, "unit": "bobs.service", "slice": "system.slice"},
     {"app": "bobs", "msg": "b1", "fields": {"secret": "hunter2"}}),
    ({"pid": 21, "unit": "web.service"}, {"app": "web", "msg": "b2", "fields": {"n": 1}}),
]  # fmt: skip


def _line(uid: int, seq: int, stamp: dict[str, Any], claims: dict[str, Any]) -> bytes:
    trusted = orjson.dumps({"uid": uid, "gid": uid, **stamp})[1:-1]
    sender = orjson.dumps({"fac": "user", "sev": "info", **claims})[1:-1]
    return encode_line(format_ts(T0 + seq).encode(), seq, trusted, sender)


def _write(log_dir: Path, uid: int, recs: list[tuple[dict[str, Any], dict[str, Any]]]) -> None:
    writer = StoreWriter(str(log_dir))
    writer.open()
    try:
        writer.append(uid, [_line(uid, i + 1, *r) for i, r in enumerate(recs)], len(recs))
    finally:
        writer.close()


@pytest.fixture
def store() -> Iterator[DaemonProcess]:
    """A daemon over a store written by the store's writer: ALICE's and BOB's attributed records."""
    with world() as root:
        d = DaemonProcess(root)
        d.log_dir.parent.mkdir(parents=True)
        _write(d.log_dir, ALICE, ALICE_RECORDS)
        _write(d.log_dir, BOB, BOB_RECORDS)
        d.start()
        try:
            yield d
        finally:
            assert d.stop() == 0, d.stderr()


def _msgs(r: Result) -> list[str]:
    assert (r.rc, r.err) == (0, ""), r.err
    return [rec["msg"] for rec in r.records()]


def _alice(d: DaemonProcess, *argv: str) -> list[str]:
    """ALICE's query's messages, through the daemon, checked against --directory (as root)."""
    online = _msgs(logq_as(ALICE, ALICE, "-o", "json", *argv, *cfg(d)))
    offline = logq_as(ROOT, 0, "-o", "json", "--uid", str(ALICE), *argv, "-D", str(d.log_dir))
    assert _msgs(offline) == online
    return online


def test_field_matches_or_and_plus(store: DaemonProcess) -> None:
    """Same field: OR; different fields: AND; '+': OR of groups; integers as integers."""
    d = store
    assert _alice(d, "app=web") == ["a1", "a3", "a5"]
    assert _alice(d, "app=web", "app=cron") == ["a1", "a3", "a4", "a5"]
    assert _alice(d, "app=web", "pid=7") == ["a1", "a5"]
    assert _alice(d, "app=web", "pid=007", "+", "fields.n=2") == ["a1", "a2", "a5"]
    assert _alice(d, "fields.n=1") == ["a1", "a3"]  # integer 1 and the string "1"
    assert _alice(d, "fields.n=01") == ["a1"]  # an integer equals any spelling of it
    assert _alice(d, "fields.user=carol", "+", "unit=api.service") == ["a2", "a5"]
    assert _alice(d, "-n", "1", "app=web") == ["a5"]
    assert _alice(d, "nosuch=1") == []
    assert _alice(d, "nosuch=1", "+", "app=cron") == ["a4"]
    r = logq_as(ALICE, ALICE, "app", *cfg(d))
    assert (r.rc, r.out) == (2, "")
    assert "invalid match 'app': expected FIELD=VALUE" in r.err


def test_units_user_units_and_identifiers(store: DaemonProcess) -> None:
    """-u (NAME means NAME.service; globs; slices), --user-unit, -t: each OR, all AND."""
    d = store
    assert _alice(d, "-u", "web") == ["a1", "a3"]
    assert _alice(d, "-u", "web", "-u", "sshd.service") == ["a1", "a3", "a6"]
    assert _alice(d, "--unit", "*i.service") == ["a2"]
    assert _alice(d, "-u", "system.slice") == ["a1", "a2", "a3", "a6"]
    assert _alice(d, "-u", "nosuch") == []
    assert _alice(d, "--user-unit", "timer") == ["a4"]
    assert _alice(d, "--user-unit", "app.slice", "-u", "api") == ["a2", "a4"]
    assert _alice(d, "-t", "web") == ["a1", "a3", "a5"]
    assert _alice(d, "-t", "web", "--identifier", "sshd") == ["a1", "a3", "a5", "a6"]
    assert _alice(d, "-t", "web", "-u", "system.slice", "pid=8") == ["a3"]


def test_field_values(store: DaemonProcess) -> None:
    """-F prints each value of the selection once, online and offline alike."""
    d = store
    for argv, expected in [
        (("-F", "unit"), "web.service\napi.service\nsshd.service\n"),
        (("-F", "fields.n"), "1\n2\n"),  # the integer 1 and the string "1" print alike
        (("-F", "app", "pid=7"), "web\napi\n"),
        (("--field", "user_unit"), "timer.service\n"),
        (("-F", "nosuch"), ""),
    ]:
        online = logq_as(ALICE, ALICE, *argv, *cfg(d))
        assert (online.rc, online.out, online.err) == (0, expected, "")
        offline = logq_as(ROOT, 0, *argv, "--uid", str(ALICE), "-D", str(d.log_dir))
        assert (offline.rc, offline.out) == (0, expected)
    r = logq_as(ROOT, 0, "-F", "unit", "--all", *cfg(d))
    assert sorted(r.out.splitlines()) == [
        "api.service",
        "bobs.service",
        "sshd.service",
        "web.service",
    ]
    r = logq_as(ALICE, ALICE, "-F", "unit", "-n", "3", *cfg(d))
    assert r.rc == 2
    assert "--field lists every value" in r.err


@pytest.mark.parametrize(
    ("probe", "nobody"),
    [
        (("fields.secret=hunter2",), ("fields.secret=nobody",)),
        ((f"uid={BOB}",), ("uid=4",)),
        (("unit=bobs.service",), ("unit=nobody.service",)),
        (("-u", "bobs"), ("-u", "nobody")),
        (("-t", "bobs"), ("-t", "nobody")),
        (("-F", "fields.secret"), ("-F", "fields.nobody")),
    ],
)
def test_matches_and_field_values_do_not_reach_other_uids(
    store: DaemonProcess, probe: tuple[str, ...], nobody: tuple[str, ...]
) -> None:
    """What ALICE asks about BOB's records answers as a value nobody has does: the same
    output, exit code and stderr, the same files and bytes read; naming BOB is refused."""
    d = store
    asked = logq_as(ALICE, ALICE, *probe, "--stats", *cfg(d))
    control = logq_as(ALICE, ALICE, *nobody, "--stats", *cfg(d))
    expected = "mine\n" if probe[0] == "-F" else ""  # her own secret, none of BOB's
    assert (asked.rc, asked.out, control.rc, control.out) == (0, expected, 0, "")
    assert asked.err.replace("records=1", "records=0") == control.err
    refused = logq_as(ALICE, ALICE, "--uid", str(BOB), *probe, *cfg(d))
    assert (refused.rc, refused.out, refused.err) == (
        1,
        "",
        f"logq: permission denied: uid {ALICE} may not read uid {BOB} {MAY}\n",
    )


def test_field_uid_lists_only_the_callers_own(store: DaemonProcess) -> None:
    """-F uid and -F unit as a user: her own uid and units only."""
    r = logq_as(ALICE, ALICE, "-F", "uid", *cfg(store))
    assert (r.rc, r.out, r.err) == (0, f"{ALICE}\n", "")
    r = logq_as(ALICE, ALICE, "-F", "slice", *cfg(store))
    assert (r.rc, r.out, r.err) == (0, "system.slice\n", "")


def test_matches_on_live_records_and_with_follow(store: DaemonProcess) -> None:
    """Records the daemon attributes itself (no unit here) match by app and pid, and -f
    with matches shows only the matching live records; -u matches none of them."""
    d = store
    send_as(d, ALICE, b"<14>web: live one", b"<14>api: live two")
    d.wait_records(ALICE, len(ALICE_RECORDS) + 2)
    assert _alice(d, "-t", "web", "--since", f"@{T0 + 100}") == ["live one"]
    assert _alice(d, "app=api", "+", "app=web", "--since", f"@{T0 + 100}") == [
        "live one",
        "live two",
    ]
    live = d.records(ALICE)[-2:]
    assert all("unit" not in r for r in live)
    assert _alice(d, "-u", "*", "--since", f"@{T0 + 100}") == []
    send_as(d, ROOT, b"<14>web: before")
    d.wait_records(ROOT, 1, where=lambda r: r.get("msg") == "before")
    with subprocess.Popen(
        [PYTHON, "-m", "trio_logd.cli.logq", "-f", "-n", "1", "-o", "json",
         "app=web", "+", "fields.k=1", *cfg(d)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    ) as proc:  # fmt: skip
        lines = _Lines(proc)
        try:
            lines.wait_for(b"before", 20)
            send_as(d, ROOT, b"<14>api: skipped", b"<14>web: shown", b'<14>x: @cee: {"k":1}')
            lines.wait_for(b'"k":1', 10)
            send_as(d, ROOT, b"<14>web: last")
            lines.wait_for(b"last", 10)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    assert [orjson.loads(x)["app"] for x in lines.lines] == ["web", "web", "x", "web"]


def _files_bytes(log_dir: Path, uid: int) -> int:
    return sum(p.stat().st_size for p in (log_dir / str(uid)).iterdir() if p.is_file())


def test_disk_usage(store: DaemonProcess) -> None:
    """--disk-usage: a user's own bytes (another uid's refused); every uid's for root;
    the same offline."""
    d = store

    r = logq_as(ALICE, ALICE, "--disk-usage", "-o", "json", *cfg(d))
    assert r.rc == 0, r.err
    mine = _files_bytes(d.log_dir, ALICE)
    assert orjson.loads(r.out) == {"uids": [{"uid": ALICE, "bytes": mine}], "total": mine}
    r = logq_as(ALICE, ALICE, "--disk-usage", *cfg(d))
    assert r.out == f"Records of uid {ALICE} take up {mine / 1024:.1f}K in the file system.\n"
    refused = logq_as(ALICE, ALICE, "--disk-usage", "--uid", str(BOB), *cfg(d))
    assert (refused.rc, refused.out, refused.err) == (
        1,
        "",
        f"logq: permission denied: uid {ALICE} may not read uid {BOB} {MAY}\n",
    )
    root = logq_as(ROOT, 0, "--disk-usage", "-o", "json", *cfg(d))
    everyone = {item["uid"]: item["bytes"] for item in orjson.loads(root.out)["uids"]}
    assert {ALICE, BOB} <= set(everyone)
    assert everyone[BOB] == _files_bytes(d.log_dir, BOB)
    bob = logq_as(ROOT, 0, "--disk-usage", "--uid", str(BOB), "-o", "json", *cfg(d))
    assert orjson.loads(bob.out)["total"] == everyone[BOB]
    offline = logq_as(ROOT, 0, "--disk-usage", "--all", "-o", "json", "-D", str(d.log_dir))
    assert {i["uid"]: i["bytes"] for i in orjson.loads(offline.out)["uids"]}[BOB] == everyone[BOB]
    assert os.path.isdir(d.log_dir / str(ALICE))
