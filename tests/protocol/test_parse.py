"""parse_message: RFC 5424 and RFC 3164 payloads as real senders write them."""

from __future__ import annotations

import time

import pytest

from trio_logd.protocol.framing import Frame, FrameDecoder
from trio_logd.protocol.message import Message
from trio_logd.protocol.parse import parse_message
from trio_logd.protocol.rfc3164 import parse_rfc3164
from trio_logd.protocol.rfc5424 import claimed_pid, parse_rfc5424

# -- real senders (captured from util-linux 2.38.1 logger, glibc, CPython 3.11) ----------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(
            b"<13>Nov 27 20:47:40 myprog[123]: text",
            Message("user", "notice", "text", app="myprog", claimed_pid=123,
                    claimed_ts="Nov 27 20:47:40"),
            id="glibc-syslog3",
        ),
        pytest.param(
            b"<30>Nov  7 08:01:02 cron[99]: (root) CMD (run-parts /etc/cron.hourly)",
            Message("daemon", "info", "(root) CMD (run-parts /etc/cron.hourly)", app="cron",
                    claimed_pid=99, claimed_ts="Nov  7 08:01:02"),
            id="glibc-padded-day",
        ),
        pytest.param(
            b"<13>Nov 27 20:51:16 root: hello world",
            Message("user", "notice", "hello world", app="root", claimed_ts="Nov 27 20:51:16"),
            id="logger-u-default",
        ),
        pytest.param(
            b"<13>Nov 27 20:51:16 myapp[3728]: with pid",
            Message("user", "notice", "with pid", app="myapp", claimed_pid=3728,
                    claimed_ts="Nov 27 20:51:16"),
            id="logger-t-i",
        ),
        pytest.param(
            b"<13>Nov 27 20:51:16 vm root: hello 3164",
            Message("user", "notice", "hello 3164", app="root", host="vm",
                    claimed_ts="Nov 27 20:51:16"),
            id="logger-rfc3164",
        ),
        pytest.param(
            b'<13>1 2026-11-27T20:51:16.853286+00:00 vm root - - [timeQuality tzKnown="1"'
            b' isSynced="0"] hello 5424',
            Message("user", "notice", "hello 5424", app="root", host="vm",
                    claimed_ts="2026-11-27T20:51:16.853286+00:00",
                    fields={"timeQuality": {"tzKnown": "1", "isSynced": "0"}}),
            id="logger-rfc5424",
        ),
        pytest.param(
            b'<13>1 2026-11-27T20:51:16.861108+00:00 vm root - ID47 [timeQuality tzKnown="1"'
            b' isSynced="0"][zoo@123 tiger="hungry"] sd test',
            Message("user", "notice", "sd test", app="root", host="vm", msgid="ID47",
                    claimed_ts="2026-11-27T20:51:16.861108+00:00",
                    fields={"timeQuality": {"tzKnown": "1", "isSynced": "0"},
                            "zoo@123": {"tiger": "hungry"}}),
            id="logger-rfc5424-sd-msgid",
        ),
        pytest.param(
            b"<12>warn text",
            Message("user", "warning", "warn text"),
            id="sysloghandler",
        ),
        pytest.param(
            b"<12>myapp: with ident",
            Message("user", "warning", "with ident", app="myapp"),
            id="sysloghandler-ident",
        ),
        pytest.param(
            b"<38>Nov 27 20:47:40 myhost sshd[1042]: Accepted publickey for alice from"
            b" 10.0.0.7 port 51234 ssh2",
            Message("auth", "info", "Accepted publickey for alice from 10.0.0.7 port 51234 ssh2",
                    app="sshd", host="myhost", claimed_pid=1042, claimed_ts="Nov 27 20:47:40"),
            id="classic-with-hostname",
        ),
        pytest.param(
            b"<22>Nov 27 20:47:40 mail postfix/smtpd[77]: connect from localhost",
            Message("mail", "info", "connect from localhost", app="postfix/smtpd", host="mail",
                    claimed_pid=77, claimed_ts="Nov 27 20:47:40"),
            id="slash-in-tag",
        ),
        pytest.param(
            b"<13>2024-11-27T20:47:40.123+01:00 myhost app[7]: m",
            Message("user", "notice", "m", app="app", host="myhost", claimed_pid=7,
                    claimed_ts="2024-11-27T20:47:40.123+01:00"),
            id="rfc3339-in-3164",
        ),
        pytest.param(
            b"<13>Nov 27 2024 20:47:40.250 router app: m",
            Message("user", "notice", "m", app="app", host="router",
                    claimed_ts="Nov 27 2024 20:47:40.250"),
            id="bsd-year-and-fraction",
        ),
    ],
)  # fmt: skip
def test_real_senders(data: bytes, expected: Message) -> None:
    """What glibc, logger and SysLogHandler really send parses into the right claims."""
    assert parse_message(data) == expected


