"""Hash chains as the writer makes them: the format, rotation seals, deletion marks, recovery.

``replay`` below recomputes a chain from the documented format alone (SHA-256
over the start and each block's lines), independently of the verifier.
"""

from __future__ import annotations

import base64
import hashlib
import os
import zlib
from pathlib import Path
from typing import Any

import orjson

from tests.store._lines import T0, die, line, lines, names, seqs
from trio_logd.store import _chain
from trio_logd.store._layout import RotatedName
from trio_logd.store.files import read_uid_records
from trio_logd.store.verify import verify_store
from trio_logd.store.writer import StoreWriter

LINE = len(line(1))
ZERO = "00" * 32


def chain_lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(x) for x in path.read_bytes().splitlines()]


def replay(record_file: Path, chain_file: Path) -> tuple[str, int]:
    """Recompute a file's chain from its header's start; check every block. -> (head, lines)."""
    entries = chain_lines(chain_file)
    head = entries[0]["start"]
    data = record_file.read_bytes().splitlines(keepends=True)
    at = 0
    for e in entries[1:]:
        if "n" not in e:
            continue
        block = data[at : at + e["n"]]
        head_bytes = hashlib.sha256(bytes.fromhex(head) + b"".join(block)).hexdigest()
        assert head_bytes == e["h"], f"block at line {at}"
        checks = bytes(zlib.adler32(x) & 0xFF for x in block)
        assert base64.b64decode(e["c"]) == checks
        first = orjson.loads(block[0])["seq"]
        assert e.get("seq", first) == first
        assert e["end"] == sum(map(len, data[: at + e["n"]]))
        head = e["h"]
        at += e["n"]
    assert at == len(data), "every line is chained"
    return head, at


def rotated_names(d: Path) -> list[str]:
    return [n for n in names(d) if n != "current.jsonl"]


def test_each_file_is_chained_and_sealed_and_the_next_starts_from_the_seal(tmp_path: Path) -> None:
    """Rotations seal each file (records, seq range, final hash); the next file's chain starts
    from that hash and names the file; the rotation carries the seal."""
    w = StoreWriter(str(tmp_path), max_file_bytes=10 * LINE)
    w.open()
    w.append(5, lines(1, 25), 25)
    rotations = w.take_rotations()
    w.close()
    d = tmp_path / "5"
    first, second = rotated_names(d)
    head1, n1 = replay(d / first, d / (first + ".chain"))
    head2, n2 = replay(d / second, d / (second + ".chain"))
    head3, _n3 = replay(d / "current.jsonl", d / "current.chain")
    c1, c2, c3 = (
        chain_lines(d / n) for n in (first + ".chain", second + ".chain", "current.chain")
    )
    assert (c1[0]["start"], c1[0]["prev"], c1[0]["uid"]) == (ZERO, None, 5)
    seal1 = {"file": first, "first_seq": 1, "last_seq": 10, "records": 10, "bytes": 10 * LINE,
             "hash": head1}  # fmt: skip
    assert c1[-1] == {"seal": seal1}
    assert (c2[0]["start"], c2[0]["prev"]) == (head1, seal1)
    assert c3[0]["start"] == c2[-1]["seal"]["hash"] == head2
    assert [(r.records, r.hash) for r in rotations] == [(n1, head1), (n2, head2)]
    assert head3 == c3[-1]["h"]


def test_blocks_gather_rounds_until_a_flush(tmp_path: Path) -> None:
    """Rounds are hashed as written, but a block reaches the chain file only when flushed
    (or after FLUSH_LINES lines): one small write per second, not one per round."""
    w = StoreWriter(str(tmp_path))
    w.open()
    for s in range(1, 11):
        w.append(5, [line(s)], s)
    chain = tmp_path / "5" / "current.chain"
    assert [list(e) for e in chain_lines(chain)] == [["chain", "uid", "start", "prev"]]
    w.flush_chains()
    assert [(e.get("n"), e.get("seq")) for e in chain_lines(chain)[1:]] == [(10, 1)]
    w.append(5, lines(11, 11 + _chain.FLUSH_LINES), 11 + _chain.FLUSH_LINES)
    assert [e["n"] for e in chain_lines(chain)[1:]] == [10, _chain.FLUSH_LINES + 1]
    w.close()
    replay(tmp_path / "5" / "current.jsonl", chain)


def test_a_seq_gap_closes_the_block_and_irregular_lines_list_their_seqs(tmp_path: Path) -> None:
    """A gap between rounds starts a new block; a round whose seqs are not consecutive is a
    block listing them; the chain still covers every line."""
    w = StoreWriter(str(tmp_path))
    w.open()
    w.append(5, lines(1, 5), 5)
    w.append(5, lines(8, 9), 9)  # 6, 7 lost before writing (a full disk, say)
    w.append(5, [line(10), line(12), line(15)], 15)
    w.close()
    d = tmp_path / "5"
    blocks = [(e["n"], e.get("seq"), e.get("seqs")) for e in chain_lines(d / "current.chain")[1:]]
    assert blocks == [(5, 1, None), (2, 8, None), (3, None, [10, 12, 15])]
    replay(d / "current.jsonl", d / "current.chain")
    report = verify_store(tmp_path)
    assert report.problems == []
    assert [(f.what, f.first_seq, f.last_seq) for f in report.findings] == [
        ("gap", 6, 7), ("gap", 11, 11), ("gap", 13, 14),
    ]  # fmt: skip


