"""The daemon's figures in the Prometheus text exposition format (version 0.0.4).

Pure: :func:`render_metrics` turns the object the ``stats`` control
operation answers with (see ``docs/operators.md``) into text, so
``trio-logd metrics``, the HTTP endpoint and the node_exporter textfile all
show the same figures as ``trio-logd stats``.

Naming follows the Prometheus conventions (https://prometheus.io/docs/practices/naming/):
the ``trio_logd_`` prefix, base units (seconds, bytes), ``_total`` on
counters, and one metric per unit: records dropped are
``trio_logd_dropped_records_total{reason}``, but connections refused over
``max_connections`` (which ``stats`` lists among the drops, as reason
``connections``) are ``trio_logd_refused_connections_total``. Rates are not
exported: Prometheus computes them from the counters (``rate(...[1m])``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

__all__ = [
    "CONTENT_TYPE",
    "DROP_METRIC_REASONS",
    "escape_help",
    "escape_label_value",
    "render_metrics",
]

#: What an HTTP endpoint serving this text says it is (the format's own media type).
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

#: Reasons that count records (``trio_logd_dropped_records_total``); always
#: exported, at zero too, so that ``rate()`` sees a series from its start.
DROP_METRIC_REASONS: Final = ("rate", "quota", "disk")
#: The drop reason that counts connections, not records.
_CONNECTIONS: Final = "connections"

_Kind = Literal["counter", "gauge"]


def escape_label_value(value: str) -> str:
    r"""Escape a label value: ``\`` → ``\\``, ``"`` → ``\"``, newline → ``\n``."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    r"""Escape a HELP text: ``\`` → ``\\``, newline → ``\n``."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


@dataclass(slots=True)
class _Family:
    name: str
    kind: _Kind
    help: str
    #: (rendered labels without braces, or "", value)
    samples: list[tuple[str, float]] = field(default_factory=list)

    def add(self, value: float, labels: str = "") -> None:
        self.samples.append((labels, value))

    def render(self, out: list[str]) -> None:
        name = self.name
        out.append(f"# HELP {name} {escape_help(self.help)}\n# TYPE {name} {self.kind}\n")
        out.extend(
            f"{name}{{{labels}}} {_number(value)}\n" if labels else f"{name} {_number(value)}\n"
            for labels, value in self.samples
        )


def _label(key: str, value: str) -> str:
    return f'{key}="{escape_label_value(value)}"'


#: Per-uid families, in output order: (key, name, type, help).
_UID_FAMILIES: Final[tuple[tuple[str, str, _Kind, str], ...]] = (
    ("records", "trio_logd_records_total", "counter",
     "Records accepted from the uid since the daemon started (the daemon's own not counted)."),
    ("bytes", "trio_logd_bytes_total", "counter",
     "Payload bytes of the records accepted from the uid since the daemon started."),
    ("stored", "trio_logd_stored_records_total", "counter",
     "Records written to the uid's files since the daemon started (the daemon's own included)."),
    ("dropped", "trio_logd_dropped_records_total", "counter",
     "Records of the uid dropped since the daemon started, by reason (rate, quota, disk)."),
    ("refused", "trio_logd_refused_connections_total", "counter",
     "Connections of the uid closed at once because it was at max_connections."),
    ("last_drop", "trio_logd_last_drop_timestamp_seconds", "gauge",
     "When the uid last had a record or connection dropped (Unix time; 1 s resolution)."),
    ("connections", "trio_logd_connections", "gauge", "Open ingest connections of the uid."),
    ("queued", "trio_logd_queued_bytes", "gauge",
     "Bytes of the uid's records accepted but not yet written."),
    ("disk", "trio_logd_disk_bytes", "gauge", "Disk space used by the uid's files, in bytes."),
    ("quota", "trio_logd_quota_bytes", "gauge", "The uid's quota_bytes limit, in bytes."),
    ("info", "trio_logd_uid_info", "gauge",
     "The uid's user name, for joins (group_left); always 1."),
)  # fmt: skip

#: Daemon-wide families, in output order: (key, name, type, help).
_DAEMON_FAMILIES: Final[tuple[tuple[str, str, _Kind, str], ...]] = (
    ("info", "trio_logd_build_info", "gauge", "The daemon's version; always 1."),
    ("start", "trio_logd_start_time_seconds", "gauge", "When the daemon started (Unix time)."),
    ("uptime", "trio_logd_uptime_seconds", "gauge", "Seconds since the daemon started."),
    ("errors", "trio_logd_store_errors_total", "counter",
     "Failed writes or syncs of the store (each one drops records, counted as reason disk)."),
    ("reloads", "trio_logd_reloads_total", "counter", "Configuration reloads, by outcome."),
    ("queued", "trio_logd_queue_bytes", "gauge",
     "Bytes accepted from all uids but not yet written."),
    ("control", "trio_logd_control_connections", "gauge", "Open control connections."),
    ("control_refused", "trio_logd_control_refused_connections_total", "counter",
     "Control connections refused at once, by the limit that refused them."),
    ("control_timeouts", "trio_logd_control_timeouts_total", "counter",
     "Control connections closed for sending no request in time, by limit."),
    ("fd_refused", "trio_logd_fd_reserve_refused_connections_total", "counter",
     "Connections refused because they would have used the descriptors kept for the store."),
    ("fd_exhausted", "trio_logd_fd_exhausted_total", "counter",
     "EMFILE/ENFILE errors met, by where (the daemon retried or went on without)."),
)  # fmt: skip


#: Per-unit families (``stats`` ``units``: at most 256 and "(other)"): (key, name, type, help).
_UNIT_FAMILIES: Final[tuple[tuple[str, str, _Kind, str], ...]] = (
    ("records", "trio_logd_unit_records_total", "counter",
     "Records accepted from writers in the system unit (stream connections) since the start."),
    ("bytes", "trio_logd_unit_bytes_total", "counter",
     "Payload bytes of the records accepted from writers in the system unit."),
    ("dropped", "trio_logd_unit_dropped_records_total", "counter",
     "Records of writers in the system unit dropped, by reason (rate, quota, disk)."),
    ("refused", "trio_logd_unit_refused_connections_total", "counter",
     "Connections opened from the system unit closed at once (its [limits.unit] cap)."),
    ("connections", "trio_logd_unit_connections", "gauge",
     "Open ingest connections opened from the system unit."),
)  # fmt: skip


def _unit_families(units: Iterable[Mapping[str, Any]]) -> list[_Family]:
    f = _families(_UNIT_FAMILIES)
    reason_labels = {reason: f',reason="{reason}"' for reason in DROP_METRIC_REASONS}
    for item in units:
        unit = _label("unit", str(item["unit"]))
        f["records"].add(item["records"], unit)
        f["bytes"].add(item["bytes"], unit)
        drops: Mapping[str, int] = item.get("dropped") or {}
        for reason, label in reason_labels.items():
            f["dropped"].add(drops.get(reason, 0), unit + label)
        f["refused"].add(drops.get(_CONNECTIONS, 0), unit)
        f["connections"].add(item["connections"], unit)
    return [family for family in f.values() if family.samples]


def _families(spec: tuple[tuple[str, str, _Kind, str], ...]) -> dict[str, _Family]:
    return {key: _Family(name, kind, text) for key, name, kind, text in spec}


def _uid_families(uids: Iterable[Mapping[str, Any]]) -> list[_Family]:
    f = _families(_UID_FAMILIES)
    reason_labels = {reason: f',reason="{reason}"' for reason in DROP_METRIC_REASONS}
    for item in uids:
        uid = f'uid="{int(item["uid"])}"'  # an int: nothing to escape
        f["records"].add(item["records"], uid)
        f["bytes"].add(item["bytes"], uid)
        f["stored"].add(item.get("stored", 0), uid)
        drops: Mapping[str, int] = item.get("dropped") or {}
        for reason, label in reason_labels.items():
            f["dropped"].add(drops.get(reason, 0), uid + label)
        f["refused"].add(drops.get(_CONNECTIONS, 0), uid)
        if item.get("last_drop") is not None:
            f["last_drop"].add(float(item["last_drop"]), uid)
        f["connections"].add(item["connections"], uid)
        f["queued"].add(item.get("pending_bytes", 0), uid)
        f["disk"].add(item["disk_bytes"], uid)
        if item.get("quota_bytes") is not None:
            f["quota"].add(item["quota_bytes"], uid)
        if item.get("user"):
            f["info"].add(1, f"{uid},{_label('user', str(item['user']))}")
    return [family for family in f.values() if family.samples]


def _daemon_families(stats: Mapping[str, Any]) -> list[_Family]:
    daemon: Mapping[str, Any] = stats.get("daemon") or {}
    f = _families(_DAEMON_FAMILIES)
    f["info"].add(1, _label("version", str(stats.get("version", ""))))
    f["start"].add(float(stats.get("started", 0.0)))
    f["uptime"].add(float(stats.get("uptime", 0.0)))
    f["errors"].add(int(daemon.get("store_errors", 0)))
    f["reloads"].add(int(daemon.get("reloads", 0)), 'result="success"')
    f["reloads"].add(int(daemon.get("reload_failures", 0)), 'result="failure"')
    f["queued"].add(int(daemon.get("pending_bytes", 0)))
    control: Mapping[str, Any] = stats.get("control") or {}
    if control:
        f["control"].add(int(control.get("connections", 0)))
    for key, label, counts in (
        ("control_refused", "limit", control.get("refused") or {}),
        ("control_timeouts", "limit", control.get("timeouts") or {}),
        ("fd_refused", "listener", (stats.get("fds") or {}).get("refused") or {}),
        ("fd_exhausted", "where", (stats.get("fds") or {}).get("exhausted") or {}),
    ):
        for name, n in sorted(counts.items()):
            f[key].add(int(n), _label(label, str(name)))
    return [family for family in f.values() if family.samples]


def render_metrics(stats: Mapping[str, Any]) -> str:
    """Render a ``stats`` object as Prometheus text.

    Args:
        stats: what the ``stats`` control operation answers (without
            ``type``): ``version``, ``started``, ``uptime``, ``daemon`` (an
            object), ``uids`` (a list of per-uid objects) and ``units``
            (per-unit objects, maybe absent).

    Returns:
        The exposition text, one ``# HELP`` and ``# TYPE`` line per family,
        ending in a newline.
    """
    out: list[str] = []
    for family in (
        *_daemon_families(stats),
        *_uid_families(stats.get("uids") or ()),
        *_unit_families(stats.get("units") or ()),
    ):
        family.render(out)
    return "".join(out)
