"""Disk usage of uids' files, read from the store's directories (``logq --disk-usage -D``).

The daemon answers ``--disk-usage`` from its writer's ledger; offline, this
adds up the same files: every regular file in a uid's directory (current and
rotated record files, their hash chains, torn tails kept aside).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable

from trio_logd.errors import StoreError
from trio_logd.store.files import list_uids

__all__ = ["disk_usage"]


def disk_usage(log_dir: str, uids: Iterable[int] | None) -> dict[int, int]:
    """Bytes of each uid's files under *log_dir*.

    Args:
        log_dir: the store's root.
        uids: the uids to count (a uid without a directory counts 0);
            ``None`` for every uid with a directory.

    Raises:
        StoreError: *log_dir* or a uid's directory cannot be read.
    """
    if uids is None:
        uids = list_uids(log_dir)
    out: dict[int, int] = {}
    for uid in uids:
        where = os.path.join(log_dir, str(uid))
        total = 0
        try:
            with os.scandir(where) as entries:
                for entry in entries:
                    st = entry.stat(follow_symlinks=False)
                    if stat.S_ISREG(st.st_mode):
                        total += st.st_size
        except FileNotFoundError:
            pass
        except OSError as exc:
            msg = f"cannot read {where}: {exc.strerror or exc}"
            raise StoreError(msg) from exc
        out[uid] = total
    return out
