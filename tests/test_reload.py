"""plan_reload: which keys changed, which apply live, and the effective config."""

from __future__ import annotations

from trio_logd.config import Config, loads
from trio_logd.reload import plan_reload

BASE = """
[daemon]
socket = "/run/a/log.sock"
control_socket = "/run/a/ctl.sock"
log_dir = "/var/a"
[limits.uid.1000]
rate_messages = 10
[limits.group.dev]
burst_messages = 99
[limits.group.ops]
burst_messages = 50
"""


def config(text: str) -> Config:
    return loads(text, base_dir="/")


def test_identical_configs_change_nothing() -> None:
    """The same file twice: nothing applied, nothing to restart, the same effective config."""
    old = config(BASE)
    plan = plan_reload(old, config(BASE))
    assert (plan.applied, plan.restart_required, plan.effective) == ((), (), old)


def test_limits_access_and_identity_apply_live() -> None:
    """Changed, added and removed limit tables, admins and may_claim are all applied."""
    new = (
        BASE.replace("rate_messages = 10", "rate_messages = 20").replace(
            "[limits.group.ops]\nburst_messages = 50\n", ""
        )
        + '[limits.user.bob]\non_rate = "block"\n'
        + '[limits.default]\nquota_bytes = "1MiB"\n'
        + '[access]\nadmins = ["wheel"]\n[identity]\nmay_claim = ["uid:7"]\n'
    )
    plan = plan_reload(config(BASE), config(new))
    assert plan.applied == (
        "[limits.default] quota_bytes",
        "[limits.uid.1000] rate_messages",
        "[limits.user.bob]",
        "[limits.group.ops]",
        "[access] admins",
        "[identity] may_claim",
    )
    assert plan.restart_required == ()
    assert plan.effective == config(new)


def test_restart_keys_keep_their_old_value() -> None:
    """Sockets, log_dir and [store] keys are reported and kept; caps change live."""
    new = (
        BASE.replace("/var/a", "/var/b").replace("/run/a/log.sock", "/run/b/log.sock")
        + "max_connections = 10\n"  # lands in [limits.group.ops]: a limits key
        + '[store]\nfsync = "always"\n'
    ).replace("[daemon]\n", '[daemon]\nmax_message_bytes = 1024\nlog_level = "debug"\n')
    old = config(BASE)
    plan = plan_reload(old, config(new))
    assert plan.applied == (
        "[daemon] max_message_bytes",
        "[daemon] log_level",
        "[limits.group.ops] max_connections",
    )
    assert plan.restart_required == (
        "[daemon] socket",
        "[daemon] log_dir",
        "[store] fsync",
    )
    eff = plan.effective
    assert (eff.daemon.socket, eff.daemon.log_dir, eff.store) == (
        "/run/a/log.sock",
        "/var/a",
        old.store,
    )
    assert (eff.daemon.max_message_bytes, eff.daemon.log_level) == (1024, "debug")


def test_reordered_group_tables_are_reported() -> None:
    """Group table order decides policies between groups, so a new order is a change."""
    swapped = BASE.replace(
        "[limits.group.dev]\nburst_messages = 99\n[limits.group.ops]\nburst_messages = 50\n",
        "[limits.group.ops]\nburst_messages = 50\n[limits.group.dev]\nburst_messages = 99\n",
    )
    assert plan_reload(config(BASE), config(swapped)).applied == ("[limits.group] (order)",)


def test_names_that_need_quoting_are_quoted() -> None:
    """A table name with a space or @ is shown as TOML would write it."""
    new = BASE + '[limits.user."john@example.com"]\nrate_messages = 5\n'
    assert plan_reload(config(BASE), config(new)).applied == ('[limits.user."john@example.com"]',)


def test_forward_destinations_wait_for_a_restart() -> None:
    """A changed [[forward]] array is reported as restart-only and kept as it was."""
    fwd = '[[forward]]\nname = "central"\naddress = "127.0.0.1:6514"\n'
    old = config(BASE)
    plan = plan_reload(old, config(BASE + fwd))
    assert (plan.applied, plan.restart_required) == ((), ("[[forward]]",))
    assert plan.effective.forward == old.forward == ()
