"""Config: the [metrics] table (listen address, node_exporter textfile, interval)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from trio_logd.config import MetricsConfig, default_config, loads
from trio_logd.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_metrics_are_off_by_default() -> None:
    """No endpoint and no textfile unless configured; the interval defaults to 15 s."""
    assert default_config().metrics == MetricsConfig(listen=None, textfile=None, interval=15.0)


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("127.0.0.1:9127", ("127.0.0.1", 9127)),
        ("localhost:9127", ("127.0.0.1", 9127)),
        ("[::1]:9127", ("::1", 9127)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
        ("", None),
    ],
)
def test_listen_addresses(listen: str, expected: tuple[str, int] | None) -> None:
    """HOST:PORT with an IP address (IPv6 in brackets), localhost, or "" for off."""
    config = loads(f'[metrics]\nlisten = "{listen}"', base_dir="/srv")
    assert config.metrics.listen == expected


def test_textfile_and_interval() -> None:
    """A relative textfile resolves against the working directory; the interval is a duration."""
    config = loads('[metrics]\ntextfile = "m/t.prom"\ninterval = "1m"', base_dir="/srv")
    assert config.metrics == MetricsConfig(listen=None, textfile="/srv/m/t.prom", interval=60.0)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            'listen = "example.com:9127"',
            'logd.toml: [metrics] listen: expected "HOST:PORT" with an IP address (like '
            '"127.0.0.1:9127" or "[::1]:9127"), or "", got "example.com:9127": '
            "'example.com' is not an IP address",
        ),
        (
            'listen = "127.0.0.1:70000"',
            'logd.toml: [metrics] listen: expected "HOST:PORT" with an IP address (like '
            '"127.0.0.1:9127" or "[::1]:9127"), or "", got "127.0.0.1:70000": '
            "the port must be 0 to 65535",
        ),
        (
            "listen = 9127",
            'logd.toml: [metrics] listen: expected "HOST:PORT" with an IP address (like '
            '"127.0.0.1:9127" or "[::1]:9127"), or "", got 9127',
        ),
        (
            'textfile = "/var/lib/node_exporter/trio_logd.txt"',
            'logd.toml: [metrics] textfile: expected a path ending in ".prom" (node_exporter '
            'reads only those), got "/var/lib/node_exporter/trio_logd.txt"',
        ),
        ("interval = 0.5", "logd.toml: [metrics] interval: expected at least 1 second, got 0.5"),
        ('listne = ""', "logd.toml: [metrics] listne: unknown key (did you mean listen?)"),
    ],
)
def test_invalid_metrics_values_are_named(line: str, message: str) -> None:
    """Each bad value is refused with the file, the key and the reason."""
    with pytest.raises(ConfigError) as info:
        loads(f"[metrics]\n{line}", file="logd.toml")
    assert str(info.value) == message


@pytest.mark.parametrize("key", ["listen", "textfile", "interval"])
def test_metrics_keys_are_documented(key: str) -> None:
    """conf/logd.toml sets each [metrics] key and docs/config.md describes it."""
    conf = (ROOT / "conf" / "logd.toml").read_text(encoding="utf-8")
    assert re.search(rf"^\[metrics\]$(?s:.*)^{key} = ", conf, re.MULTILINE) is not None
    assert f"`{key}`" in (ROOT / "docs" / "config.md").read_text(encoding="utf-8")
