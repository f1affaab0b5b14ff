"""The [[forward]] tables of the config: defaults, values, and errors naming file, key, reason."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from trio_logd.config import FORWARD_DEFAULTS, ForwardConfig, default_config, loads
from trio_logd.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
KEYS = [f.name for f in dataclasses.fields(ForwardConfig) if f.init]


def load(text: str) -> tuple[ForwardConfig, ...]:
    return loads(text, file="logd.toml", base_dir="/srv").forward


def test_no_destination_by_default() -> None:
    """Forwarding is off unless a [[forward]] table says where to."""
    assert default_config().forward == ()


def test_minimal_destination_takes_the_defaults() -> None:
    """name and address alone: plain TCP, every uid, every severity, 2 s commit delay."""
    (fwd,) = load('[[forward]]\nname = "central"\naddress = "logs.example.com:514"\n')
    assert fwd == ForwardConfig(name="central", address="logs.example.com:514")
    assert (fwd.host, fwd.port) == ("logs.example.com", 514)
    assert (fwd.protocol, fwd.verify, fwd.uids, fwd.min_severity) == ("tcp", True, (), "debug")
    assert (fwd.commit_delay, fwd.timeout, fwd.retry_max, fwd.start) == (2.0, 30.0, 60.0, "oldest")


def test_defaults_table_matches_the_dataclass() -> None:
    """FORWARD_DEFAULTS (what a table may leave out) gives the dataclass's defaults."""
    text = '[[forward]]\nname = "a"\naddress = "h:1"\nprotocol = "tls"\n'
    assert load(text)[0] == ForwardConfig(name="a", address="h:1", protocol="tls")
    assert set(FORWARD_DEFAULTS) == set(KEYS) - {"name", "address"}


def test_every_key_read() -> None:
    """Each key is read into its field; paths resolve against the base directory."""
    (fwd,) = load(
        """
[[forward]]
name = "sec-1"
address = "[::1]:6514"
protocol = "tls"
ca_file = "etc/ca.pem"
cert_file = "/etc/logd/client.pem"
key_file = "etc/client.key"
server_name = "collector.example.com"
verify = false
uids = [0, 1000, 0]
min_severity = "warning"
facilities = ["auth", "authpriv"]
hostname = "web-1.example.com"
start = "now"
commit_delay = "500ms"
timeout = 10
retry_max = "5m"
"""
    )
    assert fwd == ForwardConfig(
        name="sec-1",
        address="[::1]:6514",
        protocol="tls",
        ca_file="/srv/etc/ca.pem",
        cert_file="/etc/logd/client.pem",
        key_file="/srv/etc/client.key",
        server_name="collector.example.com",
        verify=False,
        uids=(0, 1000),
        min_severity="warning",
        facilities=("auth", "authpriv"),
        hostname="web-1.example.com",
        start="now",
        commit_delay=0.5,
        timeout=10.0,
        retry_max=300.0,
    )
    assert (fwd.host, fwd.port) == ("::1", 6514)


