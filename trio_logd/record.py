"""The record: SPEC §3's contract, and its JSON-line encoding.

How this works: a record on disk is one JSON object per line. The trusted part
(``ts``, ``seq``, kernel credentials) is written by the daemon; the sender's
part (``fac`` … ``fields``) comes from a parsed :class:`Message`. Because one
line is built per record on the hot path, the encoder is split the way the
data arrives:

* :class:`Stamp` holds the writer's credentials for a whole connection (or a
  run of reads by the same writer) and pre-encodes them once;
* :func:`sender_json` encodes a message's claims with orjson, which escapes
  the C0 controls; :func:`json_safe` then escapes what orjson writes raw but
  SPEC §3 and the readers need escaped: DEL and the C1 controls (U+0085 NEL
  ends a line for ``str.splitlines``), U+2028/U+2029 (line and paragraph
  separators, also line ends there) and the bidi controls (they reorder text
  on a terminal: ``cat``, ``grep``, ``logq -o json``). So no message can
  start a second line for any reader;
* :func:`encode_line` glues ``ts``, ``seq``, the stamp and the claims;
  :func:`encode_lines` does it for a batch (one ``ts``, consecutive seqs).

Every line therefore starts ``{"ts":"<27 characters>","seq":<digits>,``
then the stamp (``"uid":…``) then the claims from ``"fac":``. The readers
below take ``ts``, ``seq`` and the stamp's span at those fixed offsets
without decoding the JSON (:func:`line_ts`, :func:`line_seq`,
:func:`seq_key`, :func:`stamp_span`, :func:`with_seq`); :func:`daemon_event`
recognises one of the daemon's own records by an anchored match. A sender's
content cannot move any of them: it is encoded after the stamp, and a
``"`` inside it is always escaped, so ``"seq":`` or ``,"fac":"`` written by
a sender never appears raw before the claims begin.

``line_seq`` returns ``None`` for a line without the daemon's layout (a torn
or foreign line: the store's chain records it as ``null``); :func:`seq_key`
is the same number for ordering and comparing, ``0`` for such a line (no
record has seq 0: numbering starts at 1).

Readers that need the whole record decode the line with orjson: there is no
typed view besides the dict (SPEC §3 lists its fields).
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Sequence
from typing import Any, Final

import orjson

from trio_logd.credentials import NO_ATTRIBUTION, Attribution, PeerCred
from trio_logd.protocol.message import Message

__all__ = [
    "CLAIMS_START",
    "LINE_HEAD",
    "NO_ATTRIBUTION",
    "SEQ_AT",
    "TRUSTED_KEYS",
    "TS_AT",
    "TS_LENGTH",
    "Attribution",
    "PeerCred",
    "Stamp",
    "daemon_event",
    "daemon_record_line",
    "encode_line",
    "encode_lines",
    "format_ts",
    "json_safe",
    "line_seq",
    "line_ts",
    "sender_json",
    "seq_key",
    "stamp_span",
    "ts_epoch",
    "with_seq",
]


#: A stamp's unit names when it has none: one object, compared by identity first.
_NO_NAMES: Final = (None, None, None, None)


#: Keys that only the daemon or the kernel may set. Nothing a sender writes
#: reaches these: claims live in their own keys or under ``fields``.
TRUSTED_KEYS: Final = frozenset(
    {
        "ts", "seq", "uid", "gid", "pid", "conn_uid", "conn_pid", "relay_uid",
        "relay_pid", "exe", "comm", "owner_uid", "pidns", "event", "count", "reason",
        "cgroup", "unit", "slice", "user_unit", "user_slice", "loginuid", "session", "label",
        "boot_id",
    }
)  # fmt: skip

_dumps: Final = orjson.dumps
_UTC: Final = _dt.UTC

# What orjson leaves raw that must not reach a line: DEL, the C1 controls
# (U+0080..U+009F), the Arabic letter mark U+061C, LRM/RLM U+200E/U+200F,
# U+2028/U+2029, the bidi embeddings and overrides U+202A..U+202E and the
# isolates U+2066..U+2069 (CVE-2021-42574), matched as their UTF-8 bytes.
# orjson writes valid UTF-8, so every match is one whole character.
_UNSAFE_UTF8: Final = re.compile(
    rb"\x7f|\xc2[\x80-\x9f]|\xd8\x9c|\xe2\x80[\x8e\x8f\xa8-\xae]|\xe2\x81[\xa6-\xa9]"
)


def _escape_char(m: re.Match[bytes]) -> bytes:
    return b"\\u%04x" % ord(m.group().decode())


def json_safe(encoded: bytes) -> bytes:
    """Escape, in orjson's output, the characters it leaves raw but a line must not hold.

    The result is the same JSON value (``\\u`` escapes inside strings), in
    ASCII wherever those characters were. Costs two C-level scans when
    there are none (an ASCII line without DEL: the common case).

    Args:
        encoded: JSON text as orjson writes it (valid UTF-8).

    Returns:
        *encoded*, with DEL, C1, bidi and line-separator characters escaped.
    """
    if encoded.isascii() and 0x7F not in encoded:  # an int: memchr, 8x faster than b"\x7f"
        return encoded
    return _UNSAFE_UTF8.sub(_escape_char, encoded)


def format_ts(epoch: float) -> str:
    """Return *epoch* as RFC 3339 UTC with microseconds, ending in ``Z``."""
    t = _dt.datetime.fromtimestamp(epoch, _UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Stamp:
    """The kernel-attested part of every record written by one writer.

    Built once per connection (and again only when ``SCM_CREDENTIALS`` shows a
    different writer), it pre-encodes ``"uid":…,"gid":…,"pid":…`` and the
    optional ``conn_*``, ``relay_*``, ``exe`` and ``comm`` into bytes.

    Args:
        writer: credentials of the process that wrote the bytes.
        conn: ``SO_PEERCRED`` of the connection; ``conn_uid``/``conn_pid`` are
            added when they differ from *writer*.
        exe: verified executable path, or ``None``.
        comm: verified command name, or ``None``.
        relay: trusted credentials of a relay that submitted on behalf of
            *writer* (``[identity] may_claim``), or ``None``.
        owner: the user *writer*'s uid is delegated to (``/etc/subuid``),
            whose limits it counts against: written as ``owner_uid``.
        pidns: *writer* is in another pid namespace than the daemon: written
            as ``"pidns": true``.
        attribution: *writer*'s verified cgroup, unit, slice, user unit and
            slice, login uid, session and label: each known one written under
            its own key (``peer.Attribution``).

    Attributes:
        account: the uid whose limits the records count against (*owner*, else
            the writer's uid).
        unit: the writer's system unit (``[limits.unit."GLOB"]``), or ``None``.
        names: the writer's ``(unit, slice, user_unit, user_slice)``, one
            tuple per stamp: the store's unit summaries (``store.runs.Run``).
    """

    __slots__ = ("account", "cred", "fragment", "names", "uid", "unit")

    def __init__(
        self,
        writer: PeerCred,
        conn: PeerCred | None = None,
        *,
        exe: str | None = None,
        comm: str | None = None,
        relay: PeerCred | None = None,
        owner: int | None = None,
        pidns: bool | None = None,
        attribution: Attribution = NO_ATTRIBUTION,
    ) -> None:
        self.cred = writer
        self.unit = attribution.unit
        names = (attribution.unit, attribution.slice, attribution.user_unit, attribution.user_slice)
        # one object for "no unit": the store compares a batch's names by identity first
        self.names = _NO_NAMES if names == _NO_NAMES else names
        self.uid = writer.uid
        self.account = writer.uid if owner is None else owner
        parts: dict[str, Any] = {"uid": writer.uid, "gid": writer.gid, "pid": writer.pid}
        if conn is not None and (conn.uid != writer.uid or conn.pid != writer.pid):
            parts["conn_uid"] = conn.uid
            parts["conn_pid"] = conn.pid
        if relay is not None:
            parts["relay_uid"] = relay.uid
            parts["relay_pid"] = relay.pid
        if exe is not None:
            parts["exe"] = exe
        if comm is not None:
            parts["comm"] = comm
        if owner is not None:
            parts["owner_uid"] = owner
        if pidns:
            parts["pidns"] = True
        if attribution is not NO_ATTRIBUTION:
            parts.update(attribution.fields())
        # '{"uid":1,...}' -> '"uid":1,...' : spliced between seq and the claims
        # comm is set by the process itself, exe names any file and a user
        # names her own cgroups: escaped too
        self.fragment: bytes = json_safe(_dumps(parts))[1:-1]


def sender_json(msg: Message, pid: int) -> bytes:
    """Encode a message's claims as ``"fac":…,…,"msg":…`` (no braces).

    ``claimed_pid`` is kept only when it differs from the kernel's *pid*.
    """
    d: dict[str, Any] = {"fac": msg.fac, "sev": msg.sev}
    if msg.app is not None:
        d["app"] = msg.app
    if msg.host is not None:
        d["host"] = msg.host
    if msg.msgid is not None:
        d["msgid"] = msg.msgid
    if msg.claimed_pid is not None and msg.claimed_pid != pid:
        d["claimed_pid"] = msg.claimed_pid
    if msg.claimed_ts is not None:
        d["claimed_ts"] = msg.claimed_ts
    d["msg"] = msg.msg
    if msg.fields:
        d["fields"] = msg.fields
    if msg.truncated:
        d["truncated"] = True
    out = _dumps(d)
    if not out.isascii() or 0x7F in out:  # json_safe, inlined: once per record
        out = _UNSAFE_UTF8.sub(_escape_char, out)
    return out[1:-1]


def encode_line(ts: bytes, seq: int, stamp: bytes, claims: bytes) -> bytes:
    """Return one JSON line: ``{"ts":…,"seq":…,<stamp>,<claims>}\\n``.

    Args:
        ts: the receive time, already formatted and encoded (``format_ts``).
        seq: the per-uid sequence number.
        stamp: ``Stamp.fragment``.
        claims: ``sender_json(...)`` or a daemon record's own fields.
    """
    return b'{"ts":"%s","seq":%d,%s,%s}\n' % (ts, seq, stamp, claims)


def encode_lines(ts: bytes, first: int, stamp: bytes, claims: Sequence[bytes]) -> list[bytes]:
    """Return the lines of a batch: one ``ts`` and *stamp*, seqs from *first* on.

    Byte for byte ``[encode_line(ts, first + i, stamp, c) for i, c in …]``,
    with the common head formatted once (the hot path: one call per read).
    """
    head = b'{"ts":"%s","seq":' % ts
    return [b"%s%d,%s,%s}\n" % (head, s, stamp, c) for s, c in enumerate(claims, first)]


def daemon_record_line(
    ts: float | bytes, seq: int, stamp: Stamp, event: str, **extra: Any
) -> bytes:
    """Encode one of the daemon's own records (``event`` set, ``sev`` info or above).

    Args:
        ts: receive/creation time (epoch seconds, or already formatted:
            ``format_ts(…).encode()``).
        seq: the per-uid sequence number of the uid the record is filed with.
        stamp: the daemon's own credentials, filed with the uid concerned
            (a ``Stamp`` whose ``uid`` is that uid and ``pid`` the daemon's).
        event: ``started``, ``suppressed``, ``protocol_error``, ``rotated`` …
        extra: further top-level fields (``count``, ``reason``, ``msg`` …).
    """
    sev = extra.pop("sev", "notice" if event == "suppressed" else "info")
    claims: dict[str, Any] = {"fac": "syslog", "sev": sev, "app": "trio-logd", "event": event}
    claims.update(extra)
    claims.setdefault("msg", event)
    if not isinstance(ts, bytes):
        ts = format_ts(ts).encode()
    return encode_line(ts, seq, stamp.fragment, json_safe(_dumps(claims))[1:-1])


# --------------------------------------------------------------------------- readers

#: The length of a record's ``ts`` (``2026-11-27T20:47:40.123456Z``).
TS_LENGTH: Final = 27
#: How every record line starts.
LINE_HEAD: Final = b'{"ts":"'
#: ``{"ts":"`` is 7 bytes, the timestamp 27, ``","seq":`` 8.
TS_AT: Final = slice(len(LINE_HEAD), len(LINE_HEAD) + TS_LENGTH)
_SEQ_KEY: Final = b'","seq":'
SEQ_AT: Final = TS_AT.stop + len(_SEQ_KEY)
#: seq is an int below 2**63: at most 19 digits (one more for room).
_SEQ_DIGITS: Final = 20
#: What ends the stamp: the claims begin with ``fac`` (``sender_json``, daemon records).
CLAIMS_START: Final = b',"fac":"'

_DAEMON_EVENT: Final = re.compile(
    rb'\{"ts":"[^"]{27}","seq":\d+,"uid":\d+,"gid":\d+,"pid":\d+,'
    rb'"fac":"syslog","sev":"[a-z]+","app":"trio-logd","event":"([a-z_]+)"'
)


def line_ts(line: bytes) -> bytes:
    """The ``ts`` bytes of a record line (fixed offset; no decoding, no check)."""
    return line[TS_AT]


def _seq_end(line: bytes) -> int:
    """Where *line*'s seq digits end (its ``,``), or -1 if it has not the daemon's layout."""
    # literals, not the names above (a reader runs once per line): 42 is SEQ_AT,
    # 63 SEQ_AT + _SEQ_DIGITS + 1, 34 TS_AT.stop (tests/test_record_codec.py)
    end = line.find(b",", 42, 63)
    if (
        end > 42
        and line.startswith(b'","seq":', 34)
        and line.startswith(b'{"ts":"')
        and line[42:end].isdigit()
    ):
        return end
    return -1


def line_seq(line: bytes) -> int | None:
    """Return the ``seq`` of a record line, or ``None`` if it has not the daemon's layout."""
    end = _seq_end(line)
    return int(line[SEQ_AT:end]) if end >= 0 else None


def seq_key(line: bytes) -> int:
    """:func:`line_seq` for ordering and comparing: ``0`` for a line without the layout."""
    end = _seq_end(line)
    return int(line[SEQ_AT:end]) if end >= 0 else 0


def stamp_span(line: bytes) -> tuple[int, int]:
    """Where the stamp of a record line lies: ``line[start:end]`` is ``,"uid":…``.

    *start* is the ``,`` after the seq (``line[SEQ_AT:start]`` is the seq),
    *end* the ``,`` before ``"fac":`` (``line[end + 1:]`` is the claims and
    the closing brace). ``(-1, -1)`` for a line without the daemon's layout.
    This checks the layout's fixed parts but not that the seq is digits
    (:func:`line_seq` does): every line the daemon stores has them. The
    forwarder's framer does the same with :data:`SEQ_AT`,
    :data:`CLAIMS_START` and :data:`LINE_HEAD` inline (once per record).
    """
    start = line.find(b",", 42, 63)  # as in _seq_end
    if start > 42 and line.startswith(b'","seq":', 34) and line.startswith(b'{"ts":"'):
        end = line.find(b',"fac":"', start)
        if end >= 0:
            return start, end
    return -1, -1


def with_seq(line: bytes, seq: int) -> bytes:
    """The record line *line* (of the daemon's layout) numbered *seq* instead.

    Raises:
        ValueError: *line* has not the daemon's layout.
    """
    end = _seq_end(line)
    if end < 0:
        msg = f"not a record line of the daemon's layout: {line[:60]!r}"
        raise ValueError(msg)
    return b"%s%d%s" % (line[:SEQ_AT], seq, line[end:])


def ts_epoch(ts: bytes) -> float:
    """Parse a record's ``ts`` (``2026-11-27T20:47:40.123456Z``) to epoch seconds.

    Raises:
        ValueError: *ts* is not in that form.
    """
    if len(ts) != TS_LENGTH or ts[26:] != b"Z":
        msg = f"expected an RFC 3339 UTC time with microseconds, got {ts!r}"
        raise ValueError(msg)
    whole = _dt.datetime(
        int(ts[0:4]), int(ts[5:7]), int(ts[8:10]), int(ts[11:13]), int(ts[14:16]),
        int(ts[17:19]), tzinfo=_UTC,
    ).timestamp()  # fmt: skip
    return whole + int(ts[20:26]) / 1e6


def daemon_event(line: bytes) -> str | None:
    """Return the ``event`` of one of the daemon's own records, ``None`` for any other line.

    Anchored at the line's start: the daemon's stamp (``uid``, ``gid``,
    ``pid`` only) then ``"fac":"syslog",…,"app":"trio-logd","event":…``. A
    sender's claims never include ``event`` (anything it structures is
    nested under ``fields``, past this prefix), so no sender's line matches.
    """
    m = _DAEMON_EVENT.match(line)
    return m[1].decode() if m is not None else None
