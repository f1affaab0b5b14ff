"""``make bench`` scenario ``logq``: queries over a month-long store of 10 million records.

The store is laid out directly on disk, as the daemon's writer and rotation
would leave it: 100 uids (1000-1099), uid 1000 with 1 000 000 records and
the 99 others sharing 9 000 000; 30 days of timestamps; a uid's file rotated
at 8 MiB or after a day, whichever comes first, rotated files compressed with
zstd and named ``<first_seq>-<last_seq>.<first_ts>-<last_ts>.jsonl.zst``; the
last partial day in ``current.jsonl``. About 0.1 % of the messages carry the
token ``ECONNRESET`` (what ``--grep`` looks for). Every writer sits in a
systemd unit (``cgroup``, ``unit``, ``slice`` as the daemon records them): a
uid's app (``web.service`` for uid 1000), ``sidecar.service`` or
``cron.service``, a new one with every new process; and three early records
of each uid come from ``rare.service``. Each uid has its unit index
(``units.index``: a summary per rotated file), as the writer leaves it.
Generating takes a few minutes on two cores; the store is kept
(``$BENCH_TMP`` or the temp dir, ``trio-logd-logq-store-v3``) and reused by
later runs.

Figures (medians of ``--runs``; each a whole ``logq`` process, Python start-up
included, output to /dev/null):

* ``logq --uid 1000 -n 100``, through the daemon and with ``--directory``;
* ``logq --uid 1000 --grep ECONNRESET`` over the uid's 1 M records (and a
  pattern RE2 must run on every record, ``(?i)econnreset``: no literal
  prefilter);
* ``logq --uid 1000 --since <last hour>``: time and files opened, against
  the uid's file count;
* ``logq --uid 1000 --after-cursor C``: a cursor 100 records before the end
  (time and files opened: it seeks), and ``--after-cursor C -n 100`` from a
  cursor in the middle of the uid's records;
* journalctl's selection, each against ``-n 100`` (target: within 2x):
  ``-n 100 comm=web`` (a field every record has), ``-n 100 sev=err`` (1 %
  of the records), ``-n 100 -t web``; ``-n 100 -u web`` (a unit that logs
  often), ``-u rare`` (three records in the uid's first file), ``-u
  none-such`` (no record: every rotated file is passed over by its unit
  summary, only the current file is read) and ``unit=rare.service``;
  ``-F sev`` and ``-F pid`` (5 and 201 values in 1 M records, target 2 s);
* for comparison: ``zstdcat … | grep`` over the same files, ``logq`` with no
  filter (everything, as JSON) and a naive record-by-record scan
  (``read_uid_records`` + JSON decode + regex on every record).
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import re2  # type: ignore[import-untyped]
import zstandard

from bench._daemon import BenchDaemon
from trio_logd.query.cursor import Cursor, Position
from trio_logd.store._layout import CURRENT, RotatedName
from trio_logd.store._unitindex import INDEX, UnitSet

VERSION = 3
UIDS = range(1000, 1100)
BIG_UID = 1000
BIG_RECORDS = 1_000_000
OTHER_RECORDS = 9_000_000
DAYS = 30
MAX_FILE_BYTES = 8 << 20
MAX_FILE_AGE = 86400
TOKEN = "ECONNRESET"
#: One record in this many carries the token.
TOKEN_EVERY = 1000
#: The records (by index in the uid's history) that ``rare.service`` writes.
RARE = range(10, 13)

_SEVS = ["info"] * 80 + ["debug"] * 10 + ["notice"] * 5 + ["warning"] * 4 + ["err"]
_USERS = ["alice", "bob", "carol", "dave", "erin", "frank"]
#: As ``record.encode_line`` lays a record out (messages here need no escaping).
_LINE = b'{"ts":"%s","seq":%d,%s,"fac":"user","sev":"%s","app":"%s","host":"box","msg":"%s"}\n'


def store_dir() -> Path:
    return (
        Path(os.environ.get("BENCH_TMP") or tempfile.gettempdir())
        / f"trio-logd-logq-store-v{VERSION}"
    )


# --------------------------------------------------------------------------- generator


def _message(rng: random.Random, i: int) -> str:
    if i % TOKEN_EVERY == 17:
        return (
            f"upstream read failed: {TOKEN} (peer 10.0.{rng.randrange(256)}.{rng.randrange(256)})"
        )
    k = rng.randrange(5)
    if k == 0:
        return (
            f"GET /api/v1/items/{rng.randrange(100000)} 200 {rng.randrange(1, 900)}ms "
            f"user={rng.choice(_USERS)}"
        )
    if k == 1:
        peer = f"10.{rng.randrange(256)}.{rng.randrange(256)}.1"
        return f"connection from {peer} port {rng.randrange(1024, 65536)}"
    if k == 2:
        return f"cache miss key=session:{rng.getrandbits(32):08x}"
    if k == 3:
        return f"worker {rng.randrange(16)} finished job {i} in {rng.random() * 3:.3f}s"
    return f"retrying request id={rng.getrandbits(64):016x} attempt {rng.randrange(1, 5)}"


def _gen_uid(job: tuple[str, int, int, float, float]) -> tuple[int, int]:
    """Worker process: write one uid's files; return (files, bytes on disk)."""
    root, uid, n, t0, t1 = job
    rng = random.Random(uid)
    d = Path(root) / str(uid)
    d.mkdir(mode=0o700)
    cctx = zstandard.ZstdCompressor(level=3)
    step = (t1 - t0) / n
    day_prefix: dict[int, bytes] = {}
    app = [b"web", b"api", b"worker", b"cron"][uid % 4]
    buf: list[bytes] = []
    size = 0
    first_seq, first_t = 1, t0
    files = disk = 0
    pid = 0
    stamp = b""
    units = UnitSet()
    index: list[bytes] = []
    often = [app + b".service", b"sidecar.service", b"cron.service"]
    names: tuple[str | None, str | None, str | None, str | None] = (None, None, None, None)
    for i in range(n):
        seq = i + 1
        t = t0 + (i + rng.random() * 0.9) * step
        if i % 5000 == 0 or i in (RARE.start, RARE.stop):  # a new process now and then
            pid = rng.randrange(300, 4_000_000)
            unit = b"rare.service" if i == RARE.start else rng.choice(often)
            stamp = (
                b'"uid":%d,"gid":%d,"pid":%d,"exe":"/usr/bin/%s","comm":"%s",'
                b'"cgroup":"/system.slice/%s","unit":"%s","slice":"system.slice"'
            ) % (uid, uid, pid, app, app, unit, unit)
            names = (unit.decode(), "system.slice", None, None)
        units.note(names)
        day = int(t // 86400)
        prefix = day_prefix.get(day)
        if prefix is None:
            prefix = day_prefix[day] = time.strftime("%Y-%m-%dT", time.gmtime(day * 86400)).encode()
        sec = t - day * 86400
        micro = int((sec - int(sec)) * 1e6)
        s = int(sec)
        ts = b"%s%02d:%02d:%02d.%06dZ" % (prefix, s // 3600, s % 3600 // 60, s % 60, micro)
        if not buf:
            first_seq, first_t = seq, t
        sev = _SEVS[rng.randrange(len(_SEVS))]
        msg = _message(rng, i).encode()
        line = _LINE % (ts, seq, stamp, sev.encode(), app, msg)
        buf.append(line)
        size += len(line)
        if size >= MAX_FILE_BYTES or t - first_t >= MAX_FILE_AGE:
            name = RotatedName(first_seq, seq, int(first_t), math.ceil(t), "")
            data = cctx.compress(b"".join(buf))
            (d / name.with_suffix(".zst").format()).write_bytes(data)
            summary = units.entry(name.format())
            assert summary is not None
            index.append(summary)
            units = UnitSet()
            files += 1
            disk += len(data)
            buf, size = [], 0
    (d / INDEX).write_bytes(b"".join(index))
    disk += sum(map(len, index))
    data = b"".join(buf)
    (d / CURRENT).write_bytes(data)
    for p in d.iterdir():
        p.chmod(0o600)
    return files + 1, disk + len(data)


def ensure_store() -> tuple[Path, dict[str, Any]]:
    """Return the generated store (log_dir) and its metadata, generating it if needed."""
    base = store_dir()
    meta_path = base / "meta.json"
    if meta_path.exists():
        return base / "log", json.loads(meta_path.read_text())
    if base.exists():
        shutil.rmtree(base)
    log_dir = base / "log"
    log_dir.mkdir(parents=True, mode=0o700)
    base.chmod(0o755)
    t1 = float(int(time.time()) // 3600 * 3600)
    t0 = t1 - DAYS * 86400
    others = [u for u in UIDS if u != BIG_UID]
    share, extra = divmod(OTHER_RECORDS, len(others))
    counts = {u: share + (i < extra) for i, u in enumerate(others)} | {BIG_UID: BIG_RECORDS}
    jobs = [(str(log_dir), uid, counts[uid], t0, t1) for uid in UIDS]
    print(f"logq: generating {BIG_RECORDS + OTHER_RECORDS:,} records in {log_dir} …", flush=True)
    started = time.monotonic()
    with multiprocessing.Pool(os.cpu_count() or 2) as pool:
        results = pool.map(_gen_uid, jobs, chunksize=1)
    meta = {
        "version": VERSION,
        "t0": t0,
        "t1": t1,
        "records": sum(j[2] for j in jobs),
        "files": sum(f for f, _ in results),
        "disk_bytes": sum(b for _, b in results),
        "big_uid_files": results[0][0],
        "generated_in_s": round(time.monotonic() - started, 1),
    }
    meta_path.write_text(json.dumps(meta))
    print(f"logq: generated in {meta['generated_in_s']} s: {meta}", flush=True)
    return log_dir, meta


# --------------------------------------------------------------------------- measuring


def _logq_command() -> list[str]:
    script = Path(sys.executable).parent / "logq"
    return [str(script)] if script.exists() else [sys.executable, "-m", "trio_logd.cli.logq"]


def _time(argv: list[str], runs: int) -> tuple[list[float], str]:
    """Run *argv* *runs* times (plus one warm-up); return wall times and the last stderr."""
    times: list[float] = []
    err = ""
    for i in range(runs + 1):
        t0 = time.perf_counter()
        p = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        elapsed = time.perf_counter() - t0
        if p.returncode != 0:
            msg = f"{argv}: exit {p.returncode}: {p.stderr}"
            raise RuntimeError(msg)
        err = p.stderr
        if i:  # the first run warms the page cache
            times.append(elapsed)
    return times, err


def _count(argv: list[str]) -> int:
    p = subprocess.run(argv, capture_output=True, check=True)
    return len(p.stdout.splitlines())


def _stats(stderr: str) -> dict[str, int]:
    line = next(ln for ln in stderr.splitlines() if "read:" in ln)
    return {k: int(v) for k, v in (kv.split("=") for kv in line.split("read: ")[1].split(", "))}


def _naive_scan(uid_dir: Path) -> int:
    """The record-by-record path: every file decompressed, every record decoded and matched."""
    regex = re2.compile(TOKEN)
    found = 0
    for path in sorted(uid_dir.iterdir()):
        if path.name == INDEX:
            continue
        with open(path, "rb") as f:
            data = f.read()
        if path.name.endswith(".zst"):
            data = zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True).read()
        for line in data.splitlines():
            if regex.search(orjson.loads(line).get("msg", "")) is not None:
                found += 1
    return found


def _cursor(offline: list[str], uid_dir: Path, seq_back: int | None = None) -> str:
    """A cursor of uid :data:`BIG_UID`: the record *seq_back* before the last one's, or the
    middle record (its time is the newest's: with the store's identity, seq decides)."""
    newest = subprocess.run([*offline, "-n", "1"], capture_output=True, check=True).stdout
    rec = orjson.loads(newest)
    seq = rec["seq"] - seq_back if seq_back is not None else rec["seq"] // 2
    return Cursor(rec["ts"], (Position(BIG_UID, seq, uid_dir.stat().st_ino),)).encode()


#: journalctl's selection (``query.matches``): row key, argv after the base, label, target.
_SELECTION: list[tuple[str, tuple[str, ...], str, str]] = [
    ("match_n100", ("-n", "100", "comm=web"), "-n 100 comm=web", "<= 2x -n 100"),
    ("match_rare_n100", ("-n", "100", "sev=err"), "-n 100 sev=err (1 %)", "<= 2x -n 100"),
    ("identifier_n100", ("-n", "100", "-t", "web"), "-n 100 -t web", "<= 2x -n 100"),
    ("unit_n100", ("-n", "100", "-u", "web"), "-n 100 -u web (often)", "<= 2x -n 100"),
    ("unit_rare_n100", ("-n", "100", "-u", "rare"), "-n 100 -u rare (3 records)", "<= 2x -n 100"),
    ("unit_none_n100", ("-n", "100", "-u", "none-such"), "-n 100 -u none-such", "<= 2x -n 100"),
    ("unit_match_n100", ("-n", "100", "unit=rare.service"), "-n 100 unit=rare.service", "<= 2x"),
    ("field_sev", ("-F", "sev"), "-F sev (5 values)", "<= 2 s"),
    ("field_pid", ("-F", "pid"), "-F pid (201 values)", "<= 2 s"),
]
_SELECTION_ROWS = [
    (f"{key}_{where}", f"{label} ({'daemon' if where == 'online' else '--directory'})", target)
    for key, _, label, target in _SELECTION
    for where in ("online", "offline")
]


def _selection_rows(online: list[str], offline: list[str], runs: int) -> dict[str, list[float]]:
    """Each selection query through the daemon, then offline."""
    rows: dict[str, list[float]] = {}
    for key, argv, _, _ in _SELECTION:
        rows[f"{key}_online"], _ = _time([*online, *argv], runs)
        rows[f"{key}_offline"], _ = _time([*offline, *argv], runs)
    return rows


def _fmt(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} s ({min(values):.3f}-{max(values):.3f})"


def logq_scenario(runs: int = 3) -> dict[str, Any]:
    """Issue 5's queries over 10 M records / 100 uids / 30 days (see the module doc)."""
    log_dir, meta = ensure_store()
    uid_dir = log_dir / str(BIG_UID)
    uid_files = sorted(p.name for p in uid_dir.iterdir() if p.name != INDEX)
    last_hour = f"@{meta['t1'] - 3600:.0f}"
    base = [*_logq_command(), "-o", "json", "--uid", str(BIG_UID)]
    out: dict[str, Any] = {"store": meta}
    bench = BenchDaemon()  # its config, pointed at our store
    config = bench.config.read_text().replace(f'"{bench.root}/var/log"', f'"{log_dir}"')
    bench.config.write_text(config)
    with bench as d:
        online = [*base, "--socket", d.control]
        offline = [*base, "--directory", str(log_dir)]
        rows: dict[str, list[float]] = {}
        rows["n100_online"], _ = _time([*online, "-n", "100"], runs)
        rows["n100_offline"], _ = _time([*offline, "-n", "100"], runs)
        rows["grep_online"], _ = _time([*online, "--grep", TOKEN], runs)
        rows["grep_offline"], _ = _time([*offline, "--grep", TOKEN], runs)
        rows["grep_no_literal_online"], _ = _time([*online, "--grep", "(?i)econnreset"], runs)
        rows.update(_selection_rows(online, offline, runs))
        rows["since_1h_online"], err = _time([*online, "--since", last_hour, "--stats"], runs)
        since_stats = _stats(err)
        near_end = _cursor(offline, uid_dir, 100)
        rows["after_cursor_online"], err = _time(
            [*online, "--after-cursor", near_end, "--stats"], runs
        )
        cursor_stats = _stats(err)
        assert _count([*online, "--after-cursor", near_end]) == 100
        middle = _cursor(offline, uid_dir)
        rows["after_cursor_middle_n100_online"], _ = _time(
            [*online, "--after-cursor", middle, "-n", "100"], runs
        )
        rows["all_json_online"], err = _time([*online, "--stats"], 1)
        full_stats = _stats(err)
        matches = _count([*online, "--grep", TOKEN])
        assert matches == _count([*offline, "--grep", TOKEN])
        assert _count([*online, "-n", "100"]) == 100
        assert _count([*online, "-n", "100", "comm=web"]) == 100
        assert _count([*online, "-n", "100", "sev=err"]) == 100
        assert _count([*online, "-F", "sev"]) == len(set(_SEVS))
        assert _count([*online, "-n", "100", "-u", "web"]) == 100
        assert _count([*online, "-n", "100", "-u", "rare"]) == len(RARE)
        assert _count([*offline, "-n", "100", "unit=rare.service"]) == len(RARE)
        unit_stats = {
            u: _stats(_time([*online, "-n", "100", "-u", u, "--stats"], 1)[1])
            for u in ("web", "rare", "none-such")
        }
    zst = " ".join(str(uid_dir / n) for n in uid_files if n.endswith(".zst"))
    shell = f"(zstdcat -q {zst}; cat {uid_dir / CURRENT}) | grep -c {TOKEN}"
    rows["zstdcat_grep"], _ = _time(["sh", "-c", shell], runs)
    naive = []
    for _ in range(max(1, runs // 2)):
        t0 = time.perf_counter()
        assert _naive_scan(uid_dir) == matches
        naive.append(time.perf_counter() - t0)
    rows["naive_record_by_record"] = naive
    out.update({k: statistics.median(v) for k, v in rows.items()})
    out.update(
        grep_matches=matches,
        since_files_opened=since_stats["files_opened"],
        since_files_skipped=since_stats["files_skipped"],
        since_records=since_stats["records"],
        after_cursor_files_opened=cursor_stats["files_opened"],
        after_cursor_bytes_read=cursor_stats["bytes_read"],
        full_files_opened=full_stats["files_opened"],
        unit_files_opened={u: s["files_opened"] for u, s in unit_stats.items()},
        uid_files=len(uid_files),
        runs=rows,
    )
    print(f"logq: {meta['records']:,} records, {meta['files']} files, uid {BIG_UID}: "
          f"{BIG_RECORDS:,} records in {len(uid_files)} files")  # fmt: skip
    print(f"  -n 100 (daemon)                {_fmt(rows['n100_online'])}   target <= 0.3 s")
    print(f"  -n 100 (--directory)           {_fmt(rows['n100_offline'])}")
    print(f"  --grep {TOKEN} (daemon)     {_fmt(rows['grep_online'])}   target <= 2 s, "
          f"{matches} matches")  # fmt: skip
    print(f"  --grep {TOKEN} (--directory){_fmt(rows['grep_offline'])}")
    print(f"  --grep (?i)econnreset (daemon) {_fmt(rows['grep_no_literal_online'])}   no prefilter")
    for key, label, target in _SELECTION_ROWS:
        print(f"  {label:<31}{_fmt(rows[key])}   {target}")
    opened = ", ".join(f"-u {u} {s['files_opened']}" for u, s in unit_stats.items())
    print(f"  files opened (of {len(uid_files)}): {opened}")
    print(f"  --since last hour (daemon)     {_fmt(rows['since_1h_online'])}   "
          f"{since_stats['records']} records, opened {since_stats['files_opened']} of "
          f"{len(uid_files)} files ({since_stats['files_skipped']} skipped by name)")  # fmt: skip
    print(f"  --after-cursor (100 before the end, daemon) {_fmt(rows['after_cursor_online'])}   "
          f"opened {cursor_stats['files_opened']} of {len(uid_files)} files, "
          f"{cursor_stats['bytes_read']:,} bytes")  # fmt: skip
    print(f"  --after-cursor (middle) -n 100 (daemon)     "
          f"{_fmt(rows['after_cursor_middle_n100_online'])}")  # fmt: skip
    print(f"  everything as json (daemon)    {_fmt(rows['all_json_online'])}   "
          f"opened {full_stats['files_opened']} files")  # fmt: skip
    print(f"  zstdcat | grep -c              {_fmt(rows['zstdcat_grep'])}")
    print(f"  naive record-by-record scan    {_fmt(naive)}")
    return out


SCENARIOS = {"logq": logq_scenario}
