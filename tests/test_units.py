"""The systemd units in conf/: valid, and in agreement with the example service config."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from trio_logd.config import SYSTEM_CONFIG_PATH, load
from trio_logd.server._systemd import DATAGRAM_NAME, INGEST_NAME

CONF = Path(__file__).resolve().parent.parent / "conf"
UNITS = ("trio-logd.service", "trio-logd.socket", "trio-logd-datagram.socket")

Unit = dict[str, dict[str, list[str]]]


def parse_unit(path: Path) -> Unit:
    """systemd.syntax(7) as far as our files use it: sections, Key=value, repeated keys."""
    sections: Unit = {}
    current: dict[str, list[str]] | None = None
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path}:{number}: not Key=value"
        assert current is not None, f"{path}:{number}: outside a section"
        assert key.strip().isidentifier(), f"{path}:{number}: bad key"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def one(unit: Unit, section: str, key: str) -> str:
    (value,) = unit[section][key]
    return value


@pytest.mark.parametrize("name", UNITS)
def test_units_parse(name: str) -> None:
    """Every unit file is sections of Key=value lines with the sections its type needs."""
    unit = parse_unit(CONF / name)
    kind = name.rsplit(".", 1)[1]
    assert set(unit) == {"Unit", kind.capitalize(), "Install"}


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_systemd_analyze_verify_finds_nothing(tmp_path: Path) -> None:
    """`systemd-analyze verify` reports no unknown key or bad value in any unit."""
    exe = str(Path(sys.executable).parent / "trio-logd")  # verify wants an executable
    if not os.access(exe, os.X_OK):
        exe = "/bin/true"
    for name in UNITS:
        text = (CONF / name).read_text(encoding="utf-8").replace("/usr/bin/trio-logd", exe)
        (tmp_path / name).write_text(text, encoding="utf-8")
    out = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *(str(tmp_path / n) for n in UNITS)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    problems = [line for line in out.stderr.splitlines() if str(tmp_path) in line]
    assert problems == []
    assert out.returncode == 0, out.stderr


def test_units_agree_with_the_example_config() -> None:
    """Socket paths, names, directories and the config path of the units match the config."""
    config = load(CONF / "logd.service.toml")
    service = parse_unit(CONF / "trio-logd.service")
    stream = parse_unit(CONF / "trio-logd.socket")
    datagram = parse_unit(CONF / "trio-logd-datagram.socket")
    d = config.daemon

    assert one(stream, "Socket", "ListenStream") == d.socket
    assert one(stream, "Socket", "FileDescriptorName") == INGEST_NAME
    assert one(datagram, "Socket", "FileDescriptorName") == DATAGRAM_NAME
    for unit in (stream, datagram):
        assert one(unit, "Socket", "PassCredentials") == "yes"
        assert one(unit, "Socket", "SocketMode") == "0666"
    # the datagram socket is off, with the unit's path given in a comment to switch it on
    assert d.datagram_socket is None
    dgram_path = one(datagram, "Socket", "ListenDatagram")
    assert f'# datagram_socket = "{dgram_path}"' in (CONF / "logd.service.toml").read_text()
    assert one(datagram, "Socket", "Service") == "trio-logd.service"

    run_dir = "/run/" + one(service, "Service", "RuntimeDirectory")
    assert os.path.dirname(d.control_socket) == run_dir == os.path.dirname(d.socket)
    assert d.log_dir == "/var/log/" + one(service, "Service", "LogsDirectory")
    assert one(service, "Service", "ReadWritePaths").split() == [d.log_dir, run_dir]
    exec_start = one(service, "Service", "ExecStart").split()
    assert exec_start == ["/usr/bin/trio-logd", "serve", "--config", SYSTEM_CONFIG_PATH]
    assert one(service, "Service", "Type") == "notify"
    assert one(service, "Service", "RuntimeDirectoryPreserve") == "yes"
    assert one(service, "Service", "User") == "trio-logd"
    sysusers = (CONF / "trio-logd.sysusers").read_text().splitlines()
    assert [line.split()[:2] for line in sysusers if line.startswith("u ")] == [["u", "trio-logd"]]
    assert one(service, "Unit", "Requires") == "trio-logd.socket"
    # shutdown_timeout must fit in systemd's stop timeout
    assert float(one(service, "Service", "TimeoutStopSec").removesuffix("s")) > (d.shutdown_timeout)


def test_service_is_hardened() -> None:
    """The service runs unprivileged with the hardening operators expect."""
    s = parse_unit(CONF / "trio-logd.service")["Service"]
    expected = {
        "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
        "PrivateTmp": "yes", "RestrictAddressFamilies": "AF_UNIX", "CapabilityBoundingSet": "",
        "LockPersonality": "yes", "MemoryDenyWriteExecute": "yes",
    }  # fmt: skip
    assert {key: s[key][0] for key in expected} == expected
    assert s["SystemCallFilter"][0] == "@system-service"
    assert "PrivateUsers" not in s  # would show every other sender as uid 65534
    assert "DynamicUser" not in s
