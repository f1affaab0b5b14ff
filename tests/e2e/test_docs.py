"""Every code block in README.md and docs/*.md runs as written, against a real daemon.

The convention, for whoever writes docs:

- A fenced block whose language is ``python``, ``sh`` (or ``bash``, ``shell``)
  or ``toml`` is code, and this test runs it. Other blocks (``json``,
  ``promql``, no language) are output or text shown to the reader: not run.
- A block that cannot run in a test (it needs systemd, a package install,
  root on a real host, or changes the host) is marked by an HTML comment on
  the line just before its opening fence, with the reason::

      <!-- doc-test: skip, needs systemd -->
      ```sh
      systemctl reload trio-logd
      ```

  The comment stands alone on its line; it is visible in the Markdown
  source and not in the rendered page. A skipped block is reported with its
  reason; a mark without a reason is an error, and so is a mark before
  something that is not a code block.

How each kind runs, in a directory laid out like a checkout where a daemon
runs (``run/log.sock``, ``run/ctl.sock``, ``var/log``, ``.venv`` linked to the
interpreter's environment, ``conf/``), with ``$TRIO_LOGD_CONFIG`` naming that
daemon's config and the environment's ``bin/`` first on ``PATH``:

- ``python``: the block is a program of its own (a subprocess); it must exit
  0, print nothing on stderr, and the daemon must have stored at least one
  new record from it.
- ``sh``: one command line at a time (backslash continuations joined), each
  through ``bash -o pipefail -c``: exit 0 and nothing on stderr. Only the
  commands in :data:`SAFE_COMMANDS` (and ``.venv/bin/…``) are run: a block
  that uses any other (``make``, ``pip``, ``systemctl``, ``install``…) and is
  not marked fails, asking for the mark, so that nothing a doc says to an
  operator is ever done to the machine running the tests. A line that
  follows forever (``-f``/``--follow``) is given two seconds, must still be
  running, and is stopped with Ctrl-C (SIGINT). A block whose commands are
  not installed here (``jq``, ``logger``) is skipped, saying which.
- ``toml``: a config fragment: the loader must accept it, laid over the
  embedded defaults, with no error at all.

At the end the test prints how many blocks it ran and skipped, and why.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests._daemon import DaemonProcess, world
from trio_logd.config import load_all_errors

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN = {"python": "python", "sh": "sh", "bash": "sh", "shell": "sh", "toml": "toml"}
_FENCE = re.compile(r"^```(\S*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
_MARK = re.compile(r"<!--\s*doc-test:\s*(.*?)\s*-->")
_FOLLOW = re.compile(r"(?:^|\s)(?:-f|--follow)(?:\s|$)")
#: Commands a shell block may run here: they touch nothing outside the test's directory.
SAFE_COMMANDS = frozenset(
    {
        "trio-logd",
        "logq",
        "logger",
        "echo",
        "printf",
        "jq",
        "cat",
        "head",
        "tail",
        "grep",
        "wc",
        "id",
    }
)
#: Shell built-ins: nothing to look for on PATH.
_BUILTINS = frozenset({"echo", "printf"})


@dataclass(frozen=True)
class Block:
    """One fenced block: where it is, its language, its text, and a skip reason if marked."""

    doc: Path
    line: int
    lang: str
    text: str
    skip: str | None

    @property
    def name(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"


def _blocks() -> list[Block]:
    found = []
    for doc in DOCS:
        text = doc.read_text()
        for m in _FENCE.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]
            mark = _MARK.fullmatch(before.strip())
            skip = None
            if mark is not None:
                words = mark.group(1)
                skip = words.removeprefix("skip").lstrip(",: ").strip() or "(no reason given)"
            found.append(Block(doc, line, m.group(1).lower(), m.group(2), skip))
    return found


BLOCKS = _blocks()
CODE = [b for b in BLOCKS if b.lang in RUN]
TALLY: Counter[str] = Counter()
REASONS: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def _summary(request: pytest.FixtureRequest) -> Iterator[None]:
    """At the end: how many blocks ran and were skipped, and why."""
    yield
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    lines = [
        f"doc blocks: {TALLY['ran']} ran, {TALLY['skipped']} skipped, "
        f"{len(BLOCKS) - len(CODE)} not code (output or text)",
        *(f"  skipped {reason}" for reason in REASONS),
    ]
    if capture is None:
        return
    with capture.global_and_fixture_disabled():
        print("\n" + "\n".join(lines), file=sys.stderr)


@pytest.fixture(scope="module")
def site() -> Iterator[DaemonProcess]:
    """A daemon in a directory laid out like a checkout (see the module doc)."""
    with world() as root:
        (root / ".venv").symlink_to(sys.prefix)
        (root / "conf").symlink_to(ROOT / "conf")
        d = DaemonProcess(root).start()
        try:
            yield d
        finally:
            d.stop()


def _env(d: DaemonProcess) -> dict[str, str]:
    env = dict(os.environ)
    env["TRIO_LOGD_CONFIG"] = str(d.config)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PAGER"] = "cat"
    env.pop("PYTHONWARNINGS", None)
    return env


def _skip(block: Block, reason: str) -> None:
    TALLY["skipped"] += 1
    REASONS.append(f"{block.name}: {reason}")
    pytest.skip(f"{block.name}: {reason}")


def test_marks_are_well_formed() -> None:
    """Every doc-test mark says skip and why, and stands right before a code block."""
    blocks = _blocks()  # the files as they are now
    marked = {(b.doc, b.line - 1) for b in blocks if b.skip is not None}
    for doc in DOCS:
        for number, line in enumerate(doc.read_text().splitlines(), 1):
            mark = _MARK.fullmatch(line.strip())  # a mark stands alone on its line
            if mark is None:
                continue
            where = f"{doc.relative_to(ROOT)}:{number}"
            assert (doc, number) in marked, f"{where}: a doc-test mark not before a code block"
            assert mark.group(1).startswith("skip"), f"{where}: only 'skip' is known"
    for b in blocks:
        if b.skip is not None:
            assert b.skip != "(no reason given)", f"{b.name}: say why it is not run"


@pytest.mark.parametrize("block", CODE, ids=[b.name for b in CODE])
def test_doc_block_runs(block: Block, site: DaemonProcess) -> None:
    """The block runs as written (see the module doc for what each language must do)."""
    if block.skip is not None:
        _skip(block, block.skip)
    kind = RUN[block.lang]
    if kind == "python":
        _run_python(block, site)
    elif kind == "sh":
        _run_sh(block, site)
    else:
        _run_toml(block)
    TALLY["ran"] += 1


def _run_python(block: Block, d: DaemonProcess) -> None:
    uid = os.getuid()
    before = len(d.records(uid))
    r = subprocess.run(
        [sys.executable, "-c", block.text], cwd=d.root, env=_env(d),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert (r.returncode, r.stderr) == (0, ""), f"{block.name}:\n{r.stderr}"
    d.wait_records(uid, before + 1, where=lambda rec: True)


def _lines(text: str) -> list[str]:
    """Command lines of a shell block: continuations joined, blanks and comments left out."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [ln for ln in joined.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def _commands(line: str) -> list[str]:
    """The command names of a line: first word of each part of its pipeline, of each
    ``$(…)``; a redirection to an absolute path counts as the command ``>/``."""
    names = re.findall(r"\$\(\s*([^\s)]+)", line)
    if re.search(r"`|>\s*/", line):
        names.append(">/ or `")
    for part in re.split(r"\||&&|;", line):
        try:
            words = shlex.split(part, comments=True)
        except ValueError:
            continue
        if words:
            names.append(words[0])
    return names


