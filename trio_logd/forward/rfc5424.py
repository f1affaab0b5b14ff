"""A stored record as an RFC 5424 message, trusted fields in their own SD element.

How this works: a record line is decoded once (orjson) and laid out as

    <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [logd@32473 …][logd-claims@32473 …]
        [logd-fields@32473 …][sender's own SD elements] MSG

* ``PRI`` from the record's ``fac``/``sev``; ``TIMESTAMP`` is ``ts``, the
  daemon's receive time (RFC 5424 allows six fractional digits, which is
  what ``ts`` has); ``HOSTNAME`` is the forwarding host's name; ``PROCID``
  is the kernel-reported ``pid``. ``APP-NAME`` and ``MSGID`` are the sender's
  claims, as in any syslog message.
* ``[logd@32473 …]`` (:data:`SD_ID`) holds what the daemon and the kernel
  vouch for: ``uid gid pid seq`` first, then every other top-level field
  the daemon wrote (``exe comm conn_uid conn_pid relay_uid relay_pid
  owner_uid pidns truncated event count reason`` …). A sender cannot write a top-level
  field (SPEC §3), so nothing in this element is a claim.
* ``[logd-claims@32473 …]`` (:data:`CLAIMS_SD_ID`) holds the header claims
  that the trusted header replaced: ``host``, ``claimed_pid``, ``claimed_ts``.
* The sender's ``fields``: an element it sent in RFC 5424 form under a
  private SD-ID (``name@PEN``) is passed through as it was; anything else
  (``@cee:`` keys, IANA names such as ``origin`` or ``meta``, malformed
  elements, and any SD-ID of ours, ``logd…@32473`` in any case and with any
  sub-identifier (``protocol/reserved.py``), which a sender may not use)
  becomes a parameter of ``[logd-fields@32473 …]`` (:data:`FIELDS_SD_ID`):
  a string as it is, any other JSON value as its compact JSON text. So a
  collector trusts exactly one element, also one that lowercases SD-IDs
  (rsyslog's ``mmpstrucdata``), and no sender can forge it.
* SD-NAMEs, PARAM-VALUEs and header fields are written by
  ``protocol.rfc5424_writer`` (RFC 5424's grammar and writer): a field name
  that is not an SD-NAME is mended, PARAM-VALUEs are escaped, header fields
  are made PRINTUSASCII and cut to their lengths. What is this module's own
  is which record fields go into which element.
* ``MSG`` is the record's ``msg`` in UTF-8, without a BOM (MSG-ANY; rsyslog
  and syslog-ng read UTF-8 either way). A ``msg`` that a collector would read
  as ``@cee:`` JSON (the daemon did not: it would be in ``fields``) gets a
  backslash in front (``reserved.inert_text``).

Decoding (``orjson.loads``) is the caller's, so that records a filter
drops are never encoded.

The SD-IDs use the Private Enterprise Number 32473, which RFC 5612 reserves
for documentation and examples: trio-logd has no number of its own (see
``docs/forwarding.md``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

import orjson

from trio_logd.protocol.message import FACILITIES, SEVERITIES
from trio_logd.protocol.reserved import inert_text, is_reserved
from trio_logd.protocol.rfc5424_writer import (
    APP_NAME_MAX,
    HOSTNAME_MAX,
    MSGID_MAX,
    NILVALUE,
    escape_param_value,
    header_field,
    is_sd_name,
    sd_name,
)
from trio_logd.record import CLAIMS_START, LINE_HEAD, SEQ_AT, TS_AT

__all__ = [
    "CLAIMS_SD_ID",
    "FIELDS_SD_ID",
    "SD_ID",
    "encode_record",
    "frame",
    "make_encoder",
    "make_framer",
    "sd_name",
]

#: The SD-ID of the trusted element (PEN 32473: RFC 5612's documentation number).
SD_ID: Final = "logd@32473"
#: The SD-ID of the sender's header claims that the header does not carry.
CLAIMS_SD_ID: Final = "logd-claims@32473"
#: The SD-ID of the sender's structured fields that are not SD elements of their own.
FIELDS_SD_ID: Final = "logd-fields@32473"

#: A private SD-ID (§7.2.2): NAME@PEN, PEN in dotted digits.
_PRIVATE_ID: Final = re.compile(r"[^@]+@[0-9]+(?:\.[0-9]+)*")

_SEV_CODE: Final = {name: code for code, name in enumerate(SEVERITIES)}
_FAC_CODE: Final = {name: code for code, name in enumerate(FACILITIES)}
#: A record without fac/sev (never written by the daemon) is user.notice.
_DEFAULT_FAC: Final = 1
_DEFAULT_SEV: Final = 5

#: Top-level keys that hold the sender's claims, not the daemon's facts.
_CLAIM_KEYS: Final = frozenset(
    {"fac", "sev", "app", "host", "msgid", "claimed_pid", "claimed_ts", "msg", "fields"}
)
#: Trusted keys, first and in this order; the rest follow in record order.
_TRUSTED_FIRST: Final = ("uid", "gid", "pid", "seq")
#: Header claims moved to the claims element.
_HEADER_CLAIMS: Final = ("host", "claimed_pid", "claimed_ts")
_SKIP_TRUSTED: Final = _CLAIM_KEYS | {"ts", *_TRUSTED_FIRST}
#: Trusted keys of a plain record besides uid, gid, pid and seq, in order.
_PLAIN_TRUSTED: Final = (
    "conn_uid", "conn_pid", "relay_uid", "relay_pid", "exe", "comm", "owner_uid", "pidns",
)  # fmt: skip
#: The keys a plain record may have: the fast path of ``make_encoder``.
_PLAIN_KEYS: Final = frozenset(
    {"ts", *_TRUSTED_FIRST, *_PLAIN_TRUSTED, *(_CLAIM_KEYS - {"fields"})}
)
#: Writers remembered by one encoder (a dict of pre-formatted text each).
_CACHE_ENTRIES: Final = 4096
_CLAIMED_TS_HEAD: Final = f'[{CLAIMS_SD_ID} claimed_ts="'.encode()

_loads: Final = orjson.loads
_dumps: Final = orjson.dumps


def _value(value: object) -> str:
    """A PARAM-VALUE's text, escaped: strings as they are, other JSON as compact JSON."""
    if isinstance(value, str):
        return escape_param_value(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)  # digits and '-': nothing to escape
    return escape_param_value(_dumps(value).decode())


