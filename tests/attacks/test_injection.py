"""Log injection: LF, CR, NUL, ANSI, C1, bidi, line separators and a fake JSON record.

Defined outcome: LF and NUL end a frame (SPEC §2), so a line "injected" into
an LF-framed message is a record of its own, stamped with the sender's
kernel identity; inside a frame (octet-counted) every such character stays in
``msg`` and is escaped on disk (one JSON object per line for every reader) and
in ``logq -o short``.
"""

from __future__ import annotations

import pytest

from tests._daemon import DaemonProcess
from tests.attacks._helpers import (
    ATTACKER,
    UNSAFE_CHARS,
    Bystander,
    assert_contiguous,
    assert_store_is_one_record_per_line,
    run_child,
    send_as,
    wait_records,
)
from tests.attacks.conftest import AttackRow
from trio_logd.cli import logq

pytestmark = pytest.mark.usefixtures("as_root")

FAKE = '{"ts":"2020-01-01T00:00:00.000000Z","seq":1,"uid":0,"gid":0,"pid":1,"msg":"root login"}'
# ANSI clear screen + red, CSI as one C1 byte, NEL, bidi override and isolate,
# line/paragraph separators, DEL, backspaces over the text before.
NASTY = (
    "\x1b[2J\x1b[31mred\x1b[0m \u009b31mcsi \u0085nel "
    "\u202eevil\u202c \u2066iso\u2069 \u2028ls\u2029ps \x7fdel abc\x08\x08\x08"
)


def test_log_injection(daemon: DaemonProcess, attack_report: AttackRow) -> None:
    """Injected line breaks make records of the sender's own; everything else is escaped."""
    by = Bystander(daemon)
    by.send(10)
    inside = f"<13>app: one {NASTY} CR\rLF\nNUL\x00 then {FAKE}".encode()
    sender = send_as(
        daemon,
        ATTACKER,
        [
            b"<13>app: first\n" + FAKE.encode() + b"\n",  # a whole fake record as a line
            b"<13>app: cr\rinside\r\n",  # CR kept inside, the trailing one stripped
            b"<13>app: before nul\x00after nul\n",  # NUL ends a frame, as LF does
            f"<13>app: {NASTY}\n".encode(),
            b"%d %s" % (len(inside), inside),  # octet-counted: LF, CR, NUL are data
        ],
    )
    by.send(10)
    expected = [
        ("app", "first"),
        (None, FAKE),
        ("app", "cr\rinside"),
        ("app", "before nul"),
        (None, "after nul"),
        ("app", NASTY),
        ("app", inside.decode()[len("<13>app: ") :]),
    ]
    recs = wait_records(daemon, ATTACKER, len(expected))
    lost = len(expected) - len(recs) + by.lost()
    attack_report.report(
        "log injection (LF CR NUL ANSI C1 bidi fake-JSON)",
        "LF/NUL end the sender's own record; the rest escaped on disk and in logq -o short",
        lost,
    )
    assert [(r.get("app"), r["msg"]) for r in recs] == expected
    assert {(r["uid"], r["pid"]) for r in recs} == {(ATTACKER, sender["pid"])}
    assert_contiguous(daemon.records(ATTACKER))
    # nothing reached root's records: only the daemon's own
    assert all("event" in r for r in daemon.records(0))
    # on disk: one JSON object per line, for bytes readers and str.splitlines alike
    assert assert_store_is_one_record_per_line(daemon.log_dir) >= len(expected) + 20
    # logq -o short: one output line per record, nothing that paints the terminal
    shown = run_child(
        0, lambda: logq.main(["--config", str(daemon.config), "--uid", str(ATTACKER)])
    )
    assert shown.rc == 0, shown.err
    out = shown.out.splitlines()
    assert len(out) == len(expected)
    assert not UNSAFE_CHARS.intersection(shown.out.replace("\n", ""))
    assert out[5].endswith(
        f"app[{sender['pid']}]: "
        r"\x1b[2J\x1b[31mred\x1b[0m \x9b31mcsi \x85nel \u202eevil\u202c \u2066iso\u2069"
        r" \u2028ls\u2029ps \x7fdel abc\x08\x08\x08"
    )
    assert out[1].endswith(f"[{sender['pid']}]: {FAKE}")  # a message: the backslash-free text
    assert lost == 0
    by.assert_intact()
