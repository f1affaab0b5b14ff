"""Boots from the daemon's started records; -b's journalctl arithmetic; a boot's time span."""

from __future__ import annotations

import orjson
import pytest

from trio_logd.query.boots import Boot, boot_window, boots_from_answer, boots_of_lines, select_boot

A, B, C = "a" * 32, "b" * 32, "c" * 32


def _line(ts: str, event: str | None = None, **extra: object) -> bytes:
    rec: dict[str, object] = {"ts": ts, "seq": 1, "uid": 0, "gid": 0, "pid": 1}
    if event is not None:
        rec.update({"fac": "syslog", "sev": "info", "app": "trio-logd", "event": event})
    rec.update(extra)
    return orjson.dumps(rec)


def _ts(minute: int) -> str:
    return f"2026-11-27T20:{minute:02d}:00.000000Z"


def test_starts_of_one_boot_are_one_boot() -> None:
    """Restarts within a kernel boot extend it; another boot id starts the next one."""
    lines = [
        _line(_ts(0), "started", boot_id=A),
        _line(_ts(1), None, msg="a user's record"),
        _line(_ts(2), "reloaded"),
        _line(_ts(3), "started", boot_id=A),
        _line(_ts(4), "started", boot_id=B),
        _line(_ts(5), "started"),  # no boot id (an older daemon): begins nothing
    ]
    assert boots_of_lines(lines) == [Boot(A, _ts(0), _ts(3)), Boot(B, _ts(4), _ts(5))]


def test_a_senders_forgery_is_not_a_start() -> None:
    """A sender's fields named event/boot_id, or its own app name, start no boot."""
    lines = [
        _line(_ts(0), None, app="trio-logd", fields={"event": "started", "boot_id": A}),
        _line(_ts(1), None, msg='"event":"started"', boot=A),
    ]
    assert boots_of_lines(lines) == []


@pytest.mark.parametrize(
    ("arg", "index"),
    [(None, 2), ("", 2), ("0", 2), ("-1", 1), ("-2", 0), ("1", 0), ("+2", 1), ("3", 2),
     (A, 0), (A + "+1", 1), (C + "-2", 0), (B.upper(), 1)],
)  # fmt: skip
def test_select_boot_as_journalctl(arg: str | None, index: int) -> None:
    """0 the last, -N before it, N from the first; an id, and id±N."""
    boots = [Boot(A, _ts(0), _ts(0)), Boot(B, _ts(1), _ts(1)), Boot(C, _ts(2), _ts(2))]
    assert select_boot(boots, arg) == index


@pytest.mark.parametrize(("arg", "why"), [("-3", "no such boot"), ("4", "no such boot"),
                                          ("d" * 32, "no boot"), ("x", "expected a boot id"),
                                          ("1-", "expected a boot id")])  # fmt: skip
def test_select_boot_refusals(arg: str, why: str) -> None:
    """A boot that is not there, or an argument that is not one, is refused clearly."""
    boots = [Boot(A, _ts(0), _ts(0)), Boot(B, _ts(1), _ts(1)), Boot(C, _ts(2), _ts(2))]
    with pytest.raises(ValueError, match=why):
        select_boot(boots, arg)
    with pytest.raises(ValueError, match="0 known"):
        select_boot([], "0")


def test_boot_window_ends_just_before_the_next_boot() -> None:
    """A boot spans from its first start to one microsecond before the next boot's."""
    boots = [Boot(A, _ts(0), _ts(3)), Boot(B, _ts(4), _ts(5))]
    assert boot_window(boots, 0) == (_ts(0), "2026-11-27T20:03:59.999999Z")
    assert boot_window(boots, 1) == (_ts(4), None)


def test_boots_from_answer() -> None:
    """The boots operation's answer is read back, and a malformed one refused."""
    boots = [Boot(A, _ts(0), _ts(3))]
    assert boots_from_answer([b.as_dict() for b in boots]) == boots
    for bad in (None, [{"boot_id": A}], ["x"]):
        with pytest.raises(ValueError, match="boots"):
            boots_from_answer(bad)


def test_reading_on_from_where_it_stopped_gives_the_same_boots() -> None:
    """Lines taken in two readings (the boots operation's way) give what one reading gives."""
    lines = [
        _line(_ts(0), "started", boot_id=A),
        _line(_ts(1), "reloaded"),
        _line(_ts(2), "started", boot_id=B),
        _line(_ts(3), "started", boot_id=B),
    ]
    for cut in range(len(lines) + 1):
        boots = boots_of_lines(lines[:cut])
        assert boots_of_lines(lines[cut:], boots) == boots_of_lines(lines)
