"""Start-up of the query and control CLIs: only what their path needs is imported.

``logq`` and ``trio-logd status``/``stats`` are run by hand and by scripts in
loops; importing trio, structlog, the server, the store writer or the config
schema would cost them more than the work itself (issue 21: 157 ms of imports
for ``import trio_logd.cli.logq`` before). The hard figures are measured by
``make bench`` (``bench/startup.py``); these tests catch a heavy module that
creeps back onto a path, and a start-up gone far off.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

import pytest

from tests._daemon import DaemonProcess, world

#: Modules none of these paths may import (the daemon's side of the package).
HEAVY = (
    "trio",
    "structlog",
    "trio_logd.config",
    "trio_logd._config_load",
    "trio_logd.server",
    "trio_logd.store.writer",
    "trio_logd.store.scan",
    "trio_logd.store.verify",
    "zstandard",
)

#: Runs *argv* through *entry*'s ``main`` in a fresh interpreter, then prints the
#: heavy modules it imported (one per line, after a marker).
_PROBE = """\
import sys
from {module} import main
try:
    main({argv!r})
finally:
    sys.stdout.flush()
    heavy = {heavy!r}
    print("--modules--")
    for name in sorted(sys.modules):
        if any(name == h or name.startswith(h + ".") for h in heavy):
            print(name)
"""


def _imported(module: str, argv: list[str]) -> list[str]:
    code = _PROBE.format(module=module, argv=argv, heavy=HEAVY)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "--modules--" in p.stdout, p.stderr
    return p.stdout.split("--modules--\n", 1)[1].split()


@pytest.mark.parametrize("module", ["trio_logd.cli.logq", "trio_logd.cli.daemon"])
def test_importing_a_cli_imports_nothing_heavy(module: str) -> None:
    """Importing either CLI module imports none of the daemon's heavy modules."""
    code = f"import sys, {module}; print(' '.join(sorted(sys.modules)))"
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True).stdout.split())  # fmt: skip
    assert sorted(m for m in loaded if any(m == h or m.startswith(h + ".") for h in HEAVY)) == []


def test_queries_and_control_commands_import_nothing_heavy() -> None:
    """`logq -n 5` through the daemon (config read, server checked, records shown),
    `trio-logd status` and `stats` against it: none imports a heavy module."""
    with world() as root, DaemonProcess(root) as daemon:
        cfg = ["--config", str(daemon.config)]
        assert _imported("trio_logd.cli.logq", [*cfg, "-n", "5", "--no-pager"]) == []
        for command in ("status", "stats"):
            assert _imported("trio_logd.cli.daemon", [*cfg, command]) == [], command


def test_help_starts_quickly() -> None:
    """`logq --help` and `trio-logd status --help` finish well within a second (median of 3).

    Generous on purpose (the budget, 80 ms, is checked by ``make bench``): this
    fails when a heavy import is back, not when the machine is busy.
    """
    for argv in (["-m", "trio_logd.cli.logq", "--help"], ["-m", "trio_logd", "status", "--help"]):
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, *argv], capture_output=True, check=True, timeout=60)
            times.append(time.perf_counter() - t0)
        assert statistics.median(times) < 1.0, (argv, times)