def test_several_destinations_in_file_order() -> None:
    """Each [[forward]] is one destination, in the order of the file."""
    text = '[[forward]]\nname = "b"\naddress = "h:1"\n[[forward]]\nname = "a"\naddress = "h:2"\n'
    assert [f.name for f in load(text)] == ["b", "a"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('address = "h:1"', "[[forward]] #1 name: missing: every [[forward]] needs a name and"),
        ('name = "a"', "[[forward]] #1 address: missing"),
        ('name = "a b"\naddress = "h:1"', "[[forward]] #1 name: expected a name of letters"),
        ('name = "a"\naddress = "h"', '[[forward]] #1 address: expected "HOST:PORT"'),
        ('name = "a"\naddress = "h:0"', "[[forward]] #1 address: expected a port from 1 to 65535"),
        ('name = "a"\naddress = "[zz::1]:5"', '[[forward]] #1 address: expected "HOST:PORT"'),
        ('name = "a"\naddress = "[1:2:3]:5"', "'1:2:3' is not an IPv6 address"),
        ('name = "a"\naddress = "h:1"\nprotocol = "udp"', 'protocol: expected one of "tcp", "tls"'),
        (
            'name = "a"\naddress = "h:1"\nca_file = "ca.pem"',
            "[[forward]] #1 ca_file: only with protocol = \"tls\" (this destination uses 'tcp')",
        ),
        (
            'name = "a"\naddress = "h:1"\nprotocol = "tls"\nkey_file = "k"',
            "[[forward]] #1 key_file: expected cert_file too",
        ),
        ('name = "a"\naddress = "h:1"\nuids = ["root"]', "uids: expected an array of uids"),
        (
            'name = "a"\naddress = "h:1"\nmin_severity = "warn"',
            'min_severity: expected one of "emerg"',
        ),
        (
            'name = "a"\naddress = "h:1"\nfacilities = ["nope"]',
            "expected facility names (kern, user",
        ),
        ('name = "a"\naddress = "h:1"\nhostname = "a b"', "hostname: expected a host name"),
        ('name = "a"\naddress = "h:1"\nstart = "end"', 'start: expected one of "oldest", "now"'),
        ('name = "a"\naddress = "h:1"\ncommit_delay = "2h"', "commit_delay: expected at most 1h"),
        ('name = "a"\naddress = "h:1"\ntimeout = 0', "timeout: expected at least 1s, got 0s"),
        ('name = "a"\naddress = "h:1"\nretry_max = "0.5s"', "retry_max: expected at least 1s"),
        ('name = "a"\naddress = "h:1"\nverify = "yes"', '#1 verify: only with protocol = "tls"'),
        (
            'name = "a"\naddress = "h:1"\nadress = "x"',
            "[[forward]] #1 adress: unknown key (did you",
        ),
    ],
)
def test_bad_destination_names_element_key_and_reason(body: str, message: str) -> None:
    """An invalid [[forward]] is refused naming the file, which table, the key and why."""
    with pytest.raises(ConfigError) as info:
        load("[[forward]]\n" + body + "\n")
    assert str(info.value).startswith("logd.toml: ")
    assert message in str(info.value)


def test_verify_must_be_a_boolean() -> None:
    """verify = "yes" is refused (TOML has true and false)."""
    with pytest.raises(ConfigError, match=r'verify: expected true or false, got "yes"'):
        load('[[forward]]\nname = "a"\naddress = "h:1"\nprotocol = "tls"\nverify = "yes"\n')


def test_second_element_is_named_by_its_index() -> None:
    """Errors in the second destination say #2."""
    text = '[[forward]]\nname = "a"\naddress = "h:1"\n[[forward]]\nname = "b"\naddress = "x"\n'
    with pytest.raises(ConfigError, match=r"^logd\.toml: \[\[forward\]\] #2 address: "):
        load(text)


def test_names_are_unique() -> None:
    """Two destinations cannot share a name: each has its own cursor file."""
    text = '[[forward]]\nname = "a"\naddress = "h:1"\n[[forward]]\nname = "a"\naddress = "h:2"\n'
    with pytest.raises(ConfigError) as info:
        load(text)
    assert str(info.value) == (
        'logd.toml: [[forward]] #2 name: "a" is also the name of [[forward]] #1: names must be '
        "unique (each has its own cursor)"
    )


def test_single_table_is_refused() -> None:
    """[forward] (one pair of brackets) is not a destination list: the error says so."""
    with pytest.raises(ConfigError) as info:
        load('[forward]\nname = "a"\naddress = "h:1"\n')
    assert str(info.value) == (
        "logd.toml: forward: expected an array of tables, written [[forward]] (with two brackets)"
    )


@pytest.mark.parametrize("key", KEYS)
def test_conf_logd_toml_documents_every_key(key: str) -> None:
    """conf/logd.toml shows every [[forward]] key (commented out: forwarding is off)."""
    text = (ROOT / "conf" / "logd.toml").read_text(encoding="utf-8")
    assert re.search(rf"^# ?{key} = ", text, re.MULTILINE) is not None


@pytest.mark.parametrize("key", KEYS)
def test_docs_describe_every_key(key: str) -> None:
    """docs/forwarding.md has an entry for every [[forward]] key."""
    text = (ROOT / "docs" / "forwarding.md").read_text(encoding="utf-8")
    assert f"| `{key}` |" in text
