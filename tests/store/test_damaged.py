"""Every reader of the store with a damaged file: it is named, the rest is read.

The store: uid 5, seq 1..45 (10 records per file, rotated files compressed)
and uid 6, seq 1..15. Uid 5's file 21..30 is damaged in each way of the
table (``_damage.DAMAGES``): cut at several points, a byte flipped in its
header, body or trailer, garbage, plain text under a compressed name, a
directory, a FIFO or a symlink in its place, and a file the reader may not
open. Each reader (``--verify``, the query scan forwards and backwards, the
forwarders' ``SeqReader``, ``read_uid_records``) must name the file, read
the records before the damage and every other file's, and never raise.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests._daemon import world
from tests._uids import free_uids
from tests.attacks._helpers import run_child
from tests.store._damage import DAMAGES, LINE, write_store
from tests.store._lines import lines, seqs
from trio_logd.query.filters import QuerySpec
from trio_logd.query.scanner import query_scanner
from trio_logd.store.files import read_uid_records
from trio_logd.store.seqreader import SeqReader
from trio_logd.store.verify import verify_store
from trio_logd.store.writer import StoreWriter

if TYPE_CHECKING:
    from trio_logd.store.files import DamagedFile

SUFFIX = {"zstd": ".zst", "gzip": ".gz"}
DAMAGED = range(21, 31)


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One untouched store per compression, copied by each test."""
    out = {}
    for compress in SUFFIX:
        out[compress] = d = tmp_path_factory.mktemp(f"store-{compress}")
        write_store(d, compress, {5: 45, 6: 15})
    return out


def _target(log_dir: Path, compress: str) -> Path:
    (path,) = (log_dir / "5").glob(f"{DAMAGED.start:016d}-*.jsonl{SUFFIX[compress]}")
    return path


@pytest.fixture(params=[(c, d) for c in SUFFIX for d in DAMAGES], ids=lambda p: f"{p[0]}-{p[1]}")
def damaged_store(
    request: pytest.FixtureRequest, bases: dict[str, Path], tmp_path: Path
) -> tuple[Path, Path]:
    """(log_dir, the damaged file): a copy of a store, damaged, for each compression and damage."""
    compress, damage = request.param
    log_dir = tmp_path / "store"
    shutil.copytree(bases[compress], log_dir, symlinks=True)
    path = _target(log_dir, compress)
    DAMAGES[damage](path)
    return log_dir, path


def _check_read(got: list[bytes], damaged: list[DamagedFile], path: Path) -> int:
    """Every record of the other files, in order; of the damaged one a prefix at most
    (how many: returned)."""
    numbers = seqs(got)
    assert [s for s in numbers if s not in DAMAGED] == [s for s in range(1, 46) if s not in DAMAGED]
    mine = [s for s in numbers if s in DAMAGED]
    assert mine == list(range(DAMAGED.start, DAMAGED.start + len(mine)))
    assert [(d.path, bool(d.reason)) for d in damaged] == [(str(path), True)]
    return len(mine)


def test_verify_names_the_damaged_file_and_checks_the_rest(
    damaged_store: tuple[Path, Path],
) -> None:
    """--verify: the file is a 'damaged' problem; no other file, and no other uid, has one."""
    log_dir, path = damaged_store
    report = verify_store(log_dir)
    assert report.uids == 2
    assert {(f.uid, f.file) for f in report.problems} == {(5, path.name)}
    assert "damaged" in {f.what for f in report.problems}


def _scan(log_dir: Path, lines_wanted: int | None) -> tuple[list[bytes], list[DamagedFile]]:
    scanner = query_scanner(str(log_dir), [5], QuerySpec(lines=lines_wanted))
    return [ln for batch in scanner.batches() for ln in batch], scanner.stats.damaged


def test_the_query_scan_reads_around_the_damaged_file(damaged_store: tuple[Path, Path]) -> None:
    """logq's scan: forwards, the other files' records and the file named; -n 30 (backwards)
    gives the last 30 of those and names the file too."""
    log_dir, path = damaged_store
    got, damaged = _scan(log_dir, None)
    _check_read(got, damaged, path)
    tail, damaged = _scan(log_dir, 30)
    assert tail == got[-30:]
    assert [d.path for d in damaged] == [str(path)]