def test_sysloghandler_stream_through_the_decoder() -> None:
    """SysLogHandler over SOCK_STREAM ends each record with NUL: one record per frame."""
    decoder = FrameDecoder()
    decoder.receive_data(b"<12>warn text\x00<12>myapp: with ident\x00")
    assert [parse_message(f.data, truncated=f.truncated) for f in decoder.frames()] == [
        Message("user", "warning", "warn text"),
        Message("user", "warning", "with ident", app="myapp"),
    ]


# -- RFC 3164 details ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(
            b"<13>Nov 27 20:47:40 hello world",
            Message("user", "notice", "world", host="hello", claimed_ts="Nov 27 20:47:40"),
            id="no-tag-word-after-timestamp-is-host",
        ),
        pytest.param(
            b"<13>Nov 27 20:47:40 myhost hello world: x",
            Message(
                "user", "notice", "hello world: x", host="myhost", claimed_ts="Nov 27 20:47:40"
            ),
            id="host-without-tag-right-after",
        ),
        pytest.param(
            b"<13>Nov 27 20:47:40 root: hello: x",
            Message("user", "notice", "hello: x", app="root", claimed_ts="Nov 27 20:47:40"),
            id="colon-in-message",
        ),
        pytest.param(
            b"<13>Nov 27 20:47:40 app:no-space",
            Message("user", "notice", "no-space", app="app", claimed_ts="Nov 27 20:47:40"),
            id="tag-without-space-after-timestamp",
        ),
        pytest.param(
            b"<13>Nov 27 20:47:40 app:  two spaces",
            Message("user", "notice", " two spaces", app="app", claimed_ts="Nov 27 20:47:40"),
            id="only-one-space-eaten",
        ),
        pytest.param(
            b"<14>http://example.com is down",
            Message("user", "info", "http://example.com is down"),
            id="url-is-no-tag",
        ),
        pytest.param(
            b"<14>12:30 meeting",
            Message("user", "info", "12:30 meeting"),
            id="time-is-no-tag",
        ),
        pytest.param(
            b"<14>app:",
            Message("user", "info", "", app="app"),
            id="tag-at-end",
        ),
        pytest.param(
            b"<13>Nov 27 20:47:40",
            Message("user", "notice", "", claimed_ts="Nov 27 20:47:40"),
            id="only-timestamp",
        ),
        pytest.param(
            b"<13>Nov 27 20:47:40: %LINK-3-UPDOWN: down",
            Message(
                "user", "notice", "down", app="%LINK-3-UPDOWN", claimed_ts="Nov 27 20:47:40"
            ),
            id="colon-after-timestamp",
        ),
        pytest.param(
            b"<13>Foo 27 20:47:40 app: m",
            Message("user", "notice", "Foo 27 20:47:40 app: m"),
            id="not-a-month",
        ),
        pytest.param(
            b"<13>Nov 27 20:47:40 " + b"a" * 49 + b": m",
            Message("user", "notice", "a" * 49 + ": m", claimed_ts="Nov 27 20:47:40"),
            id="tag-over-48-chars",
        ),
        pytest.param(
            b"<13>Nov 27 20:47:40 " + b"a" * 48 + b": m",
            Message("user", "notice", "m", app="a" * 48, claimed_ts="Nov 27 20:47:40"),
            id="tag-of-48-chars",
        ),
        pytest.param(
            b"<13>app[abc]: m",
            Message("user", "notice", "m", app="app", claimed_pid="abc"),
            id="pid-not-numeric",
        ),
        pytest.param(
            b"<13>app[12345678901]: m",
            Message("user", "notice", "m", app="app", claimed_pid="12345678901"),
            id="pid-over-10-digits",
        ),
        pytest.param(
            "<13>app[١٢]: m".encode(),
            Message("user", "notice", "m", app="app", claimed_pid="١٢"),
            id="pid-non-ascii-digits",
        ),
        pytest.param(
            b"<13>app[]: m",
            Message("user", "notice", "app[]: m"),
            id="empty-pid",
        ),
        pytest.param(
            b"<13>my app: m",
            Message("user", "notice", "my app: m"),
            id="space-in-tag-without-timestamp",
        ),
        pytest.param(
            b"<13>Nov 27 20:47:40 fe80::1 app: m",
            Message(
                "user", "notice", "m", app="app", host="fe80::1", claimed_ts="Nov 27 20:47:40"
            ),
            id="ipv6-host",
        ),
        pytest.param(
            b"<13>Nov 27 20:47:40 std::vector x",
            Message("user", "notice", "std::vector x", claimed_ts="Nov 27 20:47:40"),
            id="double-colon-word-is-no-ipv6-host",
        ),
        pytest.param(
            b"<38>Mar 27 19:06:53 source_server sshd(pam_unix)[12750]: session opened",
            Message(
                "auth", "info", "session opened", app="sshd(pam_unix)", host="source_server",
                claimed_pid=12750, claimed_ts="Mar 27 19:06:53",
            ),
            id="tag-with-parentheses",
        ),
        pytest.param(
            b"<167>Mar  6 16:57:54 172.20.245.8 %PIX-7-710005: UDP request",
            Message(
                "local4", "debug", "UDP request", app="%PIX-7-710005", host="172.20.245.8",
                claimed_ts="Mar  6 16:57:54",
            ),
            id="cisco-tag",
        ),
        pytest.param(
            b"<175>Oct 16 2009 23:47:31 hostname tag[1234] This is a message",
            Message(
                "local5", "debug", "This is a message", app="tag", host="hostname",
                claimed_pid=1234, claimed_ts="Oct 16 2009 23:47:31",
            ),
            id="tag-with-pid-without-colon",
        ),
        pytest.param(
            b"<13>Nov 27 20:47:40 host app x",
            Message("user", "notice", "app x", host="host", claimed_ts="Nov 27 20:47:40"),
            id="word-without-pid-or-colon-is-no-tag",
        ),
        pytest.param(
            b"<13>Nov 27 20:47:40 " + b"t" * 49 + b": x",
            Message("user", "notice", "t" * 49 + ": x", claimed_ts="Nov 27 20:47:40"),
            id="tag-over-48-characters-is-no-tag",
        ),
        pytest.param(
            b"<182>2022-08-17T05:02:28.217 mymachine su: 'su root' failed",
            Message(
                "local6", "info", "'su root' failed", app="su", host="mymachine",
                claimed_ts="2022-08-17T05:02:28.217",
            ),
            id="rfc3339-without-offset",
        ),
        pytest.param(
            b"<13>Nov 27 20:47:40 std::bad_alloc thrown",
            Message("user", "notice", "std::bad_alloc thrown", claimed_ts="Nov 27 20:47:40"),
            id="double-colon-is-no-tag",
        ),
    ],
)  # fmt: skip
def test_rfc3164_header(data: bytes, expected: Message) -> None:
    """TIMESTAMP, HOSTNAME and TAG are taken only where they cannot be words of the message."""
    assert parse_message(data) == expected


