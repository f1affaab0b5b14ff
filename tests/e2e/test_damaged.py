"""End to end: a damaged compressed file in a running daemon's store.

One daemon writes rotated, zstd-compressed files for root's uid. Its file
in the middle is then damaged in each way of the table
(``tests/store/_damage.py``) and read: through the daemon (``logq``),
offline (``logq --directory``) and by ``logq --verify``. Each must show the
records of every other file, name the damaged file (a warning on stderr, a
``damaged`` finding) and exit 1, never a traceback; the daemon goes on
storing and answering. ``-f`` warns and then follows, and the daemon starts
again over the damaged store.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests._daemon import PYTHON, DaemonProcess, poll, world
from tests.store._damage import DAMAGES

ROOT = os.geteuid()
N = 300


def logq(d: DaemonProcess, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "trio_logd.cli.logq", "--config", str(d.config), *argv],
        capture_output=True,
        text=True,
        timeout=60,
    )


#: rotated files of about 60 records, compressed
STORE = 'max_file_bytes = 4096\ncompress = "zstd"'


def _fill(d: DaemonProcess) -> None:
    """Send N records as root; return once at least 3 files are compressed."""
    with d.connect() as s:
        for i in range(N):
            s.sendall(b"<13>app: record number %d\n" % i)
    d.wait_records(ROOT, N)
    poll(lambda: len(_zst(d)) >= 3, timeout=30)


def _zst(d: DaemonProcess) -> list[Path]:
    return sorted((d.log_dir / str(ROOT)).glob("*.jsonl.zst"))


@pytest.fixture(scope="module")
def daemon() -> Iterator[DaemonProcess]:
    """A running daemon whose store holds at least 3 compressed files of root's uid."""
    with world() as root:
        d = DaemonProcess(root, store_extra=STORE)
        with d:
            _fill(d)
            yield d


def _seqs(out: str) -> list[int]:
    return [orjson.loads(x)["seq"] for x in out.splitlines()]


@pytest.fixture
def damaged(daemon: DaemonProcess, request: pytest.FixtureRequest) -> Iterator[Path]:
    """The middle compressed file, damaged by the test's ``damage``; restored afterwards."""
    path = _zst(daemon)[1]
    good = path.read_bytes()
    DAMAGES[request.param](path)
    yield path
    if path.is_dir() and not path.is_symlink():
        path.rmdir()
    else:
        path.unlink()
    path.write_bytes(good)


@pytest.mark.parametrize("damaged", list(DAMAGES), indirect=True)
def test_a_damaged_file_is_named_and_the_rest_is_read(daemon: DaemonProcess, damaged: Path) -> None:
    """Through the daemon, offline and --verify: the other files' records, the file named,
    exit 1; the daemon still stores and answers."""
    whole = logq(daemon, "--directory", str(daemon.log_dir), "-o", "json", "-n", "all")
    first, last = (int(x) for x in damaged.name.split(".")[0].split("-"))
    others = [s for s in _seqs(whole.stdout) if not first <= s <= last]
    warning = f"logq: warning: {damaged}: damaged: "
    for where in ([], ["--directory", str(daemon.log_dir)]):
        r = logq(daemon, *where, "-o", "json", "-n", "all")
        assert r.returncode == 1, r.stderr
        assert "Traceback" not in r.stderr
        (said,) = r.stderr.splitlines()
        assert said.startswith(warning)
        got = _seqs(r.stdout)
        assert [s for s in got if not first <= s <= last] == others
        assert len(others) >= 2 * (last - first + 1)
    v = logq(daemon, "--verify", "--directory", str(daemon.log_dir))
    assert v.returncode == 1, v.stdout + v.stderr
    assert f"{ROOT}/{damaged.name}: damaged: " in v.stdout
    assert v.stdout.splitlines()[-1].startswith("FAILED: ")
    assert daemon.proc is not None
    assert daemon.proc.poll() is None
    with daemon.connect() as s:
        s.sendall(b"<13>app: after the damage\n")
    daemon.wait_records(ROOT, 1, where=lambda r: r.get("msg") == "after the damage")


@pytest.mark.parametrize("damaged", ["cut in the middle"], indirect=True)
def test_follow_warns_then_follows(daemon: DaemonProcess, damaged: Path) -> None:
    """logq -f: the warning naming the file, then the new records as they come."""
    command = [
        PYTHON, "-m", "trio_logd.cli.logq", "--config", str(daemon.config), "-f", "-n", "all",
        "-o", "cat",
    ]  # fmt: skip
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        assert proc.stderr is not None
        try:
            err = _line(proc.stderr.fileno())
            assert err.startswith(f"logq: warning: {damaged}: damaged: cut short"), err
            with daemon.connect() as s:
                s.sendall(b"<13>app: followed after the damage\n")
            deadline = time.monotonic() + 30
            seen = b""
            while b"followed after the damage" not in seen:
                assert time.monotonic() < deadline, seen[-200:]
                seen += _chunk(proc.stdout.fileno(), deadline)
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def _chunk(fd: int, deadline: float) -> bytes:
    ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
    return os.read(fd, 1 << 16) if ready else b""


def _line(fd: int) -> str:
    deadline = time.monotonic() + 30
    data = b""
    while b"\n" not in data:
        assert time.monotonic() < deadline, data
        data += _chunk(fd, deadline)
    return data.split(b"\n", 1)[0].decode()


def test_the_daemon_starts_over_a_damaged_store() -> None:
    """A restart with a damaged compressed file (and a directory in a file's place): the
    daemon starts, stores, and its queries name what they pass over."""
    with world() as root:
        d = DaemonProcess(root, store_extra=STORE)
        with d:
            _fill(d)
        files = _zst(d)
        DAMAGES["cut in the middle"](files[0])
        DAMAGES["a directory"](files[1])
        shutil.copyfile(files[2], root / "kept")
        with d:
            with d.connect() as s:
                s.sendall(b"<13>app: after the restart\n")
            d.wait_records(ROOT, 1, where=lambda r: r.get("msg") == "after the restart")
            r = logq(d, "-o", "json", "-n", "all")
            assert r.returncode == 1
            assert sorted(r.stderr.splitlines()) == sorted(
                [
                    f"logq: warning: {files[0]}: damaged: cut short: the file ends inside a "
                    "zstd frame; records after the damage are not shown",
                    f"logq: warning: {files[1]}: damaged: a directory, not a file; records "
                    "after the damage are not shown",
                ]
            )
        assert d.proc is not None
        assert d.proc.returncode == 0
