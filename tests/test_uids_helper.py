"""The tests' own helper for other uids: it only hands out ids that are free on this host."""

from __future__ import annotations

import grp
import os
import pwd

import pytest

from tests._uids import free_uids, is_free, named_uid


def test_free_uids_have_no_entry_and_no_process() -> None:
    """Every id free_uids returns has no passwd or group entry and is distinct."""
    found = free_uids(3)
    assert len(set(found)) == 3
    for n in found:
        with pytest.raises(KeyError):
            pwd.getpwuid(n)
        with pytest.raises(KeyError):
            grp.getgrgid(n)
        assert is_free(n)


def test_taken_ids_are_not_free() -> None:
    """Root, our own uid and any uid with a passwd entry are never handed out."""
    assert not is_free(0)
    assert not is_free(os.getuid())
    named = named_uid()
    if named is not None:
        assert not is_free(named)
        assert named not in free_uids(3, start=named)
