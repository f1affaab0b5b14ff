"""The names of ``logq``'s output modes (``-o``), apart from their formatters.

``logq``'s argument parser lists them (``--help``, ``--output-fields``'s
check); the formatters (``query.output``) need orjson, which ``logq --help``
must not import (``tests/cli/test_startup.py``).
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (the CLIs' start-up)
if TYPE_CHECKING:
    from typing import Final

__all__ = ["FIELD_FORMATS", "FORMATS"]

#: The ``-o`` choices (journalctl's names; ``short`` first: the default).
FORMATS: Final = ("short", "short-iso", "short-precise", "cat", "json", "json-pretty", "verbose")
#: The modes that show whole records, where ``--output-fields`` picks the fields.
FIELD_FORMATS: Final = ("json", "json-pretty", "verbose")
