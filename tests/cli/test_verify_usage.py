"""logq --verify: --uid chooses the uids checked; what selects or shows records is refused.

--verify checks every record of the uids it is given; an option that would
narrow, order or shape the records (matches, -u, --since, -n, a cursor…)
cannot apply, and is a usage error naming it rather than silently ignored.
Also: --list-boots offline names a damaged file it passed over.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.store._damage import DAMAGES, write_store
from trio_logd.cli.logq import main


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """uid 5 untouched; uid 6's oldest rotated file cut in the middle."""
    write_store(tmp_path, "zstd", {5: 25, 6: 25})
    (oldest, *_) = sorted((tmp_path / "6").glob("*.jsonl.zst"))
    DAMAGES["cut in the middle"](oldest)
    return tmp_path


REFUSED = {
    "a match": (["unit=x"], "takes no FIELD=VALUE matches (unit=x)"),
    "-u": (["-u", "x"], "cannot be used with --unit"),
    "--user-unit": (["--user-unit", "x"], "cannot be used with --user-unit"),
    "-t": (["-t", "app"], "cannot be used with --identifier"),
    "--since": (["--since", "-1h"], "cannot be used with --since"),
    "--until": (["-U", "today"], "cannot be used with --until"),
    "-p": (["-p", "err"], "cannot be used with --priority"),
    "--pid": (["--pid", "1"], "cannot be used with --pid"),
    "--grep": (["-g", "x"], "cannot be used with --grep"),
    "-n": (["-n", "5"], "cannot be used with --lines"),
    "-f": (["-f"], "cannot be used with --follow"),
    "-r": (["-r"], "cannot be used with --reverse"),
    "-F": (["-F", "unit"], "cannot be used with --field"),
    "--cursor": (["--cursor", "c"], "cannot be used with --cursor"),
    "-b": (["-b"], "cannot be used with --boot"),
    "--disk-usage": (["--disk-usage"], "cannot be used with --disk-usage"),
    "--socket": (["--socket", "/x"], "cannot be used with --socket"),
    "-q": (["-q"], "cannot be used with --quiet"),
    "-o verbose": (["-o", "verbose"], "as text or json: not -o verbose"),
    "--all with --uid": (["--all", "--uid", "5"], "--all and --uid"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_an_option_verify_cannot_apply_is_refused_by_name(
    store: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 2, naming the option; nothing is checked."""
    argv, says = REFUSED[case]
    assert main(["--verify", "--directory", str(store), *argv]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert says in err


def test_uid_chooses_the_uids_verified(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--uid 5 checks uid 5 alone (OK); without it, uid 6's damaged file fails the store;
    --all is every uid, as without --uid."""
    assert main(["--verify", "--directory", str(store), "--uid", "5"]) == 0
    assert "OK: 1 uid, 3 files, 25 records" in capsys.readouterr().out
    for argv in ([], ["--all"]):
        assert main(["--verify", "--directory", str(store), *argv]) == 1
        out = capsys.readouterr().out
        assert ".jsonl.zst: damaged: cut short: the file ends inside a zstd frame" in out
        assert "FAILED: " in out
        assert "(uid 6); checked 2 uids" in out


def test_list_boots_offline_names_a_damaged_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--list-boots --directory reads the daemon's records around a damaged file, and says
    which one it passed over."""
    uid = tmp_path.stat().st_uid  # the daemon's uid: the owner of log_dir
    write_store(tmp_path, "gzip", {uid: 25})
    (oldest, *_) = sorted((tmp_path / str(uid)).glob("*.jsonl.gz"))
    DAMAGES["garbage"](oldest)
    assert main(["--list-boots", "--directory", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert (
        err
        == f"logq: warning: {oldest}: damaged: cannot be decompressed: Not a gzipped file (b'ga')\n"
    )


DISK_USAGE_REFUSED = {
    k: v
    for k, v in REFUSED.items()
    if k not in ("--disk-usage", "--socket", "--all with --uid", "-o verbose")
}


@pytest.mark.parametrize("case", list(DISK_USAGE_REFUSED))
def test_an_option_disk_usage_cannot_apply_is_refused_by_name(
    store: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--disk-usage counts whole uids: a selecting option is exit 2, named, nothing printed."""
    argv, says = DISK_USAGE_REFUSED[case]
    assert main(["--disk-usage", "--directory", str(store), *argv]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert says in err
    assert err.startswith("logq: --disk-usage counts every file of the uids asked")


def test_disk_usage_takes_uid_and_json(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--disk-usage --uid 5 -o json: uid 5's bytes alone; -o verbose is refused."""
    assert main(["--disk-usage", "--directory", str(store), "--uid", "5", "-o", "json"]) == 0
    out = capsys.readouterr().out
    assert out.startswith('{"uids":[{"uid":5,"bytes":')
    assert main(["--disk-usage", "--directory", str(store), "-o", "verbose"]) == 2
    assert "as text or json: not -o verbose" in capsys.readouterr().err
