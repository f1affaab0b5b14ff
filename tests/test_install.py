"""Installing for other users: `make venv` says when they could not run the commands."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests._daemon import world

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def _reach(exe: Path) -> str:
    out = subprocess.run(
        ["make", "-s", "-C", str(ROOT), "reach", f"REACH_EXE={exe}"],
        capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    return out.stdout


def test_an_interpreter_under_a_closed_directory_is_reported() -> None:
    """An interpreter under a 0700 directory (pyenv in /root): make says so and how to fix it."""
    with world() as root:  # open to all, like /usr/bin's parents
        _check(root)


def _check(root: Path) -> None:
    home = root / "home"
    (home / "bin").mkdir(parents=True)
    exe = home / "bin" / "python3"
    exe.write_text("")
    exe.chmod(0o755)
    home.chmod(0o700)
    assert _reach(exe).splitlines() == [
        "note: other users cannot run .venv/bin/logq or .venv/bin/trio-logd:",
        f"  the interpreter {exe} is under {home}, closed to them (mode 700).",
        "  For them, make the venv from a system interpreter (3.11 or later):",
        "  rm -rf .venv && make venv PYTHON=/usr/bin/python3",
    ]
    home.chmod(0o755)
    assert _reach(exe) == ""
