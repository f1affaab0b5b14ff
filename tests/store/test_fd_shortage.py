"""The writer out of file descriptors: syncs go on in place, nothing raises, nothing is lost."""

from __future__ import annotations

import errno
import json
import os
import resource
import traceback
from pathlib import Path

from tests.store.test_writer import line
from trio_logd.store.files import read_uid_records
from trio_logd.store.writer import StoreWriter


def _fill_descriptors() -> list[int]:
    """Open /dev/null until the process has no descriptor left."""
    held = []
    while True:
        try:
            held.append(os.open(os.devnull, os.O_RDONLY))
        except OSError as exc:
            if exc.errno != errno.EMFILE:
                raise
            return held


def test_sync_and_compression_without_descriptors(tmp_path: Path) -> None:
    """At EMFILE a sync syncs in place, a compression job waits; shortages are counted."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: fill the descriptor table, then sync and rotate
        code = 1
        try:
            os.close(r)
            _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            highest = max(int(fd) for fd in os.listdir("/proc/self/fd"))
            resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 64, hard))  # quick to fill
            noted: list[int] = []
            store = StoreWriter(str(tmp_path), fsync="batch", max_file_bytes=200, compress="gzip")
            store.on_fd_shortage = lambda: noted.append(1)
            store.open()
            store.append(5, [line(1), line(2)], 2)
            store.append(5, [line(3)], 3)  # rotates by size: a file to compress, a dir to sync
            before = store.compress_pending()
            held = _fill_descriptors()
            job = store.next_compression()  # os.dup fails: the file waits
            waiting = store.compress_pending()
            store.sync()  # os.dup fails: synced in place (then the rotated file's fd is closed)
            for fd in held:
                os.close(fd)
            store.append(5, [line(4)], 4)
            store.sync()
            store.close()
            os.write(w, json.dumps([len(noted), job is None, before, waiting]).encode())
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    os.close(w)
    out = os.read(r, 4096)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    shortages, no_job, before, waiting = json.loads(out)
    assert shortages == 3  # the compression's dup, the sync's file and directory
    assert (no_job, before >= 1, waiting) == (True, True, before)
    got = list(read_uid_records(tmp_path, 5))
    assert got == [line(i)[:-1] for i in range(1, 5)]
