"""End to end: rotation, compression, retention, kill -9, a full disk, an unsafe uid directory."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._daemon import DaemonProcess, poll, run_as, world
from tests._uids import free_uids
from trio_logd.control_client import request_one
from trio_logd.store._layout import RotatedName

ROOT = os.geteuid()
(OTHER_UID,) = free_uids(1)


@contextlib.contextmanager
def _daemon(**kw: str) -> Iterator[DaemonProcess]:
    """A daemon on a fresh world, stopped (and the world removed) even if the test fails."""
    with world() as root, DaemonProcess(root, **kw) as d:
        yield d


def _send(d: DaemonProcess, msgs: list[str]) -> None:
    with contextlib.closing(d.connect()) as s:
        s.sendall(b"".join(b"<13>%s\n" % m.encode() for m in msgs))


def _stats(d: DaemonProcess) -> dict[int, dict[str, Any]]:
    reply = request_one(d.control, "stats", timeout=10)
    return {u["uid"]: u for u in reply["uids"]}


def _files(d: DaemonProcess, uid: int) -> list[str]:
    return sorted(os.listdir(d.log_dir / str(uid)))


def _user(records: list[dict[str, Any]]) -> list[str]:
    return [r["msg"] for r in records if "event" not in r]


def test_20000_records_through_many_rotations_arrive_once_in_order() -> None:
    """20 000 records over ~60 rotations: each once, in order, seq contiguous, all compressed."""
    n = 20_000
    with _daemon(store_extra='max_file_bytes = 65536\ncompress = "zstd"') as d:
        msgs = [f"record {i:05d}" for i in range(n)]
        threads = [
            threading.Thread(target=_send, args=(d, msgs[k : k + 5000])) for k in range(0, n, 5000)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        recs = d.wait_records(ROOT, n, timeout=60)
        got = _user(recs)
        assert sorted(got) == msgs  # each exactly once
        for k in range(0, n, 5000):  # each connection's records in the order sent
            mine = [m for m in got if msgs[k] <= m <= msgs[k + 4999]]
            assert mine == msgs[k : k + 5000]
        seqs = [r["seq"] for r in d.records(ROOT)]
        assert seqs == list(range(1, len(seqs) + 1))

        def settled() -> bool:
            names = [RotatedName.parse(x) for x in _files(d, ROOT)]
            files = {x.with_suffix("").format() for x in names if x is not None}
            noted = {r["file"] for r in d.records(ROOT) if r.get("event") == "rotated"}
            compressed = all(x.suffix == ".zst" for x in names if x is not None)
            return len(files) >= 50 and noted == files and compressed

        poll(settled, timeout=30)
        assert d.stop() == 0
        assert [r["seq"] for r in d.records(ROOT)][: len(seqs)] == seqs


def test_kill9_mid_stream_loses_at_most_the_unwritten_tail_and_never_reuses_seq() -> None:
    """kill -9 mid-stream: a prefix survives, seq goes on, nothing after the restart is lost."""
    with _daemon(store_extra="max_file_bytes = 32768") as d:
        stop = threading.Event()
        sent: list[str] = []

        def stream() -> None:
            with contextlib.closing(d.connect()) as s:
                i = 0
                while not stop.is_set():
                    batch = [f"before {i + k:06d}" for k in range(100)]
                    sent.extend(batch)  # attempted: some may be in flight when killed
                    try:
                        s.sendall(b"".join(b"<13>%s\n" % m.encode() for m in batch))
                    except OSError:
                        return
                    i += 100

        t = threading.Thread(target=stream)
        t.start()
        poll(lambda: len(_user(d.records(ROOT))) >= 3000, timeout=30)
        d.kill9()
        stop.set()
        t.join()
        d.start()
        after = [f"after {i:04d}" for i in range(1000)]
        _send(d, after)
        d.wait_records(ROOT, 1000, where=lambda r: r.get("msg", "").startswith("after"))
        assert d.stop() == 0
        recs = d.records(ROOT)
        seqs = [r["seq"] for r in recs]
        assert seqs == sorted(set(seqs))  # no duplicate, never reused
        msgs = _user(recs)
        survived = [m for m in msgs if m.startswith("before")]
        assert len(survived) >= 3000
        assert survived == sent[: len(survived)]  # a prefix: only the unwritten tail is lost
        assert [m for m in msgs if m.startswith("after")] == after


def test_rotation_by_age_files_a_rotated_record() -> None:
    """A file max_file_age old is rotated with no new records; the next starts with `rotated`."""
    with _daemon(store_extra='max_file_age = "1s"\ncompress = "gzip"') as d:
        _send(d, ["old news"])

        def rotated() -> list[dict[str, Any]]:
            return [r for r in d.records(ROOT) if r.get("event") == "rotated"]

        rec = poll(rotated, timeout=15)[0]
        name = RotatedName.parse(rec["file"])
        assert name is not None
        assert (rec["first_seq"], rec["last_seq"], rec["reason"]) == (
            name.first_seq, name.last_seq, "age",
        )  # fmt: skip
        poll(lambda: any(x.endswith(".jsonl.gz") for x in _files(d, ROOT)), timeout=15)
        cur = (d.log_dir / str(ROOT) / "current.jsonl").read_bytes().splitlines()
        assert b'"event":"rotated"' in cur[0]
        assert d.stop() == 0


def test_quota_rotate_deletes_the_uids_oldest_files_and_stats_show_usage() -> None:
    """on_quota = rotate: the uid's oldest files go; stats' disk_bytes and quota_bytes are right."""
    quota = 200_000
    with _daemon(
        store_extra='max_file_bytes = 32768\ncompress = "none"',
        limits_extra=f"quota_bytes = {quota}",
    ) as d:
        msgs = [f"quota {i:05d} " + "x" * 100 for i in range(10_000)]  # ~2 MB
        _send(d, msgs)

        def settled() -> dict[str, Any] | None:
            u = _stats(d).get(ROOT)
            if u is None or u["stored"] < len(msgs) or u["disk_bytes"] > quota:
                return None
            return u

        u = poll(settled, timeout=30)
        on_disk = sum(p.stat().st_size for p in (d.log_dir / str(ROOT)).iterdir())
        assert (u["disk_bytes"], u["quota_bytes"]) == (on_disk, quota)
        got = _user(d.records(ROOT))
        assert got == msgs[len(msgs) - len(got) :]  # the newest survive, in order
        assert u["disk_bytes"] > quota - 2 * 32768  # about one file under the quota, not less
        assert d.stop() == 0


@pytest.fixture
def small_tmpfs() -> Iterator[Path]:
    """A world whose log_dir is a 2 MiB tmpfs (root only), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("needs root: mounts a tmpfs to fill it")
    with world() as root:
        log_dir = root / "var" / "log"
        log_dir.mkdir(parents=True)
        out = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(log_dir)],
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {out.stderr.strip()}")
        try:
            yield root
        finally:
            if subprocess.run(["umount", str(log_dir)], capture_output=True).returncode:
                subprocess.run(["umount", "-l", str(log_dir)], capture_output=True)


