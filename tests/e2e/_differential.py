"""The differential parse: the corpus through rsyslog, syslog-ng and trio-logd, side by side.

Each peer's parse of a payload is brought to trio-logd's field names and
forms (:func:`rsyslog_view`, :func:`syslog_ng_view`, :func:`trio_view`) and
compared field by field (:func:`disagreements`):

- ``pri``: the PRI code (names differ for facilities 12-15 by design, see
  trio_logd/protocol/message.py), ``None`` for none;
- ``app``, ``host``, ``claimed_pid``, ``msgid``: text, ``None`` when absent
  (a peer that fills in the sender's address for a missing HOSTNAME: absent);
- ``claimed_ts``: month, day and time of the claimed timestamp,
  ``MM-DDTHH:MM:SS`` (peers turn it into a full date with a year they guess,
  trio-logd keeps the text), ``None`` when there is none (a peer then
  reports the time of reception);
- ``msg``: the text;
- ``sd``: RFC 5424 STRUCTURED-DATA as ``{SD-ID: {PARAM: value}}``.

The checked-in table ``parse_disagreements.toml`` classifies every
disagreement; ``python -m tests.e2e._differential`` runs the peers and
prints the disagreements the table does not cover (or no longer matches).
"""

from __future__ import annotations

import json
import re
import socket
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests._collector import Rsyslog, SyslogNg
from tests._daemon import poll
from tests.protocol import corpus
from trio_logd.protocol.message import FACILITIES, SEVERITIES

TABLE = Path(__file__).with_name("parse_disagreements.toml")
FIELDS = ("pri", "app", "host", "claimed_pid", "msgid", "claimed_ts", "msg", "sd")
PEERS = ("rsyslog", "syslog-ng")

_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    )
}
_BSD = re.compile(r"([A-Za-z]{3}) +([0-9]{1,2})(?: [0-9]{4})? ([0-9]{2}:[0-9]{2}:[0-9]{2})")

View = dict[str, Any]


def _ts(text: str | None) -> str | None:
    """A claimed timestamp (BSD or RFC 3339 text) as ``MM-DDTHH:MM:SS``."""
    if not text:
        return None
    m = _BSD.match(text)
    if m is not None:
        return f"{_MONTHS[m[1].lower()]:02d}-{int(m[2]):02d}T{m[3]}"
    return text[5:19].upper()


def trio_view(payload: bytes) -> View:
    """trio-logd's parse of *payload* in the compared form."""
    p = corpus.parsed(payload)
    fields = p["fields"] or {}
    sd = {k: v for k, v in fields.items() if isinstance(v, dict)} or None
    pid = p["claimed_pid"]
    return {
        "pri": FACILITIES.index(p["fac"]) * 8 + SEVERITIES.index(p["sev"]),
        "app": p["app"],
        "host": p["host"],
        "claimed_pid": None if pid is None else str(pid),
        "msgid": p["msgid"],
        "claimed_ts": _ts(p["claimed_ts"]),
        "msg": p["msg"],
        "sd": sd,
    }


def _nil(value: str | None, *nils: str) -> str | None:
    return None if value is None or value in ("", *nils) else value


def rsyslog_view(row: dict[str, Any]) -> View:
    """rsyslog's properties (Rsyslog(properties=True)) in the compared form."""
    sd = json.loads(row["sd"]) if row.get("sd") else None
    return {
        "pri": int(row["pri"]) if row["pri"].isdigit() else None,  # "invld"
        "app": _nil(row["app"], "-"),
        "host": None if row["host"] in (row["fromhost"], row["fromhost_ip"]) else row["host"],
        "claimed_pid": _nil(row["procid"], "-"),
        "msgid": _nil(row["msgid"], "-"),
        "claimed_ts": None if row["ts"] == row["received"] else _ts(row["ts"]),
        "msg": row["msg"],
        "sd": sd or None,
    }


def syslog_ng_view(row: dict[str, Any]) -> View:
    """syslog-ng's macros (SyslogNg(properties=True)) in the compared form."""
    return {
        "pri": int(row["pri"]) if str(row.get("pri", "")).isdigit() else None,
        "app": _nil(row.get("app")),
        "host": None if row.get("host") == row.get("host_from") else _nil(row.get("host")),
        "claimed_pid": _nil(row.get("pid")),
        "msgid": _nil(row.get("msgid")),
        "claimed_ts": None if row["ts"] == row["received"] else _ts(row["ts"]),
        "msg": row.get("msg", ""),
        "sd": row.get("_SDATA") or None,
    }