def test_retention_marks_a_deletion_before_removing_file_and_chain(tmp_path: Path) -> None:
    """delete() writes the file's seal as a deletion mark into the current chain, then removes
    the chain file and the record file."""
    w = StoreWriter(str(tmp_path), max_file_bytes=10 * LINE)
    w.open()
    w.append(5, lines(1, 25), 25)
    d = tmp_path / "5"
    oldest = rotated_names(d)[0]
    seal = chain_lines(d / (oldest + ".chain"))[-1]["seal"]
    (uid5,) = w.snapshot()
    w.delete(uid5.files[:1])
    w.close()
    assert not (d / oldest).exists()
    assert not (d / (oldest + ".chain")).exists()
    assert {"deleted": seal} in chain_lines(d / "current.chain")
    assert verify_store(tmp_path).problems == []


def _crashed(log_dir: Path, n: int = 12, flush: bool = False) -> Path:
    """A writer that appended seq 1..n (10 per file) and then died without closing."""
    w = StoreWriter(str(log_dir), max_file_bytes=10 * LINE)
    w.open()
    w.append(5, lines(1, n), n)
    if flush:
        w.flush_chains()
    die(w)
    return log_dir / "5"  # the writer is dropped: its pending block never written


def test_records_a_crash_left_unchained_are_chained_at_start_and_marked(tmp_path: Path) -> None:
    """After kill -9 the lines after the last block are chained at start as a recovered block;
    then the chain goes on; verify calls them recovered (a note), not a problem."""
    d = _crashed(tmp_path)
    w = StoreWriter(str(tmp_path), max_file_bytes=10 * LINE)
    w.open()
    w.append(5, lines(13, 14), 14)
    w.close()
    blocks = [e for e in chain_lines(d / "current.chain") if "n" in e]
    assert [(e["n"], e["seq"], e.get("r")) for e in blocks] == [(2, 11, 1), (2, 13, None)]
    replay(d / "current.jsonl", d / "current.chain")
    report = verify_store(tmp_path)
    assert report.problems == []
    assert [(f.what, f.first_seq, f.last_seq) for f in report.findings] == [("recovered", 11, 12)]


