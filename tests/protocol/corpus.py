"""The differential parsing corpus (``corpus.txt``) and its expected parses.

``corpus.txt`` holds syslog payloads copied from rsyslog's and syslog-ng's test
suites and from the RFC examples, one per line, each block citing its source.
``corpus_expected.jsonl`` is what trio-logd's parser makes of each, one JSON
object per line in corpus order; after a deliberate parser change, rewrite it
with ``python -m tests.protocol.corpus`` and review the diff.
"""

from __future__ import annotations

import codecs
import json
from pathlib import Path
from typing import Any, NamedTuple

from trio_logd.protocol.parse import parse_message

HERE = Path(__file__).parent
CORPUS = HERE / "corpus.txt"
EXPECTED = HERE / "corpus_expected.jsonl"

#: The Message fields compared (``truncated`` never is: no payload is cut).
FIELDS = ("fac", "sev", "app", "host", "claimed_pid", "msgid", "claimed_ts", "msg", "fields")


class Entry(NamedTuple):
    """One corpus payload: its bytes, its escaped line, its source block."""

    payload: bytes
    line: str
    source: str


def unescape(line: str) -> bytes:
    r"""A corpus line to its bytes: ``\\`` is a backslash, ``\xNN`` a byte."""
    data, _ = codecs.escape_decode(line.encode())
    return data


def load() -> list[Entry]:
    """Every payload of ``corpus.txt``, in order."""
    entries: list[Entry] = []
    source = ""
    for line in CORPUS.read_text(encoding="utf-8").splitlines():
        if line.startswith("## source: "):
            source = line.removeprefix("## source: ")
        elif line and not line.startswith("#"):
            entries.append(Entry(unescape(line), line, source))
    return entries


def parsed(payload: bytes) -> dict[str, Any]:
    """trio-logd's parse of *payload*, as the compared fields."""
    msg = parse_message(payload)._asdict()
    return {name: msg[name] for name in FIELDS}


def expected() -> list[dict[str, Any]]:
    """The checked-in parses, in corpus order (each with its ``line``)."""
    with EXPECTED.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def main() -> None:
    """Rewrite ``corpus_expected.jsonl`` from the current parser."""
    with EXPECTED.open("w", encoding="utf-8") as f:
        for entry in load():
            row = {"line": entry.line, **parsed(entry.payload)}
            f.write(json.dumps(row, ensure_ascii=False, sort_keys=False) + "\n")


if __name__ == "__main__":
    main()
