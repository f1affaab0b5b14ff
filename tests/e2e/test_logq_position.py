"""End to end: logq's cursors, boots, --reverse and output options against a real daemon."""

from __future__ import annotations

import base64
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests._daemon import PYTHON, DaemonProcess, poll, world
from tests.e2e.test_logq import ALICE, BOB, ROOT, Result, cfg, logq_as, send_as
from trio_logd.control_client import ControlConnection, request_one
from trio_logd.query.cursor import Cursor, Position
from trio_logd.server._boot import BOOT_ID_ENV

pytestmark = pytest.mark.usefixtures("as_root")

BOOT_A, BOOT_B = "1" * 32, "2" * 32


def _recs(r: Result) -> list[dict[str, object]]:
    assert r.rc == 0, r.err
    return [orjson.loads(x) for x in r.out.splitlines() if not x.startswith("-- cursor")]


def _msgs(r: Result) -> list[str]:
    """The senders' messages shown (the daemon's own records, ``rotated`` …, left out)."""
    return [str(x["msg"]) for x in _recs(r) if "event" not in x]


def _cursor_line(r: Result) -> str:
    last = r.out.splitlines()[-1]
    assert last.startswith("-- cursor: "), r.out
    return last[len("-- cursor: ") :]


def _send(d: DaemonProcess, uid: int, *msgs: str) -> None:
    exists = (d.log_dir / str(uid)).exists()
    before = len([x for x in d.records(uid) if "event" not in x]) if exists else 0
    send_as(d, uid, *(b"<14>" + m.encode() for m in msgs))
    d.wait_records(uid, before + len(msgs))


@pytest.fixture
def booted(tmp_path: Path) -> Iterator[tuple[DaemonProcess, Path]]:
    """A world whose daemon reads its boot id from a file of the test's (TRIO_LOGD_BOOT_ID_FILE)."""
    boot_file = tmp_path / "boot_id"
    boot_file.write_text(BOOT_A + "\n")
    with world() as root:
        # small files: records rotate (and rotated files are compressed) as they come
        d = DaemonProcess(root, store_extra='max_file_bytes = 1500\ncompress = "zstd"')
        env = {**os.environ, BOOT_ID_ENV: str(boot_file)}
        d.start(env=env)
        try:
            yield d, boot_file
        finally:
            if d.proc is not None and d.proc.poll() is None:
                assert d.stop() == 0, d.stderr()


def _restart(d: DaemonProcess, boot_file: Path, boot_id: str) -> None:
    assert d.stop() == 0, d.stderr()
    boot_file.write_text(boot_id + "\n")
    d.start(env={**os.environ, BOOT_ID_ENV: str(boot_file)})


