"""``python -m fuzz TARGET [libFuzzer options] [corpus dirs]``: fuzz one target with atheris.

Targets are in ``fuzz/targets.py`` (``ingest``, ``control``, ``claim``).
Options are libFuzzer's (``-max_total_time=60``, ``-runs=N``,
``-merge=1``, ``-artifact_prefix=DIR/``); the first corpus directory
receives new inputs, the others only seed. ``make fuzz`` runs every target
for ``FUZZ_SECONDS``; a crash leaves its input in ``.fuzz-work/`` and the
exit status non-zero. Replay an input with ``python -m fuzz TARGET FILE``.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    from fuzz import TARGET_NAMES  # not fuzz.targets: it must be imported instrumented

    if len(argv) < 2 or argv[1] not in TARGET_NAMES:
        print(__doc__.strip(), file=sys.stderr)
        print(f"\ntargets: {', '.join(TARGET_NAMES)}", file=sys.stderr)
        return 2
    try:
        import atheris  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError:
        print(
            "fuzz: atheris is not installed (pip install atheris; CPython 3.11 wheels exist);"
            " tests/fuzz still replays the corpus and runs the targets under hypothesis",
            file=sys.stderr,
        )
        return 1
    # Coverage of the daemon's own code guides the mutations (orjson is C).
    with atheris.instrument_imports(include=["trio_logd", "fuzz"]):
        from fuzz.targets import TARGETS

    # libFuzzer runs argv[0] through sh for -merge=1 and -fork: name the module run
    self_command = f"{sys.executable} -m fuzz {argv[1]}"
    atheris.Setup([self_command, *argv[2:]], TARGETS[argv[1]])
    atheris.Fuzz()
    return 0  # not reached: libFuzzer exits the process


if __name__ == "__main__":
    sys.exit(main(sys.argv))
