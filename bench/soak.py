"""kill -9 soak (issue 15): acknowledged load from several uids, the daemon killed again and again.

``kill9_soak``: three senders (root and two uids with no passwd entry), each a
forked child with an acknowledged ``LogdClient``, send numbered records as
fast as acks come back, in rounds of 200 (a round counts as acked once
``flush`` says every record of it is stored). The store rotates every 256 KiB
and compresses with zstd, so rotations and compressions are in flight at
every kill. ``SOAK_KILLS`` times (default 10), after 0.5-2.5 s of load, the
daemon alone gets ``kill -9`` (its helper is left to notice) and a new one
starts on the same store at once. At the end: per uid, records acked, acked
records lost, records stored twice (an ack lost with the daemon, the record
sent again), ``seq`` gaps and reused ``seq`` values, and ``logq --verify``'s
problems; and how many killed daemons' helpers were still alive 5 s later. The
invariants: 0 lost, 0 reused, verify clean, no helper outlives its daemon.

    SOAK_KILLS=10 python -m bench kill9_soak --runs 1
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Final

import orjson

from bench._daemon import BenchDaemon
from trio_logd.client import LogdClient
from trio_logd.control_client import request_one
from trio_logd.errors import ConnectFailed
from trio_logd.store.files import read_uid_records
from trio_logd.store.verify import verify_store

STORE: Final = {"max_file_bytes": 256 << 10, "store": 'compress = "zstd"\nfsync = "batch"'}
ROUND: Final = 200
LOAD_SECONDS: Final = (0.5, 2.5)
_SENT: Final = re.compile(r"soak (\d+) ")


def _free_uids(n: int) -> list[int]:
    """*n* uids with no passwd entry (nobody else's records or processes)."""
    out = []
    for uid in range(62000, 63000):
        try:
            pwd.getpwuid(uid)
        except KeyError:
            out.append(uid)
            if len(out) == n:
                break
    return out


def _sender(socket: str, uid: int, acked_file: Path, stop_file: Path) -> None:
    """In a child: as *uid*, send rounds of records; after each acked round, note the count."""
    if uid != os.geteuid():
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    fd = os.open(acked_file, os.O_WRONLY)
    pad = "p" * 120
    client = LogdClient(socket, ack=True, app="soak", timeout=60, reconnect_max=0.2)
    n = 0
    while not stop_file.exists():
        for i in range(n, n + ROUND):
            client.emit(f"soak {i} {pad}")
        if client.flush(timeout=60):
            n += ROUND
            os.pwrite(fd, b"%20d" % n, 0)  # in place: the file is ours, its directory is not
    client.close(timeout=30)


def _fork_sender(socket: str, uid: int, acked: Path, stop: Path) -> int:
    acked.write_bytes(b"%20d" % 0)
    os.chown(acked, uid, uid)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            _sender(socket, uid, acked, stop)
            code = 0
        finally:
            os._exit(code)
    return pid


def _start(d: BenchDaemon) -> subprocess.Popen[bytes]:
    with open(d.root / "daemon.stderr", "ab") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "trio_logd", "serve", "--config", str(d.config)],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    deadline = time.monotonic() + 30
    while True:
        try:
            if request_one(d.control, "status", timeout=1)["_server"].pid == proc.pid:
                return proc
        except ConnectFailed:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            msg = (d.root / "daemon.stderr").read_text()[-2000:]
            raise RuntimeError(msg)
        time.sleep(0.02)


def _gone(pid: int, timeout: float) -> bool:
    """Process *pid* (not our child) has exited within *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":
            return True
        time.sleep(0.01)
    return False


def _count(d: BenchDaemon, uid: int, acked: int) -> dict[str, int]:
    seen: Counter[int] = Counter()
    seqs: list[int] = []
    for line in read_uid_records(d.log_dir, uid):
        rec = orjson.loads(line)
        seqs.append(rec["seq"])
        if (m := _SENT.match(rec.get("msg", ""))) and "event" not in rec:
            seen[int(m[1])] += 1
    ordered = sorted(seqs)
    return {
        "acked": acked,
        "lost": sum(1 for i in range(acked) if not seen[i]),
        "duplicates": sum(c - 1 for c in seen.values() if c > 1),
        "gaps": sum(b - a - 1 for a, b in itertools.pairwise(ordered) if b > a + 1),
        "reused": len(seqs) - len(set(seqs)),
        "stored": len(seqs),
    }


def _soak_once(kills: int, rng: random.Random) -> dict[str, Any]:
    d = BenchDaemon(**STORE)  # type: ignore[arg-type]
    uids = [os.geteuid(), *_free_uids(2)]
    stop = d.root / "stop"
    proc = _start(d)
    children = {uid: _fork_sender(d.socket, uid, d.root / f"acked-{uid}", stop) for uid in uids}
    t0 = time.monotonic()
    try:
        outlived = 0
        for _ in range(kills):
            time.sleep(rng.uniform(*LOAD_SECONDS))  # load; the kill lands anywhere in it
            helper = request_one(d.control, "status", timeout=10)["helper"]["pid"]
            proc.kill()
            proc.wait()
            proc = _start(d)
            outlived += helper is not None and not _gone(helper, timeout=5)
        time.sleep(LOAD_SECONDS[1])
        stop.touch()
        for pid in children.values():
            os.waitpid(pid, 0)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=120)
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    elapsed = time.monotonic() - t0
    rows = {}
    for uid in uids:
        path = d.root / f"acked-{uid}"
        rows[uid] = _count(d, uid, int(path.read_text()))
    report = verify_store(d.log_dir)
    stderr = (d.root / "daemon.stderr").read_text()
    if not os.environ.get("BENCH_KEEP"):
        subprocess.run(["rm", "-rf", str(d.root)], check=False)
    return {
        "kills": kills,
        "seconds": round(elapsed, 1),
        "exit": code,
        "uids": rows,
        "verify_problems": len(report.problems),
        "helpers_hung": stderr.count("helper_hung"),
        "helpers_outlived": outlived,
    }


def kill9_soak(runs: int = 1) -> dict[str, Any]:
    kills = int(os.environ.get("SOAK_KILLS", "10"))
    rng = random.Random(int(os.environ.get("SOAK_SEED", "15")))
    results = []
    print(f"kill -9 soak: {kills} kills per run, {runs} run(s), 3 uids, acked load")
    for run in range(runs):
        res = _soak_once(kills, rng)
        results.append(res)
        total = Counter[str]()
        for row in res["uids"].values():
            total.update(row)
        print(
            f"  run {run + 1}: {res['kills']} kills in {res['seconds']} s, "
            f"exit at the end {res['exit']}; "
            f"acked {total['acked']:,}, lost {total['lost']}, duplicates {total['duplicates']}, "
            f"gaps {total['gaps']}, reused {total['reused']}, "
            f"verify problems {res['verify_problems']}; old helpers alive 5 s after a kill: "
            f"{res['helpers_outlived']}"
        )
        for uid, row in res["uids"].items():
            print(
                f"    uid {uid}: acked {row['acked']:,}, stored {row['stored']:,}, "
                f"lost {row['lost']}, duplicates {row['duplicates']}, gaps {row['gaps']}, "
                f"reused {row['reused']}"
            )
    return {"runs": results}


SCENARIOS = {"kill9_soak": kill9_soak}
