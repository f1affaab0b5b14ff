"""End to end: a file system filled from outside does not wipe other users' recent records.

Another uid, which logs nothing, fills the small file system shared by log_dir and a
world-writable directory: keep_free_bytes pressure may not delete records younger than
pressure_min_age (one day by default), so every stored record stays and new ones are
dropped and counted (reason disk) until the space comes back.
"""

from __future__ import annotations

import os
import stat
import subprocess
import tempfile
from typing import Any

import pytest

from tests._daemon import DaemonProcess, poll, world
from tests._uids import free_uids
from tests.attacks._helpers import run_child, send_as
from tests.faults.conftest import SmallFs
from trio_logd.control_client import request_one
from trio_logd.store.verify import verify_store

ROOT = os.geteuid()
MiB = 1 << 20
STORE = """\
max_file_bytes = 32768
compress = "none"
keep_free_bytes = 3145728
"""


def _stats(d: DaemonProcess) -> dict[int, dict[str, Any]]:
    reply = request_one(d.control, "stats", timeout=10)
    return {u["uid"]: u for u in reply["uids"]}


def _store(d: DaemonProcess) -> dict[str, Any]:
    status: dict[str, Any] = request_one(d.control, "status", timeout=10)["store"]
    return status


def _lines(n: int, tag: str) -> list[bytes]:
    return [b"<13>%s %05d %s\n" % (tag.encode(), i, b"x" * 150) for i in range(n)]


def test_a_fill_from_outside_deletes_no_recent_record(small_fs: SmallFs) -> None:
    """Another uid fills the shared file system below keep_free_bytes: root's and a user's
    records stay (none deleted), the user's next 50 records are dropped and counted as
    disk, and once the filler is gone new records are stored again."""
    user, filler_uid = free_uids(2)
    public = small_fs.root / "tmp"
    public.mkdir()
    public.chmod(0o1777)
    with world() as root:
        d = DaemonProcess(root, store_extra=STORE)
        text = d.config.read_text()
        d.config.write_text(text.replace(f'"{root}/var/log"', f'"{small_fs.root}/log"'))
        d.log_dir = small_fs.root / "log"
        with d:
            send_as(d, user, [b"".join(_lines(1000, "user"))])
            with d.connect() as s:
                s.sendall(b"".join(_lines(1000, "root")))
            d.wait_records(user, 1000)
            d.wait_records(ROOT, 1000)
            before = {uid: len(d.records(uid)) for uid in (user, ROOT)}
            # the housekeeper's pass makes each uid's unit index within a second
            poll(lambda: all((d.log_dir / str(u) / "units.index").exists() for u in (user, ROOT)))
            files = {uid: sorted(os.listdir(d.log_dir / str(uid))) for uid in (user, ROOT)}
            assert len(files[user]) > 10  # rotated files that pressure could have taken

            def fill() -> None:  # the outsider: logs nothing, writes a file of its own
                chunk = b"\0" * 65536
                with open(public / "big", "wb", buffering=0) as f:
                    while small_fs.free_bytes() > 1 * MiB:
                        f.write(chunk)

            assert run_child(filler_uid, fill).rc == 0
            held = poll(lambda: _store(d)["held"], timeout=15)
            assert "keep_free_bytes" in held
            assert "pressure_min_age" in held
            send_as(d, user, [b"".join(_lines(50, "late"))])
            poll(lambda: _stats(d)[user]["dropped"].get("disk", 0) >= 50, timeout=15)
            assert _stats(d)[user]["dropped"] == {"disk": 50}
            assert {uid: len(d.records(uid)) for uid in (user, ROOT)} == before
            assert {uid: sorted(os.listdir(d.log_dir / str(uid))) for uid in (user, ROOT)} == (
                files
            )
            assert "store_pressure_held" in d.stderr()
            assert "retention_deleted" not in d.stderr()
            (public / "big").unlink()
            poll(lambda: _store(d)["held"] is None, timeout=15)

            def stored_again() -> bool:
                with d.connect() as s:
                    s.sendall(b"<13>back again\n")
                return any(r.get("msg") == "back again" for r in d.records(ROOT))

            poll(stored_again, timeout=15, interval=0.5)
            status = subprocess.run(d.command("status"), capture_output=True, text=True, check=True)
            assert "shares its file system" not in status.stdout  # a file system of its own
        assert d.proc is not None
        assert d.proc.returncode == 0
    assert verify_store(small_fs.root / "log").problems == []


def test_status_warns_when_log_dir_shares_a_file_system_with_tmp() -> None:
    """log_dir on the same file system as the world-writable /tmp: status says so."""
    tmp = os.stat("/tmp")
    if os.stat(tempfile.gettempdir()).st_dev != tmp.st_dev or not tmp.st_mode & stat.S_IWOTH:
        pytest.skip("the test directories are not on the file system of a world-writable /tmp")
    with world() as root, DaemonProcess(root) as d:
        out = subprocess.run(d.command("status"), capture_output=True, text=True, check=True)
        warning = f"  warning:        log_dir {d.log_dir} shares its file system with /tmp"
        assert warning in out.stdout
        assert "give log_dir a file system of its own" in out.stdout
        assert "log_dir_shares_file_system" in d.stderr()
