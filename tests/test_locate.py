"""``trio_logd.locate``: one ``[daemon]`` path, read as the loader reads it, without the schema."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from trio_logd.config import load
from trio_logd.errors import ConfigError
from trio_logd.locate import configured_path

KEYS = ("socket", "control_socket", "log_dir")


@pytest.mark.parametrize(
    "text",
    [
        "",
        '[daemon]\nsocket = "s/in.sock"\ncontrol_socket = "/abs/ctl.sock"\nlog_dir = "../logs"\n',
        '[daemon]\ncontrol_socket = "./a//b/../ctl.sock"\n',
    ],
)
def test_paths_agree_with_the_loader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    """Each path is the one the full loader gives, relative ones against the current directory."""
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "logd.toml"
    cfg.write_text(text)
    daemon = load(str(cfg)).daemon
    for key in KEYS:
        assert configured_path(str(cfg), key) == getattr(daemon, key), key


def test_environment_variable_names_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --config, $TRIO_LOGD_CONFIG names the file (SPEC §5)."""
    cfg = tmp_path / "logd.toml"
    cfg.write_text('[daemon]\ncontrol_socket = "/run/x/ctl.sock"\n')
    monkeypatch.setenv("TRIO_LOGD_CONFIG", str(cfg))
    assert configured_path(None, "control_socket") == "/run/x/ctl.sock"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "cannot read: No such file or directory"),
        ("[daemon\n", "invalid TOML at line 1, column 8"),
        ("daemon = 3\n", "[daemon]: expected a table"),
        ('[daemon]\ncontrol_socket = ""\n', "[daemon] control_socket: expected a non-empty path"),
        ("[daemon]\ncontrol_socket = 5\n", "[daemon] control_socket: expected a non-empty path"),
    ],
)
def test_bad_files_are_config_errors(tmp_path: Path, text: str | None, message: str) -> None:
    """A missing, non-TOML or wrong-typed file is a ConfigError naming the file and the key."""
    cfg = tmp_path / "logd.toml"
    if text is not None:
        cfg.write_text(text)
    with pytest.raises(ConfigError) as info:
        configured_path(str(cfg), "control_socket")
    assert str(info.value).startswith(f"{cfg}: {message}"), str(info.value)


def test_the_schema_is_not_loaded(tmp_path: Path) -> None:
    """Finding a socket (the client shim's default_socket_path too) imports no config schema."""
    cfg = tmp_path / "logd.toml"
    cfg.write_text('[daemon]\nsocket = "/run/x/log.sock"\n')
    code = (
        "import sys\n"
        "from trio_logd.client import default_socket_path\n"
        f"print(default_socket_path({str(cfg)!r}))\n"
        "print(sorted(m for m in sys.modules if 'config' in m))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ
    ).stdout
    assert out == "/run/x/log.sock\n[]\n"