def _element(sd_id: str, params: Iterable[tuple[str, object]]) -> str:
    body = "".join(f' {name}="{_value(value)}"' for name, value in params)
    return f"[{sd_id}{body}]" if body else ""


def _is_sd_element(key: str, value: object) -> bool:
    """A sender's element that passes through: a private, not reserved SD-ID with string params."""
    if not (is_sd_name(key) and _PRIVATE_ID.fullmatch(key)) or is_reserved(key):
        return False
    if not isinstance(value, dict) or not value:
        return False
    for name, v in value.items():
        if not is_sd_name(name):
            return False
        if not isinstance(v, str) and not (
            isinstance(v, list) and v and all(isinstance(x, str) for x in v)
        ):
            return False
    return True


def _sender_sd(fields: Mapping[str, Any]) -> str:
    """The sender's fields: its own SD elements, then everything else in the fields element."""
    own: list[str] = []
    rest: list[tuple[str, object]] = []
    for key, value in fields.items():
        if _is_sd_element(key, value):
            params = [
                (name, x) for name, v in value.items() for x in (v if isinstance(v, list) else (v,))
            ]
            own.append(_element(key, params))
        else:
            rest.append((sd_name(key), value))
    return _element(FIELDS_SD_ID, rest) + "".join(own)


def _pri(fac: object, sev: object) -> int:
    """RFC 5424 §6.2.1 PRIVAL = facility * 8 + severity, from the keywords."""
    f = _FAC_CODE.get(fac, _DEFAULT_FAC) if isinstance(fac, str) else _DEFAULT_FAC
    s = _SEV_CODE.get(sev, _DEFAULT_SEV) if isinstance(sev, str) else _DEFAULT_SEV
    return f * 8 + s


