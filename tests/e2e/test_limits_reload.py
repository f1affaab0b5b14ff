"""End to end: reload (SIGHUP, `trio-logd reload`) applies new limits live, refuses bad files."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator

import pytest

from tests._daemon import DaemonProcess, poll, world
from tests._uids import free_uids
from tests.e2e._limits_helpers import (
    background_as,
    cli_as,
    payloads,
    rewrite_config,
    send_as,
    uid_stats,
)
from trio_logd.control_client import request_one

ROOT = os.geteuid()
SENDER, OTHER = free_uids(2)
ADM = 4

TIGHT = f"""
[limits.uid.{SENDER}]
rate_messages = 1
burst_messages = 5
on_rate = "drop"
"""


@pytest.fixture
def daemon_() -> Iterator[DaemonProcess]:
    """A daemon with generous limits whose config the test rewrites."""
    with world() as root:
        d = DaemonProcess(root, extra='[access]\nadmins = ["adm"]').start()
        try:
            yield d
        finally:
            rc = d.stop()
            assert rc == 0, d.stderr()


def reload_ok(d: DaemonProcess) -> dict[str, object]:
    out = cli_as(d, ROOT, "reload", "--json")
    assert out.returncode == 0, out.stderr
    reply: dict[str, object] = json.loads(out.stdout)
    return reply


@pytest.mark.usefixtures("as_root")
def test_reload_under_traffic_loses_nothing(daemon_: DaemonProcess) -> None:
    """Reloads while two connections send: every record stored in order, none dropped,
    no connection closed."""
    d = daemon_
    stop_r, stop_w = os.pipe()
    count_r, count_w = os.pipe()

    def send() -> None:
        socks = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(2)]
        for s in socks:
            s.connect(d.socket)
        os.set_blocking(stop_r, False)
        sent = 0
        while True:
            try:
                if os.read(stop_r, 1):
                    break
            except BlockingIOError:
                pass
            batch = b"".join(b"<13>steady %d\n" % i for i in range(sent, sent + 20))
            socks[(sent // 20) % 2].sendall(batch)  # a closed connection would raise here
            sent += 20
            time.sleep(0.002)  # pacing, so that the traffic spans the reloads
        for s in socks:
            s.close()
        os.write(count_w, b"%d" % sent)

    with background_as(SENDER, send) as join:
        poll(lambda: uid_stats(d, SENDER).get("records", 0) > 0)
        for i in range(20):
            table = f'[limits.uid.{SENDER}]\nrate_messages = {900_000 + i}\non_rate = "block"'
            rewrite_config(d, extra=table)
            reply = request_one(d.control, "reload")
            assert (reply["type"], reply["restart_required"]) == ("ok", []), reply
        mark = uid_stats(d, SENDER)["records"]
        poll(lambda: uid_stats(d, SENDER)["records"] > mark)  # traffic after the last reload too
        os.write(stop_w, b"s")
        join()
    n = int(os.read(count_r, 64))
    stored = d.wait_records(SENDER, n, timeout=30)
    # two connections interleave; within each, order is kept: compare as sets, then seq
    assert sorted(int(str(r["msg"]).split()[1]) for r in stored) == list(range(n))
    assert [r["seq"] for r in stored] == list(range(1, n + 1))
    assert uid_stats(d, SENDER)["dropped"] == {}
    assert uid_stats(d, SENDER)["connections"] == 0  # both closed by the sender, not the daemon


@pytest.mark.usefixtures("as_root")
def test_reload_applies_new_limits_to_open_connections(daemon_: DaemonProcess) -> None:
    """A connection opened under generous limits is held to the tighter ones after reload,
    starting from its bucket's balance clipped to the new burst."""
    d = daemon_
    r, w = os.pipe()
    go_r, go_w = os.pipe()

    def send() -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(d.socket)
        s.sendall(b"<13>before\n")
        os.write(w, b"s")
        os.read(go_r, 1)
        s.sendall(b"".join(payloads(50, "after")))
        s.close()

    with background_as(SENDER, send) as join:
        assert os.read(r, 1) == b"s"
        d.wait_records(SENDER, 1)
        rewrite_config(d, extra=TIGHT)
        assert reload_ok(d)["applied"] == [f"[limits.uid.{SENDER}]", "[access] admins"]
        os.write(go_w, b"g")
        join()
    poll(lambda: len(d.records(SENDER)) - 1 + uid_stats(d, SENDER)["dropped"].get("rate", 0) == 50)
    after = [rec for rec in d.records(SENDER) if rec["msg"].startswith("after")]
    assert 5 <= len(after) <= 7  # burst 5, plus at most a token or two of refill
    assert uid_stats(d, SENDER)["dropped"] == {"rate": 50 - len(after)}


