"""Uids for tests that fork children as other users.

A test never assumes that a uid is free (or taken) on the host: a machine
with a second regular user has uid 1001 in its passwd file, a desktop runs
processes as 1000. :func:`free_uids` picks ids that are free as a uid *and*
as a gid (the children use the same number for both): no passwd entry, no
group entry, no subordinate range in ``/etc/subuid``/``/etc/subgid`` that
covers them (the daemon would attribute them to their owner), and no running
process with that uid. They are found once per test module, at import.
"""

from __future__ import annotations

import grp
import os
import pwd

__all__ = ["free_uids", "is_free", "named_uid"]

#: Where the search starts: above the system ids (Debian's FIRST_UID).
FIRST: int = 1000
#: Where it stops: below systemd's dynamic users (61184) and nobody (65534).
LAST: int = 60000


def _subordinate_ranges() -> list[range]:
    ranges: list[range] = []
    for path in ("/etc/subuid", "/etc/subgid"):
        try:
            with open(path) as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        for line in lines:
            parts = line.split(":")
            if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                start, count = int(parts[1]), int(parts[2])
                ranges.append(range(start, start + count))
    return ranges


def _process_uids() -> set[int]:
    uids: set[int] = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("Uid:"):
                        uids.update(int(x) for x in line.split()[1:])
                        break
        except OSError:  # gone meanwhile
            continue
    return uids


def is_free(n: int, *, busy: set[int] | None = None) -> bool:
    """True when *n* has no passwd or group entry, is nobody's subordinate id and runs nothing."""
    try:
        pwd.getpwuid(n)
    except KeyError:
        pass
    else:
        return False
    try:
        grp.getgrgid(n)
    except KeyError:
        pass
    else:
        return False
    if any(n in r for r in _subordinate_ranges()):
        return False
    return n not in (_process_uids() if busy is None else busy)


def free_uids(count: int, *, start: int = FIRST) -> tuple[int, ...]:
    """The first *count* ids from *start* up that are free on this host (see the module doc).

    Raises:
        LookupError: fewer than *count* free ids below :data:`LAST`.
    """
    busy = _process_uids()
    found: list[int] = []
    for n in range(start, LAST):
        if is_free(n, busy=busy):
            found.append(n)
            if len(found) == count:
                return tuple(found)
    msg = f"fewer than {count} free uids between {start} and {LAST}"
    raise LookupError(msg)


def named_uid() -> int | None:
    """A uid that has a passwd entry (the lowest besides root), or ``None`` when there is none."""
    entries = [e.pw_uid for e in pwd.getpwall() if e.pw_uid != 0]
    return min(entries, default=None)
