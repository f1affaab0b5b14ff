"""logq's words for journalctl's selection, and --disk-usage's sentence."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from trio_logd.cli.logq import build_parser, main, selection_from_args, usage_line
from trio_logd.query.matches import Selection


def _select(*argv: str) -> Selection:
    return selection_from_args(build_parser().parse_intermixed_args(list(argv)))


def test_words_become_the_selection() -> None:
    """Matches between options, -u/--user-unit mangled as journalctl, -t and -F kept."""
    sel = _select("-u", "nginx", "app=web", "-n", "5", "+", "pid=1", "--user-unit", "x*", "-t", "a")
    assert sel == Selection(
        matches=((("app", "web"),), (("pid", "1"),)),
        units=("nginx.service",),
        user_units=("x*",),
        identifiers=("a",),
    )
    assert _select("-F", "unit").field == "unit"


def test_a_path_means_its_executable(tmp_path: Path) -> None:
    """A bare path is exe= that path, resolved (journalctl's _EXE=)."""
    target = tmp_path / "prog"
    target.touch()
    (tmp_path / "link").symlink_to(target)
    assert _select(str(tmp_path / "link")).matches == ((("exe", str(target)),),)


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (("web",), "invalid match 'web'"),
        (("+",), "'\\+' must stand between"),
        (("-F", "unit", "-f"), "--field lists every value"),
        (("-F", "unit", "-n", "3"), "--field lists every value"),
        (("-u", "x" * 300), "'units': expected a list"),
    ],
)
def test_bad_words_are_usage_errors(
    argv: tuple[str, ...], error: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A bad match, a lone '+', -F with -n/-f, an overlong unit: exit 2 naming it."""
    assert main([*argv, "--socket", str(tmp_path / "none")]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert re.search(f"^logq: .*{error}", err)


@pytest.mark.parametrize(
    ("usage", "line"),
    [
        ({1000: 512}, "Records of uid 1000 take up 512B in the file system."),
        ({1000: 1536}, "Records of uid 1000 take up 1.5K in the file system."),
        ({0: 3 << 20, 5: 0}, "Records of 2 uids take up 3.0M in the file system."),
        ({}, "Records of 0 uids take up 0B in the file system."),
    ],
)
def test_disk_usage_sentence(usage: dict[int, int], line: str) -> None:
    """--disk-usage speaks as journalctl's (powers of 1024, one decimal)."""
    assert usage_line(usage) == line