def test_cursor_resumes_exactly_across_restart_and_rotation(
    booted: tuple[DaemonProcess, Path],
) -> None:
    """A saved cursor, a restart, rotations: --after-cursor, --cursor-file give exactly the rest."""
    d, boot_file = booted
    _send(d, ALICE, *(f"first {i}" for i in range(8)))
    home = d.root / "alice"
    home.mkdir()
    os.chown(home, ALICE, ALICE)
    cursor_file = home / "cursor"
    r = logq_as(
        ALICE, ALICE, "-o", "json", "--show-cursor", "--cursor-file", str(cursor_file), *cfg(d)
    )
    assert _msgs(r) == [f"first {i}" for i in range(8)]
    saved = _cursor_line(r)
    assert cursor_file.read_text() == saved + "\n"
    assert not list(home.glob("cursor.tmp.*"))
    _restart(d, boot_file, BOOT_A)
    _send(d, ALICE, *(f"second {i}" for i in range(12)))
    names = [p.name for p in (d.log_dir / str(ALICE)).iterdir()]
    rotated = [n for n in names if n[0].isdigit() and not n.endswith(".chain")]
    seq = Cursor.decode(saved).seq
    # the cursor's record is in a rotated file now
    assert any(int(n[:16]) <= seq <= int(n[17:33]) for n in rotated), names
    want = [f"second {i}" for i in range(12)]
    after = logq_as(ALICE, ALICE, "-o", "json", "--after-cursor", saved, *cfg(d))
    assert _msgs(after) == want
    assert _recs(after) == [x for x in d.records(ALICE) if x["seq"] > seq]  # exactly, in order
    # --cursor: from the named record on; -n N after a cursor: the first N (journalctl)
    r = logq_as(ALICE, ALICE, "-o", "json", "--cursor", saved, "-n", "3", *cfg(d))
    assert [x["seq"] for x in _recs(r)] == [seq, seq + 1, seq + 2], r.out
    r = logq_as(ALICE, ALICE, "-o", "json", "--cursor-file", str(cursor_file), *cfg(d))
    assert _msgs(r) == want
    resumed = cursor_file.read_text()
    assert resumed != saved + "\n"
    # nothing new: nothing shown, the file kept; offline, the same answer and cursor
    r = logq_as(ALICE, ALICE, "-o", "json", "--cursor-file", str(cursor_file), *cfg(d))
    assert (_msgs(r), cursor_file.read_text()) == ([], resumed)
    _send(d, ALICE, "third")
    offline = logq_as(ROOT, 0, "-o", "json", "--uid", str(ALICE), "--directory", str(d.log_dir),
                      "--after-cursor", resumed.strip(), "--show-cursor")  # fmt: skip
    online = logq_as(ROOT, 0, "-o", "json", "--uid", str(ALICE), "--after-cursor",
                     resumed.strip(), "--show-cursor", *cfg(d))  # fmt: skip
    assert _msgs(offline) == _msgs(online) == ["third"]
    assert _cursor_line(offline) == _cursor_line(online)


def test_another_uids_cursor_unlocks_and_reveals_nothing(
    booted: tuple[DaemonProcess, Path],
) -> None:
    """bob with alice's cursor (or a forged one) reads only his own, the same whatever it names."""
    d, _ = booted
    _send(d, ALICE, "alice 1", "alice 2", "alice 3")
    _send(d, BOB, "bob 1", "bob 2")
    r = logq_as(ALICE, ALICE, "-o", "json", "-n", "2", "--show-cursor", *cfg(d))
    alices = _cursor_line(r)
    r = logq_as(BOB, BOB, "-o", "json", "--uid", str(ALICE), "--after-cursor", alices, *cfg(d))
    assert (r.rc, r.out) == (1, "")
    assert "permission denied" in r.err
    own = logq_as(BOB, BOB, "-o", "json", "--after-cursor", alices, *cfg(d))
    assert set(_msgs(own)) <= {"bob 1", "bob 2"}
    # a forged cursor naming alice's uid with her real store or another: the same answer
    c = Cursor.decode(alices)
    store = os.stat(d.log_dir / str(ALICE)).st_ino
    for forged in (Position(ALICE, 1, store), Position(ALICE, 1, store + 1)):
        text = Cursor(c.ts, (forged,)).encode()
        r = logq_as(BOB, BOB, "-o", "json", "--after-cursor", text, *cfg(d))
        assert (r.rc, r.out, r.err) == (own.rc, own.out, own.err)
    with ControlConnection(d.control) as conn:  # a cursor reads forwards: not with lines
        conn.send("query", after_cursor=alices, lines=5)
        (reply,) = list(conn.responses())
    assert (reply["type"], reply["code"]) == ("error", "invalid")
    assert "cannot be used with 'lines'" in reply["error"]
    for bad in ("nonsense", "c1." + base64.urlsafe_b64encode(b"x;1.2.3").decode()):
        r = logq_as(BOB, BOB, "--after-cursor", bad, *cfg(d))
        assert (r.rc, r.out) == (2, "")
        assert r.err.startswith("logq: invalid cursor ")
        assert "Traceback" not in r.err


