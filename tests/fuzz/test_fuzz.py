"""The fuzz targets in the suite: the corpus replayed, a fixed hypothesis budget, a short
atheris run (``make fuzz`` runs longer)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz import TARGET_NAMES
from fuzz.targets import TARGETS

CORPUS = Path(__file__).parents[2] / "fuzz" / "corpus"
#: Seconds of atheris per target inside the suite (plus ~3 s to instrument the imports).
ATHERIS_SECONDS = 2


def corpus(name: str) -> list[Path]:
    return sorted((CORPUS / name).iterdir())


def test_every_target_has_a_name_and_a_corpus() -> None:
    """python -m fuzz knows the targets by the names their corpus directories have."""
    assert tuple(TARGETS) == TARGET_NAMES
    for name in TARGET_NAMES:
        assert any(p.name.startswith("seed-") for p in corpus(name)), name


@pytest.mark.parametrize("name", TARGET_NAMES)
def test_corpus_replays_without_a_finding(name: str) -> None:
    """Every input kept in fuzz/corpus/<target>/ passes the target's invariants."""
    target = TARGETS[name]
    for path in corpus(name):
        target(path.read_bytes())


def _spliced(name: str) -> st.SearchStrategy[bytes]:
    """Corpus inputs with bytes inserted, replaced or cut: near the real senders' shapes."""
    seeds = [p.read_bytes() for p in corpus(name)]

    def splice(seed: bytes, at: int, cut: int, extra: bytes) -> bytes:
        at %= len(seed) + 1
        return seed[:at] + extra + seed[at + cut :]

    return st.one_of(
        st.binary(max_size=512),
        st.builds(
            splice,
            st.sampled_from(seeds),
            st.integers(0, 1 << 16),
            st.integers(0, 16),
            st.binary(max_size=24),
        ),
    )


def _run_under_hypothesis(name: str) -> Callable[[], None]:
    target = TARGETS[name]

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(_spliced(name))
    def run(data: bytes) -> None:
        target(data)

    return run


@pytest.mark.parametrize("name", TARGET_NAMES)
def test_targets_hold_under_hypothesis(name: str) -> None:
    """300 generated inputs per target (random bytes and spliced corpus inputs): no finding."""
    _run_under_hypothesis(name)()


@pytest.mark.skipif(
    importlib.util.find_spec("atheris") is None, reason="atheris not installed (make fuzz needs it)"
)
def test_atheris_short_run(tmp_path: Path) -> None:
    """A few seconds of coverage-guided fuzzing of each target, from the kept corpus, in
    parallel: every run ends without a crash."""
    runs = {}
    for name in TARGET_NAMES:
        work = tmp_path / name
        work.mkdir()
        runs[name] = subprocess.Popen(
            [
                sys.executable, "-m", "fuzz", name, f"-max_total_time={ATHERIS_SECONDS}",
                f"-artifact_prefix={work}/", str(work), str(CORPUS / name),
            ],
            cwd=CORPUS.parents[1],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
    for name, proc in runs.items():
        _out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"{name}: {err[-4000:]}"
        assert "Done " in err, name
        assert not list((tmp_path / name).glob("crash-*")), name
