"""Coverage-guided fuzzing of the daemon's parsers (``make fuzz``; targets in ``targets.py``)."""

from __future__ import annotations

from typing import Final

#: The targets, by the names ``python -m fuzz`` and ``fuzz/corpus/<name>/`` use.
TARGET_NAMES: Final = ("ingest", "control", "claim")
