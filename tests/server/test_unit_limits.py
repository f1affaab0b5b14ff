"""[limits.unit."GLOB"]: per-unit buckets and caps on top of the uid's, and bounded figures."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

from tests.server.test_limits_wiring import ALICE, frames, make_config, make_ctx
from trio_logd.config import UnitLimits, loads
from trio_logd.errors import ConfigError
from trio_logd.limits import SuppressionTracker
from trio_logd.peer import Attribution
from trio_logd.record import Stamp
from trio_logd.server import build_daemon
from trio_logd.server._ingest import Connection
from trio_logd.server._limits import Limiter
from trio_logd.unit_limits import OTHER, UNLIMITED, UnitLedger, resolve_unit_policy

UNITS = """
[limits.unit."noisy*.service"]
rate_messages = 100
burst_messages = 10
max_connections = 2
[limits.unit."*.service"]
max_connections = 5
"""


def unit_stamp(unit: str) -> Stamp:
    return Stamp(ALICE, attribution=Attribution(f"/system.slice/{unit}", unit, "system.slice"))


# --------------------------------------------------------------------------- config


def test_unit_tables_in_file_order() -> None:
    """The first table whose glob matches a unit is its limits; no match, no unit limits."""
    config = loads(UNITS, base_dir="/")
    assert config.unit_limits_for("noisy-1.service") == UnitLimits(
        "noisy*.service", rate_messages=100, burst_messages=10, max_connections=2
    )
    assert config.unit_limits_for("quiet.service") == UnitLimits("*.service", max_connections=5)
    assert config.unit_limits_for("session-1.scope") is None


@pytest.mark.parametrize(
    ("toml", "where"),
    [
        ('[limits.unit."a/b.service"]\nrate_messages = 1', '[limits.unit."a/b.service"]'),
        ('[limits.unit."x.service"]\nburst_messages = 5', "burst_messages"),
        ('[limits.unit."x.service"]\nquota_bytes = 5', "quota_bytes"),
        ('[limits.unit."x.service"]\nrate_messages = -1', "rate_messages"),
        ('[limits.unit."x.service"]\nrate_bytes = 1000\nburst_bytes = 10', "burst_bytes"),
    ],
)
def test_bad_unit_tables_name_the_key(toml: str, where: str) -> None:
    """A bad unit table is refused with its name and key: quotas stay per uid."""
    with pytest.raises(ConfigError) as err:
        loads(toml, base_dir="/")
    assert where in str(err.value)


def test_policy_defaults() -> None:
    """A burst defaults to one second of its rate (bytes: at least one longest record);
    what a table leaves out is unlimited."""
    p = resolve_unit_policy(UnitLimits("x", rate_messages=50, rate_bytes=10), 65536)
    assert (p.rate_messages, p.burst_messages, p.rate_bytes, p.burst_bytes) == (50, 50, 10, 65536)
    assert (p.max_connections, p.rated) == (UNLIMITED, True)
    q = resolve_unit_policy(UnitLimits("x", max_connections=3), 65536)
    assert (q.rate_messages, q.burst_bytes, q.max_connections, q.rated) == (
        UNLIMITED, UNLIMITED, 3, False,
    )  # fmt: skip


# --------------------------------------------------------------------------- ledger


def test_ledger_is_bounded_and_keeps_totals() -> None:
    """Past its size a new unit replaces the quietest one without connections, whose counts
    go to (other); with every slot busy, newcomers count under (other) from the start."""
    ledger = UnitLedger(max_units=2)
    busy = ledger.figures("a.service")
    busy.connections = 1
    ledger.count("b.service", 5, 50)
    ledger.count("c.scope", 7, 70)  # replaces b (a has a connection)
    assert ledger.key("b.service") is None
    assert [i["unit"] for i in ledger.snapshot()] == ["a.service", "c.scope", OTHER]
    assert ledger.snapshot()[-1]["records"] == 5
    ledger.figures("c.scope").connections = 1
    assert ledger.drop("d.scope", "rate", 3) is None  # no room: counted under (other)
    total = sum(i["records"] for i in ledger.snapshot())
    assert (total, len(ledger), ledger.snapshot()[-1]["dropped"]["rate"]) == (12, 2, 3)


def test_many_scopes_do_not_grow_the_ledger() -> None:
    """An attacker logging in ten thousand times leaves at most MAX_UNITS names (+ other)."""
    ledger = UnitLedger()
    for i in range(10_000):
        ledger.drop(f"session-{i}.scope", "rate", 1)
    items = ledger.snapshot()
    assert len(items) == 257
    assert sum(i["dropped"]["rate"] for i in items) == 10_000


# --------------------------------------------------------------------------- admission


async def test_flooding_unit_spends_none_of_its_uids_tokens(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Two units under one uid: the one over its unit rate is dropped and counted for the unit;
    the other's records all pass, as the flood never reached the uid's buckets."""
    # the uid: 100/s, burst 10; the noisy unit: 20/s, burst 2; the quiet one sends 50/s
    units = UNITS.replace("= 100", "= 20").replace("= 10", "= 2")
    ctx = make_ctx(make_config("drop", units))
    noisy = Connection(ctx, ALICE, unit_stamp("noisy-1.service"))
    quiet = Connection(ctx, ALICE, unit_stamp("quiet.service"))
    for _ in range(20):
        await noisy.file(frames(50), 0.0)
        await quiet.file(frames(5), 0.0)
        await trio.sleep(0.1)
    assert ctx.limiter.units.figures("quiet.service").records == 100
    noisy_fig = ctx.limiter.units.figures("noisy-1.service")
    dropped = noisy_fig.dropped["rate"]
    assert noisy_fig.records + dropped == 1000
    assert noisy_fig.records <= 2 + 20 * 2.1
    assert ctx.suppression.dropped(1000) == {"rate": dropped}
    reports = ctx.suppression.flush()
    assert {(s.unit, s.reason) for s in reports} == {("noisy-1.service", "rate")}


