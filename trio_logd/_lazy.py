"""A package's names imported on first use (a module ``__getattr__``, PEP 562).

``client/__init__.py`` and ``query/__init__.py`` re-export names whose
modules are heavy (trio, structlog; re2, orjson): a CLI that imports one
light module of the package must not pay for them (``tests/cli/test_startup.py``).
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (the CLIs' start-up)
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = ["lazy_getattr"]


def lazy_getattr(
    package: str, modules: Mapping[str, str], namespace: dict[str, object]
) -> Callable[[str], object]:
    """A module ``__getattr__`` for *package* that imports a name from its module on first use.

    Args:
        package: the package's ``__name__`` (for the error message).
        modules: each lazy name and the module that defines it.
        namespace: the package's ``globals()``: a name, once imported, is
            put there, so later look-ups do not come back here.
    """

    def __getattr__(name: str) -> object:
        module = modules.get(name)
        if module is None:
            msg = f"module {package!r} has no attribute {name!r}"
            raise AttributeError(msg)
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    return __getattr__
