"""The store's lock on log_dir: one writer at a time, the holder named, no tricks."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.store._lines import lines
from trio_logd.errors import StoreInUse, UnsafeLogDir
from trio_logd.store._owner import LOCK_NAME
from trio_logd.store.files import read_uid_records
from trio_logd.store.verify import verify_store
from trio_logd.store.writer import StoreWriter


def test_a_second_writer_is_refused_with_the_holders_pid(tmp_path: Path) -> None:
    """While one writer holds log_dir, a second one's open() raises StoreInUse naming the
    holder's pid and touches nothing; once the first closes, the second may open."""
    first = StoreWriter(str(tmp_path))
    first.open()
    first.append(5, lines(1, 3), 3)
    second = StoreWriter(str(tmp_path))
    with pytest.raises(StoreInUse) as caught:
        second.open()
    assert caught.value.pid == os.getpid()
    assert str(caught.value) == (
        f"log_dir {tmp_path} is in use by pid {os.getpid()} (its lock {LOCK_NAME} is held)"
    )
    assert second.uids() == []
    first.close()
    assert second.open() == {5: 3}
    second.close()


def test_the_lock_file_is_private_and_invisible_to_readers(tmp_path: Path) -> None:
    """The lock file is 0600 with the pid at a fixed width; readers and verify, which take
    no lock, read the store beside a running writer and do not mistake it for a uid."""
    w = StoreWriter(str(tmp_path))
    w.open()
    w.append(5, lines(1, 3), 3)
    lock = tmp_path / LOCK_NAME
    assert stat.S_IMODE(lock.stat().st_mode) == 0o600
    assert lock.read_bytes() == b"%-15d\n" % os.getpid()
    assert len(list(read_uid_records(tmp_path, 5))) == 3
    assert verify_store(tmp_path).problems == []
    w.close()


@pytest.mark.parametrize("plant", ["symlink", "hardlink"])
def test_a_planted_lock_file_is_refused(tmp_path: Path, plant: str) -> None:
    """A symlink or a hard link planted as the lock file is refused (never followed or
    written through), and the target is left as it was."""
    target = tmp_path.parent / f"{tmp_path.name}-target"
    target.write_bytes(b"precious\n")
    log_dir = tmp_path / "log"
    log_dir.mkdir(mode=0o700)
    if plant == "symlink":
        (log_dir / LOCK_NAME).symlink_to(target)
    else:
        os.link(target, log_dir / LOCK_NAME)
    w = StoreWriter(str(log_dir))
    with pytest.raises(UnsafeLogDir, match=LOCK_NAME):
        w.open()
    assert target.read_bytes() == b"precious\n"