def _run_sh(block: Block, d: DaemonProcess) -> None:
    env = _env(d)
    lines = _lines(block.text)
    commands = {c for ln in lines for c in _commands(ln)}
    unsafe = sorted(
        c for c in commands if c not in SAFE_COMMANDS and not c.startswith(".venv/bin/")
    )
    assert not unsafe, (
        f"{block.name}: runs {', '.join(unsafe)}, which may change this machine: mark the block "
        "with <!-- doc-test: skip, REASON --> on the line before it (see tests/e2e/test_docs.py)"
    )
    missing = sorted(
        c
        for c in commands
        if c not in _BUILTINS and "/" not in c and shutil.which(c, path=env["PATH"]) is None
    )
    if missing:
        _skip(block, f"needs {', '.join(missing)}, not installed here")
    for line in lines:
        argv = ["bash", "-o", "pipefail", "-c", line]
        if _FOLLOW.search(line.split("#", 1)[0]):
            _follow(block, argv, d, env)
            continue
        r = subprocess.run(
            argv, cwd=d.root, env=env, stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert (r.returncode, r.stderr) == (0, ""), f"{block.name}: {line}\n{r.stderr}"


def _follow(block: Block, argv: list[str], d: DaemonProcess, env: dict[str, str]) -> None:
    """A following command keeps running until Ctrl-C, then exits 0 without complaint."""
    proc = subprocess.Popen(
        argv, cwd=d.root, env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
        preexec_fn=_default_sigint,
    )  # fmt: skip
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=2)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert (proc.returncode, err) == (0, b""), f"{block.name}: {argv[-1]}\n{err!r}"


def _default_sigint() -> None:
    """In the child: Ctrl-C as in a terminal, even where the tests run with it ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _run_toml(block: Block) -> None:
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"doc-block-{os.getpid()}.toml"
    path.write_text(block.text)
    try:
        errors = load_all_errors(path)
    finally:
        path.unlink()
    assert [str(e) for e in errors] == [], block.name


@pytest.mark.parametrize(
    ("line", "commands"),
    [
        ('logger -u run/log.sock "hello"   # a comment', ["logger"]),
        ("logq -o json | jq -s '.[]'", ["logq", "jq"]),
        ("trio-logd check-config x && systemctl reload trio-logd", ["trio-logd", "systemctl"]),
        ('logger "hello from $(id -un)"', ["id", "logger"]),
        ("echo x > /etc/passwd", [">/ or `", "echo"]),
    ],
)
def test_commands_of_a_shell_line(line: str, commands: list[str]) -> None:
    """Every command a line would run is seen, so an unmarked unsafe block is refused."""
    assert _commands(line) == commands
