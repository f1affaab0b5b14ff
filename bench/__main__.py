"""``make bench``: run the benchmarks and print their figures.

    python -m bench                 # every scenario
    python -m bench throughput      # one (or several) by name
    python -m bench --runs 5 throughput

Figures are medians over ``--runs`` runs (the machine is shared and noisy).
"""

from __future__ import annotations

import argparse
import json
import sys

from bench._registry import scenarios


def main(argv: list[str] | None = None) -> int:
    found = scenarios()
    names = list(found)
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "scenario", nargs="*", metavar="SCENARIO", help=f"one of {', '.join(names)} (default: all)"
    )
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--json", action="store_true", help="print one JSON object per scenario")
    args = p.parse_args(argv)
    unknown = [s for s in args.scenario if s not in found]
    if unknown:
        p.error(f"unknown scenario {unknown[0]!r}: expected one of {', '.join(names)}")
    for name in args.scenario or names:
        result = found[name](runs=args.runs)
        if args.json:
            print(json.dumps({"scenario": name, **result}))
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
