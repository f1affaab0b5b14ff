"""Client shim benchmarks: records/s through LogdHandler and LogdLoggerFactory.

Compared, in the same process and run, against the stdlib's FileHandler (to a
file) and SysLogHandler (SOCK_STREAM, to the same daemon). For each handler:

* ``app``: the time for N ``logger.info(...)`` calls to return (what the
  application pays), as records/s, and its CPU per record (both threads of
  this process: robust on a shared machine);
* ``stored``: the time until the daemon reports all N stored (FileHandler:
  until written and closed; the sink case: until written to the socket).

The daemon runs on the same (2-core) machine and needs about a core to keep
up, so the application's thread competes with it: the "discarding sink" case
shows the client's cost without that competition.

    python -m bench client --runs 5
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any, Final

import structlog

from bench._daemon import BenchDaemon
from trio_logd.client import LogdHandler, LogdLoggerFactory

UID: Final = os.geteuid()
#: Records per measurement (the 8-thread case splits them).
N: Final = 100_000
#: Buffer large enough that a burst of N never drops (the default is 8 MiB).
BUFFER: Final = 64 << 20
#: What every stdlib handler formats (a common production layout).
FILE_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _logger(name: str, handler: logging.Handler) -> logging.Logger:
    lg = logging.getLogger(f"bench.{name}")
    lg.handlers[:] = [handler]
    lg.setLevel(logging.INFO)
    lg.propagate = False
    return lg


def _calls(log: Callable[[int], None], n: int, threads: int) -> tuple[float, float]:
    """Run *n* calls of *log* over *threads* threads; return (wall s, process CPU s)."""
    per = n // threads
    start = threading.Barrier(threads + 1)

    def work() -> None:
        start.wait()
        for i in range(per):
            log(i)

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    start.wait()
    t0, c0 = time.perf_counter(), time.process_time()
    for t in pool:
        t.join()
    return time.perf_counter() - t0, time.process_time() - c0


def _stored_after(d: BenchDaemon, base: int, n: int, t0: float) -> float:
    """Seconds from *t0* until the daemon has *n* more records of ours stored."""
    d.wait_stored(UID, base + n, interval=0.002)
    return time.perf_counter() - t0


def _row(app: tuple[float, float], stored: float, n: int, **extra: Any) -> dict[str, Any]:
    wall, cpu = app
    return {
        "app_per_s": n / wall,
        "app_cpu_us": cpu / n * 1e6,
        "stored_per_s": n / stored,
        **extra,
    }


class _Discard(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        pass


def _baseline(d: BenchDaemon) -> dict[str, Any]:
    """``logging`` alone: a handler that does nothing (what any handler costs at least)."""
    lg = _logger("baseline", _Discard())
    t0 = time.perf_counter()
    app = _calls(lambda i: lg.info("request %d handled in %.1f ms", i, 1.5), N, 1)
    return _row(app, time.perf_counter() - t0, N)


def _stdlib_file(d: BenchDaemon) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        handler = logging.FileHandler(os.path.join(tmp, "app.log"))
        handler.setFormatter(logging.Formatter(FILE_FORMAT))
        lg = _logger("file", handler)
        t0 = time.perf_counter()
        app = _calls(lambda i: lg.info("request %d handled in %.1f ms", i, 1.5), N, 1)
        handler.close()
        return _row(app, time.perf_counter() - t0, N)


def _stdlib_syslog(d: BenchDaemon) -> dict[str, Any]:
    handler = logging.handlers.SysLogHandler(address=d.socket, socktype=socket.SOCK_STREAM)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    lg = _logger("syslog", handler)
    base = d.stats()[UID]["stored"]
    t0 = time.perf_counter()
    app = _calls(lambda i: lg.info("request %d handled in %.1f ms", i, 1.5), N, 1)
    stored = _stored_after(d, base, N, t0)
    handler.close()
    return _row(app, stored, N)


def _logd(
    d: BenchDaemon, *, threads: int = 1, fields: bool = False, ack: bool = False
) -> dict[str, Any]:
    handler = LogdHandler(d.socket, buffer_bytes=BUFFER, ack=ack, timeout=60)
    lg = _logger(f"logd{threads}{fields}{ack}", handler)
    base = d.stats()[UID]["stored"]
    if fields:

        def log(i: int) -> None:
            lg.info("request handled", extra={"n": i, "ms": 1.5, "path": "/index"})
    else:

        def log(i: int) -> None:
            lg.info("request %d handled in %.1f ms", i, 1.5)

    t0 = time.perf_counter()
    app = _calls(log, N, threads)
    if ack:
        assert handler.client.flush(120)
        stored = time.perf_counter() - t0
    else:
        stored = _stored_after(d, base, N, t0)
    stats = handler.client.statistics()
    handler.close()
    return _row(app, stored, N, dropped=stats.dropped)


#: A process that accepts Unix stream connections and throws the bytes away.
_SINK: Final = """
import socket, sys, threading
srv = socket.socket(socket.AF_UNIX)
srv.bind(sys.argv[1])
srv.listen()
def drain(c):
    buf = bytearray(1 << 20)
    while c.recv_into(buf):
        pass
