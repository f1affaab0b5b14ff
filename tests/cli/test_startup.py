"""Start-up of the query and control CLIs: only what their path needs is imported.

``logq`` and ``trio-logd status``/``stats`` are run by hand and by scripts in
loops; importing trio, structlog, the server, the store writer or the config
schema would cost them more than the work itself (issue 21: 157 ms of imports
for ``import trio_logd.cli.logq`` before). The hard figures are measured by
``make bench`` (``bench/startup.py``); these tests catch a heavy module that
creeps back onto a path (sets of modules, not milliseconds: CI machines vary),
and a start-up gone far off.

Each path is run in a fresh interpreter, and only the modules it imported
itself count (not those ``site`` or a coverage hook loaded before it).
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time

import pytest

from tests._daemon import DaemonProcess, world
from trio_logd.cli._parser import terminal_columns

#: Modules none of these paths may import (the daemon's side of the package).
HEAVY = (
    "trio",
    "structlog",
    "trio_logd.config",
    "trio_logd._config_load",
    "trio_logd.server",
    "trio_logd.store",
    "trio_logd.query.scanner",
    "trio_logd.cgroup",
    "zstandard",
)
#: Nor may a path that shows no record: orjson (with dataclasses, inspect,
#: uuid: about 15 ms), the record codec, the query layer but its mode names,
#: re2, and shutil (argparse's formatter imports it for the terminal width).
NO_RECORDS = (
    *HEAVY,
    "orjson",
    "dataclasses",
    "inspect",
    "re2",
    "shutil",
    "trio_logd.record",
    "trio_logd.query.filters",
    "trio_logd.query.output",
    "trio_logd.query.matches",
    "trio_logd.query.matcher",
    "trio_logd.query.cursor",
    "trio_logd.query.boots",
    "trio_logd.query.timespec",
)
#: Nor may importing a CLI module or ``--help``: typing, sockets and the
#: control client are for the commands that talk to the daemon.
BARE = (
    *NO_RECORDS,
    "typing",
    "socket",
    "trio_logd.client",
    "trio_logd.control_client",
    "trio_logd.peer",
    "trio_logd.protocol",
)
#: A query formats records (orjson), but imports each option's module only
#: when the option is given (``test_an_option_imports_its_module``).
QUERY = (
    *HEAVY,
    "re2",
    "shutil",
    "trio_logd.query.matcher",
    "trio_logd.query.cursor",
    "trio_logd.query.boots",
    "trio_logd.query.timespec",
    "trio_logd._units",
)

#: Runs *argv* through *entry*'s ``main`` in a fresh interpreter, then prints
#: the modules it imported (one per line, after a marker).
_PROBE = """\
import sys
before = set(sys.modules)
from {module} import main
try:
    main({argv!r})
except SystemExit:  # --help
    pass
finally:
    sys.stdout.flush()
    print("--modules--")
    print("\\n".join(sorted(set(sys.modules) - before)))
"""


def _imported(module: str, argv: list[str] | None) -> set[str]:
    code = f"import sys; before = set(sys.modules); import {module}; print('--modules--'); "
    code += "print('\\n'.join(sorted(set(sys.modules) - before)))"
    if argv is not None:
        code = _PROBE.format(module=module, argv=argv)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "--modules--" in p.stdout, p.stderr
    return set(p.stdout.split("--modules--\n", 1)[1].split())


def _among(loaded: set[str], forbidden: tuple[str, ...]) -> list[str]:
    """The modules of *loaded* that are, or are inside, one of *forbidden*."""
    return sorted(m for m in loaded if any(m == f or m.startswith(f + ".") for f in forbidden))


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("trio_logd.cli.logq", (*BARE, "argparse", "json")),
        ("trio_logd.cli.daemon", BARE),
    ],
)
def test_importing_a_cli_imports_nothing_heavy(module: str, forbidden: tuple[str, ...]) -> None:
    """Importing either CLI module imports no heavy module, no typing, no socket (logq: no
    argparse either)."""
    loaded = _imported(module, None)
    assert f"{module}" in loaded  # the probe works
    assert _among(loaded, forbidden) == []


@pytest.mark.parametrize(
    ("module", "argv"),
    [
        ("trio_logd.cli.logq", ["--help"]),
        ("trio_logd.cli.daemon", ["--help"]),
        ("trio_logd.cli.daemon", ["status", "--help"]),
        ("trio_logd.cli.daemon", ["stats", "--help"]),
    ],
)
def test_help_imports_neither_the_query_layer_nor_the_client(module: str, argv: list[str]) -> None:
    """`--help` imports argparse and the mode names, not orjson, re2, shutil, typing, sockets."""
    loaded = _imported(module, argv)
    assert "argparse" in loaded
    assert _among(loaded, BARE) == []


def test_queries_and_control_commands_import_nothing_heavy() -> None:
    """`logq -n 5` through the daemon imports no option's module; `trio-logd status` and
    `stats` import neither orjson nor the query layer."""
    with world() as root, DaemonProcess(root) as daemon:
        cfg = ["--config", str(daemon.config)]
        loaded = _imported("trio_logd.cli.logq", [*cfg, "-n", "5", "--no-pager"])
        assert {"orjson", "trio_logd.query.output", "socket"} <= loaded  # records were asked for
        assert _among(loaded, QUERY) == []
        for command in ("status", "stats"):
            loaded = _imported("trio_logd.cli.daemon", [*cfg, command])
            assert "trio_logd.control_client" in loaded, command
            assert _among(loaded, NO_RECORDS) == [], command


#: Options whose module ``logq -n 5`` goes without, and that module.
OPTION_MODULES = (
    (["--grep", "x"], "re2"),
    (["--since", "-1h"], "trio_logd.query.timespec"),
    (["--show-cursor"], "trio_logd.query.cursor"),
    (["-b"], "trio_logd.query.boots"),
)


def test_an_option_imports_its_module() -> None:
    """The modules `logq -n 5` goes without are imported when their option is given."""
    with world() as root, DaemonProcess(root) as daemon:
        for option, module in OPTION_MODULES:
            argv = ["--config", str(daemon.config), "-n", "5", "--no-pager", *option]
            assert module in _imported("trio_logd.cli.logq", argv), option


@pytest.mark.parametrize("columns", [None, "60", "0", "-3", "wide", "300"])
def test_help_width_is_shutils(monkeypatch: pytest.MonkeyPatch, columns: str | None) -> None:
    """The help formatter's width, found without shutil, is shutil.get_terminal_size's."""
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    assert terminal_columns() == shutil.get_terminal_size().columns


def test_help_text_is_argparses(monkeypatch: pytest.MonkeyPatch) -> None:
    """`logq --help` is what argparse's own formatter (which imports shutil) prints."""
    import argparse

    from trio_logd.cli.logq import build_parser

    monkeypatch.setenv("COLUMNS", "70")
    ours = subprocess.run([sys.executable, "-m", "trio_logd.cli.logq", "--help"],
                          capture_output=True, text=True, check=True).stdout  # fmt: skip
    parser = build_parser()
    parser.formatter_class = argparse.HelpFormatter
    parser.prog = "logq"
    assert ours == parser.format_help()


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
