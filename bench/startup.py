"""``make bench`` scenario ``startup``: how long the query and control CLIs take to start.

Issue 21's budgets, each a median of many runs (start-up is short and the
machine noisy; at least 11 runs, or ``--runs``):

* ``python -c pass``: the interpreter alone, what every figure below includes
  but the import time; ``python -S -c pass`` without ``site`` (the venv's
  ``.pth`` files: the editable install's is a plain path, no import hook);
* ``import trio_logd.cli.logq``: the module's cumulative import time from
  ``python -X importtime`` (budget 40 ms); ``python_import_logq``: the whole
  process ``python -c 'import trio_logd.cli.logq'`` (with its CPU time);
* ``logq --help``, ``trio-logd status --help``: whole processes, wall time
  (budget 80 ms);
* ``trio-logd status`` and ``stats`` against a running daemon (budget 80 ms);
* ``logq --uid 1000 -n 100`` through the daemon on the ``logq`` scenario's
  10 M record store (budget 0.15 s), only when that store is already cached
  (``python -m bench logq`` makes it; generating it is slow), in a private
  copy (the daemon locks its store).

Each whole-process row also gives the CPU time (user + system) of the
process, steadier than wall time when the machine is busy.

The processes run with bytecode caching on (``PYTHONDONTWRITEBYTECODE``
removed from their environment), as an installed package runs: with it set,
every run compiles the package's modules from source and the figures
measure the compiler (``import trio_logd.cli.logq`` about twice as long).

``tests/cli/test_startup.py`` checks that no heavy module is back on these
paths; this measures.
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench._daemon import BenchDaemon
from bench.logq import BIG_UID, store_dir

#: Start-up is a few tens of milliseconds: many runs for a stable median.
MIN_RUNS = 11


def _script(name: str) -> list[str]:
    script = Path(sys.executable).parent / name
    if script.exists():
        return [str(script)]
    module = "trio_logd.cli.logq" if name == "logq" else "trio_logd"
    return [sys.executable, "-m", module]


#: The children's environment: bytecode cached, as installed (see the module doc).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _import_ms(module: str) -> float:
    """Cumulative import time of *module* in a fresh interpreter, in ms."""
    err = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        check=True,
        env=ENV,
    ).stderr
    line = next(ln for ln in err.splitlines() if ln.rstrip().endswith(f"| {module}"))
    return int(line.split("|")[1]) / 1000


def _private_copy() -> Path | None:
    """A copy of the ``logq`` scenario's cached store that only this scenario opens.

    The daemon locks its ``log_dir``: the shared store may be held by another
    run of the ``logq`` scenario. Copied once (about 250 MB), then reused.
    """
    if not (store_dir() / "meta.json").exists():
        return None
    copy = store_dir().with_name(store_dir().name + "-startup") / "log"
    if not copy.exists():
        shutil.copytree(store_dir() / "log", copy.with_name("log.tmp"), symlinks=True)
        copy.with_name("log.tmp").rename(copy)
    return copy


def _wall_ms(argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, env=ENV)
    return (time.perf_counter() - t0) * 1000


#: CPU time (user + system) of the processes each run started, in ms, by row:
#: steadier than wall time on a loaded machine.
CPU: dict[str, list[float]] = {}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (usage.ru_utime + usage.ru_stime) * 1000


def _runs(measure: Any, runs: int, row: str = "") -> list[float]:
    measure()  # warm the page cache
    values, cpu = [], []
    for _ in range(runs):
        before = _children_cpu()
        values.append(measure())
        cpu.append(_children_cpu() - before)
    if row:
        CPU[row] = cpu
    return values


def startup_scenario(runs: int = 3) -> dict[str, Any]:
    """Median start-up figures of logq and the control commands (see the module doc)."""
    n = max(MIN_RUNS, runs)
    logq, logd = _script("logq"), _script("trio-logd")
    rows: dict[str, list[float]] = {
        "python_bare_ms": _runs(
            lambda: _wall_ms([sys.executable, "-c", "pass"]), n, "python_bare_ms"
        ),
        "python_no_site_ms": _runs(
            lambda: _wall_ms([sys.executable, "-S", "-c", "pass"]), n, "python_no_site_ms"
        ),
        "import_logq_ms": _runs(lambda: _import_ms("trio_logd.cli.logq"), n),
        "import_daemon_cli_ms": _runs(lambda: _import_ms("trio_logd.cli.daemon"), n),
        "logq_help_ms": _runs(lambda: _wall_ms([*logq, "--help"]), n, "logq_help_ms"),
        "status_help_ms": _runs(lambda: _wall_ms([*logd, "status", "--help"]), n, "status_help_ms"),
        "python_import_logq_ms": _runs(
            lambda: _wall_ms([sys.executable, "-c", "import trio_logd.cli.logq"]),
            n,
            "python_import_logq_ms",
        ),
    }
    with BenchDaemon() as d:
        cfg = ["--config", str(d.config)]
        rows["status_ms"] = _runs(lambda: _wall_ms([*logd, *cfg, "status"]), n, "status_ms")
        rows["stats_ms"] = _runs(lambda: _wall_ms([*logd, *cfg, "stats"]), n, "stats_ms")
    store = _private_copy()
    if store is not None:
        bench = BenchDaemon()  # its config, pointed at the cached store
        text = bench.config.read_text().replace(f'"{bench.root}/var/log"', f'"{store}"')
        bench.config.write_text(text)
        with bench as d:
            argv = [*logq, "--socket", d.control, "--uid", str(BIG_UID), "-n", "100"]
            rows["logq_n100_10M_ms"] = _runs(lambda: _wall_ms(argv), n, "logq_n100_10M_ms")
    out: dict[str, Any] = {k: round(statistics.median(v), 1) for k, v in rows.items()}
    out.update({f"{k}_cpu": round(statistics.median(v), 1) for k, v in CPU.items()})
    out["runs"] = n
    budgets = {"import_logq_ms": 40, "logq_help_ms": 80, "status_help_ms": 80, "status_ms": 80,
               "stats_ms": 80, "logq_n100_10M_ms": 150}  # fmt: skip
    print(f"startup: medians of {n} runs")
    for key, values in rows.items():
        budget = f"   budget {budgets[key]} ms" if key in budgets else ""
        cpu = f"   cpu {statistics.median(CPU[key]):6.1f} ms" if key in CPU else ""
        print(f"  {key:<22} {statistics.median(values):7.1f} ms "
              f"({min(values):.1f}-{max(values):.1f}){cpu}{budget}")  # fmt: skip
    if "logq_n100_10M_ms" not in rows:
        print(f"  logq -n 100 on 10 M records: skipped, no cached store in {store_dir()} "
              "(python -m bench logq makes it)")  # fmt: skip
    return out


SCENARIOS = {"startup": startup_scenario}
