"""Bad framing: oversized frames, lying octet counts, invalid UTF-8.

Defined outcomes (SPEC §2): a frame over ``max_message_bytes`` is stored cut
to it, ``truncated``, and skipped to its end so the next frame is intact; a
count that is not ASCII digits then a space (``1_000``, ``12x``, 11 digits)
stores what was well-framed, files one ``protocol_error`` and closes that
connection; a frame that does not start with an ASCII digit (``+12``,
Arabic-Indic or full-width digits) is not octet-counted at all but an LF
frame; invalid UTF-8 is kept with U+FFFD.
"""

from __future__ import annotations

import pytest

from tests._daemon import DaemonProcess
from tests.attacks._helpers import (
    ATTACKER,
    Bystander,
    assert_contiguous,
    assert_store_is_one_record_per_line,
    send_as,
    wait_records,
)
from tests.attacks.conftest import AttackRow, DaemonFactory

pytestmark = pytest.mark.usefixtures("as_root")

MAX = 1024


def octet(payload: bytes) -> bytes:
    return b"%d %s" % (len(payload), payload)


def test_oversized_frames(start_daemon: DaemonFactory, attack_report: AttackRow) -> None:
    """100 KiB frames, LF and octet-counted: stored cut and marked, the next frame intact."""
    daemon = start_daemon(daemon_extra=f"max_message_bytes = {MAX}")
    by = Bystander(daemon)
    by.send(10)
    send_as(
        daemon,
        ATTACKER,
        [
            b"<13>app: " + b"x" * 100_000 + b"\n",
            b"<13>app: after lf\n",
            octet(b"<13>app: " + b"y" * 100_000),
            b"<13>app: after octet\n",
        ],
    )
    by.send(10)
    recs = wait_records(daemon, ATTACKER, 4)
    lost = 4 - len(recs) + by.lost()
    attack_report.report(
        "oversized frames (100 KiB, LF and octet-counted)",
        f"stored cut to {MAX} B, truncated: true; framing stays in step",
        lost,
    )
    assert [(r["msg"], r.get("truncated", False)) for r in recs] == [
        ("x" * (MAX - 9), True),
        ("after lf", False),
        ("y" * (MAX - 9), True),
        ("after octet", False),
    ]
    assert lost == 0
    by.assert_intact()


#: (what is sent after a good record, whether the daemon must close, what is stored)
LYING = [
    ("١٢ <13>arabic-indic".encode(), False, "١٢ <13>arabic-indic"),
    ("１２ <13>full-width".encode(), False, "１２ <13>full-width"),
    (b"+12 <13>plus", False, "+12 <13>plus"),
    (b"1_000 <13>underscore", True, None),
    (b"12x <13>no space", True, None),
    (b"99999999999 <13>eleven digits", True, None),
]


def test_lying_octet_counts(
    daemon_and_bystander: tuple[DaemonProcess, Bystander], attack_report: AttackRow
) -> None:
    """Non-ASCII digits, +12, 1_000, 12x, 11 digits, and a 10-digit count cut short by EOF."""
    daemon, by = daemon_and_bystander
    by.send(10)
    expected: list[tuple[str, bool]] = []
    errors = 0
    for i, (lie, closes, stored) in enumerate(LYING):
        got = send_as(
            daemon,
            ATTACKER,
            [b"<13>before %d\n" % i, lie + b"\n", b"<13>after %d\n" % i],
            expect_close=closes,
        )
        assert got["closed"] == closes, lie
        expected.append((f"before {i}", False))
        if closes:
            errors += 1
        else:
            expected += [(str(stored), False), (f"after {i}", False)]
        by.send(2)
    # a valid count of 10 digits: the frame never ends, EOF cuts it
    send_as(daemon, ATTACKER, [b"<13>before huge\n", b"9999999999 <13>huge", b"\n<13>more"])
    expected += [("before huge", False), ("huge\n<13>more", True)]
    by.send(10)
    recs = wait_records(daemon, ATTACKER, len(expected))
    faults = wait_records(
        daemon, ATTACKER, errors, where=lambda r: r.get("event") == "protocol_error"
    )
    lost = len(expected) - len(recs) + by.lost()
    attack_report.report(
        "lying octet counts (١٢ １２ +12 1_000 12x 11 digits, huge)",
        "non-digit start: an LF frame; bad count: protocol_error + close; huge: cut at EOF",
        lost,
    )
    assert [(r["msg"], r.get("truncated", False)) for r in recs] == expected
    # the excerpt starts at the lie; how much follows depends on what one read held
    bad = [lie + b"\n" for lie, closes, _ in LYING if closes]
    assert [f["excerpt"][: len(repr(b)) - 1] for f, b in zip(faults, bad, strict=True)] == [
        repr(b)[:-1] for b in bad
    ]
    assert {(f["conn_uid"], f["reason"], f["count"]) for f in faults} == {(ATTACKER, "framing", 1)}
    assert_contiguous(daemon.records(ATTACKER))
    assert lost == 0
    by.assert_intact()


BAD_UTF8 = [
    b"<13>app: bad \xff\xfe overlong \xc0\xaf surrogate \xed\xa0\x80 beyond \xf4\x90\x80\x80"
    b" cut \xe2\x82",
    b'<13>app: @cee: {"k\xff": "v\xfe", "msg": "cee \xc3"}',
    b"<13>1 - h\xffst app\xfe - - - 5424 \xff",
]


def test_invalid_utf8(
    daemon_and_bystander: tuple[DaemonProcess, Bystander], attack_report: AttackRow
) -> None:
    """Invalid UTF-8 anywhere (text, @cee JSON, 5424 header): kept with U+FFFD, one valid line."""
    daemon, by = daemon_and_bystander
    by.send(10)
    send_as(daemon, ATTACKER, [f + b"\n" for f in BAD_UTF8])
    by.send(10)
    recs = wait_records(daemon, ATTACKER, 3)
    lost = 3 - len(recs) + by.lost()
    attack_report.report(
        "invalid UTF-8 (0xFF, overlong, surrogate, > U+10FFFF, cut)",
        "kept with U+FFFD replacement characters; one valid JSON line each",
        lost,
    )
    text, cee, h5424 = recs
    assert text["msg"] == BAD_UTF8[0][9:].decode("utf-8", "replace")
    assert (cee["msg"], cee["fields"]) == ("cee \ufffd", {"k\ufffd": "v\ufffd"})
    assert (h5424["host"], h5424["app"], h5424["msg"]) == ("h\ufffdst", "app\ufffd", "5424 \ufffd")
    assert_store_is_one_record_per_line(daemon.log_dir)
    assert lost == 0
    by.assert_intact()


@pytest.fixture
def daemon_and_bystander(start_daemon: DaemonFactory) -> tuple[DaemonProcess, Bystander]:
    """A daemon on the default config and a bystander connected to it."""
    daemon = start_daemon()
    return daemon, Bystander(daemon)
