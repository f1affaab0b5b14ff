"""Fault injection: a store on a small tmpfs that the test can fill and free.

Mounting needs root (CI runs as root); elsewhere the tests that use
``small_fs`` skip and say why.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._daemon import world


class SmallFs:
    """A tmpfs of a few MiB mounted on *root*, with helpers to fill and free it."""

    def __init__(self, root: Path, size: int) -> None:
        self.root = root
        self.size = size
        self._fillers: list[Path] = []

    def free_bytes(self) -> int:
        """Bytes still free on the file system."""
        st = os.statvfs(self.root)
        return st.f_bavail * st.f_frsize

    def fill(self, leave: int = 0) -> None:
        """Write a filler file until at most *leave* bytes are free."""
        path = self.root / f".filler-{len(self._fillers)}"
        self._fillers.append(path)
        chunk = b"\0" * 65536
        with path.open("wb", buffering=0) as f:
            while (free := self.free_bytes()) > leave:
                try:
                    f.write(chunk[: max(1, min(len(chunk), free - leave))])
                except OSError:
                    break

    def free(self) -> None:
        """Remove every filler file."""
        for path in self._fillers:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        self._fillers.clear()


@pytest.fixture
def small_fs() -> Iterator[SmallFs]:
    """An 8 MiB tmpfs (mode 0755) mounted for this test and unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    with world() as d:
        root = d / "fs"
        root.mkdir()
        size = 8 << 20
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(root)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        try:
            yield SmallFs(root, size)
        finally:
            subprocess.run(["umount", "-l", str(root)], check=False)