# -- claims that look like forgeries stay claims ----------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(
            b"<0>sshd[1]: Accepted password for root",
            Message("kern", "emerg", "Accepted password for root", app="sshd", claimed_pid=1),
            id="fake-sshd",
        ),
        pytest.param(
            b"<86>Nov 27 20:47:40 otherhost su[1]: (to root) alice on pts/0",
            Message("authpriv", "info", "(to root) alice on pts/0", app="su", host="otherhost",
                    claimed_pid=1, claimed_ts="Nov 27 20:47:40"),
            id="fake-host",
        ),
        pytest.param(
            b'<13>@cee: {"uid": 0, "pid": 1, "ts": "2000-01-01T00:00:00Z", "seq": 1,'
            b' "msg": "as root"}',
            Message("user", "notice", "as root",
                    fields={"uid": 0, "pid": 1, "ts": "2000-01-01T00:00:00Z", "seq": 1}),
            id="cee-daemon-keys-stay-in-fields",
        ),
        pytest.param(
            b"<13>1 - host app 1 - [origin uid=\"0\"] m",
            Message("user", "notice", "m", app="app", host="host", claimed_pid=1,
                    fields={"origin": {"uid": "0"}}),
            id="sd-uid-stays-in-fields",
        ),
    ],
)  # fmt: skip
def test_forgery_looking_input_is_only_claims(data: bytes, expected: Message) -> None:
    """A fake tag, pid, host or uid is parsed as the sender's claim and nothing more."""
    assert parse_message(data) == expected


