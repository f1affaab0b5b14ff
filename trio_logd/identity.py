"""A uid's names from the user and group databases (NSS).

These look-ups ask NSS (``/etc/passwd``, ``/etc/group``, maybe LDAP or sssd),
which may block for as long as a remote directory takes: nothing on the event
loop calls them; the daemon calls them in worker threads and caches the
answers per uid.
"""

from __future__ import annotations

import grp
import os
import pwd
from typing import Final, NamedTuple

__all__ = ["MAX_UID", "Identity", "lookup_identity"]

#: uid_t is 32 bits and (uid_t)-1 means "no uid" (setresuid(2)).
MAX_UID: Final = (1 << 32) - 2


class Identity(NamedTuple):
    """A uid's names from the user and group databases (``lookup_identity``)."""

    user: str | None
    groups: tuple[str, ...]


def lookup_identity(uid: int) -> Identity:
    """Look up *uid*'s user name and groups (primary and supplementary).

    This asks NSS (``/etc/passwd``, maybe LDAP), which may block: the daemon
    calls it off the event loop and caches the answer per uid.

    Args:
        uid: a kernel-reported uid.

    Returns:
        ``Identity(user, groups)``: ``(None, ())`` for a uid without a
        passwd entry; group ids without a name are left out.
    """
    try:
        entry = pwd.getpwuid(uid)
    except (KeyError, OverflowError):
        return Identity(None, ())
    try:
        gids = os.getgrouplist(entry.pw_name, entry.pw_gid)
    except OSError:
        gids = [entry.pw_gid]
    names: list[str] = []
    for gid in dict.fromkeys(gids):
        try:
            names.append(grp.getgrgid(gid).gr_name)
        except KeyError:
            continue
    return Identity(entry.pw_name, tuple(names))
