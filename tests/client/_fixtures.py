"""Fixtures shared by the client's end-to-end tests."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from tests._daemon import poll


def _sender_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "trio-logd-client"]


@pytest.fixture(autouse=True)
def no_sender_thread_left() -> Iterator[None]:
    """Every client a test makes is closed by its end: no sender thread keeps running."""
    assert _sender_threads() == []
    yield
    poll(lambda: not _sender_threads(), timeout=5)
