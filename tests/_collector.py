"""A real central collector for forwarding tests: rsyslogd, from Debian, on 127.0.0.1.

Each :class:`Rsyslog` is its own ``rsyslogd -n`` process with its own config,
work directory and pid file, listening on a free TCP port of 127.0.0.1
(``imtcp``: RFC 6587 octet counting is on by default; TLS through GnuTLS,
RFC 5425, when given certificate files). Whatever arrives is written to
``out.log`` in RFC 5424 form as rsyslog parsed it
(``RSYSLOG_SyslogProtocol23Format``: the STRUCTURED-DATA is rsyslog's own
rendering of what it parsed). It is stopped or killed by its pid, never by
name. ``tests/setup-debian.sh`` (run by ``make test``) installs rsyslog.

With ``parse=True`` it also runs the parsers a collector runs to read
structured data, with their defaults: ``mmpstrucdata`` (RFC 5424 SD into
``$!rfc5424-sd``, SD-IDs lowercased) and ``mmjsonparse`` (an ``@cee:`` MSG
into ``$!``), and writes the resulting ``$!`` tree as one JSON object per
message (:meth:`Rsyslog.trees`).

:class:`SyslogNg` is syslog-ng's ``syslog()`` source (its RFC 5424 parser),
run from the Debian package that ``tests/setup-debian.sh`` unpacks under
``tests/.peers/syslog-ng`` (it conflicts with rsyslog as a package); each
message is written as ``$(format-json)`` of its SDATA and MESSAGE.
"""

from __future__ import annotations

import contextlib
import json
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

__all__ = [
    "RSYSLOGD",
    "Rsyslog",
    "SyslogNg",
    "TlsServer",
    "free_port",
    "rsyslog_missing",
    "syslog_ng_missing",
]

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
ruleset(name="forwarded"{ruleset_parsers}) {{
    action(type="omfile" file="{out}" template="RSYSLOG_SyslogProtocol23Format")
{parsers}}}
"""
#: With ``properties=True``: rsyslog's parse of each message, as one JSON
#: object a line (its own property names; ``sd`` is mmpstrucdata's tree).
_PROPERTIES = """\
template(name="logd_props" type="list" option.jsonf="on") {
    property(outname="pri" name="pri" format="jsonf")
    property(outname="fac" name="syslogfacility-text" format="jsonf")
    property(outname="sev" name="syslogseverity-text" format="jsonf")
    property(outname="host" name="hostname" format="jsonf")
    property(outname="fromhost" name="fromhost" format="jsonf")
    property(outname="fromhost_ip" name="fromhost-ip" format="jsonf")
    property(outname="tag" name="syslogtag" format="jsonf")
    property(outname="app" name="app-name" format="jsonf")
    property(outname="procid" name="procid" format="jsonf")
    property(outname="msgid" name="msgid" format="jsonf")
    property(outname="ts" name="timereported" dateFormat="rfc3339" format="jsonf")
    property(outname="received" name="timegenerated" dateFormat="rfc3339" format="jsonf")
    property(outname="msg" name="msg" format="jsonf")
    property(outname="sd" name="$!rfc5424-sd" format="jsonf")
    property(outname="raw" name="rawmsg" format="jsonf")
}
"""
_PROPERTIES_ACTIONS = """\
    action(type="mmpstrucdata" sd_name.lowercase="off")
    action(type="omfile" file="{props}" template="logd_props")
"""
#: The parsers with their defaults, and the $! tree they leave, one JSON object a line.
_PARSERS = """\
    action(type="mmpstrucdata")
    action(type="mmjsonparse")
    action(type="omfile" file="{tree}" template="logd_tree")
