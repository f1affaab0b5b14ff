"""End to end: forwarding over TLS (RFC 5425) to a real rsyslogd with a test CA."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._collector import Rsyslog, TlsServer
from tests._daemon import DaemonProcess, poll, world
from tests._tls import TestCA
from tests.e2e._forward import (
    forward_stats,
    forward_toml,
    needs_rsyslog,
    send,
    wait_numbers,
)
from trio_logd.control_client import request_one

ROOT = os.geteuid()

pytestmark = needs_rsyslog


@pytest.fixture
def root() -> Iterator[Path]:
    with world() as d:
        yield d


@pytest.fixture
def pki(root: Path) -> dict[str, Any]:
    (root / "pki").mkdir()
    ca, other = TestCA(root / "pki", "good"), TestCA(root / "pki", "other")
    return {
        "ca": ca,
        "other": other,
        "server": ca.issue("collector", server=True, hosts=("localhost", "127.0.0.1")),
        "client": ca.issue("client", server=False),
    }


def test_tls_with_the_test_ca(root: Path, pki: dict[str, Any]) -> None:
    """The collector's certificate is verified against ca_file; records arrive over TLS."""
    server = TlsServer(pki["ca"].ca_file, pki["server"].cert, pki["server"].key)
    with Rsyslog(root / "collector", tls=server) as rs:
        toml = forward_toml(
            "central", f"localhost:{rs.port}", protocol="tls", ca_file=str(pki["ca"].ca_file)
        )
        with DaemonProcess(root, extra=toml) as d:
            send(d, 0, 100)
            msgs = wait_numbers(rs, ROOT, 100)
    assert [m["msg"] for m in msgs] == [f"n={i}" for i in range(100)]


def test_tls_with_the_wrong_ca_sends_nothing(root: Path, pki: dict[str, Any]) -> None:
    """A collector our CA did not sign is refused: nothing is sent, status and log say why."""
    server = TlsServer(pki["ca"].ca_file, pki["server"].cert, pki["server"].key)
    with Rsyslog(root / "collector", tls=server) as rs:
        toml = forward_toml(
            "central", rs.address, protocol="tls", ca_file=str(pki["other"].ca_file)
        )
        with DaemonProcess(root, extra=toml) as d:
            send(d, 0, 10)
            d.wait_records(ROOT, 10)
            (item,) = poll(lambda: [f for f in forward_stats(d) if f["failures"] >= 1])
            status = request_one(d.control, "status")
            text = subprocess.run(
                d.command("status"), capture_output=True, text=True, check=True
            ).stdout
        log = d.stderr()
        assert rs.lines() == []
    reason = (
        f"{rs.address} (tls): TLS handshake failed: certificate verify failed: "
        "unable to get local issuer certificate"
    )
    assert item["last_error"] == reason
    assert (item["sent_records"], item["lag_records"]) == (0, 11)  # + the `started` record
    assert status["forward"][0]["last_error"] == reason
    assert f"    central -> {rs.address} (tls): " in text
    assert f"): {reason}\n" in text
    assert "forward_connect_failed" in log
    assert "certificate verify failed" in log


def test_client_certificate_when_the_collector_asks(root: Path, pki: dict[str, Any]) -> None:
    """A collector that requires client certificates (x509/certvalid) accepts cert_file/key_file."""
    server = TlsServer(
        pki["ca"].ca_file, pki["server"].cert, pki["server"].key, auth_mode="x509/certvalid"
    )
    with Rsyslog(root / "collector", tls=server) as rs:
        toml = forward_toml(
            "central",
            rs.address,
            protocol="tls",
            ca_file=str(pki["ca"].ca_file),
            cert_file=str(pki["client"].cert),
            key_file=str(pki["client"].key),
        )
        with DaemonProcess(root, extra=toml) as d:
            send(d, 0, 20)
            msgs = wait_numbers(rs, ROOT, 20)
    assert [m["msg"] for m in msgs] == [f"n={i}" for i in range(20)]
