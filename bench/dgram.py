"""Datagram ingest (issue 9): throughput of the ``[daemon] datagram_socket``.

The senders are ``bench/loadgen.py`` children, each with a connected
``SOCK_DGRAM`` socket sending one 120-byte RFC 3164 record per datagram (as
glibc's ``syslog(3)`` does), like ``../shared/bench/run.sh rsyslog
throughput``: 4 senders, 200 000 datagrams in total. Every record is stamped
from its datagram's ``SCM_CREDENTIALS``. A run ends when the daemon reports
them all stored.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from bench.throughput import _fmt, _median, throughput_once

UID = os.geteuid()
COUNT = 200_000
#: The kernel's queue of a Unix datagram socket, in datagrams (the machine's setting).
QLEN_PATH = "/proc/sys/net/unix/max_dgram_qlen"


def dgram_once(*, conns: int = 4, count: int = COUNT, size: int = 120) -> dict[str, float]:
    """One run: *conns* senders, *count* datagrams in total, until all are stored."""
    return throughput_once(conns=conns, count=count, size=size, dgram=True)


def dgram(runs: int = 3) -> dict[str, Any]:
    """4 senders x 50 000 datagrams of 120 bytes, credentials on every one."""
    rows = [dgram_once() for _ in range(runs)]
    out: dict[str, Any] = {k: _median([r[k] for r in rows]) for k in rows[0]}
    with open(QLEN_PATH) as f:
        qlen = f.read().strip()
    print(f"dgram: 4 senders x 50k datagrams, 120 B, SCM_CREDENTIALS, max_dgram_qlen={qlen}")
    print(f"  msgs/s            {_fmt([r['msgs_per_s'] for r in rows])}")
    print(f"  CPU s / 1M msgs   {_fmt([r['cpu_s_per_million'] for r in rows], digits=2)}")
    print(f"  peak RSS MiB      {_fmt([r['peak_rss_mib'] for r in rows], digits=1)}")
    out["runs"] = rows
    out["max_dgram_qlen"] = int(qlen)
    return out


SCENARIOS: dict[str, Callable[..., dict[str, Any]]] = {
    "dgram": dgram,
}