"""
_PARSER_MODULES = """\
module(load="mmpstrucdata")
module(load="mmjsonparse")
template(name="logd_tree" type="string" string="%$!%\\n")
"""


class Rsyslog:
    """An ``rsyslogd`` collector of our own on ``127.0.0.1:port``.

    Args:
        root: a private directory for its config, pid file, output and logs.
        tls: serve TLS with these files (plain TCP when ``None``).
        port: the port (a free one when ``None``); kept across restarts.
    """

    def __init__(
        self,
        root: Path,
        *,
        tls: TlsServer | None = None,
        port: int | None = None,
        parse: bool = False,
        properties: bool = False,
    ):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.out = root / "out.log"
        self.pid_file = root / "rsyslogd.pid"
        self.stderr_path = root / "rsyslogd.stderr"
        self.config = root / "rsyslog.conf"
        self.tree = root / "tree.jsonl"
        self.props = root / "props.jsonl"
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
        text = _CONFIG.format(
            root=root,
            port=self.port,
            out=self.out,
            tls_global=tls_global,
            tls_module=tls_module,
            parsers=(_PARSERS.format(tree=self.tree) if parse else "")
            + (_PROPERTIES_ACTIONS.format(props=self.props) if properties else ""),
            # the RFC 5424 parser, then RFC 3164 (rsyslog's default chain, named)
            ruleset_parsers=' parser=["rsyslog.rfc5424", "rsyslog.rfc3164"]' if properties else "",
        )
        if properties and not parse:
            text = 'module(load="mmpstrucdata")\n' + _PROPERTIES + text
        self.config.write_text(_PARSER_MODULES + text if parse else text)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``, as a ``[[forward]] address``."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> Rsyslog:
        """Start it and wait until its port accepts connections."""
        assert os.access(RSYSLOGD, os.X_OK), f"{RSYSLOGD} missing: run tests/setup-debian.sh"
        assert self.proc is None, "already started (stop it first)"
        argv = [RSYSLOGD, "-n", "-f", str(self.config), "-i", str(self.pid_file)]
        self.proc = _spawn_listening(argv, self.root, self.port, self.stderr_path)
        return self

    def stop(self) -> None:
        """SIGTERM by pid and reap (rsyslog writes out what it holds)."""
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL by pid and reap: whatever it held in memory is gone."""
        self._signal(signal.SIGKILL)

    def _signal(self, sig: int) -> None:
        _end(self.proc, sig)
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

    def properties(self) -> list[dict[str, Any]]:
        """With ``properties=True``: each message's properties as rsyslog parsed them."""
        return _json_lines(self.props)

    def trees(self) -> list[dict[str, Any]]:
        """With ``parse=True``: each message's ``$!`` tree after mmpstrucdata and mmjsonparse."""
        return _json_lines(self.tree)

    def __enter__(self) -> Rsyslog:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _spawn_listening(
    argv: list[str], root: Path, port: int, stderr_path: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start a collector and wait until 127.0.0.1:*port* accepts; killed if it does not."""
    with open(stderr_path, "ab") as err:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err, cwd=root, env=env
        )

    def listening() -> bool:
        if proc.poll() is not None:
            said = stderr_path.read_text(errors="replace")
            msg = f"{Path(argv[0]).name} exited with {proc.returncode}: {said}"
            raise AssertionError(msg)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return False
        return True

    try:
        poll(listening, timeout=20)
    except BaseException:
        _end(proc, signal.SIGKILL)  # a collector that did not come up is not left behind
        raise
    return proc


def _end(proc: subprocess.Popen[bytes] | None, sig: int) -> None:
    """Signal *proc* by its pid and reap it (SIGKILL after 20 s)."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _json_lines(path: Path) -> list[dict[str, Any]]:
    """The complete lines of *path*, each a JSON object (a repeated key: the last one wins)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in data.decode("utf-8", "replace").split("\n")[:-1]]


#: Where tests/setup-debian.sh unpacks syslog-ng-core and the libraries it needs.
SYSLOG_NG_ROOT = Path(__file__).parent / ".peers" / "syslog-ng"
SYSLOG_NG = SYSLOG_NG_ROOT / "usr" / "sbin" / "syslog-ng"


def syslog_ng_missing() -> str | None:
    """Why the syslog-ng tests cannot run here, or ``None`` when they can."""
    if os.access(SYSLOG_NG, os.X_OK):
        return None
    return f"{SYSLOG_NG} is not unpacked (tests/setup-debian.sh, run as root by `make test`)"


_SYSLOG_NG_CONFIG = """\
@version: 3.38
options {{ stats_freq(0); use_dns(no); keep_hostname(yes); }};
source s_net {{ syslog(ip("127.0.0.1") port({port}) transport("tcp")); }};
destination d_json {{
    file("{out}" template("{template}\\n"));
}};
log {{ source(s_net); destination(d_json); }};
"""
_SYSLOG_NG_TEMPLATE = "$(format-json --key .SDATA.* --key MESSAGE --key PID)"
#: With ``properties=True``: syslog-ng's parse of each message (its macros).
_SYSLOG_NG_PROPERTIES = (
    "$(format-json --key .SDATA.* pri=$PRI fac=$FACILITY sev=$LEVEL host=$HOST host_from=$HOST_FROM"
    " app=$PROGRAM pid=$PID msgid=$MSGID ts=$S_ISODATE received=$R_ISODATE msg=$MESSAGE)"
)


class SyslogNg:
    """A ``syslog-ng -F`` collector of our own on ``127.0.0.1:port`` (RFC 5424 over TCP).

    Args:
        root: a private directory for its config, state, output and logs.
    """

    def __init__(self, root: Path, *, properties: bool = False) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.out = root / "out.jsonl"
        self.config = root / "syslog-ng.conf"
        template = _SYSLOG_NG_PROPERTIES if properties else _SYSLOG_NG_TEMPLATE
        self.config.write_text(
            _SYSLOG_NG_CONFIG.format(port=self.port, out=self.out, template=template)
        )
        self.stderr_path = root / "syslog-ng.stderr"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``, as a ``[[forward]] address``."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> SyslogNg:
        """Start it from the unpacked package and wait until its port accepts connections."""
        assert syslog_ng_missing() is None, syslog_ng_missing()
        libs = ("usr/lib/syslog-ng", "usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu")
        env = {**os.environ, "LD_LIBRARY_PATH": ":".join(str(SYSLOG_NG_ROOT / d) for d in libs)}
        r = self.root
        argv = [
            str(SYSLOG_NG), "-F", "--no-caps", "-f", str(self.config),
            "-R", str(r / "persist"), "-p", str(r / "pid"), "-c", str(r / "ctl"),
            f"--module-path={SYSLOG_NG_ROOT / 'usr/lib/syslog-ng/3.38'}",
        ]  # fmt: skip
        self.proc = _spawn_listening(argv, r, self.port, self.stderr_path, env)
        return self

    def stop(self) -> None:
        """SIGTERM by pid and reap (SIGKILL after 20 s)."""
        _end(self.proc, signal.SIGTERM)
        self.proc = None

    def stderr(self) -> str:
        """What syslog-ng said on stdout/stderr."""
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def messages(self) -> list[dict[str, Any]]:
        """Every message received: ``_SDATA`` (SD-ID -> params), ``MESSAGE``, ``PID``."""
        return _json_lines(self.out)

    def __enter__(self) -> SyslogNg:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