def _general(host: str, rec: Mapping[str, Any]) -> str:
    """Any record (daemon events, fields, truncated …): every key looked at."""
    get = rec.get
    pri = _pri(get("fac"), get("sev"))
    trusted = [(k, rec[k]) for k in _TRUSTED_FIRST if k in rec]
    trusted += [(k, v) for k, v in rec.items() if k not in _SKIP_TRUSTED]
    sd = _element(SD_ID, trusted)
    claims = [(k, rec[k]) for k in _HEADER_CLAIMS if k in rec]
    if claims:
        sd += _element(CLAIMS_SD_ID, claims)
    fields = get("fields")
    if fields:
        if isinstance(fields, dict):
            sd += _sender_sd(fields)
        else:
            sd += _element(FIELDS_SD_ID, [("fields", fields)])
    text = get("msg")
    body = f" {inert_text(text)}" if isinstance(text, str) and text else ""
    return (
        f"<{pri}>1 {get('ts', NILVALUE)} {host} {header_field(get('app'), APP_NAME_MAX)} "
        f"{get('pid', NILVALUE)} {header_field(get('msgid'), MSGID_MAX)} {sd or NILVALUE}{body}"
    )


def _plain_parts(host: str, rec: Mapping[str, Any]) -> tuple[str, str, str]:
    """What a plain record shares with others of the same writer: the text around ts and seq."""
    get = rec.get
    pri = _pri(get("fac"), get("sev"))
    others = "".join(f' {k}="{_value(rec[k])}"' for k in _PLAIN_TRUSTED if k in rec)
    mid = (
        f" {host} {header_field(get('app'), APP_NAME_MAX)} {rec['pid']} "
        f"{header_field(get('msgid'), MSGID_MAX)} "
        f'[{SD_ID} uid="{rec["uid"]}" gid="{rec["gid"]}" pid="{rec["pid"]}" seq="'
    )
    return f"<{pri}>1 ", mid, f'"{others}]'


def make_encoder(hostname: str) -> Callable[[Mapping[str, Any]], bytes]:
    """Return ``encode(record) -> message`` for one forwarding host.

    Decide once, run many: the HOSTNAME is mended once; a plain record (no
    ``fields``, not a daemon event) reuses the text its writer's previous
    records made (uid, gid, pid, exe, comm, app, msgid, PRI: one connection's
    records share all of them), so that only ``ts``, ``seq``, the header
    claims and the message are formatted per record.

    Args:
        hostname: the HOSTNAME to send (this machine's name).

    Returns:
        A function taking one decoded record (the stored JSON object) and
        returning its RFC 5424 message, UTF-8, not framed.
    """
    host = header_field(hostname, HOSTNAME_MAX)
    cache: dict[tuple[object, ...], tuple[str, str, str]] = {}
    plain = _PLAIN_KEYS.issuperset

    def encode(rec: Mapping[str, Any]) -> bytes:
        if not plain(rec):
            return _general(host, rec).encode()
        get = rec.get
        # everything _plain_parts formats (15 lookups cost less than slicing the line)
        key = (
            get("uid"), get("gid"), get("pid"), get("conn_uid"), get("conn_pid"),
            get("relay_uid"), get("relay_pid"), get("exe"), get("comm"),
            get("owner_uid"), get("pidns"), get("fac"), get("sev"), get("app"), get("msgid"),
        )  # fmt: skip
        parts = cache.get(key)
        if parts is None:
            if key[0] is None or key[1] is None or key[2] is None:
                return _general(host, rec).encode()  # not a record the daemon writes
            if len(cache) >= _CACHE_ENTRIES:
                cache.clear()
            parts = cache[key] = _plain_parts(host, rec)
        head, mid, tail = parts
        claimed = get("claimed_ts")
        if "host" in rec or "claimed_pid" in rec:
            claims = _element(CLAIMS_SD_ID, [(k, rec[k]) for k in _HEADER_CLAIMS if k in rec])
        elif claimed is not None:
            claims = f'[{CLAIMS_SD_ID} claimed_ts="{_value(claimed)}"]'
        else:
            claims = ""
        text = get("msg")
        body = f" {inert_text(text)}" if isinstance(text, str) and text else ""
        return f"{head}{get('ts', '-')}{mid}{get('seq', '')}{tail}{claims}{body}".encode()

    return encode


#: The keys of a plain record's part from ``fac`` on: the sender's only.
_PLAIN_CLAIMS: Final = _CLAIM_KEYS - {"fields"}

Wants = Callable[[Mapping[str, Any]], bool]


