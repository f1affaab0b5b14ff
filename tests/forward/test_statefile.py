"""State files under log_dir: private, replaced atomically, never through a symlink."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from trio_logd.errors import StoreError
from trio_logd.store.statefile import StateDir


def test_write_then_read(tmp_path: Path) -> None:
    """What is written is read back; the directory is 0700, the file 0600, no temp file left."""
    state = StateDir(str(tmp_path), ".forward")
    assert state.read("a.cursor") is None
    state.write("a.cursor", b"one")
    state.write("a.cursor", b"two")
    assert state.read("a.cursor") == b"two"
    assert stat.S_IMODE(os.stat(tmp_path / ".forward").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(tmp_path / ".forward" / "a.cursor").st_mode) == 0o600
    assert sorted(os.listdir(tmp_path / ".forward")) == ["a.cursor"]


def test_symlinked_file_is_refused(tmp_path: Path) -> None:
    """A state file replaced by a symlink is neither read nor written through."""
    state = StateDir(str(tmp_path), ".forward")
    state.write("a.cursor", b"x")
    target = tmp_path / "elsewhere"
    target.write_bytes(b"secret")
    os.unlink(tmp_path / ".forward" / "a.cursor")
    os.symlink(target, tmp_path / ".forward" / "a.cursor")
    with pytest.raises(StoreError, match=r"a\.cursor: is a symlink; refusing to follow it"):
        state.read("a.cursor")
    os.symlink(target, tmp_path / ".forward" / "a.cursor.tmp")
    with pytest.raises(StoreError, match=r"a\.cursor\.tmp: is a symlink"):
        state.write("a.cursor", b"y")
    assert target.read_bytes() == b"secret"


def test_set_aside(tmp_path: Path) -> None:
    """A damaged file is renamed aside, kept for whoever investigates."""
    state = StateDir(str(tmp_path), ".forward")
    state.write("a.cursor", b"garbage")
    aside = state.set_aside("a.cursor")
    assert aside.startswith("a.cursor.bad-")
    assert state.read("a.cursor") is None
    assert (tmp_path / ".forward" / aside).read_bytes() == b"garbage"


def test_digit_name_is_refused(tmp_path: Path) -> None:
    """A state directory named like a uid would be read as records: refused."""
    with pytest.raises(ValueError, match="would look like a uid directory"):
        StateDir(str(tmp_path), "1000")