def _fill(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)

    def forever() -> None:
        while True:
            os.write(fd, b"\0" * 65536)

    try:
        with pytest.raises(OSError, match="No space left") as info:
            forever()
        assert info.value.errno == errno.ENOSPC
    finally:
        os.close(fd)


def test_full_disk_drops_counts_and_recovers_with_a_suppressed_record(small_tmpfs: Path) -> None:
    """ENOSPC: status keeps answering; once space returns records land, then `suppressed` (disk)."""
    d = DaemonProcess(small_tmpfs, store_extra='keep_free_bytes = 0\ncompress = "none"').start()
    try:
        d.wait_records(ROOT, 1, where=lambda r: r.get("event") == "started")
        _send(d, ["before full"])
        d.wait_records(ROOT, 1)
        stored_before = _stats(d)[ROOT]["stored"]
        filler = d.log_dir / "filler"
        _fill(filler)
        lost = [f"lost {i:04d} " + "y" * 200 for i in range(2000)]
        _send(d, lost)
        poll(lambda: _stats(d)[ROOT]["dropped"].get("disk", 0) >= 1, timeout=20)

        def all_handled() -> bool:  # the writer is done with every lost record
            u = _stats(d)[ROOT]
            return bool(u["stored"] + u["dropped"].get("disk", 0) >= stored_before + len(lost))

        poll(all_handled, timeout=20)
        status = subprocess.run(d.command("status"), capture_output=True, text=True, timeout=30)
        assert status.returncode == 0, status.stderr
        stored_while_full = len(_user(d.records(ROOT))) - 1
        filler.unlink()

        def landed() -> bool:
            _send(d, ["after space returned"])
            return "after space returned" in _user(d.records(ROOT))

        poll(landed, timeout=20, interval=0.2)
        (sup,) = d.wait_records(ROOT, 1, timeout=20, where=lambda r: r.get("event") == "suppressed")
        assert (sup["reason"], sup["uid"], sup["pid"]) == ("disk", ROOT, d.pid)
        assert stored_while_full + sup["count"] == len(lost)
        users = _user(d.records(ROOT))
        assert users[: 1 + stored_while_full] == ["before full", *lost[:stored_while_full]]
        seqs = [r["seq"] for r in d.records(ROOT)]
        assert seqs == sorted(set(seqs))
    finally:
        assert d.stop() == 0, d.stderr()


@pytest.mark.usefixtures("as_root")
def test_symlinked_uid_directory_is_refused_and_nothing_written_through_it() -> None:
    """A symlink planted as a uid directory: that uid's records are refused and counted."""
    with world() as root:
        log_dir = root / "var" / "log"
        log_dir.mkdir(parents=True, mode=0o700)
        target = root / "elsewhere"
        target.mkdir(mode=0o700)
        (log_dir / str(OTHER_UID)).symlink_to(target)
        with DaemonProcess(root) as d:
            try:

                def send_as_other() -> None:
                    _send(d, ["through the link?"])

                run_as(OTHER_UID, OTHER_UID, send_as_other)
                poll(
                    # the uid is in the figures once the daemon has read its record
                    lambda: _stats(d).get(OTHER_UID, {}).get("dropped", {}).get("disk") == 1,
                    timeout=10,
                )
                _send(d, ["root still logs"])
                assert _user(d.wait_records(ROOT, 1)) == ["root still logs"]
                assert list(target.iterdir()) == []
                assert "refusing to follow it" in d.stderr()
                refused = request_one(d.control, "status")["refused_uids"]
                assert list(refused) == [str(OTHER_UID)]
                assert "refusing to follow it" in refused[str(OTHER_UID)]
            finally:
                assert d.stop() == 0
