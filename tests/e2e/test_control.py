"""End to end: a reload puts new ``[control]`` caps in force; status shows the counts."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from tests._daemon import DaemonProcess, world
from tests.attacks._helpers import free_uids, run_child
from tests.e2e._limits_helpers import rewrite_config
from trio_logd.protocol.control import GREETING

CONTROL = '[control]\nmax_connections_per_uid = {n}\nfirst_byte_timeout = "30s"\n'


@pytest.fixture
def daemon_() -> Iterator[DaemonProcess]:
    """A daemon whose config the test rewrites."""
    with world() as root:
        d = DaemonProcess(root, extra=CONTROL.format(n=8)).start()
        try:
            yield d
        finally:
            rc = d.stop()
            assert rc == 0, d.stderr()


def _first_lines(path: str, n: int) -> list[dict[str, Any]]:
    """Open *n* control connections at once; the first line each got."""
    socks = []
    lines = []
    for _ in range(n):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(path)
        socks.append(s)
        data = b""
        while b"\n" not in data and (chunk := s.recv(4096)):
            data += chunk
        lines.append(orjson.loads(data.split(b"\n", 1)[0]))
    for s in socks:
        s.close()
    return lines


@pytest.mark.usefixtures("as_root")
def test_reload_applies_the_control_caps(daemon_: DaemonProcess) -> None:
    """After a reload to max_connections_per_uid = 1, a uid's second connection is refused
    with the new figure; status shows the cap and the refusal."""
    d = daemon_
    (uid,) = free_uids(1)
    rewrite_config(d, extra=CONTROL.format(n=1))
    out = subprocess.run(d.command("reload", "--json"), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["applied"] == ["[control] max_connections_per_uid"]
    got = run_child(uid, lambda: _first_lines(d.control, 2))
    assert got.rc == 0, got.err
    first, second = got.value
    assert first == orjson.loads(GREETING)
    assert (second["type"], second["code"], second["limit"]) == (
        "error",
        "too_many_connections",
        "max_connections_per_uid",
    )
    assert f"too many control connections of uid {uid}" in second["error"]
    assert "max_connections_per_uid = 1" in second["error"]
    status = subprocess.run(d.command("status", "--json"), capture_output=True, text=True)
    control = json.loads(status.stdout)["control"]
    assert (control["max_connections_per_uid"], control["refused"]) == (
        1,
        {"max_connections_per_uid": 1},
    )
    text = subprocess.run(d.command("status"), capture_output=True, text=True).stdout
    assert "refused: max_connections_per_uid 1" in text
