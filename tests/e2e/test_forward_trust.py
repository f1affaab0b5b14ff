"""End to end: forged trusted elements never reach real collectors that normalise names.

Alice (uid 1000) sends SD elements and ``@cee:`` keys named like ours in other
cases (``LOGD@32473``), with sub-identifiers (``logd@32473.1``), and ``@cee:``
text hidden in a message. The daemon forwards them to rsyslog running
``mmpstrucdata`` (SD-IDs lowercased, its default) and ``mmjsonparse`` (an
``@cee:`` MSG into ``$!``), and to syslog-ng's RFC 5424 parser (whose
``format-json`` nests dotted names, so ``logd@32473.1`` would land inside
``logd@32473``). At each, every message's trusted element carries the
kernel's uid and pid, and nothing else reads as structured data of ours.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests._collector import Rsyslog, SyslogNg, syslog_ng_missing
from tests._daemon import DaemonProcess, poll, run_as, world
from tests.e2e._forward import forward_toml, needs_rsyslog

ALICE = 1000
HIDDEN = orjson.dumps({"rfc5424-sd": {"logd@32473": {"uid": "0"}}, "logd@32473": {"uid": "0"}})
FORGERIES = [
    b'<13>1 - - app - - [LOGD@32473 uid="0" gid="0" pid="1"] upper',
    b'<13>1 - - app - - [Logd@32473 uid="0" pid="1"] capital',
    b'<13>1 - - app - - [lOgD@32473 uid="0" pid="1"][x@1 a="b"] mixed',
    b'<13>1 - - app - - [logd@32473.1 uid="0" pid="1"] sub-identifier',
    b'<13>1 - - app - - [LOGD-CLAIMS@32473 host="x"][logd-fields@32473 uid="0"] ours too',
    b"<13>app: @cee: " + orjson.dumps({"LOGD@32473": {"uid": "0", "pid": "1"}, "msg": "cee"}),
    b"<13>app: @cee: " + orjson.dumps({"msg": "@cee: " + HIDDEN.decode()}),
    b"<13>1 - - app - - -  @cee: " + HIDDEN,
]


@pytest.fixture
def root() -> Iterator[Path]:
    with world() as d:
        yield d


def _send_as_alice(d: DaemonProcess) -> int:
    r, w = os.pipe()

    def as_alice() -> None:
        os.write(w, str(os.getpid()).encode())
        with d.connect() as s:
            s.sendall(b"".join(f + b"\n" for f in FORGERIES))

    run_as(ALICE, ALICE, as_alice)
    os.close(w)
    pid = int(os.read(r, 64))
    os.close(r)
    return pid


@needs_rsyslog
def test_rsyslog_mmpstrucdata_and_mmjsonparse_see_the_kernels_ids(root: Path) -> None:
    """mmpstrucdata (lowercasing) and mmjsonparse find one logd@32473, the kernel's, per message."""
    with (
        Rsyslog(root / "rsyslog", parse=True) as rs,
        DaemonProcess(root, extra=forward_toml("central", rs.address)) as d,
    ):
        pid = _send_as_alice(d)

        def arrived() -> list[dict[str, Any]] | None:
            # every record but the daemon's own (its "started" event) is alice's
            mine = [t for t in rs.trees() if "event" not in t["rfc5424-sd"]["logd@32473"]]
            return mine if len(mine) >= len(FORGERIES) else None

        trees = poll(arrived, timeout=30)
    assert len(trees) == len(FORGERIES)
    for tree in trees:
        trusted = tree["rfc5424-sd"]["logd@32473"]
        ids = (trusted["uid"], trusted["gid"], trusted["pid"])
        assert ids == (str(ALICE), str(ALICE), str(pid))
        assert set(tree) <= {"rfc5424-sd", "msg"}, tree  # no @cee object read from a MSG
        assert set(tree["rfc5424-sd"]) <= {"logd@32473", "logd-fields@32473", "x@1"}, tree


@needs_rsyslog
@pytest.mark.skipif(syslog_ng_missing() is not None, reason=str(syslog_ng_missing()))
def test_syslog_ng_sees_the_kernels_ids(root: Path) -> None:
    """syslog-ng's RFC 5424 parser and format-json find logd@32473 with the kernel's uid and pid."""
    with (
        SyslogNg(root / "syslog-ng") as ng,
        DaemonProcess(root, extra=forward_toml("central", ng.address)) as d,
    ):
        pid = _send_as_alice(d)

        def arrived() -> list[dict[str, Any]] | None:
            mine = [m for m in ng.messages() if "event" not in m["_SDATA"]["logd@32473"]]
            return mine if len(mine) >= len(FORGERIES) else None

        msgs = poll(arrived, timeout=30)
    assert len(msgs) == len(FORGERIES)
    for m in msgs:
        trusted = m["_SDATA"]["logd@32473"]
        assert (trusted["uid"], trusted["pid"]) == (str(ALICE), str(pid)), m
        assert m["PID"] == str(pid)
        assert {k.lower() for k in m["_SDATA"]} <= {"logd@32473", "logd-fields@32473", "x@1"}, m
