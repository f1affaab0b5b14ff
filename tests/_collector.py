"""A real central collector for forwarding tests: rsyslogd, from Debian, on 127.0.0.1.

Each :class:`Rsyslog` is its own ``rsyslogd -n`` process with its own config,
work directory and pid file, listening on a free TCP port of 127.0.0.1
(``imtcp``: RFC 6587 octet counting is on by default; TLS through GnuTLS,
RFC 5425, when given certificate files). Whatever arrives is written to
``out.log`` in RFC 5424 form as rsyslog parsed it
(``RSYSLOG_SyslogProtocol23Format``: the STRUCTURED-DATA is rsyslog's own
rendering of what it parsed). It is stopped or killed by its pid, never by
name. ``tests/setup-debian.sh`` (run by ``make test``) installs rsyslog.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests._daemon import poll
from trio_logd.protocol.rfc5424 import parse_rfc5424

__all__ = ["RSYSLOGD", "Rsyslog", "TlsServer", "free_port", "rsyslog_missing"]

RSYSLOGD = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"


def rsyslog_missing() -> str | None:
    """Why the collector tests cannot run here, or ``None`` when they can.

    Skipping is allowed only where nothing could install rsyslog (not root):
    as root (CI) a missing rsyslogd is a failure of the test setup.
    """
    if os.access(RSYSLOGD, os.X_OK):
        return None
    if os.geteuid() == 0:
        return None  # the test fails, and says rsyslogd is missing
    return f"{RSYSLOGD} is not installed and we are not root (tests/setup-debian.sh installs it)"


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class TlsServer:
    """The collector's TLS side: its certificate and key, the CA, and the client check."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    #: "anon" (any client) or "x509/certvalid" (a client certificate of the CA required)
    auth_mode: str = "anon"


_CONFIG = """\
global(workDirectory="{root}" maxMessageSize="256k"{tls_global})
module(load="imtcp"{tls_module})
input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="forwarded")
ruleset(name="forwarded") {{
    action(type="omfile" file="{out}" template="RSYSLOG_SyslogProtocol23Format")
}}
"""


class Rsyslog:
    """An ``rsyslogd`` collector of our own on ``127.0.0.1:port``.

    Args:
        root: a private directory for its config, pid file, output and logs.
        tls: serve TLS with these files (plain TCP when ``None``).
        port: the port (a free one when ``None``); kept across restarts.
    """

    def __init__(self, root: Path, *, tls: TlsServer | None = None, port: int | None = None):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.out = root / "out.log"
        self.pid_file = root / "rsyslogd.pid"
        self.stderr_path = root / "rsyslogd.stderr"
        self.config = root / "rsyslog.conf"
        tls_global = tls_module = ""
        if tls is not None:
            tls_global = (
                f' defaultNetstreamDriver="gtls" defaultNetstreamDriverCAFile="{tls.ca_file}"'
                f' defaultNetstreamDriverCertFile="{tls.cert_file}"'
                f' defaultNetstreamDriverKeyFile="{tls.key_file}"'
            )
            tls_module = (
                f' streamDriver.name="gtls" streamDriver.mode="1"'
                f' streamDriver.authMode="{tls.auth_mode}"'
            )
        self.config.write_text(
            _CONFIG.format(
                root=root,
                port=self.port,
                out=self.out,
                tls_global=tls_global,
                tls_module=tls_module,
            )
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``, as a ``[[forward]] address``."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> Rsyslog:
        """Start it and wait until its port accepts connections."""
        assert os.access(RSYSLOGD, os.X_OK), f"{RSYSLOGD} missing: run tests/setup-debian.sh"
        assert self.proc is None, "already started (stop it first)"
        with open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(
                [RSYSLOGD, "-n", "-f", str(self.config), "-i", str(self.pid_file)],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                cwd=self.root,
            )

        def listening() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                msg = f"rsyslogd exited with {self.proc.returncode}: {self.stderr()}"
                self.proc = None
                raise AssertionError(msg)
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            except OSError:
                return False
            return True

        try:
            poll(listening, timeout=20)
        except BaseException:
            self.kill()  # a collector that did not come up is not left behind
            raise
        return self

    def stop(self) -> None:
        """SIGTERM by pid and reap (rsyslog writes out what it holds)."""
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL by pid and reap: whatever it held in memory is gone."""
        self._signal(signal.SIGKILL)

    def _signal(self, sig: int) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        with contextlib.suppress(FileNotFoundError):
            self.pid_file.unlink()

    def stderr(self) -> str:
        """What rsyslogd said on stdout/stderr."""
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def lines(self) -> list[str]:
        """The complete lines written so far."""
        try:
            data = self.out.read_bytes()
        except FileNotFoundError:
            return []
        return data.decode("utf-8", "replace").split("\n")[:-1]

    def messages(self) -> list[dict[str, Any]]:
        """Every message received, as rsyslog parsed it: header fields, ``sd`` (SD-ID -> params)."""
        out = []
        for line in self.lines():
            m = parse_rfc5424(line)
            assert m is not None, f"not RFC 5424: {line!r}"
            out.append(
                {
                    "pri": m.fac + "." + m.sev,
                    "ts": m.claimed_ts,
                    "host": m.host,
                    "app": m.app,
                    "procid": m.claimed_pid,
                    "msgid": m.msgid,
                    "sd": m.fields or {},
                    "msg": m.msg,
                }
            )
        return out

    def __enter__(self) -> Rsyslog:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