# -- PRI ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"<0>hi", Message("kern", "emerg", "hi")),
        (b"<191>hi", Message("local7", "debug", "hi")),
        (b"<192>hi", Message("user", "notice", "<192>hi")),
        (b"<01>hi", Message("kern", "alert", "hi")),
        (b"<013>hi", Message("user", "notice", "hi")),
        (b"<0013>hi", Message("user", "notice", "<0013>hi")),
        (b"<>hi", Message("user", "notice", "<>hi")),
        (b"<1999>hi", Message("user", "notice", "<1999>hi")),
        (b"<13hi", Message("user", "notice", "<13hi")),
        (b"<-1>hi", Message("user", "notice", "<-1>hi")),
        ("<١٣>hi".encode(), Message("user", "notice", "<١٣>hi")),
        (b"<13>", Message("user", "notice", "")),
        (b"hi", Message("user", "notice", "hi")),
        (b"Nov 27 20:47:40 app[1]: x", Message("user", "notice", "Nov 27 20:47:40 app[1]: x")),
        (b"app: no pri", Message("user", "notice", "app: no pri")),
        (b"<192>1 - - - - - - m", Message("user", "notice", "<192>1 - - - - - - m")),
        (b"<1999>app: hi", Message("user", "notice", "<1999>app: hi")),
    ],
    ids=[
        "0", "191", "192", "leading-zero", "three-digits-leading-zero", "four-digits", "empty",
        "1999", "unclosed", "negative", "non-ascii-digits", "only-pri", "no-pri",
        "no-pri-no-header-read", "no-pri-no-tag", "invalid-pri-5424", "invalid-pri-with-tag",
    ],
)  # fmt: skip
def test_pri(data: bytes, expected: Message) -> None:
    """<0>..<191> give facility and severity; anything else: user.notice, the whole payload."""
    assert parse_message(data) == expected


