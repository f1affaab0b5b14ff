"""Fuzz targets: bytes in, an exception out only when an invariant of the parsers breaks.

Each target takes one input (any bytes) and runs a part of the daemon that
reads untrusted bytes, checking what must hold whatever the input:

* ``ingest``: :class:`FrameDecoder` (fed whole and in chunks: same frames,
  same verdict; its buffer bounded by ``max_message_bytes + BUFFER_SLACK``)
  → :func:`parse_message` (never raises) → the record encoder, whose output
  must be exactly one valid JSON line, with the kernel's fields as stamped
  and nothing unsafe raw, however it is read (bytes, ``str.splitlines``,
  ``logq -o short``).
* ``control``: the control socket's :class:`LineReader` and
  :func:`decode_request`, then a query's validation and authorization: only
  the documented errors, and a caller who is not a reader is never granted
  another uid.
* ``claim``: :func:`take_claim` on any parsed payload: a claim is in range
  and removed from the fields, everything else left as it was; a relayed
  record is filed under the claimed uid and names the relay.

The targets are plain functions (no atheris here): ``python -m fuzz`` drives
them with atheris, ``tests/fuzz`` replays the corpus and runs them briefly.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, Final

import orjson

from trio_logd.config import Config, loads
from trio_logd.errors import AccessDenied, FramingError, ParseError
from trio_logd.peer import PeerCred
from trio_logd.protocol.claim import CLAIM_SD_ID, MAX_ID, MAX_PID, take_claim
from trio_logd.protocol.control import NEED_DATA as LINE_NEEDED
from trio_logd.protocol.control import LineReader, decode_request
from trio_logd.protocol.framing import BUFFER_SLACK, NEED_DATA, Frame, FrameDecoder
from trio_logd.protocol.message import FACILITIES, SEVERITIES
from trio_logd.protocol.parse import parse_message
from trio_logd.protocol.reserved import reserved_name
from trio_logd.query.filters import LineFilter, QuerySpec
from trio_logd.query.output import format_short
from trio_logd.record import (
    TRUSTED_KEYS,
    Stamp,
    daemon_event,
    encode_line,
    line_seq,
    line_ts,
    sender_json,
    seq_key,
    stamp_span,
    with_seq,
)
from trio_logd.server._query import authorize_uids

__all__ = ["TARGETS", "fuzz_claim", "fuzz_control", "fuzz_ingest"]

#: ``max_message_bytes`` picked by the first input byte: edge sizes and real ones.
_MAX_SIZES: Final = (1, 2, 3, 11, 16, 64, 480, 1024, 65536)
_TS: Final = b"2026-11-27T20:47:40.123456Z"
_WRITER: Final = PeerCred(4242, 1000, 1000)
_CONN: Final = PeerCred(1, 0, 0)
_SENDER_KEYS: Final = frozenset(
    {
        "fac",
        "sev",
        "app",
        "host",
        "msgid",
        "claimed_pid",
        "claimed_ts",
        "msg",
        "fields",
        "truncated",
    }
)
# What no stored line may hold raw (see record.json_safe): C0 but LF, DEL, C1,
# bidi controls, line and paragraph separators.
_UNSAFE: Final = frozenset(
    [chr(c) for c in range(0x20) if c != 0x0A]
    + [chr(c) for c in range(0x7F, 0xA0)]
    + list("\u061c\u200e\u200f\u2028\u2029\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
)


def _chunks(data: bytes, seed: int) -> list[bytes]:
    """*data* cut at places chosen by *seed* (0: byte by byte)."""
    if seed == 0:
        return [data[i : i + 1] for i in range(len(data))]
    rng = random.Random(seed)
    out = []
    i = 0
    while i < len(data):
        n = rng.randint(1, 1 + seed % 97)
        out.append(data[i : i + n])
        i += n
    return out


def _decode(stream: list[bytes], maxb: int) -> tuple[list[Frame], bool]:
    """All frames of *stream* and whether it ended in a FramingError; checks the bound."""
    dec = FrameDecoder(maxb)
    frames: list[Frame] = []
    failed = False
    for chunk in [*stream, b""]:
        dec.receive_data(chunk)
        assert dec.buffered <= maxb + BUFFER_SLACK, (dec.buffered, maxb)
        try:
            while True:
                frame = dec.next_frame()
                if frame is NEED_DATA:
                    break
                assert isinstance(frame, Frame)
                frames.append(frame)
        except FramingError:
            failed = True
    return frames, failed


def _check_line(line: bytes, stamp: Stamp, seq: int) -> dict[str, Any]:
    """One stored line: one JSON object, the stamp's fields intact, nothing unsafe."""
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1, line
    text = line.decode("utf-8")  # strict: the store writes valid UTF-8
    assert len(text.splitlines()) == 1, line
    assert not _UNSAFE.intersection(text[:-1]), line
    obj = orjson.loads(line)
    assert type(obj) is dict
    cred = stamp.cred
    assert (obj["ts"], obj["seq"]) == (_TS.decode(), seq)
    # the codec's fixed-offset readers agree with the decoded line
    assert (line_ts(line), line_seq(line), seq_key(line)) == (_TS, seq, seq)
    assert daemon_event(line) is None, line
    start, end = stamp_span(line)
    assert line[start + 1 : end] == stamp.fragment, line
    assert orjson.loads(b"{" + line[end + 1 :]) == {k: obj[k] for k in obj if k in _SENDER_KEYS}
    assert orjson.loads(with_seq(line, seq + 1)) == {**obj, "seq": seq + 1}
    assert (obj["uid"], obj["gid"], obj["pid"]) == (cred.uid, cred.gid, cred.pid)
    stamped = set(orjson.loads(b"{%s}" % stamp.fragment)) | {"ts", "seq"}
    assert set(obj) & TRUSTED_KEYS == stamped & TRUSTED_KEYS, obj
    assert set(obj) <= stamped | _SENDER_KEYS, obj
    assert obj["fac"] in FACILITIES
    assert obj["sev"] in SEVERITIES
    shown = format_short(obj)
    assert shown.endswith("\n")
    assert shown.count("\n") == 1, shown
    assert not _UNSAFE.intersection(shown[:-1]), shown
    return obj


