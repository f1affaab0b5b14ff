"""Who is at the other end of a socket: the kernel's credentials and the writer's attribution.

Defined apart from the record's codec (``record.py``, which re-exports them)
so that the CLIs' control client can read a server's ``SO_PEERCRED``
(``peer.read_peer_cred``) without importing the codec and orjson: that
import was most of ``trio-logd status``'s start-up (tests/cli/test_startup.py).
"""

from __future__ import annotations

from typing import Any, Final, NamedTuple

__all__ = ["NO_ATTRIBUTION", "Attribution", "PeerCred"]


class PeerCred(NamedTuple):
    """Credentials as the kernel reported them (never as the peer claimed)."""

    pid: int
    uid: int
    gid: int


class Attribution(NamedTuple):
    """Which service, login and security context a writer belongs to (each ``None``: unknown).

    Read by ``peer.read_process_identity`` (through the writer's pidfd) and
    written by ``record.Stamp`` under these names. ``cgroup`` is the writer's
    cgroup v2 path; ``unit``/``slice`` or ``user_unit``/``user_slice`` are
    read from it (``cgroup.unit_names``); ``loginuid``/``session`` are the
    audit login uid and session id (left out when unset); ``label`` is the
    LSM security label.
    """

    cgroup: str | None = None
    unit: str | None = None
    slice: str | None = None
    user_unit: str | None = None
    user_slice: str | None = None
    loginuid: int | None = None
    session: int | None = None
    label: str | None = None

    def fields(self) -> dict[str, Any]:
        """The known ones, by their record keys (``cgroup``, ``unit`` …)."""
        return {k: v for k, v in zip(self._fields, self, strict=True) if v is not None}


#: Nothing known.
NO_ATTRIBUTION: Final = Attribution()
