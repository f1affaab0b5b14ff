"""The corpus through real rsyslog, real syslog-ng and trio-logd: each disagreement classified."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests._collector import rsyslog_missing, syslog_ng_missing
from tests.e2e import _differential as diff
from tests.protocol import corpus


@pytest.mark.skipif(
    bool(rsyslog_missing() or syslog_ng_missing()),
    reason=str(rsyslog_missing() or syslog_ng_missing()),
)
def test_every_disagreement_with_rsyslog_and_syslog_ng_is_in_the_table(tmp_path: Path) -> None:
    """Each field where a peer parses a corpus payload otherwise than trio-logd is classified,
    and every classified disagreement still occurs."""
    entries = corpus.load()
    views = diff.run_peers(tmp_path, [e.payload for e in entries])
    found = diff.disagreements(entries, views)
    counts, unclassified, stale = diff.classify(found, diff.load_table())
    shown = [(key, found[key]) for key in unclassified[:10]]
    assert not unclassified, f"{len(unclassified)} disagreements not in the table: {shown}"
    assert not stale, f"table entries that no longer disagree: {stale[:10]}"
    assert sum(counts.values()) == len(found)
    # the peers agree with trio-logd on most fields: the table is the exception
    assert len(found) < len(entries) * len(diff.PEERS) * len(diff.FIELDS) // 3


def test_the_table_gives_a_class_and_a_reason_to_every_rule() -> None:
    """Each rule of the table is a peer quirk or a deliberate choice, with its reason."""
    for rule in diff.load_table():
        assert rule["class"] in ("peer-quirk", "deliberate"), rule["id"]
        assert len(rule["why"]) > 40, rule["id"]
        assert ("pattern" in rule) != ("lines" in rule), rule["id"]
        if rule["class"] == "peer-quirk":
            assert "RFC" in rule["why"], rule["id"]  # a quirk cites the section it departs from