def run_peers(root: Path, payloads: list[bytes]) -> dict[str, list[View]]:
    """Every payload, octet-counted on one connection each, through one rsyslogd and one
    syslog-ng; their views in payload order."""
    frames = b"".join(b"%d %s" % (len(p), p) for p in payloads)
    rs = Rsyslog(root / "rsyslog", properties=True)
    ng = SyslogNg(root / "syslog-ng", properties=True)
    with rs, ng:
        for port in (rs.port, ng.port):
            with socket.create_connection(("127.0.0.1", port)) as s:
                s.sendall(frames)
        n = len(payloads)
        poll(lambda: len(rs.properties()) >= n and len(ng.messages()) >= n, timeout=60)
    rows_rs, rows_ng = rs.properties(), ng.messages()
    assert len(rows_rs) == len(rows_ng) == len(payloads), (len(rows_rs), len(rows_ng))
    return {
        "rsyslog": [rsyslog_view(r) for r in rows_rs],
        "syslog-ng": [syslog_ng_view(r) for r in rows_ng],
    }


Key = tuple[str, str, str]  # (peer, field, corpus line)


def disagreements(
    entries: list[corpus.Entry], views: dict[str, list[View]]
) -> dict[Key, tuple[Any, Any]]:
    """Every (peer, field, line) where a peer and trio-logd differ: (peer's, trio-logd's)."""
    out: dict[Key, tuple[Any, Any]] = {}
    for i, entry in enumerate(entries):
        mine = trio_view(entry.payload)
        for peer in PEERS:
            theirs = views[peer][i]
            for field in FIELDS:
                if theirs[field] != mine[field]:
                    out[peer, field, entry.line] = (theirs[field], mine[field])
    return out


#: Named patterns a table rule may use instead of listing lines: (peer's, ours) -> matches.
PATTERNS: dict[str, Callable[[Any, Any], bool]] = {
    # the space after "TAG:" kept at the start of MSG
    "space_kept_after_tag": lambda theirs, ours: theirs == " " + (ours or ""),
    # a UTF-8 BOM kept at the start of MSG
    "bom_kept": lambda theirs, ours: theirs == "\ufeff" + (ours or ""),
}


def load_table() -> list[dict[str, Any]]:
    """The rules of ``parse_disagreements.toml``."""
    with TABLE.open("rb") as f:
        rules: list[dict[str, Any]] = tomllib.load(f)["rule"]
    return rules


def classify(
    found: dict[Key, tuple[Any, Any]], rules: list[dict[str, Any]]
) -> tuple[dict[str, int], list[Key], list[tuple[str, str, str]]]:
    """Match *found* against the table.

    Returns:
        the count of disagreements per class; the disagreements no rule
        covers; and the listed entries ``(rule id, line, "peer field")`` that
        no longer disagree.
    """
    counts: dict[str, int] = {}
    unclassified: list[Key] = []
    used: set[tuple[str, str, str]] = set()
    for key, (theirs, ours) in found.items():
        peer, field, line = key
        for rule in rules:
            pattern = rule.get("pattern")
            if pattern is not None:
                if (
                    peer in rule["peers"]
                    and field in rule["fields"]
                    and PATTERNS[pattern](theirs, ours)
                ):
                    break
            elif f"{peer} {field}" in rule["lines"].get(line, ()):
                used.add((rule["id"], line, f"{peer} {field}"))
                break
        else:
            unclassified.append(key)
            continue
        counts[rule["class"]] = counts.get(rule["class"], 0) + 1
    stale = [
        (rule["id"], line, what)
        for rule in rules
        for line, whats in rule.get("lines", {}).items()
        for what in whats
        if (rule["id"], line, what) not in used
    ]
    return counts, unclassified, stale


def main() -> None:
    """Run the peers on the corpus; print what the table does not cover."""
    import tempfile

    entries = corpus.load()
    with tempfile.TemporaryDirectory() as tmp:
        views = run_peers(Path(tmp), [e.payload for e in entries])
    found = disagreements(entries, views)
    rules = load_table() if TABLE.exists() else []
    counts, unclassified, stale = classify(found, rules)
    print(json.dumps({"counts": counts, "stale": stale}, ensure_ascii=False))
    for peer, field, line in unclassified:
        theirs, ours = found[peer, field, line]
        print(json.dumps([peer, field, line, theirs, ours], ensure_ascii=False))


if __name__ == "__main__":
    main()