async def test_block_waits_for_the_units_tokens(autojump_clock: trio.testing.MockClock) -> None:
    """on_rate=block: a unit over its rate waits for its own tokens, and loses nothing."""
    ctx = make_ctx(make_config("block", UNITS.replace("100", "1000")))
    conn = Connection(ctx, ALICE, unit_stamp("noisy-1.service"))
    start = trio.current_time()
    await conn.file(frames(200), 0.0)
    assert ctx.pipeline.state(1000).records == 200
    assert ctx.suppression.dropped(1000) == {}
    assert trio.current_time() - start >= (200 - 10) / 1000 * 0.95


async def test_unit_connection_cap_and_reload() -> None:
    """A unit's max_connections refuses the next connection (counted for uid and unit);
    a reload's new cap applies to the next connection."""
    config = make_config("drop", UNITS)
    limiter = Limiter(config, SuppressionTracker(), lambda uid: 0)
    held = [limiter.open_unit(1000, "noisy-1.service") for _ in range(2)]
    assert None not in held
    assert limiter.open_unit(1000, "noisy-1.service") is None
    assert limiter.units.figures("noisy-1.service").dropped == {"connections": 1}
    assert limiter.open_unit(1000, "noisy-2.service") is not None  # each unit its own cap
    figures = held[0]
    assert figures is not None
    limiter.unit_limits.close("noisy-1.service", figures)
    assert limiter.open_unit(1000, "noisy-1.service") is not None
    limiter.unit_limits.reconfigure(make_config("drop", UNITS.replace("= 2", "= 9")))
    assert limiter.open_unit(1000, "noisy-1.service") is not None


async def test_units_in_stats_only_for_who_sees_every_uid(tmp_path: Path) -> None:
    """stats lists units for a caller who sees every uid; one who sees only her own gets
    none (a unit's figures add up several uids)."""
    daemon = build_daemon(loads(f'[daemon]\nlog_dir = "{tmp_path}/log"', base_dir="/"))
    assert daemon.operators is not None
    daemon.ingest.limiter.units.count("nginx.service", 3, 30)
    collector = daemon.operators.collector
    everyone = await collector.snapshot()
    assert [u["unit"] for u in everyone["units"]] == ["nginx.service"]
    assert everyone["units"][0]["records"] == 3
    assert (await collector.snapshot(1000))["units"] == []