def test_a_torn_tail_is_cut_and_the_chain_goes_on_from_the_last_whole_line(
    tmp_path: Path,
) -> None:
    """A torn last line is set aside; blocks beyond the kept bytes are dropped; verify is clean."""
    d = _crashed(tmp_path, flush=True)
    data = (d / "current.jsonl").read_bytes()
    os.truncate(d / "current.jsonl", len(data) - LINE // 2)  # seq 12 torn in the middle
    w = StoreWriter(str(tmp_path), max_file_bytes=10 * LINE)
    w.open()
    w.append(5, [line(13)], 13)
    w.close()
    assert seqs(read_uid_records(tmp_path, 5)) == [*range(1, 12), 13]
    replay(d / "current.jsonl", d / "current.chain")
    report = verify_store(tmp_path)
    assert report.problems == []
    assert [(f.what, f.first_seq) for f in report.findings] == [("recovered", 11), ("gap", 12)]


def test_a_chain_missing_at_start_is_made_from_the_file_and_the_newest_seal(
    tmp_path: Path,
) -> None:
    """No current.chain (a store from before chains, or a crash right after a rotation): a new
    one starts from the newest rotated file's seal and chains what is there, marked."""
    d = _crashed(tmp_path, flush=True)
    (d / "current.chain").unlink()
    seal = chain_lines(d / (rotated_names(d)[0] + ".chain"))[-1]["seal"]
    w = StoreWriter(str(tmp_path))
    w.open()
    w.close()
    c = chain_lines(d / "current.chain")
    assert (c[0]["prev"], c[0]["start"]) == (seal, seal["hash"])
    assert [(e["n"], e["seq"], e["r"]) for e in c[1:]] == [(2, 11, 1)]
    assert verify_store(tmp_path).problems == []


def test_a_rotation_cut_by_a_crash_is_completed_or_undone(tmp_path: Path) -> None:
    """A crash after the seal was written: if the file was renamed, its chain follows it;
    if it was not, the seal is dropped and the chain goes on."""
    w = StoreWriter(str(tmp_path), max_file_bytes=10 * LINE)
    w.open()
    w.append(5, lines(1, 5), 5)
    uf = w._files[5]
    assert uf.chain is not None
    seal, _n = uf.chain.seal(RotatedName(1, 5, int(T0), int(T0), "").format(), 1, 5, 5 * LINE)
    d = tmp_path / "5"
    die(w)
    # undone: current.jsonl was never renamed
    w2 = StoreWriter(str(tmp_path))
    w2.open()
    w2.append(5, [line(6)], 6)
    w2.close()
    assert not any("seal" in e for e in chain_lines(d / "current.chain"))
    replay(d / "current.jsonl", d / "current.chain")
    assert verify_store(tmp_path).problems == []
    # completed: the record file was renamed, its chain (sealed) not yet
    w3 = StoreWriter(str(tmp_path))
    w3.open()
    uf3 = w3._files[5]
    assert uf3.chain is not None
    name = RotatedName(1, 6, int(T0), int(T0), "").format()
    seal, _n = uf3.chain.seal(name, 1, 6, 6 * LINE)
    os.rename(d / "current.jsonl", d / name)
    die(w3)
    w4 = StoreWriter(str(tmp_path))
    w4.open()
    assert w4.last_seq(5) == 7  # the rotated record written at start took seq 7
    w4.append(5, [line(8)], 8)
    w4.close()
    assert chain_lines(d / (name + ".chain"))[-1] == {"seal": seal.as_dict()}
    assert chain_lines(d / "current.chain")[0]["prev"] == seal.as_dict()
    assert verify_store(tmp_path).problems == []


def test_an_unreadable_chain_is_set_aside_and_reported(tmp_path: Path) -> None:
    """A current.chain the daemon cannot parse at start is kept aside as a torn file (verify
    reports it), and a new chain starts from the file as it is."""
    d = _crashed(tmp_path, flush=True)
    with open(d / "current.chain", "ab") as f:
        f.write(b"not json\n")
    w = StoreWriter(str(tmp_path))
    w.open()
    w.close()
    (aside,) = (n for n in os.listdir(d) if n.endswith(".chain.partial"))
    assert (d / aside).read_bytes().endswith(b"not json\n")
    report = verify_store(tmp_path)
    assert [(f.file, f.what) for f in report.problems] == [(aside, "damaged")]


def test_a_chain_that_cannot_be_written_never_costs_a_record(tmp_path: Path) -> None:
    """The chain file failing (here: its fd made read-only) leaves records flowing; verify then
    lists the records the chain does not cover."""
    w = StoreWriter(str(tmp_path))
    w.open()
    w.append(5, lines(1, 3), 3)
    uf = w._files[5]
    assert uf.chain is not None
    bad = os.open(os.devnull, os.O_RDONLY)
    os.close(uf.chain.fd)
    uf.chain.fd = bad
    w.append(5, lines(4, 6), 6)
    w.close()
    assert seqs(read_uid_records(tmp_path, 5)) == list(range(1, 7))
    report = verify_store(tmp_path)
    assert [(f.what, f.first_seq, f.last_seq) for f in report.findings] == [("pending", 1, 6)]


def test_readers_never_take_a_chain_file_for_records(tmp_path: Path) -> None:
    """logq's scanner (online and --directory), the reader and the forwarder's SeqReader
    return the records, and nothing from the chain files beside them."""
    from trio_logd.query.filters import QuerySpec
    from trio_logd.query.scanner import query_scanner
    from trio_logd.store.seqreader import SeqReader

    w = StoreWriter(str(tmp_path), max_file_bytes=10 * LINE, compress="zstd")
    w.open()
    w.append(5, lines(1, 25), 25)
    while w.compress_next() is not None:
        pass
    w.close()
    assert sum(n.endswith(".chain") for n in os.listdir(tmp_path / "5")) == 3
    expected = [x.rstrip(b"\n") for x in lines(1, 25)]
    scanned = [
        x for batch in query_scanner(str(tmp_path), [5], QuerySpec()).batches() for x in batch
    ]
    assert [x.rstrip(b"\n") for x in scanned] == expected
    assert list(read_uid_records(tmp_path, 5)) == expected
    forwarded = SeqReader(str(tmp_path), 5).read(1 << 20)
    assert [x.rstrip(b"\n") for x in forwarded] == expected


def test_the_rotated_records_seal_is_forwarded() -> None:
    """A forwarded `rotated` record carries the seal (hash, records) in its trusted SD element:
    the copy off the host that makes a rewrite of the files detectable."""
    from tests.store._lines import daemon_line
    from trio_logd.forward.rfc5424 import make_encoder

    rec = orjson.loads(
        daemon_line(
            7, "rotated", file="x.jsonl", first_seq=1, last_seq=6, records=6, hash="ab" * 32
        )
    )
    sent = make_encoder("host")(rec).decode()
    assert f'records="6" hash="{"ab" * 32}"' in sent


def test_a_symlink_planted_as_the_chain_is_set_aside_not_followed(tmp_path: Path) -> None:
    """A current.chain that is a symlink is never followed: it is set aside and a chain starts."""
    d = _crashed(tmp_path, flush=True)
    target = tmp_path / "elsewhere"
    target.write_bytes(b"precious\n")
    (d / "current.chain").unlink()
    (d / "current.chain").symlink_to(target)
    w = StoreWriter(str(tmp_path))
    w.open()
    w.close()
    assert target.read_bytes() == b"precious\n"
    assert not (d / "current.chain").is_symlink()
    replay(d / "current.jsonl", d / "current.chain")
