"""Load generator: N forked senders on a Unix socket, each record carrying a marker.

Each record is a glibc-style RFC 3164 line
``<14>Mmm dd hh:mm:ss loadgen[PID]: MK=<conn>.<seq> [TS=<ns>] xxx…`` padded to
``size`` bytes, then framed (LF, NUL or octet-counted). Children wait on a
pipe so that every connection starts at once; each reports what it sent.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from bench._cgroup import WRITER_ENV, join, placement

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass
class LoadSpec:
    sock: str
    conns: int = 4
    count: int | None = 1_000_000  # in total, split over connections
    duration: float | None = None  # or: send for this long
    rate: float = 0.0  # per connection, 0 = as fast as possible
    size: int = 120
    framing: str = "lf"
    uid: int | None = None
    gid: int | None = None
    batch: int = 512
    ts: bool = False
    dgram: bool = False
    #: the writers' cgroup (``bench._cgroup``): joined before connecting
    cgroup: Path | None = None


def _prefix(conn: int) -> bytes:
    t = time.localtime()
    ts = f"{MONTHS[t.tm_mon - 1]} {t.tm_mday:2d} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
    return f"<14>{ts} loadgen[{os.getpid()}]: MK={conn:03d}.".encode()


def _frame(msg: bytes, framing: str) -> bytes:
    if framing == "lf":
        return msg + b"\n"
    if framing == "nul":
        return msg + b"\0"
    if framing == "octet":
        return b"%d %s" % (len(msg), msg)
    return msg


def _child(spec: LoadSpec, conn: int, n: int | None, go_r: int, res_w: int) -> None:
    result: dict[str, object] = {"conn": conn, "sent": 0, "err": None}
    try:
        join(spec.cgroup)
        if spec.uid is not None:
            os.setgroups([])
            os.setgid(spec.gid if spec.gid is not None else spec.uid)
            os.setuid(spec.uid)
        kind = socket.SOCK_DGRAM if spec.dgram else socket.SOCK_STREAM
        s = socket.socket(socket.AF_UNIX, kind)
        s.connect(spec.sock)
        prefix = _prefix(conn)
        fixed = len(prefix) + 9 + (24 if spec.ts else 1)
        pad = b"x" * max(1, spec.size - fixed)
        os.read(go_r, 1)
        t0 = time.time()
        deadline = t0 + spec.duration if spec.duration else None
        sent = 0
        framing = "raw" if spec.dgram else spec.framing
        if spec.rate > 0:
            period = 1.0 / spec.rate
            while (n is None or sent < n) and (deadline is None or time.time() < deadline):
                due = t0 + sent * period
                delay = due - time.time()
                if delay > 0:
                    time.sleep(delay)
                msg = prefix + b"%09d TS=%019d " % (sent, time.time_ns()) + pad
                s.sendall(_frame(msg, framing))
                sent += 1
        else:
            while True:
                k = spec.batch if n is None else min(spec.batch, n - sent)
                if k <= 0 or (deadline is not None and time.time() >= deadline):
                    break
                if spec.ts:
                    tsb = b" TS=%019d " % time.time_ns()
                    msgs = [
                        _frame(prefix + b"%09d" % i + tsb + pad, framing)
                        for i in range(sent, sent + k)
                    ]
                else:
                    msgs = [
                        _frame(prefix + b"%09d " % i + pad, framing) for i in range(sent, sent + k)
                    ]
                if spec.dgram:
                    for m in msgs:
                        s.send(m)
                else:
                    s.sendall(b"".join(msgs))
                sent += k
        result.update(sent=sent, t0=t0, t1=time.time())
        s.close()
    except OSError as exc:
        result["err"] = f"{type(exc).__name__}: {exc}"
    os.write(res_w, (json.dumps(result) + "\n").encode())


class LoadGen:
    """Forked senders; ``start()`` releases them all at once, ``wait()`` collects results."""

    def __init__(self, spec: LoadSpec) -> None:
        if spec.cgroup is None:
            spec.cgroup = placement(WRITER_ENV)
        self.spec = spec
        self.pids: list[int] = []
        go_r, self._go_w = os.pipe()
        self._res_r, res_w = os.pipe()
        per: list[int | None] = [None] * spec.conns
        if spec.count is not None:
            base, extra = divmod(spec.count, spec.conns)
            per = [base + (1 if i < extra else 0) for i in range(spec.conns)]
        for i in range(spec.conns):
            pid = os.fork()
            if pid == 0:
                os.close(self._go_w)
                os.close(self._res_r)
                try:
                    _child(spec, i, per[i], go_r, res_w)
                finally:
                    os._exit(0)
            self.pids.append(pid)
        os.close(go_r)
        os.close(res_w)
        self.t_start = 0.0

    def start(self) -> None:
        time.sleep(0.2)  # let the children connect (a benchmark, not a test)
        self.t_start = time.time()
        os.write(self._go_w, b"g" * self.spec.conns)
        os.close(self._go_w)

    def wait(self) -> list[dict[str, object]]:
        data = b""
        while chunk := os.read(self._res_r, 65536):
            data += chunk
        os.close(self._res_r)
        for pid in self.pids:
            os.waitpid(pid, 0)
        return [json.loads(line) for line in data.splitlines()]