def tight_then(d: DaemonProcess, edit: Callable[[str], str]) -> str:
    """Put TIGHT in force, then write *edit* of the file and reload it through the
    control socket: the daemon's refusal (exit 1, stderr)."""
    rewrite_config(d, extra=TIGHT)
    reload_ok(d)
    d.config.write_text(edit(d.config.read_text()))
    out = cli_as(d, ROOT, "reload", "--control-socket", d.control)
    assert (out.returncode, out.stdout) == (1, "")
    return out.stderr


def still_tight(d: DaemonProcess) -> None:
    """SENDER's records are still limited by TIGHT."""
    send_as(d, SENDER, payloads(30, "still tight"))
    poll(lambda: uid_stats(d, SENDER).get("dropped", {}).get("rate", 0) >= 24)
    assert len(d.records(SENDER)) <= 6


@pytest.mark.usefixtures("as_root")
def test_bad_reload_is_refused_precisely_and_old_limits_stay(daemon_: DaemonProcess) -> None:
    """An invalid file: `reload` exits 1 naming file, key and reason; the old limits stay."""
    d = daemon_
    stderr = tight_then(
        d, lambda good: good.replace("rate_messages = 1\n", 'rate_messages = "lots"\n')
    )
    error = (
        f'{d.config}: [limits.uid.{SENDER}] rate_messages: expected a positive integer, got "lots"'
    )
    assert stderr == f"trio-logd: reload refused, the running config stays in force: {error}\n"
    # without --control-socket the CLI itself reads the file first, and stops there
    out = cli_as(d, ROOT, "reload")
    assert (out.returncode, out.stderr) == (
        1, f"trio-logd: reload refused, nothing sent to the daemon: {error}\n",
    )  # fmt: skip
    still_tight(d)
    (refused,) = [r for r in d.records(ROOT) if r.get("event") == "reload_refused"]
    assert "rate_messages" in refused["msg"]


@pytest.mark.usefixtures("as_root")
def test_reload_refuses_a_quota_in_a_unit_table(daemon_: DaemonProcess) -> None:
    """quota_bytes in a [limits.unit] table: reload refused, naming both; the old limits stay."""
    d = daemon_
    stderr = tight_then(d, lambda good: good + '[limits.unit."app*.service"]\nquota_bytes = 1000\n')
    assert stderr.startswith(
        "trio-logd: reload refused, the running config stays in force: "
        f"{d.config}: [limits.unit.\"app*.service\"] quota_bytes: a uid's key, not a unit's: "
        "quotas stay per uid"
    )
    still_tight(d)


@pytest.mark.usefixtures("as_root")
def test_reload_is_for_root_and_admins_only(daemon_: DaemonProcess) -> None:
    """An ordinary uid is refused with "permission denied" (exit 1); an admins member may."""
    d = daemon_
    out = cli_as(d, OTHER, "reload")
    assert (out.returncode, out.stdout) == (1, ""), out.stderr
    assert out.stderr.startswith("trio-logd: permission denied: reload needs root or membership")
    assert f"(adm); uid {OTHER} is neither" in out.stderr
    admin = cli_as(d, OTHER, "reload", groups=[ADM])
    assert admin.returncode == 0, admin.stderr
    assert admin.stdout == f"reloaded {d.config}: no changes\n"


def test_sighup_reloads(daemon_: DaemonProcess) -> None:
    """SIGHUP re-reads the file: the daemon files a `reloaded` record naming what applied."""
    d = daemon_
    rewrite_config(d, extra=TIGHT)
    os.kill(d.pid, signal.SIGHUP)
    rec = poll(lambda: [r for r in d.records(ROOT) if r.get("event") == "reloaded"])[0]
    assert (rec["by"], rec["applied"], rec["restart_required"]) == (
        "SIGHUP", [f"[limits.uid.{SENDER}]", "[access] admins"], [],
    )  # fmt: skip


def test_restart_only_keys_are_reported_and_kept(daemon_: DaemonProcess) -> None:
    """A changed log_dir is reported as needing a restart; the daemon keeps the old one."""
    d = daemon_
    text = d.config.read_text().replace("/var/log", "/var/elsewhere")
    text = text.replace("max_message_bytes", "x") + "\n"
    d.config.write_text(text.replace("[daemon]\n", "[daemon]\nmax_connections = 77\n", 1))
    out = cli_as(d, ROOT, "reload")
    assert out.returncode == 0, out.stderr
    assert out.stdout == (
        f"reloaded {d.config}\n"
        "  applied: [daemon] max_connections\n"
        "  applied: [daemon] connection_headroom\n"
        "  needs a restart (still the old value): [daemon] log_dir\n"
    )
    status = request_one(d.control, "status")
    assert status["log_dir"] == str(d.log_dir)
