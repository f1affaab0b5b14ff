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
* :func:`encode_line` glues ``ts``, ``seq``, the stamp and the claims.

:class:`Record` is the decoded, typed view used by readers and for the
daemon's own records.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from trio_logd.peer import PeerCred
from trio_logd.protocol.message import Message

__all__ = [
    "TRUSTED_KEYS",
    "Record",
    "Stamp",
    "daemon_record_line",
    "encode_line",
    "format_ts",
    "json_safe",
    "sender_json",
]

#: Keys that only the daemon or the kernel may set. Nothing a sender writes
#: reaches these: claims live in their own keys or under ``fields``.
TRUSTED_KEYS: Final = frozenset(
    {
        "ts", "seq", "uid", "gid", "pid", "conn_uid", "conn_pid", "relay_uid",
        "relay_pid", "exe", "comm", "owner_uid", "pidns", "event", "count", "reason",
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

    Attributes:
        account: the uid whose limits the records count against (*owner*, else
            the writer's uid).
    """

    __slots__ = ("account", "cred", "fragment", "uid")

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
    ) -> None:
        self.cred = writer
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
        # '{"uid":1,...}' -> '"uid":1,...' : spliced between seq and the claims
        # comm is set by the process itself and exe names any file: escaped too
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


@dataclass(frozen=True, slots=True)
class Record:
    """A decoded record, as readers (``logq``, the control socket) see it.

    Only ``ts``, ``seq``, ``uid``, ``gid`` and ``pid`` are always present;
    everything else is ``None`` (or empty) when absent on disk.
    """

    ts: str
    seq: int
    uid: int
    gid: int
    pid: int
    fac: str = "user"
    sev: str = "notice"
    msg: str = ""
    conn_uid: int | None = None
    conn_pid: int | None = None
    relay_uid: int | None = None
    relay_pid: int | None = None
    exe: str | None = None
    comm: str | None = None
    owner_uid: int | None = None
    pidns: bool | None = None
    app: str | None = None
    host: str | None = None
    msgid: str | None = None
    claimed_pid: int | str | None = None
    claimed_ts: str | None = None
    fields: dict[str, Any] | None = None
    truncated: bool = False
    event: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, line: bytes | str) -> Record:
        """Decode one JSON line (as written by the daemon).

        Raises:
            ValueError: the line is not a JSON object with the required keys.
        """
        obj = orjson.loads(line)
        if not isinstance(obj, dict):
            msg = f"expected a JSON object, got {type(obj).__name__}"
            raise ValueError(msg)
        known = {k: obj.pop(k) for k in _RECORD_FIELDS if k in obj}
        try:
            return cls(**known, extra=obj)
        except TypeError as exc:
            msg = f"not a trio-logd record: {exc}"
            raise ValueError(msg) from exc

    def to_dict(self) -> dict[str, Any]:
        """Return the record as on disk: absent fields left out."""
        out: dict[str, Any] = {}
        for name in _RECORD_FIELDS:
            value = getattr(self, name)
            if value is None or (name == "truncated" and not value):
                continue
            out[name] = value
        out.update(self.extra)
        return out


_RECORD_FIELDS: Final = tuple(f for f in Record.__dataclass_fields__ if f != "extra")