def test_every_prival() -> None:
    """Each PRIVAL maps to facility PRIVAL // 8 and severity PRIVAL % 8 keywords."""
    from trio_logd.protocol.message import FACILITIES, SEVERITIES

    for prival in range(192):
        got = parse_message(b"<%d>x" % prival)
        assert (got.fac, got.sev) == (FACILITIES[prival // 8], SEVERITIES[prival % 8])


# -- RFC 5424 ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(
            b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47"
            b' [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"]'
            b" \xef\xbb\xbfAn application event log entry...",
            Message("local4", "notice", "An application event log entry...", app="evntslog",
                    host="mymachine.example.com", msgid="ID47",
                    claimed_ts="2003-10-11T22:14:15.003Z",
                    fields={"exampleSDID@32473": {"iut": "3", "eventSource": "Application",
                                                  "eventID": "1011"}}),
            id="rfc5424-example-3",
        ),
        pytest.param(
            b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 -"
            b" \xef\xbb\xbf'su root' failed for lonvick on /dev/pts/8",
            Message("auth", "crit", "'su root' failed for lonvick on /dev/pts/8", app="su",
                    host="mymachine.example.com", msgid="ID47",
                    claimed_ts="2003-10-11T22:14:15.003Z"),
            id="rfc5424-example-1",
        ),
        pytest.param(
            b"<13>1 - - - - - -",
            Message("user", "notice", ""),
            id="all-nil",
        ),
        pytest.param(
            b"<13>1 - - - - - - hi",
            Message("user", "notice", "hi"),
            id="all-nil-with-msg",
        ),
        pytest.param(
            b"<13>1 - h a p m",
            Message("user", "notice", "", app="a", host="h", msgid="m", claimed_pid="p"),
            id="no-sd-at-all",
        ),
        pytest.param(
            b"<13>1 - h a p m ",
            Message("user", "notice", "", app="a", host="h", msgid="m", claimed_pid="p"),
            id="no-sd-trailing-space",
        ),
        pytest.param(
            b"<13>1 - h a 0123 m - x",
            Message("user", "notice", "x", app="a", host="h", msgid="m", claimed_pid=123),
            id="procid-leading-zero",
        ),
        pytest.param(
            b"<13>1 - h a 12345678901 m - x",
            Message("user", "notice", "x", app="a", host="h", msgid="m",
                    claimed_pid="12345678901"),
            id="procid-over-10-digits",
        ),
        pytest.param(
            b'<13>1 - - - - - [a b="q\\"uote" c="back\\\\slash" d="br\\]acket" e="other\\n"'
            b' f="raw]bracket" g=""]',
            Message("user", "notice", "", fields={"a": {
                "b": 'q"uote', "c": "back\\slash", "d": "br]acket", "e": "other\\n",
                "f": "raw]bracket", "g": ""}}),
            id="sd-escapes",
        ),
        pytest.param(
            b'<13>1 - - - - - [a x="1" x="2" x="3"][b y="\xc3\xa9\nz"] m',
            Message("user", "notice", "m", fields={"a": {"x": ["1", "2", "3"]},
                                                    "b": {"y": "é\nz"}}),
            id="sd-repeated-param-utf8-newline",
        ),
        pytest.param(
            b'<13>1 - - - - - [a x="1"][a x="2" y="3"][a] m',
            Message("user", "notice", "m", fields={"a": {"x": ["1", "2"], "y": "3"}}),
            id="sd-repeated-id-merged",
        ),
        pytest.param(
            b"<13>1 - h a p m [bad sd",
            Message("user", "notice", "[bad sd", app="a", host="h", msgid="m", claimed_pid="p"),
            id="sd-malformed",
        ),
        pytest.param(
            b'<13>1 - h a p m [a x="1"]text',
            Message("user", "notice", '[a x="1"]text', app="a", host="h", msgid="m",
                    claimed_pid="p"),
            id="sd-then-no-space",
        ),
        pytest.param(
            b'<13>1 - h a p m [a x="unterminated\\"]',
            Message("user", "notice", '[a x="unterminated\\"]', app="a", host="h", msgid="m",
                    claimed_pid="p"),
            id="sd-escaped-closing-quote",
        ),
        pytest.param(
            b"<13>1 - h a p m -foo",
            Message("user", "notice", "-foo", app="a", host="h", msgid="m", claimed_pid="p"),
            id="nil-then-no-space",
        ),
        pytest.param(
            b"<13>1 - h a p m plain text",
            Message("user", "notice", "plain text", app="a", host="h", msgid="m",
                    claimed_pid="p"),
            id="msg-without-sd",
        ),
        pytest.param(
            "<13>1 - hôte appé - - - m".encode(),
            Message("user", "notice", "m", app="appé", host="hôte"),
            id="non-ascii-header-fields",
        ),
        pytest.param(
            b"<13>1 2003-10-11t22:14:15.123456789z - - - - - m",
            Message("user", "notice", "m", claimed_ts="2003-10-11t22:14:15.123456789z"),
            id="lowercase-t-z-nanoseconds",
        ),
    ],
)  # fmt: skip
def test_rfc5424(data: bytes, expected: Message) -> None:
    """RFC 5424 headers, NILVALUEs, STRUCTURED-DATA and its escapes, BOM."""
    assert parse_message(data) == expected


@pytest.mark.parametrize(
    "data",
    [
        b"<13>1 garbage",
        b"<13>1 2024-11-27 20:47:40 host app - - - m",
        b"<13>1 - - " + b"a" * 49 + b" - - - m",
        b"<13>1 - - - - " + b"m" * 33 + b" - m",
        b"<13>1  - - - - - m",
        b"<13>1 - - - - -\t- m",
        b"<13>12 - - - - - - m",
    ],
    ids=["garbage", "bad-timestamp", "app-49", "msgid-33", "double-space", "tab", "version-12"],
)
def test_malformed_rfc5424_header_falls_back(data: bytes) -> None:
    """A header that is not RFC 5424 is read as RFC 3164: PRI kept, the rest is the message."""
    assert parse_message(data) == Message("user", "notice", data[4:].decode())


