"""The fault-injection file system itself fills and frees as the fault tests expect."""

from __future__ import annotations

from tests.faults.conftest import SmallFs


def test_fill_leaves_at_most_what_was_asked(small_fs: SmallFs) -> None:
    """fill() leaves no more than the asked-for bytes free, free() gives them back."""
    before = small_fs.free_bytes()
    small_fs.fill(leave=4096)
    assert small_fs.free_bytes() <= 4096
    small_fs.free()
    assert small_fs.free_bytes() == before