def make_framer(hostname: str) -> Callable[[Sequence[bytes], Wants | None], tuple[bytes, int, int]]:
    """Return ``frames(lines, wants) -> (payload, sent, bad)`` for one forwarding host.

    The hot loop of forwarding: each stored line is filtered, encoded
    (:func:`make_encoder`'s output, byte for byte) and framed with RFC 6587
    octet counting. A plain record is not decoded whole: ``ts``, ``seq`` and
    the stamp (``"uid":…`` up to ``"fac"``) are sliced from the line's fixed
    layout, the stamp's bytes key the cache of pre-formatted text, and only
    the sender's part is decoded.

    Args:
        hostname: the HOSTNAME to send.

    Returns:
        A function taking record lines (without LF) and a filter on the
        decoded record (``None``: every record), and returning the framed
        messages joined, how many were framed, and how many lines were not
        records (not JSON objects; skipped).
    """
    host = header_field(hostname, HOSTNAME_MAX)
    encode = make_encoder(hostname)
    cache: dict[tuple[object, ...], tuple[bytes, bytes, bytes]] = {}
    plain = _PLAIN_CLAIMS.issuperset
    loads = _loads
    seq_at, claims_start, line_head = SEQ_AT, CLAIMS_START, LINE_HEAD

    def frames(lines: Sequence[bytes], wants: Wants | None) -> tuple[bytes, int, int]:
        out: list[bytes] = []
        append = out.append
        bad = 0
        for line in lines:
            # record.stamp_span, inlined with the codec's constants: this loop
            # runs once per forwarded record, and the call cost a tenth of it
            e = line.find(b",", seq_at)
            f = line.find(claims_start, e)
            try:
                if e < 0 or f < 0 or not line.startswith(line_head):
                    raise ValueError(line[:20])  # not the daemon's layout: decode it whole
                claims = loads(b"{" + line[f + 1 :])
            except ValueError:
                try:
                    rec = loads(line)
                except ValueError:
                    rec = None
                if not isinstance(rec, dict):
                    bad += 1
                elif wants is None or wants(rec):
                    m = encode(rec)
                    append(b"%d %s" % (len(m), m))
                continue
            if wants is not None and not wants(claims):
                continue
            if not plain(claims):  # a daemon event, fields, truncated: the general way
                m = encode(loads(line))
                append(b"%d %s" % (len(m), m))
                continue
            get = claims.get
            key = (line[e:f], get("fac"), get("sev"), get("app"), get("msgid"))
            parts = cache.get(key)
            if parts is None:
                rec = loads(line)
                if not (
                    _PLAIN_KEYS.issuperset(rec) and "uid" in rec and "gid" in rec and "pid" in rec
                ):
                    m = encode(rec)
                    append(b"%d %s" % (len(m), m))
                    continue
                if len(cache) >= _CACHE_ENTRIES:
                    cache.clear()
                head, mid, tail = _plain_parts(host, rec)
                parts = cache[key] = (head.encode(), mid.encode(), tail.encode())
            if "host" in claims or "claimed_pid" in claims:
                items = [(k, claims[k]) for k in _HEADER_CLAIMS if k in claims]
                sd = _element(CLAIMS_SD_ID, items).encode()
            elif (claimed := get("claimed_ts")) is not None:
                sd = _CLAIMED_TS_HEAD + _value(claimed).encode() + b'"]'
            else:
                sd = b""
            text = get("msg")
            body = (" " + inert_text(text)).encode() if isinstance(text, str) and text else b""
            m = b"".join((parts[0], line[TS_AT], parts[1], line[seq_at:e], parts[2], sd, body))
            append(b"%d %s" % (len(m), m))
        return b"".join(out), len(out), bad

    return frames


def encode_record(line: bytes, hostname: str) -> bytes:
    """Encode one stored record line as an RFC 5424 message (not framed).

    Args:
        line: the record as stored (one JSON object, LF optional).
        hostname: the HOSTNAME to send.

    Returns:
        The message, UTF-8.

    Raises:
        ValueError: the line is not a JSON object.
    """
    rec = _loads(line)
    if not isinstance(rec, dict):
        msg = f"not a record: expected a JSON object, got {type(rec).__name__}"
        raise ValueError(msg)
    return make_encoder(hostname)(rec)


def frame(message: bytes) -> bytes:
    """RFC 6587 §3.4.1 octet counting: ``MSG-LEN SP SYSLOG-MSG``."""
    return b"%d %s" % (len(message), message)