def test_submodule_entry_points() -> None:
    """parse_rfc5424 returns None for a non-5424 payload; parse_rfc3164 takes anything."""
    assert parse_rfc5424("<13>Nov 27 20:47:40 app: m") is None
    assert parse_rfc5424("<999>1 - - - - - -") is None
    assert parse_rfc5424("<13>1 - - - - - - m", truncated=True) == Message(
        "user", "notice", "m", truncated=True
    )
    assert parse_rfc3164("anything", truncated=True) == Message(
        "user", "notice", "anything", truncated=True
    )


@pytest.mark.parametrize(
    ("procid", "expected"),
    [("1", 1), ("0", 0), ("0042", 42), ("9999999999", 9999999999), ("12345678901", "12345678901"),
     ("-1", "-1"), ("+1", "+1"), ("1_0", "1_0"), ("١", "١"), ("²", "²"), ("abc", "abc")],
)  # fmt: skip
def test_claimed_pid(procid: str, expected: int | str) -> None:
    """1-10 ASCII digits become an int; anything else stays text."""
    assert claimed_pid(procid) == expected


# -- text content ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(
            b"<13>app: caf\xe9 \xff\xfe end",
            Message("user", "notice", "caf\ufffd \ufffd\ufffd end", app="app"),
            id="invalid-utf8",
        ),
        pytest.param(
            b"<13>app: \xe2\x82",
            Message("user", "notice", "\ufffd", app="app"),
            id="truncated-utf8-sequence",
        ),
        pytest.param(
            b"<13>app: a\nb\rc\x00d\x07e",
            Message("user", "notice", "a\nb\rc\x00d\x07e", app="app"),
            id="controls",
        ),
        pytest.param(
            b"<13>app: \x1b[31mred\x1b[0m \x1b]0;title\x07",
            Message("user", "notice", "\x1b[31mred\x1b[0m \x1b]0;title\x07", app="app"),
            id="ansi-escapes",
        ),
        pytest.param(
            "<13>app: \u202eevil\u202c \u2066iso\u2069 \u200b".encode(),
            Message("user", "notice", "\u202eevil\u202c \u2066iso\u2069 \u200b", app="app"),
            id="bidi-and-zero-width",
        ),
        pytest.param(
            "<13>app\u202e: x".encode(),
            Message("user", "notice", "app\u202e: x"),
            id="bidi-in-tag-is-no-tag",
        ),
        pytest.param(
            b"<13>app: \xef\xbb\xbfbom",
            Message("user", "notice", "\ufeffbom", app="app"),
            id="bom-kept-in-3164",
        ),
    ],
)
def test_message_text_kept(data: bytes, expected: Message) -> None:
    """MSG is kept as text: invalid UTF-8 as U+FFFD, control and bidi characters as they are."""
    assert parse_message(data) == expected


def test_truncated_passed_through() -> None:
    """truncated=True from the frame reaches Message.truncated, in every parser."""
    for data in (b"<13>1 - - - - - - m", b"<13>app: m", b"m", b'@cee: {"msg": "m"}'):
        assert parse_message(data, truncated=True).truncated is True
        assert parse_message(data).truncated is False


def test_frame_to_message() -> None:
    """A truncated frame from the decoder becomes a truncated message."""
    decoder = FrameDecoder(max_message_bytes=16)
    decoder.receive_data(b"<13>app: " + b"x" * 100 + b"\n")
    [frame] = decoder.frames()
    assert frame == Frame(b"<13>app: xxxxxxx", True)
    assert parse_message(frame.data, truncated=frame.truncated) == Message(
        "user", "notice", "xxxxxxx", app="app", truncated=True
    )


@pytest.mark.parametrize(
    "prefix",
    [b"<13>", b"<13>Nov 27 20:47:40 ", b"<13>Nov 27 20:47:40 host ", b"<13>2024-01-01T00:00:00 "],
)
def test_header_patterns_stay_linear_on_long_runs(prefix: bytes) -> None:
    """64 KiB runs of header characters (host, TAG, IPv6, PID) parse in well under a second."""
    runs = [b" ", b":", b"0:", b"a", b"a[", b"a[1]", b"0::", b"a ", b"A:", b"%", b"(x)"]
    for run in runs:
        payload = prefix + run * (65536 // len(run))
        start = time.process_time()
        parse_message(payload)
        # linear: ~1 ms; a pattern that backtracks over the run takes seconds
        assert time.process_time() - start < 0.25, run
