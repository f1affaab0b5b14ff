"""Reloader in process: what a reload swaps, what it refuses, what it records."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from trio_logd.config import Config, default_config, load
from trio_logd.errors import ConfigError
from trio_logd.limits import SuppressionTracker
from trio_logd.peer import PeerCred
from trio_logd.server._ingest import IngestContext
from trio_logd.server._limits import Limiter
from trio_logd.server._pipeline import Pipeline
from trio_logd.server._reload import Reloader

DAEMON = PeerCred(1, 0, 0)


@dataclass
class Target:
    config: Config
    ingest: IngestContext


def make_target(config: Config) -> Target:
    suppression = SuppressionTracker()
    limiter = Limiter(config, suppression, lambda uid: 0)
    ingest = IngestContext(Pipeline(lambda uid: 0), 65536, DAEMON, suppression, limiter=limiter)
    return Target(config, ingest)


def daemon_records(target: Target) -> list[bytes]:
    st = target.ingest.pipeline.state(0)
    return [line for batch in st.pending for line in batch.lines]


async def test_reload_swaps_config_limits_and_caps(tmp_path: Path) -> None:
    """A valid file: limits, caps and max_message_bytes change; a `reloaded` record says so."""
    path = tmp_path / "logd.toml"
    path.write_text("[limits.default]\nrate_messages = 5\n")
    target = make_target(load(path))
    await target.ingest.limiter.policy(1000)
    path.write_text(
        "[daemon]\nmax_connections = 10\nmax_message_bytes = 1024\n"
        "[limits.default]\nrate_messages = 7\n"
    )
    seen: list[tuple[int, int]] = []
    reloader = Reloader()
    reloader.hooks.append(
        lambda old, new: seen.append((old.daemon.max_connections, new.daemon.max_connections))
    )
    plan = await reloader.reload(target, by="test")
    assert plan.applied == (
        "[daemon] max_message_bytes",
        "[daemon] max_connections",
        "[daemon] connection_headroom",
        "[limits.default] rate_messages",
    )
    assert target.config.limits_default.rate_messages == 7
    assert target.ingest.limiter.policies[1000].limits.rate_messages == 7
    assert target.ingest.limiter.conns.statistics().global_max == 10
    assert target.ingest.max_message_bytes == 1024
    assert seen == [(1024, 10)]
    (record,) = daemon_records(target)
    assert b'"event":"reloaded"' in record
    assert b'"by":"test"' in record


async def test_invalid_file_keeps_everything(tmp_path: Path) -> None:
    """An invalid file raises ConfigError (file, key, reason); nothing changes."""
    path = tmp_path / "logd.toml"
    path.write_text("[limits.default]\nrate_messages = 5\n")
    target = make_target(load(path))
    before = target.config
    path.write_text("[limits.default]\nrate_messages = -1\n")
    with pytest.raises(ConfigError) as info:
        await Reloader().reload(target, by="test")
    assert str(info.value) == (
        f"{path}: [limits.default] rate_messages: expected a positive integer, got -1"
    )
    assert target.config is before
    assert target.ingest.limiter.config is before
    (record,) = daemon_records(target)
    assert b'"event":"reload_refused"' in record


async def test_embedded_defaults_have_no_file_to_reload() -> None:
    """A daemon on its embedded defaults says there is nothing to re-read."""
    target = make_target(default_config())
    with pytest.raises(ConfigError, match="embedded defaults, so there is no file to re-read"):
        await Reloader().reload(target, by="test")
