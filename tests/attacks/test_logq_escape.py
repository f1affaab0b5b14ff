"""``logq`` arguments and control requests that try to read what is not theirs.

Defined outcome: a uid is an ASCII decimal number (0..4294967294) or a user
name; anything else (``-1``, ``1000/../0``, ``../0``, huge numbers, other
scripts' digits) is a usage error (exit 2, one line, no traceback). The
store path is built from integers only. Online, the daemon authorizes by
``SO_PEERCRED``: an ordinary uid asking for uid 0 (in any spelling of the request)
gets an error and not one record. Offline (``--directory``), symlinks
inside the store (a uid directory, a current or rotated file) are refused
with a message naming them; the directory named by ``--directory`` itself
is the caller's choice and is followed; file permissions decide the rest.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from tests._daemon import DaemonProcess
from tests.attacks._helpers import (
    ATTACKER,
    BYSTANDER,
    THIRD,
    Bystander,
    run_child,
    send_as,
    wait_records,
)
from tests.attacks.conftest import AttackRow
from trio_logd.cli import logq
from trio_logd.protocol.control import GREETING

pytestmark = pytest.mark.usefixtures("as_root")

USAGE = [
    ["--uid", "-1"],
    ["--uid", f"{ATTACKER}/../0"],
    ["--uid", "../0"],
    ["--uid", "0/../../etc"],
    ["--uid", "99999999999999999999"],
    ["--uid", "4294967295"],
    ["--uid", "٠"],  # Arabic-Indic zero: a digit to str.isdigit, not to us
    ["--pid", "-1"],
    ["-n", "99999999999999999999"],
    ["--since", "@99999999999999999999"],
    ["--since", "../../etc/passwd"],
]
#: control requests of the attacker that try to reach uid 0's records
REQUESTS: list[dict[str, Any]] = [
    {"uids": [0]},
    {"uids": [-1]},
    {"uids": ["0"]},
    {"uids": [0.0]},
    {"uids": [True]},
    {"uids": [2**64]},
    {"uids": "../0"},
    {"uids": [ATTACKER, 0]},
    {"all": "yes"},
    {"all": True},
    {"uids": [ATTACKER], "all": 1},
]


def _logq(uid: int, *argv: str) -> tuple[int, str, str]:
    got = run_child(uid, lambda: logq.main(["--no-pager", *argv]))
    return got.rc, got.out, got.err


def _ask(daemon: DaemonProcess, args: dict[str, Any]) -> list[dict[str, Any]]:
    """Send one query request, as raw JSON (numbers of any size), as the attacker."""
    line = json.dumps({"op": "query", **args}).encode() + b"\n"

    def child() -> list[dict[str, Any]]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(daemon.control)
            s.settimeout(10)
            data = b""
            while b"\n" not in data:  # the greeting comes first
                data += s.recv(65536)
            assert data.startswith(GREETING), data
            s.sendall(line)
            data = data[len(GREETING) :]
            while chunk := s.recv(65536):
                data += chunk
        return [json.loads(x) for x in data.splitlines()]

    got = run_child(ATTACKER, child)
    assert got.rc == 0, got.err
    answers: list[dict[str, Any]] = got.value
    return answers


def _farm(root: Path, store: Path) -> Path:
    """A --directory of symlinks into the real store and to /etc/passwd."""
    farm = root / "farm"
    farm.mkdir()
    (farm / "0").symlink_to(store / "0")  # a uid directory that is a symlink
    (farm / str(BYSTANDER)).mkdir()
    (farm / str(BYSTANDER) / "current.jsonl").symlink_to("/etc/passwd")
    (farm / str(THIRD)).mkdir()
    rotated = "0000000000000001-0000000000000001.20261127T204740Z-20261127T204740Z.jsonl"
    (farm / str(THIRD) / rotated).symlink_to(store / "0" / "current.jsonl")
    return farm


def test_logq_escapes(daemon: DaemonProcess, attack_report: AttackRow, root_dir: Path) -> None:
    """Path-like, negative and huge uids, crafted control requests, a symlink farm: refused."""
    by = Bystander(daemon)
    by.send(10)
    with daemon.connect() as s:
        s.sendall(b"<13>app: root secret\n")
    wait_records(daemon, 0, 1)
    send_as(daemon, ATTACKER, [b"<13>app: mine\n"])
    config = ["--config", str(daemon.config)]
    usage = [_logq(ATTACKER, *config, *argv) for argv in USAGE]
    online = _logq(ATTACKER, *config, "--uid", "0")
    answers = [_ask(daemon, args) for args in REQUESTS]
    offline_store = _logq(ATTACKER, "--directory", str(daemon.log_dir), "--uid", "0")
    farm = _farm(root_dir, daemon.log_dir)
    farmed = [
        _logq(0, "--directory", str(farm), "--uid", u) for u in ("0", str(BYSTANDER), str(THIRD))
    ]
    by.send(10)
    lost = by.lost()
    attack_report.report(
        "logq escapes (../, -1, huge uids, crafted requests, symlink farm)",
        "usage error (2) / denied (1); no record of another uid; symlinks in a store refused",
        lost,
    )
    for argv, (rc, out, err) in zip(USAGE, usage, strict=True):
        assert (rc, out) == (2, ""), argv
        assert err.startswith("logq: "), (argv, err)
        assert err.count("\n") == 1, (argv, err)
    assert online[0] == 1, online
    assert online[2] == (
        f"logq: permission denied: uid {ATTACKER} may not read uid 0 (root) (root and members "
        "of the [access] readers groups may: adm)\n"
    )
    for args, lines in zip(REQUESTS, answers, strict=True):
        kinds = [a["type"] for a in lines]
        assert kinds == ["error"], (args, lines)
        assert lines[0]["code"] in ("denied", "invalid"), (args, lines)
    assert offline_store[0] == 1
    assert "Permission denied" in offline_store[2]
    (rc0, out0, err0), (rc1, out1, err1), (rc2, out2, err2) = farmed
    assert (rc0, out0) == (1, "")
    assert err0 == f"logq: {farm}/0: not a directory (a symlink?); refusing to follow it\n"
    assert (rc1, out1, rc2, out2) == (1, "", 1, "")
    symlink = "damaged: a symlink, not a file: not followed"
    assert f"farm/{BYSTANDER}/current.jsonl: {symlink}" in err1
    assert f"farm/{THIRD}/0000000000000001-0000000000000001." in err2
    assert symlink in err2
    for _rc, out, err in [*usage, online, offline_store, *farmed]:
        assert "Traceback" not in err
        assert "secret" not in out
    assert lost == 0
    by.assert_intact()
    assert [r["msg"] for r in wait_records(daemon, ATTACKER, 1)] == ["mine"]
    assert os.path.exists(daemon.log_dir / "0" / "current.jsonl")