def test_the_forwarders_reader_passes_over_the_damaged_file(
    damaged_store: tuple[Path, Path],
) -> None:
    """SeqReader (forwarding, boots): the file is told in ``damaged``, the next one read."""
    log_dir, path = damaged_store
    reader = SeqReader(str(log_dir), 5)
    got: list[bytes] = []
    while batch := reader.read(4 * LINE):
        got += batch
    reader.close()
    read = _check_read(got, reader.damaged, path)
    assert reader.missing == len(DAMAGED) - read


def test_read_uid_records_passes_over_the_damaged_file(
    damaged_store: tuple[Path, Path],
) -> None:
    """read_uid_records (logq --list-boots offline): the file is told, the rest read."""
    log_dir, path = damaged_store
    damaged: list[DamagedFile] = []
    got = list(read_uid_records(log_dir, 5, damaged=damaged))
    _check_read(got, damaged, path)


def test_a_file_the_reader_may_not_open_is_named(bases: dict[str, Path]) -> None:
    """A file of root's, mode 600, in a store read by another uid: named, the rest read."""
    if os.geteuid() != 0:
        pytest.skip("needs root to give the store to another uid")
    (uid,) = free_uids(1)
    with world() as top:
        _unreadable_file(bases, top / "store", uid)


def _unreadable_file(bases: dict[str, Path], log_dir: Path, uid: int) -> None:
    shutil.copytree(bases["zstd"], log_dir)
    for root, dirs, files in os.walk(log_dir):
        for name in dirs + files:
            os.chown(os.path.join(root, name), uid, uid)
    os.chown(log_dir, uid, uid)
    path = _target(log_dir, "zstd")
    os.chown(path, 0, 0)
    path.chmod(0o600)

    def child() -> dict[str, object]:
        report = verify_store(log_dir)
        scanner = query_scanner(str(log_dir), [5], QuerySpec())
        got = [ln for batch in scanner.batches() for ln in batch]
        reader = SeqReader(str(log_dir), 5)
        forwarded: list[bytes] = []
        while batch := reader.read(1 << 20):
            forwarded += batch
        return {
            "problems": sorted({(f.uid, f.file, f.what, f.text) for f in report.problems}),
            "scanned": seqs(got),
            "scan_damaged": [(d.path, d.reason) for d in scanner.stats.damaged],
            "forwarded": seqs(forwarded),
            "reader_damaged": [(d.path, d.reason) for d in reader.damaged],
        }

    result = run_child(uid, child)
    assert result.rc == 0, result.err
    value = result.value
    others = [s for s in range(1, 46) if s not in DAMAGED]
    why = "cannot be opened: Permission denied"
    assert value["problems"] == [[5, path.name, "damaged", f"damaged: {why}"]]
    assert value["scanned"] == value["forwarded"] == others
    assert value["scan_damaged"] == value["reader_damaged"] == [[str(path), why]]


def test_a_plain_rotated_file_cut_short_is_read_once(tmp_path: Path) -> None:
    """An uncompressed rotated file cut inside its records: the forwarders' reader counts
    the records lost at its end and goes on (it used to list the same file again, forever)."""
    w = StoreWriter(str(tmp_path), max_file_bytes=10 * LINE, compress="none")
    w.open()
    w.append(5, lines(1, 45), 45)
    w.close()
    (path,) = (tmp_path / "5").glob(f"{DAMAGED.start:016d}-*.jsonl")
    path.write_bytes(path.read_bytes()[: 4 * LINE + 7])  # seq 21..24 and a torn line
    reader = SeqReader(str(tmp_path), 5)
    got: list[bytes] = []
    while batch := reader.read(4 * LINE):
        got += batch
    reader.close()
    assert seqs(got) == [*range(1, 25), *range(31, 46)]
    assert reader.missing == 6
    assert reader.damaged == []
