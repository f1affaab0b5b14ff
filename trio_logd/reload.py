"""What a reload changes: the keys that differ, which apply live, which need a restart.

How this works: ``plan_reload(old, new)`` compares two validated configs key by
key and builds the *effective* config: the new one, except that every key the
running daemon cannot change in place keeps its old value. So whatever reads
the daemon's config after a reload sees what is really in force, and the reply
to ``trio-logd reload`` can say which changes wait for a restart. Pure: no
files, no clock.

Live: every ``[limits.*]`` key, ``[access]``, ``[identity]``, and in
``[daemon]`` the caps and levels (``max_connections``,
``connection_headroom``, ``max_message_bytes`` for new connections,
``shutdown_timeout``, ``log_level``). Restart: the sockets and their mode, the
store's directory, the per-connection timeouts, ``[store]`` (the store and
its housekeeper read it when they start; their owner may make keys live by
removing them from :data:`RESTART_KEYS`), ``[metrics]`` (the exporter
binds at start) and ``[[forward]]`` (the forwarders start with the daemon).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from trio_logd.config import (
    Config,
    DaemonConfig,
    LimitsOverride,
    MetricsConfig,
    StoreConfig,
    UnitLimits,
)

__all__ = ["RESTART_KEYS", "ReloadPlan", "plan_reload"]

#: ``(table, key)`` pairs a running daemon keeps until it restarts.
RESTART_KEYS: Final[frozenset[tuple[str, str]]] = frozenset(
    {
        ("daemon", "socket"),
        ("daemon", "control_socket"),
        ("daemon", "datagram_socket"),
        ("daemon", "socket_mode"),
        ("daemon", "log_dir"),
        ("daemon", "idle_timeout"),
        ("daemon", "frame_timeout"),
        *(("store", f.name) for f in dataclasses.fields(StoreConfig)),
        *(("metrics", f.name) for f in dataclasses.fields(MetricsConfig)),
        ("forward", ""),  # the [[forward]] array as a whole
    }
)

_BARE_KEY: Final = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    """The outcome of comparing the running config with a newly loaded one.

    Attributes:
        effective: the config to run with from now on: *new*, with the
            restart-only keys kept from *old*.
        applied: keys (``"[table] key"``, or ``"[table]"`` for a table added
            or removed) whose new value is now in force.
        restart_required: keys whose new value waits for a restart.
    """

    effective: Config
    applied: tuple[str, ...]
    restart_required: tuple[str, ...]


def _name(part: str) -> str:
    return part if _BARE_KEY.fullmatch(part) else json.dumps(part, ensure_ascii=False)


def _diff_fields(table: str, old: object, new: object) -> list[tuple[str, str]]:
    return [
        (table, f.name)
        for f in dataclasses.fields(old)  # type: ignore[arg-type]
        if f.init and getattr(old, f.name) != getattr(new, f.name)
    ]


def _diff_overrides(
    kind: str,
    old: Mapping[Any, LimitsOverride | UnitLimits],
    new: Mapping[Any, LimitsOverride | UnitLimits],
) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for name in [*old, *(n for n in new if n not in old)]:
        table = f"limits.{kind}.{_name(str(name))}"
        if name not in new or name not in old:
            out.append((table, ""))
        else:
            out.extend(_diff_fields(table, old[name], new[name]))
    if not out and list(old) != list(new):
        # same tables in another order: decides on_rate/on_quota between groups
        out.append((f"limits.{kind}", "(order)"))
    return out


def _show(table: str, key: str) -> str:
    if table == "forward":
        return "[[forward]]"
    return f"[{table}] {key}" if key else f"[{table}]"


def plan_reload(old: Config, new: Config) -> ReloadPlan:
    """Compare the running config with a new one and say what a reload applies.

    Args:
        old: the config in force.
        new: the config just loaded (validated) from the same file.

    Returns:
        The effective config and the changed keys, split into applied and
        restart-required, each in file order (``[daemon]``, ``[store]``,
        ``[limits.*]``, ``[access]``, ``[identity]``, ``[metrics]``,
        ``[control]``, ``[[forward]]``).
    """
    changed = [
        *_diff_fields("daemon", old.daemon, new.daemon),
        *_diff_fields("store", old.store, new.store),
        *_diff_fields("limits.default", old.limits_default, new.limits_default),
        *_diff_overrides("uid", old.limits_uid, new.limits_uid),
        *_diff_overrides("user", old.limits_user, new.limits_user),
        *_diff_overrides("group", old.limits_group, new.limits_group),
        *_diff_overrides("unit", old.limits_unit, new.limits_unit),
        *_diff_fields("access", old.access, new.access),
        *_diff_fields("identity", old.identity, new.identity),
        *_diff_fields("metrics", old.metrics, new.metrics),
        *_diff_fields("control", old.control, new.control),
        *([("forward", "")] if old.forward != new.forward else []),
    ]
    held = [(t, k) for t, k in changed if (t, k) in RESTART_KEYS]
    kept_daemon: dict[str, Any] = {k: getattr(old.daemon, k) for t, k in held if t == "daemon"}
    kept_store: dict[str, Any] = {k: getattr(old.store, k) for t, k in held if t == "store"}
    daemon: DaemonConfig = dataclasses.replace(new.daemon, **kept_daemon)
    store: StoreConfig = dataclasses.replace(new.store, **kept_store)
    kept_metrics: dict[str, Any] = {k: getattr(old.metrics, k) for t, k in held if t == "metrics"}
    metrics: MetricsConfig = dataclasses.replace(new.metrics, **kept_metrics)
    forward = old.forward if ("forward", "") in held else new.forward
    effective = dataclasses.replace(
        new, daemon=daemon, store=store, metrics=metrics, forward=forward
    )
    return ReloadPlan(
        effective=effective,
        applied=tuple(_show(t, k) for t, k in changed if (t, k) not in RESTART_KEYS),
        restart_required=tuple(_show(t, k) for t, k in held),
    )
