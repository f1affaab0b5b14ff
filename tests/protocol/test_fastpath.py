"""The plain-glibc batch encoder gives byte for byte what the general parser gives."""

from __future__ import annotations

import orjson
from hypothesis import example, given, settings
from hypothesis import strategies as st

from trio_logd.protocol.fastpath import encode_plain_batch
from trio_logd.protocol.parse import parse_message
from trio_logd.record import (
    PeerCred,
    Stamp,
    encode_lines,
    line_seq,
    sender_json,
    stamp_span,
)

PID = 4242


def general(payloads: list[bytes], pid: int = PID) -> list[bytes]:
    return [sender_json(parse_message(p), pid) for p in payloads]


def test_a_typical_read_is_encoded_like_the_general_parser() -> None:
    """A batch of loadgen-style lines takes the fast way and gives the same claims."""
    batch = [b"<14>Nov 27 20:47:40 loadgen[4242]: MK=001.%09d xxxx" % i for i in range(300)]
    batch.append(b"<134>Dec  7 01:02:03 other[77]: claimed pid differs")
    batch.append(b"<0>Jan 10 00:00:00 kern: no pid, PRI 0")
    assert encode_plain_batch(batch, PID) == general(batch)


def test_claimed_pid_with_a_leading_zero_equal_to_the_kernel_pid_is_dropped() -> None:
    """[04242] is the kernel's pid 4242: left out, as the general parser does."""
    batch = [b"<14>Nov 27 20:47:40 app[04242]: x", b"<14>Nov 27 20:47:40 app[0077]: y"]
    assert encode_plain_batch(batch, PID) == general(batch)


def test_declines_a_batch_with_one_unusual_payload() -> None:
    """One payload the fast pattern does not take sends the whole batch the general way."""
    plain = b"<14>Nov 27 20:47:40 app[1]: ok"
    for odd in (
        b'<14>Nov 27 20:47:40 app[1]: has a "quote"',
        b"<14>Nov 27 20:47:40 app[1]: back\\slash",
        b"<14>Nov 27 20:47:40 app[1]: tab\there",
        b"<14>Nov 27 20:47:40 app[1]: caf\xc3\xa9",
        b"<14>Nov 27 20:47:40 app[1]: @cee: {}",
        b"<192>Nov 27 20:47:40 app[1]: PRI too big",
        b"<014>Nov 27 20:47:40 app[1]: leading zero PRI",
        b"<14>Nov 27 20:47:40 host app[1]: with a host",
        b"<14>1 2026-11-27T20:47:40Z h app 1 - - rfc5424",
        b"<14>Nov 27 20:47:40 app[1]: two\n<14>Nov 27 20:47:40 app[1]: lines",
        b"no pri at all",
        b"",
    ):
        assert encode_plain_batch([plain, odd], PID) is None, odd


def _mostly(valid: bytes, *others: bytes) -> st.SearchStrategy[bytes]:
    """The usual form three times out of four, so the fast way is really taken."""
    return st.one_of(st.just(valid), st.just(valid), st.just(valid), st.sampled_from(others))


_SAFE = " !#$%&'()*+,-./09:;<=>?@AZ[]^_`az{|}~"
_LINE = st.builds(
    lambda pri, mon, day, hms, tag, pid, colon, msg: (
        b"<%s>%s %s %s %s%s%s%s" % (pri, mon, day, hms, tag, pid, colon, msg)
    ),
    _mostly(b"14", b"0", b"191", b"192", b"014", b"7", b"1"),
    _mostly(b"Nov", b"Dec", b"nov"),
    _mostly(b"27", b" 7", b"7"),
    _mostly(b"20:47:40", b"20:47:4"),
    st.one_of(
        st.sampled_from([b"app", b"a/b", b"x@y", b"a.b-c+d_e"]),
        st.sampled_from([b"@cee", b"", b"a b", b"a:"]),
        # TAG characters only the general parser takes (rsyslog's and syslog-ng's test corpus)
        st.sampled_from(
            [b"sshd(pam_unix)", b"%PIX-7-710005", b'05",b', b"a\\b", b"a#b", b"0:0:", b"fe80:"]
        ),
        st.binary(min_size=0, max_size=8).filter(lambda b: b"\n" not in b),
    ),
    _mostly(b"[4242]", b"", b"[42]", b"[04242]", b"[12345678901]", b"[x]"),
    _mostly(b": ", b":", b"::", b" ", b": :"),
    st.one_of(
        st.text(alphabet=_SAFE, max_size=30).map(str.encode),
        st.text(alphabet=_SAFE, max_size=30).map(lambda t: b"@cee:" + t.encode()),
        st.binary(max_size=30),
    ),
)


@settings(max_examples=600)
@given(st.lists(_LINE, min_size=1, max_size=3))
@example([b"<14>Nov 27 20:47:40 app[4242]: @cee:x"])
@example([b"<13>Nov 27 20:47:40 0:0::1"])  # an IPv6 HOSTNAME at the end, not TAG "0"
def test_fast_way_equals_general_way(batch: list[bytes]) -> None:
    """Whenever the fast encoder answers, its claims equal the general parser's, byte for byte."""
    fast = encode_plain_batch(batch, PID)
    if fast is not None:
        assert fast == general(batch)


@settings(max_examples=200)
@given(st.lists(_LINE, min_size=1, max_size=3))
@example([b"<14>Nov 27 20:47:40 app[4242]: hello", b"<14>Nov 27 20:47:41 app[7]: x"])
def test_fast_claims_make_lines_the_codec_reads(batch: list[bytes]) -> None:
    """Lines made of the fast encoder's claims are read back by the record codec's readers."""
    fast = encode_plain_batch(batch, PID)
    if fast is None:
        return
    stamp = Stamp(PeerCred(PID, 1000, 1000))
    lines = encode_lines(b"2026-11-27T20:47:40.123456Z", 7, stamp.fragment, fast)
    for seq, (line, claims) in enumerate(zip(lines, fast, strict=True), 7):
        assert line_seq(line) == seq
        start, end = stamp_span(line)
        assert line[start + 1 : end] == stamp.fragment
        assert line[end + 1 : -2] == claims
        assert orjson.loads(line)["seq"] == seq
