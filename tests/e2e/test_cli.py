"""The command lines as a user types them, against a real daemon.

``--config`` before or after the command, ``check-config`` finding its file
like every command, and every command ending quietly when its reader goes
away (``| head -1``) or on Ctrl-C.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests._daemon import PYTHON, DaemonProcess
from trio_logd.client import LogdClient
from trio_logd.config import SYSTEM_CONFIG_PATH

TRIO_LOGD = [PYTHON, "-m", "trio_logd"]
LOGQ = [PYTHON, "-m", "trio_logd.cli.logq"]


def _run(
    argv: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run *argv*, with no $TRIO_LOGD_CONFIG unless *env* sets it."""
    full = {k: v for k, v in os.environ.items() if k != "TRIO_LOGD_CONFIG"}
    full.update(env or {})
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, env=full, cwd=cwd)


# --------------------------------------------------------------------------- --config anywhere


@pytest.mark.parametrize("where", ["before", "after"])
def test_config_before_or_after_the_command_is_used(
    daemon: DaemonProcess, tmp_path: Path, where: str
) -> None:
    """`trio-logd --config FILE CMD` and `trio-logd CMD --config FILE` reach the same daemon."""
    cfg = ["--config", str(daemon.config)]

    def cli(*cmd: str) -> subprocess.CompletedProcess[str]:
        argv = [*cfg, *cmd] if where == "before" else [*cmd, *cfg]
        return _run([*TRIO_LOGD, *argv], cwd=tmp_path)  # another directory: no defaults apply

    status = cli("status", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["pid"] == daemon.pid
    stats = cli("stats", "--json")
    assert stats.returncode == 0, stats.stderr
    sent = cli("send", "--ack", f"config {where}")
    assert sent.returncode == 0, sent.stderr
    assert daemon.wait_records(os.getuid(), 1)[-1]["msg"] == f"config {where}"


@pytest.mark.parametrize("command", ["status", "stats", "metrics", "reload", "top", "send"])
def test_a_missing_named_config_is_an_error(tmp_path: Path, command: str) -> None:
    """A --config FILE that does not exist is an error naming it, wherever it is given."""
    missing = str(tmp_path / "nope.toml")
    for argv in (["--config", missing, command], [command, "--config", missing]):
        r = _run([*TRIO_LOGD, *argv, *(["x"] if command == "send" else [])], cwd=tmp_path)
        assert r.returncode == 1, (argv, r.stdout, r.stderr)
        assert missing in r.stderr
        assert "cannot read" in r.stderr
        assert "Traceback" not in r.stderr


# --------------------------------------------------------------------------- check-config

_BAD = """\
[daemon]
max_connections = -1
log_levle = "debug"

[store]
compress = "lz4"

[limits.uid.bob]
rate_messages = 5

[[forward]]
name = "a"
"""


def test_check_config_says_a_units_quota_stays_per_uid(tmp_path: Path) -> None:
    """check-config refuses quota_bytes in a [limits.unit] table, naming table and key."""
    bad = tmp_path / "unit.toml"
    bad.write_text('[limits.unit."web-*.service"]\nrate_messages = 10\nquota_bytes = 1000\n')
    r = _run([*TRIO_LOGD, "check-config", str(bad)])
    assert r.returncode == 1
    assert r.stderr.startswith(
        f'trio-logd: {bad}: [limits.unit."web-*.service"] quota_bytes: a uid\'s key, not a '
        "unit's: quotas stay per uid"
    )
    assert "Traceback" not in r.stderr


def test_check_config_reports_every_error(tmp_path: Path) -> None:
    """check-config names every error in the file, each with its key, and exits 1."""
    bad = tmp_path / "bad.toml"
    bad.write_text(_BAD)
    r = _run([*TRIO_LOGD, "check-config", str(bad)])
    assert r.returncode == 1
    lines = r.stderr.splitlines()
    assert lines == [
        f"trio-logd: {bad}: [daemon] log_levle: unknown key (did you mean log_level?)",
        f"trio-logd: {bad}: [daemon] max_connections: expected a positive integer, got -1",
        f'trio-logd: {bad}: [store] compress: expected one of "none", "gzip", "zstd", got "lz4"',
        f"trio-logd: {bad}: [limits.uid.bob]: expected a uid (0 to 4294967294, no leading zeros)"
        " as the table name (for a user name use [limits.user.bob])",
        f"trio-logd: {bad}: [[forward]] #1 address: missing: every [[forward]] needs a name"
        ' and an address ("HOST:PORT")',
        f"trio-logd: {bad}: 5 errors",
    ]


def test_check_config_finds_the_config_like_every_command(tmp_path: Path) -> None:
    """check-config takes FILE, --config FILE (either side) or $TRIO_LOGD_CONFIG."""
    good = tmp_path / "good.toml"
    good.write_text(f'[daemon]\nlog_dir = "{tmp_path}/log"\n')
    for argv, env in (
        (["check-config", str(good)], {}),
        (["check-config", "--config", str(good)], {}),
        (["--config", str(good), "check-config"], {}),
        (["check-config"], {"TRIO_LOGD_CONFIG": str(good)}),
    ):
        r = _run([*TRIO_LOGD, *argv], env=env, cwd=tmp_path)
        assert (r.returncode, r.stdout, r.stderr) == (0, f"{good}: OK\n", ""), argv
    other = tmp_path / "other.toml"
    r = _run([*TRIO_LOGD, "check-config", str(good), "--config", str(other)])
    assert r.returncode == 2
    assert "give one" in r.stderr
    r = _run([*TRIO_LOGD, "check-config"], cwd=tmp_path, env={"TRIO_LOGD_CONFIG": str(other)})
    assert r.returncode == 1
    assert f"{other}: cannot read" in r.stderr


def test_check_config_warns_about_a_log_dir_without_parent(tmp_path: Path) -> None:
    """A log_dir whose parent is missing (a typo?) is valid but warned about."""
    cfg = tmp_path / "typo.toml"
    cfg.write_text(f'[daemon]\nlog_dir = "{tmp_path}/vra/log"\n')
    r = _run([*TRIO_LOGD, "check-config", str(cfg)])
    assert r.returncode == 0
    assert r.stdout == f"{cfg}: OK\n"
    assert r.stderr == (
        f"trio-logd: warning: [daemon] log_dir '{tmp_path}/vra/log': its parent "
        f"'{tmp_path}/vra' does not exist; the daemon would create {tmp_path}/vra (a typo?)\n"
    )


# --------------------------------------------------------------------------- EPIPE, Ctrl-C


def _with_closed_stdout(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run *argv* with stdout a pipe whose reader is already gone (`| head -0`)."""
    r, w = os.pipe()
    os.close(r)
    try:
        return subprocess.run(
            argv, stdout=w, stderr=subprocess.PIPE, text=True, timeout=60, cwd=cwd,
            env={k: v for k, v in os.environ.items() if k != "TRIO_LOGD_CONFIG"},
        )  # fmt: skip
    finally:
        os.close(w)


def test_every_command_ends_quietly_when_its_reader_is_gone(daemon: DaemonProcess) -> None:
    """Output into a closed pipe ends every command with exit 0 and nothing on stderr."""
    with daemon.connect() as s:
        s.sendall(b"<13>epipe 0\n<13>epipe 1\n<13>epipe 2\n")
    daemon.wait_records(os.getuid(), 3)
    cfg = ["--config", str(daemon.config)]
    commands = [
        [*TRIO_LOGD, "status", *cfg],
        [*TRIO_LOGD, "status", "--json", *cfg],
        [*TRIO_LOGD, "stats", *cfg],
        [*TRIO_LOGD, "stats", "--json", *cfg],
        [*TRIO_LOGD, "metrics", *cfg],
        [*TRIO_LOGD, "peer", daemon.socket],
        [*TRIO_LOGD, "check-config", *cfg],
        [*TRIO_LOGD, "--help"],
        [*LOGQ, "--no-pager", *cfg],
        [*LOGQ, "-o", "json", "--all", *cfg],
        [*LOGQ, "--verify", *cfg],
        [*LOGQ, "--help"],
    ]
    for argv in commands:
        r = _with_closed_stdout(argv, daemon.root)
        assert (r.returncode, r.stderr) == (0, ""), argv[2:]


def _default_sigint() -> None:
    """In the child: Ctrl-C as in a terminal, even if the tests run where it is ignored
    (a background job of a shell ignores SIGINT, and Python then keeps it ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupt(
    argv: list[str], daemon: DaemonProcess, ready: str, stdin: bytes = b""
) -> tuple[int, str]:
    """Start *argv* (fed *stdin*, kept open), wait until *ready* is stored (or shown on its
    stdout), then send SIGINT (Ctrl-C); return its exit code and stderr."""
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        cwd=daemon.root, preexec_fn=_default_sigint,
    )  # fmt: skip
    assert proc.stdin is not None
    assert proc.stdout is not None
    assert proc.stderr is not None
    try:
        if stdin:  # the command reads stdin: wait until what it read is stored
            proc.stdin.write(stdin)
            proc.stdin.flush()
            daemon.wait_records(os.getuid(), 1, where=lambda r: r.get("msg") == ready)
        else:
            assert ready.encode() in proc.stdout.readline()
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=20)
        return rc, proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdin.close()
        proc.stdout.close()
        proc.stderr.close()


def test_ctrl_c_ends_commands_without_a_traceback(daemon: DaemonProcess) -> None:
    """Ctrl-C: `send` reading stdin exits 130, `logq -f` exits 0, neither prints a traceback."""
    cfg = ["--config", str(daemon.config)]
    rc, err = _interrupt([*TRIO_LOGD, "send", *cfg], daemon, "from stdin", b"from stdin\n")
    assert (rc, err) == (130, "")
    rc, err = _interrupt([*LOGQ, "-f", "-n", "1", *cfg], daemon, "from stdin")
    assert (rc, err) == (0, "")


# --------------------------------------------------------------------------- no config found

needs_no_system_config = pytest.mark.skipif(
    os.path.lexists(SYSTEM_CONFIG_PATH), reason=f"{SYSTEM_CONFIG_PATH} exists on this host"
)
_NOT_FOUND = (
    f"as no config file was found: no --config, $TRIO_LOGD_CONFIG unset, no {SYSTEM_CONFIG_PATH})"
)


@needs_no_system_config
def test_commands_without_a_config_say_where_they_looked(tmp_path: Path) -> None:
    """From a directory with no daemon and no config: send, status and logq fail at once,
    naming the path, that it is the embedded default and where no config was found."""
    where = f"(the path is the embedded default, relative to the current directory {tmp_path}, "
    t0 = time.monotonic()
    r = _run([*TRIO_LOGD, "send", "hello"], cwd=tmp_path)
    assert time.monotonic() - t0 < 5  # not the 10 s --timeout
    assert (r.returncode, r.stderr) == (
        1,
        f"trio-logd send: {tmp_path}/run/log.sock: no such socket: is the daemon running? "
        f"{where}{_NOT_FOUND}\n",
    )
    r = _run([*TRIO_LOGD, "status"], cwd=tmp_path)
    assert r.returncode == 3
    assert r.stdout == (
        f"trio-logd is not running (no daemon answers on {tmp_path}/run/ctl.sock; "
        f"{where[1:]}{_NOT_FOUND}\n"
    )
    r = _run([*LOGQ], cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.startswith(f"logq: cannot connect to the control socket {tmp_path}/run/ctl")
    assert r.stderr.endswith(f"is the daemon running? {where}{_NOT_FOUND}\n")


@needs_no_system_config
def test_the_client_shim_tells_at_once_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LogdClient() with no config and no socket tells on_error, once, where it looked."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TRIO_LOGD_CONFIG", raising=False)
    told: list[BaseException] = []
    with LogdClient(timeout=0.2, on_error=told.append) as client:
        assert not client.send("nobody listens")
        assert not client.send("still nobody")
    assert [str(e) for e in told] == [
        f"{tmp_path}/run/log.sock: no such socket: is the daemon running? (the path is the "
        f"embedded default, relative to the current directory {tmp_path}, {_NOT_FOUND}"
    ]


# --------------------------------------------------------------------------- peer


def test_peer_says_what_the_path_is(tmp_path: Path) -> None:
    """peer on a regular file, a directory, a stale socket: a message naming what it is."""
    regular = tmp_path / "logd.toml"
    regular.write_text("")
    stale = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(stale))  # bound, never listening: what a crashed server leaves
    expected = {
        str(regular): "not a socket (a regular file)",
        str(tmp_path): "not a socket (a directory)",
        str(stale): "a socket nobody listens on (stale: its server is gone)",
        str(tmp_path / "none"): "No such file or directory",
    }
    for path, why in expected.items():
        r = _run([*TRIO_LOGD, "peer", path])
        assert (r.returncode, r.stdout, r.stderr) == (1, "", f"trio-logd: {path}: {why}\n")
