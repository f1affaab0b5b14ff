"""Whether others can fill log_dir's file system: the directories status warns about."""

from __future__ import annotations

import os
from pathlib import Path

from trio_logd.store.placement import WORLD_WRITABLE, candidate_dirs, shared_writable_dirs


def test_world_writable_or_foreign_dirs_on_the_same_file_system_are_named(tmp_path: Path) -> None:
    """A world-writable directory and another uid's directory beside log_dir are named; our
    own private directory, a missing path and a directory on another file system are not."""
    log_dir = tmp_path / "log"
    log_dir.mkdir(mode=0o700)
    public = tmp_path / "public"
    public.mkdir()
    public.chmod(0o1777)
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    foreign = tmp_path / "home-of-someone"
    foreign.mkdir(mode=0o700)
    root = os.geteuid() == 0
    if root:  # a user's home: owned by someone else (chown needs root)
        os.chown(foreign, 54321, -1)
    candidates = [str(public), str(private), str(foreign), str(tmp_path / "missing"), "/proc"]
    expected = [str(public)] + ([str(foreign)] if root else [])
    assert shared_writable_dirs(str(log_dir), candidates, os.geteuid()) == expected


def test_candidates_are_the_usual_world_writable_dirs_then_homes() -> None:
    """The candidates start with /tmp, /var/tmp, /dev/shm, /home; homes follow, each once."""
    found = candidate_dirs()
    assert found[: len(WORLD_WRITABLE)] == list(WORLD_WRITABLE)
    assert len(found) == len(set(found))