def test_boots_list_and_select(booted: tuple[DaemonProcess, Path]) -> None:
    """Two boots (a daemon started with another boot id): --list-boots, -b -1, -b ID, offline."""
    d, boot_file = booted
    _send(d, ALICE, "in boot A")
    _restart(d, boot_file, BOOT_A)  # a restart in the same boot: still one boot
    _send(d, ALICE, "in boot A again")
    _restart(d, boot_file, BOOT_B)
    _send(d, ALICE, "in boot B")
    r = logq_as(ALICE, ALICE, "--list-boots", "-o", "json", *cfg(d))
    assert r.rc == 0, r.err
    boots = orjson.loads(r.out)
    assert [(b["index"], b["boot_id"]) for b in boots] == [(-1, BOOT_A), (0, BOOT_B)]
    r = logq_as(ALICE, ALICE, "--list-boots", *cfg(d))
    assert r.rc == 0, r.err
    table = r.out.splitlines()
    assert table[0].split()[:3] == ["IDX", "BOOT", "ID"]
    assert [row.split()[:2] for row in table[1:]] == [["-1", BOOT_A], ["0", BOOT_B]]

    def boot(*argv: str) -> list[str]:
        return _msgs(logq_as(ALICE, ALICE, "-o", "json", *argv, *cfg(d)))

    assert boot("-b", "-1") == ["in boot A", "in boot A again"]
    assert boot("-b", "1") == boot("--boot", BOOT_A) == ["in boot A", "in boot A again"]
    assert boot("-b") == boot("-b", "0") == boot("-b", BOOT_A + "+1") == ["in boot B"]
    offline = logq_as(ROOT, 0, "-o", "json", "--uid", str(ALICE), "-b", "-1",
                      "--directory", str(d.log_dir))  # fmt: skip
    assert _msgs(offline) == ["in boot A", "in boot A again"]
    r = logq_as(ALICE, ALICE, "-b", "-2", *cfg(d))
    assert (r.rc, r.out) == (2, "")
    assert "no such boot: 2 known" in r.err
    started = [x for x in d.records(ROOT) if x.get("event") == "started"]
    assert [x["boot_id"] for x in started] == [BOOT_A, BOOT_A, BOOT_B]


def test_reverse_and_output_options(booted: tuple[DaemonProcess, Path]) -> None:
    """-r -n 5: the last five, newest first; -r alone; -o cat, --no-hostname, --output-fields."""
    d, _ = booted
    _send(d, ALICE, *(f"m{i}" for i in range(12)))
    everything = _recs(logq_as(ALICE, ALICE, "-o", "json", *cfg(d)))
    assert (
        _recs(logq_as(ALICE, ALICE, "-o", "json", "-r", "-n", "5", *cfg(d)))
        == (everything[-5:][::-1])
    )
    assert _recs(logq_as(ALICE, ALICE, "-o", "json", "-r", *cfg(d))) == everything[::-1]
    r = logq_as(ALICE, ALICE, "-r", "-f", *cfg(d))
    assert (r.rc, r.out) == (2, "")
    assert "--reverse and --follow" in r.err
    r = logq_as(ALICE, ALICE, "-o", "cat", "-n", "2", *cfg(d))
    assert (r.rc, r.out) == (0, "".join(f"{x['msg']}\n" for x in everything[-2:]))
    r = logq_as(ALICE, ALICE, "-n", "1", "--no-hostname", *cfg(d))
    assert "uid=" not in r.out
    assert r.out.endswith(f"]: {everything[-1]['msg']}\n")
    r = logq_as(ALICE, ALICE, "-o", "json", "-n", "1", "--output-fields", "msg,pid", *cfg(d))
    assert list(orjson.loads(r.out)) == ["ts", "seq", "uid", "pid", "msg"]
    r = logq_as(ALICE, ALICE, "-o", "short", "--output-fields", "msg", *cfg(d))
    assert (r.rc, r.out) == (2, "")
    r = logq_as(ALICE, ALICE, "-o", "verbose", "--grep", "^m11$", *cfg(d))
    assert "  claimed by the sender (not verified):\n" in r.out


