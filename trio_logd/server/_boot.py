"""The kernel's boot id, for the daemon's ``started`` record (SPEC §9 ``boot_id``).

How this works: Linux gives every boot a random id in
``/proc/sys/kernel/random/boot_id`` (``xxxxxxxx-xxxx-…``, readable by all).
The daemon reads it once, at start, and writes it in journalctl's form
(32 lower-case hex digits, as ``_BOOT_ID``) on its ``started`` record;
``logq --list-boots`` and ``-b`` group the starts by it. Tests simulate
another boot by pointing :data:`BOOT_ID_ENV` at a file of their own (read
only at start, like ``TRIO_LOGD_SUBUID_FILE``).
"""

from __future__ import annotations

import os
from typing import Final

__all__ = ["BOOT_ID_ENV", "BOOT_ID_PATH", "read_boot_id"]

#: The kernel's boot id (procfs; random(4)).
BOOT_ID_PATH: Final = "/proc/sys/kernel/random/boot_id"
#: A file to read the boot id from instead (tests: a second "boot" on one host).
BOOT_ID_ENV: Final = "TRIO_LOGD_BOOT_ID_FILE"
_HEX: Final = frozenset("0123456789abcdef")


def read_boot_id() -> str | None:
    """The boot id as 32 hex digits, or ``None`` when it cannot be read or is not one."""
    path = os.environ.get(BOOT_ID_ENV) or BOOT_ID_PATH
    try:
        with open(path, "rb") as f:
            text = f.read(64).decode("ascii", "replace")
    except OSError:
        return None
    boot_id = text.strip().replace("-", "").lower()
    return boot_id if len(boot_id) == 32 and set(boot_id) <= _HEX else None
