"""A destination's cursor: how far, per uid, the collector surely has the records.

How this works: the cursor maps each uid to the ``seq`` of the last record
the collector surely has (or that the destination's filter passed over).
It is persisted as one small JSON object (:func:`encode_cursor`,
:func:`decode_cursor`); the daemon writes it atomically, about once a
second while it moves.

TCP has no application-level acknowledgement, so "surely has" is decided
by a :class:`DeliveryLedger`, fed with byte counts and times by its caller:

1. every batch sent is noted with the connection's byte *marker* once its
   bytes are handed to the kernel (:meth:`DeliveryLedger.sent`);
2. a batch is *acknowledged* once the collector's TCP stack has
   acknowledged every byte up to its marker (:meth:`DeliveryLedger.acked`);
3. it is *committed* — the cursor moves past it — once it has been
   acknowledged for ``delay`` seconds with the connection still up
   (:meth:`DeliveryLedger.settle`): time for the collector to take the
   bytes out of its socket buffer and handle them. A connection that ends
   before that makes the batch be sent again (:meth:`DeliveryLedger.rewind`).
   A clean close (the collector read everything up to our FIN) commits
   every acknowledged batch at once (:meth:`DeliveryLedger.settle_acked`).

Batches are noted in the order they are sent on one connection and TCP
acknowledges bytes in order, so they are acknowledged and committed from
the front. Delivery is at least once: a batch the collector got but whose
commit did not happen (the collector or the connection died within
``delay``, the daemon was killed) is sent again, and ``seq`` tells the
copies apart.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

import orjson

__all__ = ["CURSOR_FORMAT", "DeliveryLedger", "decode_cursor", "encode_cursor"]

#: The ``format`` of a cursor file; :func:`decode_cursor` refuses others.
CURSOR_FORMAT: Final = "trio-logd forward cursor v1"


def encode_cursor(destination: str, positions: Mapping[int, int], *, updated: str) -> bytes:
    """The cursor file's bytes: one JSON object, uids in ascending order.

    Args:
        destination: the ``[[forward]]`` name (kept for whoever reads the file).
        positions: uid -> seq of the last record handled.
        updated: when it was written (RFC 3339, for whoever reads the file).

    Returns:
        The JSON text, ending in LF.
    """
    doc = {
        "format": CURSOR_FORMAT,
        "destination": destination,
        "updated": updated,
        "uids": {str(uid): positions[uid] for uid in sorted(positions)},
    }
    return orjson.dumps(doc) + b"\n"


def decode_cursor(data: bytes, *, where: str) -> dict[int, int]:
    """Read a cursor file's bytes back.

    Args:
        data: the file's content.
        where: how to name the file in errors.

    Returns:
        uid -> seq of the last record handled.

    Raises:
        ValueError: not a cursor of this format ("{where}: …").
    """
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        msg = f"{where}: not JSON ({exc})"
        raise ValueError(msg) from None
    if not isinstance(doc, dict) or doc.get("format") != CURSOR_FORMAT:
        msg = f"{where}: not a cursor file (expected format {CURSOR_FORMAT!r})"
        raise ValueError(msg)
    uids = doc.get("uids")
    if not isinstance(uids, dict):
        msg = f"{where}: expected 'uids' to be an object of uid -> seq"
        raise ValueError(msg)
    out: dict[int, int] = {}
    for key, seq in uids.items():
        if not (key.isascii() and key.isdigit()) or type(seq) is not int or seq < 0:
            msg = f"{where}: expected uid -> seq (integers >= 0), got {key!r}: {seq!r}"
            raise ValueError(msg)
        out[int(key)] = seq
    return out


@dataclass(slots=True)
class _Batch:
    marker: int
    uid: int
    last_seq: int
    records: int
    acked_at: float | None = None


class DeliveryLedger:
    """Batches in flight on one destination and the cursor they move.

    Args:
        committed: the cursor to start from (uid -> seq).

    Attributes:
        committed: uid -> seq of the last record the collector surely has
            (or that the filter passed over): what is persisted.
        committed_records: records committed since start.
        changes: counts changes of :attr:`committed` (to know when to save it).
    """

    def __init__(self, committed: Mapping[int, int]) -> None:
        self.committed: dict[int, int] = dict(committed)
        self.committed_records = 0
        self.changes = 0
        self._inflight: deque[_Batch] = deque()
        self._unacked = 0  # index of the first batch not acknowledged yet

    @property
    def inflight(self) -> int:
        """Batches sent and not committed yet."""
        return len(self._inflight)

    def sent(self, marker: int, uid: int, last_seq: int, records: int) -> None:
        """Note a batch handed to the kernel.

        Args:
            marker: the connection's byte count once the batch was written
                (acknowledged when the peer has acknowledged that many).
            uid: whose records.
            last_seq: the seq of the batch's last record (sent or passed over).
            records: records in the batch that were sent.
        """
        self._inflight.append(_Batch(marker, uid, last_seq, records))

    def acked(self, acked: int, now: float) -> None:
        """The peer has acknowledged *acked* bytes (at time *now*)."""
        batches = self._inflight
        i = self._unacked
        while i < len(batches) and batches[i].marker <= acked:
            batches[i].acked_at = now
            i += 1
        self._unacked = i

    def settle(self, now: float, delay: float) -> int:
        """Commit the batches acknowledged at least *delay* seconds before *now*.

        Returns:
            The number of batches committed.
        """
        return self._commit(lambda at: at <= now - delay)

    def settle_acked(self) -> int:
        """Commit every acknowledged batch (after a clean close). Returns the batches."""
        return self._commit(lambda at: True)

    def _commit(self, ripe: Callable[[float], bool]) -> int:
        batches = self._inflight
        done = 0
        while batches and (at := batches[0].acked_at) is not None and ripe(at):
            b = batches.popleft()
            self._unacked -= 1
            if b.last_seq > self.committed.get(b.uid, 0):
                self.committed[b.uid] = b.last_seq
                self.changes += 1
            self.committed_records += b.records
            done += 1
        return done

    def rewind(self) -> int:
        """The connection is gone: forget what was not committed.

        Returns:
            The number of records that will be sent again.
        """
        resent = sum(b.records for b in self._inflight)
        self._inflight.clear()
        self._unacked = 0
        return resent

    def reset_uid(self, uid: int, seq: int) -> None:
        """Set *uid*'s position (a uid whose numbering restarted below the cursor)."""
        self.committed[uid] = seq
        self.changes += 1

    def position(self, uid: int) -> int:
        """The seq after which *uid*'s records are to be sent (its committed position)."""
        return self.committed.get(uid, 0)
