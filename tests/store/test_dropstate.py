"""drops.state slots: checksummed, two generations, a torn write falls back to the other."""

from __future__ import annotations

import os
from pathlib import Path

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
    assert decode_slot(data) == (3, {"disk": 12, "quota": 5}, 77)


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
        assert read_drop_file(d, "5", what="5") == (2, {"disk": 9}, 15)
        with open(tmp_path / "5", "r+b") as f:  # generation 2 lives in slot 0: tear it
            f.seek(20)
            f.write(b"\0" * 10)
        assert read_drop_file(d, "5", what="5") == (1, {"disk": 4}, 10)
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
        assert read_drop_file(d, "61000", what="61000") == (0, {}, 0)
        assert not take_spare(d, [], "61001")
    finally:
        os.close(d)
