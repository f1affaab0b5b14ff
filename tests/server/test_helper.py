"""The store's helper process, driven from trio: compression, spare files, syncs, failures."""

from __future__ import annotations

import os
import signal
import socket
import stat
import sys
from pathlib import Path

import pytest
import trio

from tests.store._lines import line, lines, names, seqs
from trio_logd.errors import UnsafeLogDir
from trio_logd.server import _helper
from trio_logd.server._helper import HelperUnavailable, StoreHelper
from trio_logd.server._housekeeping import Housekeeper
from trio_logd.server._pipeline import Pipeline
from trio_logd.store.files import read_uid_records
from trio_logd.store.retention import RetentionPolicy
from trio_logd.store.verify import verify_store
from trio_logd.store.writer import StoreWriter

LINE = len(line(1))
OFF = RetentionPolicy(max_age=0, max_bytes=1 << 60, keep_free_bytes=0)


def _store(tmp_path: Path) -> StoreWriter:
    """uid 5 with four rotated files of 10 lines and 5 lines in its current file."""
    store = StoreWriter(str(tmp_path), max_file_bytes=10 * LINE, compress="zstd")
    store.open()
    store.append(5, lines(1, 45), 45)
    return store


async def test_compress_spares_and_sync_in_the_helper(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The helper compresses a rotated file (same lines, the store verifies), makes
    private unnamed files in the directory it is handed, and syncs files in order.
    It does not inherit systemd's notify socket or activated fds."""
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    monkeypatch.setenv("LISTEN_FDS", "1")
    store = _store(tmp_path)
    helper = StoreHelper()
    try:
        assert await helper.start()
        assert helper.pid is not None
        environ = (await trio.Path(f"/proc/{helper.pid}/environ").read_bytes()).split(b"\0")
        assert not [v for v in environ if v.startswith((b"NOTIFY_SOCKET=", b"LISTEN_FDS="))]
        while (job := store.next_compression()) is not None:
            result = await helper.compress(
                job.dir_fd, job.name, job.method, sync=job.sync, what=job.what
            )
            assert store.compression_done(job, result) == result[0]
        d = tmp_path / "5"
        assert [n.endswith(".jsonl.zst") for n in names(d)] == [True] * 4 + [False]
        assert store.usage(5) == sum(p.stat().st_size for p in d.iterdir())

        dir_fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fds, ino = await helper.spares(dir_fd, 3)
            assert ino == os.fstat(dir_fd).st_ino
        finally:
            os.close(dir_fd)
        before = set(os.listdir(d))
        for fd in fds:
            st = os.fstat(fd)
            assert stat.S_ISREG(st.st_mode)
            assert st.st_nlink == 0
            assert st.st_mode & 0o777 == 0o600
        assert store.add_spares(5, fds, ino) == 3
        assert set(os.listdir(d)) == before  # unnamed

        store.append(5, lines(46, 47), 47)
        sync_job = store.begin_sync()
        assert sync_job  # the current file was written to
        await helper.sync(store.sync_steps(sync_job))
        store.close_sync(sync_job)
    finally:
        await helper.aclose()
    store.close()
    assert seqs(read_uid_records(tmp_path, 5)) == list(range(1, 48))
    assert verify_store(tmp_path).problems == []


async def test_errors_come_back_as_the_in_process_ones(tmp_path: Path) -> None:
    """A file gone: FileNotFoundError; a symlink: UnsafeLogDir; a sync that fails (a socket
    cannot be fdatasync'ed): OSError naming the step. The helper goes on after each."""
    store = _store(tmp_path)
    helper = StoreHelper()
    try:
        job = store.next_compression()
        assert job is not None
        src = tmp_path / "5" / job.name.format()
        src.unlink()
        with pytest.raises(FileNotFoundError):
            await helper.compress(job.dir_fd, job.name, "zstd", sync=True, what=job.what)
        store.compression_done(job, None)

        job = store.next_compression()
        assert job is not None
        src = tmp_path / "5" / job.name.format()
        src.unlink()
        src.symlink_to("/etc/passwd")
        with pytest.raises(UnsafeLogDir):
            await helper.compress(job.dir_fd, job.name, "zstd", sync=True, what=job.what)
        store.requeue_compression(job)

        a, b = socket.socketpair()
        with a, b, pytest.raises(OSError, match="Invalid argument") as info:
            await helper.sync([(a.fileno(), "data", "syncing uid 9")])
        assert info.value.filename == "syncing uid 9"
        assert helper.running  # a failed request is not a failed helper
    finally:
        await helper.aclose()
        store.close()


async def test_a_dead_helper_is_noticed_and_started_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kill -9 the helper: the next request raises HelperUnavailable (nothing is done);
    the one after the restart delay runs in a new helper."""
    monkeypatch.setattr(_helper, "RESTART_DELAY", 0.0)
    store = _store(tmp_path)
    helper = StoreHelper()
    try:
        assert await helper.start()
        first = helper.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        job = store.next_compression()
        assert job is not None
        with pytest.raises(HelperUnavailable):
            await helper.compress(job.dir_fd, job.name, "zstd", sync=True, what=job.what)
        assert not helper.running
        store.requeue_compression(job)
        job = store.next_compression()
        assert job is not None
        result = await helper.compress(job.dir_fd, job.name, "zstd", sync=True, what=job.what)
        store.compression_done(job, result)
        assert helper.pid != first
        assert helper.starts == 2
    finally:
        await helper.aclose()
        store.close()


async def test_without_a_helper_the_housekeeper_compresses_in_its_thread(
    tmp_path: Path,
) -> None:
    """A helper that cannot start (its program is missing): start() says so, requests raise
    HelperUnavailable, and the housekeeper compresses every file in its own thread."""
    store = _store(tmp_path)
    helper = StoreHelper(command=[sys.executable, "-c", "raise SystemExit(3)"])
    missing = StoreHelper(command=["/nonexistent/trio-logd-helper"])
    try:
        assert not await missing.start()
        with pytest.raises(HelperUnavailable):
            await missing.spares(0, 1)
        hk = Housekeeper(store, OFF, lambda uid: (1 << 60, "rotate"), Pipeline(store.last_seq),
                         None, helper=helper)  # fmt: skip
        with trio.fail_after(30):
            await hk.run_once()  # the helper starts, and exits at once: files still compressed
            while store.compress_pending():
                await hk.run_once()
        d = tmp_path / "5"
        assert [n.endswith(".jsonl.zst") for n in names(d)] == [True] * 4 + [False]
    finally:
        await helper.aclose()
        await missing.aclose()
        store.close()
    assert seqs(read_uid_records(tmp_path, 5)) == list(range(1, 46))
