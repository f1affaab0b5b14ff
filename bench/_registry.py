"""Finds the scenarios: every module of the bench package that defines ``SCENARIOS``.

A scenario is a function ``(runs: int) -> dict`` that prints its figures and
returns them. A new benchmark is a new module with a ``SCENARIOS`` dict;
nothing else needs editing.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Any

import bench

#: Modules run first, in this order, when no scenario is named; the rest follow by name.
ORDER = ("throughput",)


def scenarios() -> dict[str, Callable[..., dict[str, Any]]]:
    """Name → scenario function, in run order."""
    names = sorted(
        m.name for m in pkgutil.iter_modules(bench.__path__) if not m.name.startswith("_")
    )
    names.sort(key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))
    found: dict[str, Callable[..., dict[str, Any]]] = {}
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        found.update(getattr(module, "SCENARIOS", {}))
    return found
