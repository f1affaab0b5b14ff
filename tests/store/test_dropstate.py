"""drops.state slots: checksummed, two generations, a torn write falls back to the other."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import orjson
import pytest

from trio_logd.store.dropstate import (
    FILE_BYTES,
    SLOT_BYTES,
    SPARES,
    decode_slot,
    encode_slot,
    make_drop_file,
    make_spares,
    read_drop_file,
    take_spare,
    write_drop_file,
)


def test_a_slot_round_trips_and_has_a_fixed_size() -> None:
    """encode then decode gives the same counts and seq; every slot is SLOT_BYTES long."""
    data = encode_slot(3, {"disk": 12, "rate": 0, "quota": 5}, 77)
    assert len(data) == SLOT_BYTES
    assert decode_slot(data) == (3, {"disk": 12, "quota": 5}, 77, {})


def test_units_round_trip_as_a_part_of_the_counts() -> None:
    """The units' parts of the counts come back; counts stay the uid's whole count."""
    units = {"web.service": {"rate": 7}, "db.service": {"rate": 2, "connections": 1}}
    data = encode_slot(4, {"rate": 10, "connections": 1, "disk": 3}, 9, units)
    assert decode_slot(data) == (4, {"rate": 10, "connections": 1, "disk": 3}, 9, units)


def test_a_slot_of_an_earlier_version_reads_without_units() -> None:
    """A slot written before units were kept (no "units" key) reads as before, no unit."""
    body = b'{"counts":{"rate":5},"gen":2,"seq":8}'
    old = (b"%08x %s\n" % (zlib.crc32(body), body)).ljust(SLOT_BYTES, b" ")
    assert decode_slot(old) == (2, {"rate": 5}, 8, {})


def test_a_slot_with_units_reads_in_an_earlier_version_as_whole_counts() -> None:
    """What an earlier version reads (counts, seq) is the uid's whole count, units included."""
    data = encode_slot(1, {"rate": 10}, 3, {"web.service": {"rate": 7}})
    obj = orjson.loads(data.split(b" ", 1)[1].rstrip())
    assert (obj["counts"], obj["seq"]) == ({"rate": 10}, 3)


def test_a_units_count_never_exceeds_the_uids() -> None:
    """Units claiming more than the uid's count (a hand-edited file) are capped to it."""
    body = orjson.dumps(
        {"counts": {"rate": 5}, "gen": 1, "seq": 0, "units": {"a.service": {"rate": 4},
         "b.service": {"rate": 4, "quota": 3}, "c.service": "x"}}, option=orjson.OPT_SORT_KEYS
    )  # fmt: skip
    data = (b"%08x %s\n" % (zlib.crc32(body), body)).ljust(SLOT_BYTES, b" ")
    assert decode_slot(data) == (
        1,
        {"rate": 5},
        0,
        {"a.service": {"rate": 4}, "b.service": {"rate": 1}},
    )


def test_units_that_do_not_fit_the_slot_are_left_out_biggest_kept() -> None:
    """Many long unit names: the units with most records are kept, the rest count as the uid's."""
    units = {f"session-{i:0200d}.scope": {"rate": i + 1} for i in range(20)}
    data = encode_slot(1, {"rate": sum(range(1, 21))}, 0, units)
    slot = decode_slot(data)
    assert slot is not None
    kept = slot[3]
    assert 0 < len(kept) < 20
    assert kept == {u: c for u, c in units.items() if c["rate"] > 20 - len(kept)}


@pytest.mark.parametrize(
    "damage",
    [b"", b" " * SLOT_BYTES, b"00000000 {}\n", b"not a slot\n"],
)
def test_an_empty_or_damaged_slot_decodes_to_none(damage: bytes) -> None:
    """Blank, zeroed, wrong-checksum or unparseable slots are None, never an exception."""
    assert decode_slot(damage) is None


def test_a_flipped_byte_fails_the_checksum() -> None:
    """One byte changed inside the JSON: the CRC no longer matches."""
    data = bytearray(encode_slot(1, {"disk": 12}, 5))
    data[data.index(b"12")] = ord("9")
    assert decode_slot(bytes(data)) is None


def test_a_write_torn_in_its_slot_leaves_the_previous_generation(tmp_path: Path) -> None:
    """The newer slot cut short by a crash: reading falls back to the older, intact one."""
    d = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert make_drop_file(d, "5", what="5") == 0
        write_drop_file(d, "5", 1, {"disk": 4}, 10, sync=False, what="5")
        write_drop_file(d, "5", 2, {"disk": 9}, 15, sync=False, what="5")
        assert read_drop_file(d, "5", what="5") == (2, {"disk": 9}, 15, {})
        with open(tmp_path / "5", "r+b") as f:  # generation 2 lives in slot 0: tear it
            f.seek(20)
            f.write(b"\0" * 10)
        assert read_drop_file(d, "5", what="5") == (1, {"disk": 4}, 10, {})
        assert (tmp_path / "5").stat().st_size == FILE_BYTES
        assert make_drop_file(d, "5", what="5") == 1  # made already: kept as it is
    finally:
        os.close(d)


def test_a_spare_made_at_start_becomes_a_uid_file_by_a_rename(tmp_path: Path) -> None:
    """Spares are made up to SPARES; taking one renames it (no data block needed)."""
    d = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        spares = make_spares(d, what="drops")
        assert len(spares) == SPARES
        assert make_spares(d, what="drops") == sorted(spares)  # made once
        assert take_spare(d, spares, "61000")
        assert len(spares) == SPARES - 1
        assert read_drop_file(d, "61000", what="61000") == (0, {}, 0, {})
        assert not take_spare(d, [], "61001")
    finally:
        os.close(d)
