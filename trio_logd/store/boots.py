"""Reading the boots from the store (sync): the daemon's ``started`` records.

One plain function for the ``boots`` control operation and for ``logq
--list-boots``/``-b`` with ``--directory``; ``query.boots`` is the logic.
"""

from __future__ import annotations

import os

from trio_logd.errors import StoreError
from trio_logd.query.boots import Boot, boots_of_lines
from trio_logd.store.reader import read_uid_records

__all__ = ["daemon_uid", "read_boots"]


def read_boots(log_dir: str, uid: int) -> list[Boot]:
    """The boots in *uid*'s records (the daemon's), oldest first. Blocks.

    Raises:
        StoreError: the records cannot be read.
    """
    try:
        return boots_of_lines(read_uid_records(log_dir, uid))
    except OSError as exc:
        msg = f"{log_dir}/{uid}: cannot read the daemon's records: {exc.strerror or exc}"
        raise StoreError(msg) from exc


def daemon_uid(log_dir: str) -> int:
    """The uid a store's daemon files its own records under: the owner of *log_dir*.

    Raises:
        StoreError: *log_dir* cannot be looked at.
    """
    try:
        return os.stat(log_dir).st_uid
    except OSError as exc:
        msg = f"{log_dir}: {exc.strerror or exc}"
        raise StoreError(msg) from exc