def fuzz_ingest(data: bytes) -> None:
    """Frame, parse and encode *data* as the daemon does; check every invariant."""
    if len(data) < 3:
        return
    maxb = _MAX_SIZES[data[0] % len(_MAX_SIZES)]
    stream = data[3:]
    whole, failed = _decode([stream], maxb)
    cut, cut_failed = _decode(_chunks(stream, data[1]), maxb)
    assert (whole, failed) == (cut, cut_failed), "chunking changed the frames"
    # comm is set by the sending process: let the input choose it too
    comm = data[3:19].decode("utf-8", "replace")
    stamp = Stamp(_WRITER, _CONN, exe="/usr/bin/sender", comm=comm)
    for seq, frame in enumerate(whole, 1):
        assert 0 < len(frame.data) <= maxb
        msg = parse_message(frame.data, truncated=frame.truncated)
        line = encode_line(_TS, seq, stamp.fragment, sender_json(msg, _WRITER.pid))
        obj = _check_line(line, stamp, seq)
        assert obj.get("truncated", False) is frame.truncated


_CONFIG: Final[Config] = loads('[access]\nreaders = ["adm"]\n', base_dir="/")
_ALLOWED: Final = (ParseError, ValueError, AccessDenied)


def fuzz_control(data: bytes) -> None:
    """Read *data* as control-socket bytes from uid 1000; check decoding and authorization."""
    if not data:
        return
    reader = LineReader(max_line=256 + data[0] * 64)
    for chunk in [*_chunks(data[1:], data[0]), b""]:
        reader.receive_data(chunk)
        while True:
            try:
                line = reader.next_line()
            except ParseError:
                return  # the server answers one error line and closes
            if line is LINE_NEEDED:
                break
            assert isinstance(line, bytes)
            _serve_line(line)


def _serve_line(line: bytes) -> None:
    try:
        request = decode_request(line)
        assert isinstance(request.op, str)
        if request.op != "query":
            return
        spec = QuerySpec.from_request(request.args)
        LineFilter(spec)
        assert QuerySpec.from_request(spec.to_request()) == spec
        uids = authorize_uids(_CONFIG, 1000, (1000,), spec, {4: "adm"})
        assert uids == [1000], uids  # never another uid, never "all"
    except _ALLOWED:
        return


def fuzz_claim(data: bytes) -> None:
    """Parse *data* as a relay's payload; check the claim and the record filed for it."""
    msg = parse_message(data)
    taken = take_claim(msg)
    if taken is None:
        return
    claim, rest = taken
    assert 0 <= claim.uid <= MAX_ID
    assert claim.gid is None or 0 <= claim.gid <= MAX_ID
    assert claim.pid is None or 0 <= claim.pid <= MAX_PID
    assert msg.fields is not None
    # the claim element is found case-insensitively (protocol/reserved.py)
    others = {k: v for k, v in msg.fields.items() if reserved_name(k) != CLAIM_SD_ID}
    assert rest.fields == (others or None)
    assert rest._replace(fields=msg.fields) == msg
    relay = PeerCred(77, 2000, 2000)
    writer = PeerCred(claim.pid or 0, claim.uid, 65534 if claim.gid is None else claim.gid)
    stamp = Stamp(writer, relay=relay)
    line = encode_line(_TS, 1, stamp.fragment, sender_json(rest, writer.pid))
    obj = _check_line(line, stamp, 1)
    assert (obj["uid"], obj["relay_uid"], obj["relay_pid"]) == (claim.uid, 2000, 77)


#: name → target, as ``python -m fuzz NAME`` and ``fuzz/corpus/NAME/`` know them
TARGETS: Final[dict[str, Callable[[bytes], None]]] = {
    "ingest": fuzz_ingest,
    "control": fuzz_control,
    "claim": fuzz_claim,
}
