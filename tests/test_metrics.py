"""Prometheus text exposition: valid for prometheus_client's parser, named by the conventions."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from trio_logd.metrics import escape_help, escape_label_value, render_metrics

STATS: dict[str, Any] = {
    "pid": 42,
    "version": "0.1.0",
    "started": 1700000000.5,
    "uptime": 12.25,
    "daemon": {"store_errors": 2, "reloads": 3, "reload_failures": 1, "pending_bytes": 7},
    "uids": [
        {
            "uid": 1000,
            "user": 'we"ird\\name\nx',
            "records": 10,
            "bytes": 250,
            "stored": 11,
            "connections": 2,
            "pending_bytes": 0,
            "disk_bytes": 4096,
            "quota_bytes": 1 << 20,
            "dropped": {"rate": 5, "connections": 1},
            "last_drop": 1700000010.0,
        },
        {
            "uid": 0,
            "user": "root",
            "records": 1,
            "bytes": 9,
            "stored": 2,
            "connections": 0,
            "disk_bytes": 100,
            "quota_bytes": 5,
            "dropped": {},
            "last_drop": None,
        },
    ],
}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_every_family_parses_with_help_and_type() -> None:
    """prometheus_client parses the text; each family has a type and a help text."""
    families = {f.name: f for f in text_string_to_metric_families(render_metrics(STATS))}
    assert {name: f.type for name, f in families.items()} == {
        "trio_logd_build_info": "gauge",
        "trio_logd_start_time_seconds": "gauge",
        "trio_logd_uptime_seconds": "gauge",
        "trio_logd_store_errors": "counter",
        "trio_logd_reloads": "counter",
        "trio_logd_queue_bytes": "gauge",
        "trio_logd_records": "counter",
        "trio_logd_bytes": "counter",
        "trio_logd_stored_records": "counter",
        "trio_logd_dropped_records": "counter",
        "trio_logd_refused_connections": "counter",
        "trio_logd_last_drop_timestamp_seconds": "gauge",
        "trio_logd_connections": "gauge",
        "trio_logd_queued_bytes": "gauge",
        "trio_logd_disk_bytes": "gauge",
        "trio_logd_quota_bytes": "gauge",
        "trio_logd_uid_info": "gauge",
    }
    assert all(f.documentation for f in families.values())


def test_values_and_labels_round_trip() -> None:
    """Per-uid and daemon values come back exactly, drops split into records and connections."""
    got = samples(render_metrics(STATS))
    assert got[("trio_logd_records_total", (("uid", "1000"),))] == 10
    assert got[("trio_logd_bytes_total", (("uid", "1000"),))] == 250
    assert got[("trio_logd_dropped_records_total", (("reason", "rate"), ("uid", "1000")))] == 5
    assert got[("trio_logd_dropped_records_total", (("reason", "quota"), ("uid", "1000")))] == 0
    assert got[("trio_logd_dropped_records_total", (("reason", "disk"), ("uid", "0")))] == 0
    assert (
        "trio_logd_dropped_records_total",
        (("reason", "connections"), ("uid", "1000")),
    ) not in got
    assert got[("trio_logd_refused_connections_total", (("uid", "1000"),))] == 1
    assert got[("trio_logd_connections", (("uid", "1000"),))] == 2
    assert got[("trio_logd_disk_bytes", (("uid", "1000"),))] == 4096
    assert got[("trio_logd_quota_bytes", (("uid", "1000"),))] == 1 << 20
    assert got[("trio_logd_last_drop_timestamp_seconds", (("uid", "1000"),))] == 1700000010.0
    assert ("trio_logd_last_drop_timestamp_seconds", (("uid", "0"),)) not in got
    assert got[("trio_logd_uptime_seconds", ())] == 12.25
    assert got[("trio_logd_start_time_seconds", ())] == 1700000000.5
    assert got[("trio_logd_store_errors_total", ())] == 2
    assert got[("trio_logd_reloads_total", (("result", "success"),))] == 3
    assert got[("trio_logd_reloads_total", (("result", "failure"),))] == 1
    assert got[("trio_logd_build_info", (("version", "0.1.0"),))] == 1


def test_label_values_are_escaped() -> None:
    """A user name with a quote, a backslash and a newline survives as a label value."""
    got = samples(render_metrics(STATS))
    key = ("trio_logd_uid_info", (("uid", "1000"), ("user", 'we"ird\\name\nx')))
    assert got[key] == 1
    assert escape_label_value('a"b\\c\nd') == 'a\\"b\\\\c\\nd'
    assert escape_help("a\\b\nc") == "a\\\\b\\nc"


def test_empty_daemon_still_renders_daemon_families() -> None:
    """No uid yet: the daemon-wide families are there and per-uid ones are left out."""
    text = render_metrics({"version": "x", "started": 1.0, "uptime": 0.0, "uids": []})
    names = {f.name for f in text_string_to_metric_families(text)}
    assert names == {
        "trio_logd_build_info", "trio_logd_start_time_seconds", "trio_logd_uptime_seconds",
        "trio_logd_store_errors", "trio_logd_reloads", "trio_logd_queue_bytes",
    }  # fmt: skip
    assert text.endswith("\n")


def test_unit_families_carry_the_unit_label() -> None:
    """stats' units become trio_logd_unit_* samples with a unit label, (other) included."""
    units = [
        {"unit": "nginx.service", "records": 7, "bytes": 70, "connections": 1,
         "dropped": {"rate": 3, "connections": 2}},
        {"unit": "(other)", "records": 1, "bytes": 1, "connections": 0, "dropped": {}},
    ]  # fmt: skip
    got = samples(render_metrics({**STATS, "units": units}))
    nginx = (("unit", "nginx.service"),)
    assert got[("trio_logd_unit_records_total", nginx)] == 7
    assert got[("trio_logd_unit_dropped_records_total", (("reason", "rate"), *nginx))] == 3
    assert got[("trio_logd_unit_refused_connections_total", nginx)] == 2
    assert got[("trio_logd_unit_connections", nginx)] == 1
    assert got[("trio_logd_unit_bytes_total", (("unit", "(other)"),))] == 1