while True:
    threading.Thread(target=drain, args=(srv.accept()[0],), daemon=True).start()
"""


def _logd_to_sink(d: BenchDaemon) -> dict[str, Any]:
    """LogdHandler to a socket that discards: the client's cost without a daemon's CPU."""
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        path = os.path.join(tmp, "sink.sock")
        sink = subprocess.Popen([sys.executable, "-c", _SINK, path])
        try:
            deadline = time.monotonic() + 20
            while not os.path.exists(path):
                if time.monotonic() > deadline:
                    msg = "the sink did not start"
                    raise RuntimeError(msg)
                time.sleep(0.01)
            handler = LogdHandler(path, buffer_bytes=BUFFER, timeout=60)
            lg = _logger("sink", handler)
            t0 = time.perf_counter()
            app = _calls(lambda i: lg.info("request %d handled in %.1f ms", i, 1.5), N, 1)
            assert handler.client.flush()
            written = time.perf_counter() - t0
            handler.close()
            return _row(app, written, N)
        finally:
            sink.kill()
            sink.wait()


def _structlog(d: BenchDaemon) -> dict[str, Any]:
    factory = LogdLoggerFactory(d.socket, buffer_bytes=BUFFER, timeout=60)
    log = structlog.wrap_logger(
        factory("bench.structlog"),
        processors=[],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
    )
    base = d.stats()[UID]["stored"]
    t0 = time.perf_counter()
    app = _calls(lambda i: log.info("request handled", n=i, ms=1.5, path="/index"), N, 1)
    stored = _stored_after(d, base, N, t0)
    stats = factory.client.statistics()
    factory.client.close()
    return _row(app, stored, N, dropped=stats.dropped)


CASES: Final[dict[str, Callable[[BenchDaemon], dict[str, Any]]]] = {
    "logging alone (handler does nothing)": _baseline,
    "FileHandler (stdlib, to a file)": _stdlib_file,
    "SysLogHandler (stdlib, stream)": _stdlib_syslog,
    "LogdHandler, 1 thread": _logd,
    "LogdHandler, 1 thread, to a discarding sink": _logd_to_sink,
    "LogdHandler, 1 thread, extra fields": lambda d: _logd(d, fields=True),
    "LogdHandler, 8 threads": lambda d: _logd(d, threads=8),
    "LogdLoggerFactory (structlog)": _structlog,
    "LogdHandler, ack=True": lambda d: _logd(d, ack=True),
}


def client(runs: int = 3) -> dict[str, Any]:
    """Records/s through the client shim against the stdlib handlers (issue 6)."""
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in CASES}
    with BenchDaemon(store='fsync = "batch"') as d:
        for _ in range(runs):
            for name, case in CASES.items():
                rows[name].append(case(d))
    print(f"client: {N:,} logger calls each, {runs} runs (median, min-max); fsync=batch")
    print(f"  {'':38s} {'app rec/s':>22s} {'app CPU us/rec':>15s} {'stored rec/s':>22s}")
    out: dict[str, Any] = {}
    for name, rs in rows.items():
        med = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
        out[name] = {**med, "runs": rs}

        def span(key: str, rs: list[dict[str, Any]] = rs) -> str:
            values = [r[key] for r in rs]
            return f"{statistics.median(values):>9,.0f} ({min(values):,.0f}-{max(values):,.0f})"

        print(f"  {name:38s} {span('app_per_s'):>22s} {med['app_cpu_us']:>15.2f} "
              f"{span('stored_per_s'):>22s}")  # fmt: skip
        if med.get("dropped"):
            print(f"    !! {med['dropped']:.0f} records dropped")
    return out


SCENARIOS = {"client": client}
