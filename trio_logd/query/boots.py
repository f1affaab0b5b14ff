"""Boots: the kernel boots the daemon ran in, from its ``started`` records (pure).

How this works: every daemon start files a ``started`` record with the
kernel's ``boot_id`` (``server._boot``) under the daemon's own uid. Only the
daemon writes a top-level ``event`` (a sender's structured data is nested
under ``fields``), so a record with ``event`` and ``app`` ``trio-logd`` is
the daemon's. :func:`boots_of_lines` groups the starts by ``boot_id``: the
starts of one kernel boot (restarts, upgrades) are one boot. A boot spans
from its first start to the next boot's first start; the records of that
span are that boot's (``logq -b``). Starts without a ``boot_id`` (before the
daemon recorded one) begin no boot.

:func:`read_boots` reads them from a store (sync: the daemon's ``boots``
operation and ``logq --directory``).

``-b`` follows journalctl: ``0`` (or nothing) is the last boot, ``-1`` the
one before, ``1`` the first, ``2`` the second; a boot id, optionally with
``±N``, counts from that boot.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson

from trio_logd.errors import StoreError

__all__ = [
    "Boot",
    "boot_window",
    "boots_from_answer",
    "boots_of_lines",
    "daemon_uid",
    "read_boots",
    "select_boot",
]

_EVENT: Final = b'"event":"'
_BOOT_ARG: Final = re.compile(r"(?P<id>[0-9a-fA-F]{32})?(?P<off>[+-]?\d+)?")


@dataclass(frozen=True, slots=True)
class Boot:
    """One kernel boot the daemon ran in.

    Attributes:
        boot_id: the kernel's boot id (32 hex digits).
        first: ``ts`` of the boot's first ``started`` record.
        last: ``ts`` of the boot's last record of the daemon's own
            (``started``, reloads …).
    """

    boot_id: str
    first: str
    last: str

    def as_dict(self) -> dict[str, str]:
        """For the ``boots`` answer."""
        return {"boot_id": self.boot_id, "first": self.first, "last": self.last}


def _daemon_record(line: bytes) -> dict[str, Any] | None:
    if _EVENT not in line:
        return None
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or obj.get("app") != "trio-logd":
        return None
    if not isinstance(obj.get("event"), str) or not isinstance(obj.get("ts"), str):
        return None
    return obj


def boots_of_lines(lines: Iterable[bytes], boots: list[Boot] | None = None) -> list[Boot]:
    """The boots in the daemon's own record lines (oldest first), in their order.

    Args:
        lines: the daemon uid's record lines, in ``seq`` order.
        boots: the boots of the lines before these (they are extended; a
            reader that goes on from where it stopped reads each line once).
    """
    boots = [] if boots is None else boots
    for line in lines:
        obj = _daemon_record(line)
        if obj is None:
            continue
        ts = obj["ts"]
        boot_id = obj.get("boot_id")
        started = obj["event"] == "started" and isinstance(boot_id, str) and boot_id
        if started and (not boots or boots[-1].boot_id != boot_id):
            boots.append(Boot(str(boot_id), ts, ts))
            continue
        if boots:
            boots[-1] = Boot(boots[-1].boot_id, boots[-1].first, max(ts, boots[-1].last))
    return boots


def boots_from_answer(items: object) -> list[Boot]:
    """The boots of a ``boots`` answer (``[{"boot_id", "first", "last"}, …]``).

    Raises:
        ValueError: not such a list.
    """
    if not isinstance(items, list):
        msg = f"boots: expected a list, got {items!r:.80}"
        raise ValueError(msg)
    out = []
    for item in items:
        if not isinstance(item, Mapping) or not all(
            isinstance(item.get(k), str) for k in ("boot_id", "first", "last")
        ):
            msg = f"boots: expected boot_id, first and last, got {item!r:.80}"
            raise ValueError(msg)
        out.append(Boot(item["boot_id"], item["first"], item["last"]))
    return out


def select_boot(boots: Sequence[Boot], arg: str | None) -> int:
    """The index in *boots* of the boot ``-b ARG`` names.

    Args:
        boots: oldest first.
        arg: ``None``/``""``/``0`` the last, ``-N`` N before it, ``N`` (or
            ``+N``) the Nth from the first; ``ID`` that boot, ``ID±N`` N
            after or before it.

    Raises:
        ValueError: a malformed argument, or no such boot (the message says
            how many there are).
    """
    text = (arg or "").strip()
    m = _BOOT_ARG.fullmatch(text)
    if m is None:
        msg = f"--boot {text[:80]!r}: expected a boot id (32 hex digits), ±N, or ID±N"
        raise ValueError(msg)
    off = int(m["off"]) if m["off"] else 0
    if m["id"]:
        wanted = m["id"].lower()
        found = [i for i, b in enumerate(boots) if b.boot_id == wanted]
        if not found:
            msg = f"--boot {text}: no boot {wanted} in the daemon's records (see --list-boots)"
            raise ValueError(msg)
        index = found[-1] + off
    elif off > 0:
        index = off - 1
    else:
        index = len(boots) - 1 + off
    if not 0 <= index < len(boots):
        msg = (
            f"--boot {text or 0}: no such boot: {len(boots)} known from the daemon's "
            "records (see --list-boots)"
        )
        raise ValueError(msg)
    return index


def _minus_one_microsecond(ts: str) -> str:
    t = _dt.datetime.fromisoformat(ts[:-1]) - _dt.timedelta(microseconds=1)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def boot_window(boots: Sequence[Boot], index: int) -> tuple[str, str | None]:
    """The ``ts`` bounds (inclusive) of boot *index*: from its first start to
    just before the next boot's; ``None``: no end (the last boot)."""
    since = boots[index].first
    if index + 1 >= len(boots):
        return since, None
    return since, _minus_one_microsecond(boots[index + 1].first)


def read_boots(log_dir: str, uid: int, damaged: list[StoreError] | None = None) -> list[Boot]:
    """The boots in *uid*'s records (the daemon's), oldest first. Blocks.

    Args:
        log_dir: the store's root.
        uid: the daemon's uid.
        damaged: where damaged files passed over are told (``DamagedFile``).

    Raises:
        StoreError: the records cannot be read.
    """
    from trio_logd.store.files import DamagedFile, read_uid_records  # only this reads files

    found: list[DamagedFile] | None = None if damaged is None else []
    try:
        return boots_of_lines(read_uid_records(log_dir, uid, damaged=found))
    except OSError as exc:
        msg = f"{log_dir}/{uid}: cannot read the daemon's records: {exc.strerror or exc}"
        raise StoreError(msg) from exc
    finally:
        if damaged is not None and found:
            damaged.extend(found)


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
