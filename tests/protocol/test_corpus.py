"""trio-logd's parser on the differential corpus: the checked-in parse of every payload."""

from __future__ import annotations

import pytest

from tests.protocol import corpus
from trio_logd.protocol.fastpath import encode_plain_batch
from trio_logd.protocol.parse import parse_message
from trio_logd.record import sender_json

ENTRIES = corpus.load()


def test_the_corpus_is_several_hundred_distinct_cited_payloads() -> None:
    """Each corpus payload is distinct and under a cited source, several hundred in all."""
    assert len(ENTRIES) >= 400
    assert len({e.payload for e in ENTRIES}) == len(ENTRIES)
    assert all(e.source for e in ENTRIES)


def test_every_payload_parses_as_checked_in() -> None:
    """The parser gives, field by field, the expected parse of every corpus payload."""
    rows = corpus.expected()
    assert [row["line"] for row in rows] == [e.line for e in ENTRIES], (
        "corpus_expected.jsonl is out of date: python -m tests.protocol.corpus"
    )
    wrong = []
    for entry, row in zip(ENTRIES, rows, strict=True):
        want = {name: row[name] for name in corpus.FIELDS}
        got = corpus.parsed(entry.payload)
        if got != want:
            wrong.append((entry.line, {k: (got[k], want[k]) for k in want if got[k] != want[k]}))
    assert not wrong, wrong[:5]


@pytest.mark.parametrize("pid", [1, 12750])
def test_the_fast_path_agrees_with_the_parser_on_every_corpus_payload(pid: int) -> None:
    """Each corpus payload the fast path takes gives the general parser's bytes."""
    taken = 0
    for entry in ENTRIES:
        fast = encode_plain_batch([entry.payload], pid)
        if fast is not None:
            taken += 1
            assert fast == [sender_json(parse_message(entry.payload), pid)], entry.line
    assert taken > 0  # the fast path is really exercised