def test_follow_from_a_cursor(booted: tuple[DaemonProcess, Path], tmp_path: Path) -> None:
    """-f --cursor-file: the records after the cursor, then live ones; SIGTERM writes the file."""
    d, _ = booted
    _send(d, ROOT, "old 1", "old 2")
    cursor_file = tmp_path / "cursor"
    r = logq_as(ROOT, 0, "-o", "json", "-n", "1", "--show-cursor", *cfg(d))
    cursor_file.write_text(_cursor_line(r) + "\n")  # after "old 2"
    _send(d, ROOT, "new 1")
    with subprocess.Popen(
        [PYTHON, "-m", "trio_logd.cli.logq", "-f", "-o", "json", "--cursor-file",
         str(cursor_file), *cfg(d)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as proc:  # fmt: skip
        assert proc.stdout is not None
        assert orjson.loads(proc.stdout.readline())["msg"] == "new 1"
        _send(d, ROOT, "live 1")
        assert orjson.loads(proc.stdout.readline())["msg"] == "live 1"
        proc.terminate()
        assert proc.wait(timeout=10) == 0, proc.stderr.read() if proc.stderr else ""
    _send(d, ROOT, "after")
    r = logq_as(ROOT, 0, "-o", "json", "--cursor-file", str(cursor_file), *cfg(d))
    assert _msgs(r) == ["after"]


def test_cursor_file_that_cannot_be_used(tmp_path: Path) -> None:
    """A cursor file in no writable directory, or one that is a directory, is a usage
    error before any record is shown, without a traceback (offline store)."""
    from tests.query._store import T0, Rec, write_uid

    store = tmp_path / "store"
    write_uid(store, ROOT, [Rec(T0 + i, f"m{i}") for i in range(3)])
    r = logq_as(ROOT, 0, "-D", str(store), "-o", "cat", "--cursor-file", "/proc/nope/c")
    assert (r.rc, r.out, r.err) == (
        2,
        "",
        "logq: --cursor-file /proc/nope/c: cannot write in /proc/nope\n",
    )
    (tmp_path / "dir").mkdir()
    r = logq_as(ROOT, 0, "-D", str(store), "-o", "cat", "--cursor-file", str(tmp_path / "dir"))
    assert (r.rc, r.out) == (2, "")
    assert r.err == f"logq: --cursor-file {tmp_path / 'dir'}: Is a directory\n"
    r = logq_as(ROOT, 0, "-D", str(store), "-o", "cat", "--cursor-file", str(tmp_path / "c"))
    assert (r.rc, r.out) == (0, "m0\nm1\nm2\n")
    assert (tmp_path / "c").read_text().startswith("c1.")


def test_follow_of_a_uid_without_records_yet_writes_its_cursor(
    booted: tuple[DaemonProcess, Path], tmp_path: Path
) -> None:
    """-f --cursor-file on a uid with no store yet: its first records get a cursor too
    (the daemon sends the new store's identity), and the next run resumes after them."""
    d, _ = booted
    cursor_file = tmp_path / "cursor"
    argv = [PYTHON, "-m", "trio_logd.cli.logq", "-f", "-o", "json", "--uid", str(ALICE),
            "--cursor-file", str(cursor_file), *cfg(d)]  # fmt: skip
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        # following before the uid has any record (or store)
        poll(lambda: request_one(d.control, "status")["queries"]["followers"] == 1)
        assert not (d.log_dir / str(ALICE)).exists()
        _send(d, ALICE, "first ever")
        assert orjson.loads(proc.stdout.readline())["msg"] == "first ever"
        proc.terminate()
        assert proc.wait(timeout=10) == 0, proc.stderr.read() if proc.stderr else ""
    assert cursor_file.read_text().startswith("c1.")
    _send(d, ALICE, "second")
    r = logq_as(ROOT, 0, "-o", "json", "--uid", str(ALICE), "--cursor-file", str(cursor_file),
                *cfg(d))  # fmt: skip
    assert _msgs(r) == ["second"]
