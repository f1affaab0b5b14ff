"""``python -m fuzz.seed``: (re)write the seed inputs of ``fuzz/corpus/<target>/``.

Seeds are real senders' bytes: what util-linux ``logger`` (LF, and
``--octet-count --rfc5424``), Python's ``SysLogHandler`` (NUL) and the
client shim write are captured from a socket when those are at hand, beside
fixed cases of glibc ``syslog(3)``, ``@cee:``, relay claims and ``logq``'s
control requests. Each is written as ``seed-<name>``; inputs that the
fuzzer found interesting (``make fuzz-merge``) sit beside them under their
hashes. A seed of the ``ingest`` target starts with three bytes that pick
``max_message_bytes`` and the chunking (``targets.fuzz_ingest``).
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import orjson

from trio_logd.client._encode import FrameEncoder
from trio_logd.protocol.control import encode_request
from trio_logd.query.filters import QuerySpec

CORPUS = Path(__file__).parent / "corpus"


@contextlib.contextmanager
def _capture() -> Iterator[tuple[str, list[bytes]]]:
    """A listening Unix stream socket; yields its path and the bytes of each connection."""
    d = tempfile.mkdtemp()
    path = os.path.join(d, "log.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(8)
    got: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                data = b""
                while chunk := conn.recv(65536):
                    data += chunk
                got.append(data)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield path, got
    finally:
        srv.close()
        t.join(timeout=5)
        shutil.rmtree(d, ignore_errors=True)


def _logger(*args: str) -> bytes | None:
    if shutil.which("logger") is None:
        return None
    with _capture() as (path, got):
        subprocess.run(["logger", "-u", path, *args], check=True, timeout=10)
        for _ in range(200):
            if got:
                break
            threading.Event().wait(0.01)
    return got[0] if got else None


def _syslog_handler() -> bytes:
    with _capture() as (path, got):
        h = logging.handlers.SysLogHandler(address=path, socktype=socket.SOCK_STREAM)
        h.ident = "pyapp: "
        log = logging.getLogger("fuzz.seed")
        log.addHandler(h)
        log.propagate = False
        log.warning("disk %s is %d%% full", "/var", 93)
        log.error("second\nline with LF")
        log.removeHandler(h)
        h.close()
        for _ in range(200):
            if got:
                break
            threading.Event().wait(0.01)
    return got[0]


def ingest_seeds() -> dict[str, bytes]:
    """Streams as senders write them."""
    enc = FrameEncoder(facility=1, default_app="shim")
    shim = b"".join(
        [
            enc.encode(6, "plain text", ts=1_800_000_000.25),
            enc.encode(3, "with fields", {"user": "alice", "n": 3, "ok": True}, ts=1.5),
            enc.encode(7, "[looks like SD] {json}", app="my app", msgid="ID 1"),
        ]
    )
    streams = {
        "glibc-syslog3": b"<13>Nov 27 21:47:40 prog[4242]: glibc stream message\x00",
        "rfc3164-host": b"<38>Nov  7 03:04:05 myhost sshd[1]: Accepted password\n",
        "rfc5424-sd": b"<165>1 2003-10-11T22:14:15.003Z host evntslog 12 ID47 [exampleSDID@32473"
        b' iut="3" eventSource="App" eventID="1011"][examplePriority@32473 class="high"]'
        b" \xef\xbb\xbfAn application event\n",
        "cee": b'<13>app: @cee: {"msg": "disk full", "path": "/var", "free": 1024, '
        b'"nested": {"a": [1, 2.5, null, "x"]}}\n',
        "octet-mixed": b"11 <13>counted<13>line\n0 5 <13>x\r\n",
        "shim": shim,
        "injection": b'<13>a: one\rtwo\x1b[31m\xe2\x80\xae\xc2\x85\x7f\n{"uid":0}\x00\xff\n',
        "lying-count": b"<13>good\n12x <13>bad\n",
    }
    for name, args in {
        "logger-lf": ("-t", "mytag", "hello from logger"),
        "logger-octet-5424": (
            "--octet-count", "--rfc5424", "-p", "local3.err", "-t", "app", "--msgid", "ID47", "x",
        ),
    }.items():  # fmt: skip
        data = _logger(*args)
        if data is not None:
            streams[name] = data
    streams["syslog-handler-nul"] = _syslog_handler()
    # three leading bytes: max_message_bytes index, chunking seed, unused
    out: dict[str, bytes] = {}
    for name, data in streams.items():
        out[name] = b"\x08\x05\x00" + data
        out[f"{name}-small-bytewise"] = b"\x04\x00\x00" + data
    return out


def control_seeds() -> dict[str, bytes]:
    """Control requests as logq and the operators' commands send them (first byte: line cap)."""
    specs = {
        "query-own": QuerySpec(),
        "query-uids": QuerySpec(uids=(1000, 0), lines=10),
        "query-all": QuerySpec(all_uids=True, follow=True),
        "query-filters": QuerySpec(
            pids=(1, 4242),
            since="2026-11-27T20:47:40.000000Z",
            until="2026-11-28T00:00:00.000000Z",
            priority=(0, 3),
            grep="disk (full|almost)",
            case_sensitive=False,
        ),
    }
    out = {name: b"\x10" + encode_request("query", **s.to_request()) for name, s in specs.items()}
    for op in ("status", "stats", "reload"):
        out[op] = b"\x10" + encode_request(op)
    out["two-lines"] = b"\x10" + encode_request("status") + b'{"op":"query","uids":[-1]}\n'
    out["bad-json"] = b'\x10{"op": "query", "uids": [0\n'
    return out


def claim_seeds() -> dict[str, bytes]:
    """A relay's payloads (``protocol/claim.py``): both forms, and near misses."""
    cee = {"logd-claim@32473": {"uid": 1000, "pid": 42, "gid": 100}, "msg": "from a container"}
    return {
        "sd": b'<14>1 2026-11-27T10:00:00Z host app 42 - [logd-claim@32473 uid="1000" pid="42"]'
        b" text",
        "sd-gid": b'<14>1 - - app - - [logd-claim@32473 uid="0" gid="0"][x@1 a="b"] text',
        "cee": b"<14>app: @cee: " + orjson.dumps(cee),
        "sd-extra-param": b'<14>1 - - - - - [logd-claim@32473 uid="1" who="me"] no claim',
        "sd-leading-zero": b'<14>1 - - - - - [logd-claim@32473 uid="01"] no claim',
        "cee-negative": b'<14>@cee: {"logd-claim@32473": {"uid": -1}}',
    }


SEEDS = {"ingest": ingest_seeds, "control": control_seeds, "claim": claim_seeds}


def main() -> int:
    for target, make in SEEDS.items():
        d = CORPUS / target
        d.mkdir(parents=True, exist_ok=True)
        for old in d.glob("seed-*"):
            old.unlink()
        for name, data in make().items():
            (d / f"seed-{name}").write_bytes(data)
        print(f"{d}: {len(list(d.iterdir()))} inputs", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
