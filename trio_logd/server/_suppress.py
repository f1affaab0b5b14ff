"""Turn counted drops into ``suppressed`` records (SPEC §6), and keep the counts across restarts.

How this works: whoever drops records (rate limits, quotas, connection caps,
a full disk) only counts them in the daemon's ``SuppressionTracker``. This
task wakes once a second, takes the windows that are due, and files one
``suppressed`` record per uid and reason (and system unit, when the records
came from one: then it carries ``unit``), with that uid, carrying ``count``
and ``reason``. At shutdown the open windows are flushed.

A count is *unreported* from its drop until the ``suppressed`` record that
carries it is stored: while it waits in the tracker, and while its record is
in flight (:class:`DropReports` follows each filed record through its
batch's ``on_stored``). A record that is not stored gives its count back to
the tracker, to be filed again. The reports of a uid cooling down after a
failed write (``UidState.failing``, until ``retry_at``), or whose ``seq``
mark is not known yet, are held back rather than filed: an attempt then
would fail. After the cool-down the report goes out (it is how a quiet uid
finds that writing works again); should it fail, its ``seq`` is given back
(``_writer_task``). Once a second
the unreported counts of every uid with drops for a full disk, and at
shutdown those of every uid, are saved (when they changed) in
``log_dir/.drops/<uid>`` (``store/dropstate.py``: overwritten in place,
so a full disk does not stop it), and the next start reads them back and
files them as soon as it can write: a restart during an outage loses no
count, nor the unit a count came from (its report names it, and ``stats``
counts it for the unit again). A ``kill -9`` loses at most the last second's changes of ``disk``
counts (or repeats a report stored in that second), and the other counts not
reported yet.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import trio

from trio_logd.limits import DROP_REASONS, SUPPRESSION_WINDOW, Suppressed, SuppressionTracker
from trio_logd.server._ingest import IngestContext
from trio_logd.store.dropstate import Unreported
from trio_logd.store.writer import StoreWriter

__all__ = ["DropReports", "serve_suppressions"]

#: How often the task looks for due windows; the tracker reports 5 s after
#: the first drop, so a record is filed 5-6 s after it (SPEC: within 10 s).
TICK: Final = 1.0


class DropReports:
    """The unreported drop counts: in the tracker, in flight, and on disk.

    Args:
        ctx: where ``suppressed`` records are filed (its tracker counts).
        store: where the counts are kept between runs (``None``: memory only).
    """

    def __init__(self, ctx: IngestContext, store: StoreWriter | None = None) -> None:
        self.ctx = ctx
        self.tracker: SuppressionTracker = ctx.suppression
        self.store = store
        #: counts of filed records not settled yet: (uid, reason, unit) -> count
        self._inflight: dict[tuple[int, str, str | None], int] = {}
        #: what each uid's file in log_dir/.drops holds now: counts, seq, units
        self._saved: dict[int, tuple[dict[str, int], int, dict[str, dict[str, int]]]] = {}

    def restore(self, counts: dict[int, Unreported], now: float) -> int:
        """Take the counts the last run left unreported (``StoreWriter.load_drops``).

        They are due at once: filed at the first tick that can write. A
        unit's part is reported naming the unit, and counted in its ``stats``
        (``Limiter.units``) as the last run had counted it.

        Returns:
            How many records they count.
        """
        total = 0
        units = self.ctx.limiter.units
        first = now - SUPPRESSION_WINDOW
        for uid, (by_reason, by_unit) in counts.items():
            self._saved[uid] = (dict(by_reason), 0, {u: dict(c) for u, c in by_unit.items()})
            left = dict(by_reason)
            items = []
            for unit, of_unit in by_unit.items():
                for reason in DROP_REASONS:
                    n = min(of_unit.get(reason, 0), left.get(reason, 0))
                    if n > 0:
                        left[reason] -= n
                        name = units.drop(unit, reason, n)  # None: no room to track it
                        items.append(
                            Suppressed(uid, reason, n, now - SUPPRESSION_WINDOW, now, name)
                        )
            items += [
                Suppressed(uid, reason, n, first, now)
                for reason in DROP_REASONS
                if (n := left.get(reason, 0)) > 0
            ]
            self.tracker.requeue(items)
            total += sum(s.count for s in items)
        return total

    def _held(self, uid: int, now: float) -> bool:
        st = self.ctx.pipeline.uids.get(uid)
        return st is not None and (st.provisional or (st.failing and now < st.retry_at))

    def file(self, items: list[Suppressed], now: float) -> None:
        """File one ``suppressed`` record per item, or hold it back while its uid cannot write.

        Args:
            items: the reports (``SuppressionTracker.due`` or ``flush``).
            now: trio time.
        """
        held = [s for s in items if self._held(s.uid, now)]
        if held:
            self.tracker.requeue(held)
        for s in items:
            if held and self._held(s.uid, now):
                continue
            key = (s.uid, s.reason, s.unit)
            self._inflight[key] = self._inflight.get(key, 0) + s.count
            # drops of a unit's records are reported apart, naming it (`unit`)
            unit = {} if s.unit is None else {"unit": s.unit}
            of_unit = "" if s.unit is None else f" from {s.unit}"
            self.ctx.file_daemon_record(
                s.uid,
                "suppressed",
                on_stored=self._settler(s),
                msg=f"{s.count} records of uid {s.uid}{of_unit} dropped ({s.reason})",
                count=s.count,
                reason=s.reason,
                **unit,
            )

    def _settler(self, s: Suppressed) -> Callable[[int], None]:
        def settled(stored: int) -> None:
            key = (s.uid, s.reason, s.unit)
            left = self._inflight.get(key, 0) - s.count
            if left > 0:
                self._inflight[key] = left
            else:
                self._inflight.pop(key, None)
            if not stored:  # due again at once, filed once the uid can write
                self.tracker.requeue([s])

        return settled

    def unreported(self) -> dict[int, dict[str, int]]:
        """Per uid, reason -> records dropped and not reported by a stored record yet."""
        out: dict[int, dict[str, int]] = {}
        for uid, open_ in self.tracker.open_counts().items():
            out[uid] = {str(reason): n for reason, n in open_.items()}
        for (uid, reason, _unit), n in self._inflight.items():
            counts = out.setdefault(uid, {})
            counts[reason] = counts.get(reason, 0) + n
        return out

    def unreported_units(self) -> dict[int, dict[str, dict[str, int]]]:
        """The part of :meth:`unreported` that came from a named unit: per uid, unit, reason."""
        out: dict[int, dict[str, dict[str, int]]] = {}
        for uid, by_unit in self.tracker.open_unit_counts().items():
            out[uid] = {u: {str(r): n for r, n in c.items()} for u, c in by_unit.items()}
        for (uid, reason, unit), n in self._inflight.items():
            if unit is not None:
                counts = out.setdefault(uid, {}).setdefault(unit, {})
                counts[reason] = counts.get(reason, 0) + n
        return out

    async def save(self, *, final: bool = False) -> None:
        """Save the counts of the uids whose unreported counts changed (in a worker thread).

        Once a second (not *final*) only uids with drops for a full disk are
        saved, without a sync: the other counts are reported within seconds
        by a record that can be written; at shutdown (*final*) every uid, synced
        per ``[store] fsync``.
        """
        store = self.store
        if store is None:
            return
        now = self.unreported()
        if not final:
            now = {uid: c for uid, c in now.items() if "disk" in c}
        of_units = self.unreported_units()
        # a uid with counts is saved whenever it numbered records since (the
        # next run numbers on past them); one whose counts were reported, once
        uids = self.ctx.pipeline.uids
        changed: dict[int, tuple[dict[str, int], int, dict[str, dict[str, int]]]] = {}
        for uid, counts in now.items():
            seq = uids[uid].last_seq if uid in uids else 0
            state = (counts, seq, of_units.get(uid, {}))
            if self._saved.get(uid) != state:
                changed[uid] = state
        for uid, (counts, seq, _units) in self._saved.items():
            if counts and uid not in now and (final or "disk" in counts):
                changed[uid] = ({}, uids[uid].last_seq if uid in uids else seq, {})
        if not changed:
            return

        def write() -> list[int]:
            return [
                uid
                for uid, (c, seq, units) in changed.items()
                if store.save_drops(uid, c, seq, sync=final, units=units)
            ]

        for uid in await trio.to_thread.run_sync(write):
            self._saved[uid] = changed[uid]


async def serve_suppressions(
    reports: DropReports,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """File due ``suppressed`` records and save the unreported counts, forever (cancel to stop)."""
    task_status.started()
    while True:
        await trio.sleep(TICK)
        now = trio.current_time()
        due = reports.tracker.due(now)
        if due:
            reports.file(due, now)
        await reports.save()
