"""End to end: ``logq --verify`` on a store a real daemon wrote, then changed by hand.

One daemon writes a store with rotations, zstd compression and retention
deletions (a small quota); ``logq --verify`` says OK while it runs and after
it stopped. Each change is then made to a copy of that store, and ``logq
--verify --directory COPY`` must exit 1 naming the file and the seq.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests._daemon import PYTHON, DaemonProcess, poll, world
from tests.store._tamper import cut_tail, delete_line, edit_byte, rewrite, swap

ROOT = os.geteuid()
N = 600


def logq_verify(directory: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "trio_logd.cli.logq", "--verify", "--directory", str(directory), *extra],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _deletions(log_dir: Path) -> int:
    chain = log_dir / str(ROOT) / "current.chain"
    try:
        return chain.read_bytes().count(b'{"deleted"')
    except FileNotFoundError:
        return 0


@pytest.fixture(scope="module")
def written() -> Iterator[Path]:
    """A store written by a daemon (rotations, compression, retention), daemon stopped."""
    with world() as root:
        d = DaemonProcess(
            root,
            store_extra='max_file_bytes = 8192\ncompress = "zstd"',
            limits_extra="quota_bytes = 30000",
        )
        with d:
            with d.connect() as s:
                for i in range(N):
                    s.sendall(b"<13>app: record number %d\n" % i)
            poll(lambda: _deletions(d.log_dir) >= 2, timeout=30)
            live = logq_verify(d.log_dir)
            assert live.returncode == 0, live.stdout + live.stderr
            assert live.stdout.splitlines()[-1].startswith("OK: 1 uid, ")
        assert d.proc is not None
        assert d.proc.returncode == 0
        yield d.log_dir


def _files(log_dir: Path) -> list[str]:
    return sorted(n for n in os.listdir(log_dir / str(ROOT)) if n.endswith(".zst"))


def test_an_untouched_store_is_ok(written: Path) -> None:
    """Rotated, compressed, partly deleted by retention: OK, the deletions noted, exit 0."""
    out = logq_verify(written)
    assert out.returncode == 0, out.stdout
    lines = out.stdout.splitlines()
    assert lines[-1].startswith("OK: 1 uid, ")
    assert lines[-1].endswith("every chain intact (1 note)")
    assert lines[0].startswith(f"note: {ROOT}/")
    assert lines[0].endswith("deleted by retention: the uid's quota_bytes (recorded)")


@pytest.fixture
def copy(written: Path) -> Iterator[Path]:
    """A copy of the store to change."""
    with world() as root:
        target = root / "log"
        shutil.copytree(written, target)
        yield target


def _seq_in(path: Path, index: int) -> int:
    """The seq of the index-th record of a (compressed) file."""
    seen: list[int] = []

    def grab(data: list[bytes]) -> list[bytes]:
        seen.append(orjson.loads(data[index])["seq"])
        return data

    rewrite(path, grab)
    return seen[0]


@pytest.mark.parametrize("change", ["edit", "delete", "swap", "truncate"])
def test_a_change_to_a_rotated_file_is_named(copy: Path, change: str) -> None:
    """Editing one byte, deleting a line, swapping two, cutting the tail of a compressed
    rotated file: exit 1, the file and the seq named."""
    name = _files(copy)[1]
    path = copy / str(ROOT) / name
    seq = _seq_in(path, 5)
    last = _seq_in(path, -1)
    expected = {
        "edit": (edit_byte(seq), [f"seq {seq}: changed"]),
        "delete": (delete_line(seq), [f"seq {seq}: removed"]),
        "swap": (swap(seq), [f"seq {seq + 1}: out of order: moved to line 6"]),
        "truncate": (
            cut_tail(10),
            [
                f"seq {last}: removed from the end: the file was cut short",
                "ends in an incomplete line of ",
            ],
        ),
    }
    fn, words = expected[change]
    rewrite(path, fn)
    out = logq_verify(copy)
    assert out.returncode == 1, out.stdout
    *problems, summary = out.stdout.splitlines()[1:]  # after the retention note
    assert len(problems) == len(words)
    for problem, said in zip(problems, words, strict=True):
        assert problem.startswith(f"{ROOT}/{name}: {said}")
    assert summary.startswith(f"FAILED: {len(words)} problem")


def test_a_change_to_the_current_file_is_named(copy: Path) -> None:
    """One byte of a record in current.jsonl: named by seq, -o json says the same."""
    path = copy / str(ROOT) / "current.jsonl"
    seq = orjson.loads(path.read_bytes().splitlines()[-1])["seq"]
    rewrite(path, edit_byte(seq))
    out = logq_verify(copy, "-o", "json")
    assert out.returncode == 1
    *findings, summary = map(orjson.loads, out.stdout.splitlines())
    assert [(f["file"], f["what"], f["first_seq"]) for f in findings if f["problem"]] == [
        ("current.jsonl", "changed", seq),
    ]
    assert (summary["ok"], summary["problems"]) == (False, 1)


def test_a_rotated_file_removed_in_the_middle_is_named(copy: Path) -> None:
    """A rotated file (and its chain) removed between two others: named, with its seq range."""
    name = _files(copy)[1]
    plain = name.removesuffix(".zst")
    first, last = (int(x) for x in plain.split(".")[0].split("-"))
    (copy / str(ROOT) / name).unlink()
    (copy / str(ROOT) / (plain + ".chain")).unlink()
    out = logq_verify(copy)
    assert out.returncode == 1
    assert f"{ROOT}/{plain}: seq {first}..{last}: missing: " in out.stdout
    assert "no deletion by retention was recorded" in out.stdout


def test_kill_9_and_restart_leave_a_verifiable_store() -> None:
    """After kill -9 mid-flood and a restart, the store verifies: what the crash left
    unchained is chained at start and noted, nothing is a problem."""
    with world() as root:
        d = DaemonProcess(root, store_extra="max_file_bytes = 16384")
        d.start()
        with d.connect() as s:
            for i in range(400):
                s.sendall(b"<13>before the crash %d\n" % i)
        d.wait_records(ROOT, 400)
        d.kill9()
        d.start()
        with d.connect() as s:
            s.sendall(b"<13>after the restart\n")
        d.wait_records(ROOT, 401)
        live = logq_verify(d.log_dir)
        assert d.stop() == 0
        assert live.returncode == 0, live.stdout
        stopped = logq_verify(d.log_dir)
        assert stopped.returncode == 0, stopped.stdout
