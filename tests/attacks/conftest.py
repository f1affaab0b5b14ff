"""The attack suite's table: one row per attack, printed at the end of the run.

A test takes the ``attack_report`` fixture first and fills its row: the
attack, the defined outcome it checked, and the records lost, a number the
test measured (records that should be on disk, counted, minus those found).
The row's result (passed, failed, skipped) is filled in from the test's
report, so a failing attack shows as such in the table.

Hook for further attacks (tamper evidence: an edited byte, a deleted or
swapped line, a truncated tail, a removed rotated file, each found by
``logq --verify``): add a ``tests/attacks/test_<topic>.py`` whose tests take
``attack_report`` the same way; their rows join the table.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest

from tests._daemon import DaemonProcess, world


@dataclass
class AttackRow:
    """One line of the attack table."""

    test: str
    attack: str = ""
    outcome: str = ""
    #: measured: records that should be on disk and are not; None until counted
    lost: int | None = None
    result: str = "not run"

    def report(self, attack: str, outcome: str, lost: int) -> None:
        """Fill the row (call it before asserting, so a failure still shows the figures)."""
        self.attack, self.outcome, self.lost = attack, outcome, lost


_ROWS = pytest.StashKey[list[AttackRow]]()
_ROW = pytest.StashKey[AttackRow]()


@pytest.fixture
def attack_report(request: pytest.FixtureRequest) -> AttackRow:
    """This test's row of the attack table."""
    row = AttackRow(request.node.name)
    request.config.stash.setdefault(_ROWS, []).append(row)
    request.node.stash[_ROW] = row
    return row


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Iterator[None]:  # pragma: no cover - exercised by every run
    report: pytest.TestReport = yield  # type: ignore[assignment]
    row = item.stash.get(_ROW, None)
    failed_here = report.when == "call" or report.outcome != "passed"
    if row is not None and failed_here and row.result in ("not run", "passed"):
        row.result = report.outcome
    return report  # type: ignore[return-value]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the attack table: attack, outcome, records lost (measured), result."""
    rows = terminalreporter.config.stash.get(_ROWS, [])
    if not rows:
        return
    terminalreporter.section("attack table")
    width = max(len(r.attack or r.test) for r in rows)
    terminalreporter.write_line(f"{'attack':<{width}}  {'lost':>5}  {'result':<7}  outcome")
    for r in rows:
        lost = "?" if r.lost is None else str(r.lost)
        terminalreporter.write_line(
            f"{r.attack or r.test:<{width}}  {lost:>5}  {r.result:<7}  {r.outcome}"
        )
    total = sum(r.lost or 0 for r in rows)
    unknown = sum(r.lost is None for r in rows)
    terminalreporter.write_line(
        f"{len(rows)} attacks, {total} records lost"
        + (f", {unknown} not counted (failed or skipped before counting)" if unknown else "")
    )


@pytest.fixture
def as_root() -> None:
    """Skip unless root: the attacks run as other uids (fork + setuid)."""
    if os.geteuid() != 0:
        pytest.skip("needs root: attackers and bystanders are children that setuid to other uids")


@pytest.fixture
def root_dir() -> Iterator[Path]:
    """A fresh world directory (0755) for a daemon of the test's own making."""
    with world() as root:
        yield root


class DaemonFactory(Protocol):
    def __call__(self, **kwargs: Any) -> DaemonProcess: ...


@pytest.fixture
def start_daemon(as_root: None, root_dir: Path) -> Iterator[DaemonFactory]:
    """Start a daemon with ``DaemonProcess`` options; stopped with SIGTERM (exit 0) after."""
    started: list[DaemonProcess] = []

    def start(
        *,
        preexec_fn: Callable[[], None] | None = None,
        env: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> DaemonProcess:
        d = DaemonProcess(root_dir, **kwargs)
        started.append(d)
        return d.start(preexec_fn=preexec_fn, env=env)

    yield start
    for d in started:
        if d.proc is not None and d.proc.poll() is None:
            rc = d.stop()
            assert rc == 0, f"daemon exited {rc}: {d.stderr()}"


@pytest.fixture
def daemon(start_daemon: DaemonFactory) -> DaemonProcess:
    """A daemon on the default test config."""
    return start_daemon()
