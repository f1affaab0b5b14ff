"""log_dir creation: made when missing, and said when more than its last component was."""

from __future__ import annotations

import os
from pathlib import Path

from structlog.testing import capture_logs

from trio_logd.store import _layout


def test_log_dir_with_missing_parents_is_created_and_said(tmp_path: Path) -> None:
    """A log_dir whose parents are missing is made (0700 leaf) and each created parent logged."""
    path = tmp_path / "vra" / "lgo" / "log"
    with capture_logs() as logs:
        fd = _layout.open_log_dir(str(path))
    os.close(fd)
    assert (path.stat().st_mode & 0o777) == 0o700
    created = [str(tmp_path / "vra"), str(tmp_path / "vra" / "lgo"), str(path)]
    assert [(e["event"], e["log_level"], e["created"]) for e in logs] == [
        ("log_dir_created", "warning", created)
    ]
    with capture_logs() as logs:  # only its own last component: nothing to say
        (tmp_path / "other").mkdir()
        os.close(_layout.open_log_dir(str(tmp_path / "other" / "log")))
        os.close(_layout.open_log_dir(str(path)))  # exists already
    assert logs == []
