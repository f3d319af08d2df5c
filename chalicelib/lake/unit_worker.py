"""The finalize worker: computes one unit (every metric of one (app, dt, hour) slice) and writes it.

``FinalizeWorker.run_unit`` is the function; the ``finalize_worker`` Lambda (app.py,
``on_sqs_message``) is a thin adapter over it (:meth:`FinalizeWorker.handle_records`), and backfill,
replay, the privacy and insights features call :meth:`FinalizeWorker.recompute_app_hour`.

Why a unit is exact however often and however concurrently it runs: it reads a snapshot of the
raw table (atomic), computes deterministic rows for the windows it owns, writes them under
deterministic names (a repeat overwrites with the same rows), and records what it covered only
after its files. Two units of one (app, hour) at once each write exact rows of a snapshot; the
planner compares the newest raw files with the done marker and runs the hour again if a unit
finished from an older snapshot. Late counts are carried over as the partials hold them
(at-least-once, like the partials themselves).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Callable

import pyarrow.compute as pc

from chalicelib.lake import units
from chalicelib.lake.final_writer import FinalWriter
from chalicelib.lake.unit_inputs import ArchiveReader
from chalicelib.lake.unit_rows import metric_rows, unit_events
from chalicelib.lake.units import Unit
from chalicelib.processing import MetricSet

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UnitReport:
    unit: Unit
    action: str  # finalized | open | waiting-for-archive
    rows: dict[str, int]
    events: int = 0
    metric_events: dict[str, int] = dataclasses.field(default_factory=dict)
    fingerprint: str = ""
    done: bool = False


class FinalizeWorker:
    """``after_hour(app_id, dt, hour)``: called once an (app, hour)'s finals switched (its last slice
    written), e.g. the persons and sessions of that hour (chalicelib/lake/people_tables.py); a failure
    there fails the unit, which SQS delivers again."""

    def __init__(self, reader: ArchiveReader, writer: FinalWriter, metrics: MetricSet, clock_ms: Callable[[], int],
                 close_delay_ms: int = 60_000, rows_per_unit: int = units.ROWS_PER_UNIT,
                 after_hour: Callable[[str, str, str], object] | None = None) -> None:
        self._reader, self._writer, self._metrics = reader, writer, metrics
        self._clock_ms, self._close_delay_ms, self._rows_per_unit = clock_ms, close_delay_ms, rows_per_unit
        self._after_hour = after_hour

    def is_closed(self, dt: str, hour: str) -> bool:
        """Every window of every metric starting in the hour ended more than the allowed lateness ago."""
        return units.hour_closed(self._metrics, dt, hour, self._clock_ms(), self._close_delay_ms)

    def definitions(self) -> dict[str, str]:
        return {m.name: m.fingerprint for m in self._metrics.metrics}

    def run_unit(self, unit: Unit) -> UnitReport:
        """Compute and write one unit from the raw table now (idempotent)."""
        if not self.is_closed(unit.dt, unit.hour):
            return UnitReport(unit, "open", {})
        files = self._reader.raw_files(unit.app_id, unit.dt, unit.hour)
        fingerprint = units.input_fingerprint([f for f, _ in files], self.definitions(), unit.slices)
        previous = self._reader.previous(unit.app_id, unit.dt, unit.hour)
        seen = self._reader.seen(unit.dt, unit.hour)
        events = unit_events(self._reader.raw_events(unit), self._metrics)  # the one read of raw data
        rows, covers = {}, {}
        for metric in self._metrics.metrics:
            etags = self._reader.partial_etags(metric, unit.dt, unit.hour)
            # Only partials that may hold the app's rows: those the planner saw it in, and any it has not seen.
            mine = [k for k, e in sorted(etags.items())
                    if k not in seen or seen[k].get("etag") != e or unit.app_id in seen[k].get("apps", ())]
            partials = self._reader.partial_rows(mine, unit.app_id)
            # Late counts: of the partials the previous final does not cover, and of that final
            # (which holds those of the partials it covered).
            covered = previous.covers.get(metric.name, {})
            late = [t for k, t in partials.items() if covered.get(k) != etags[k]]
            if metric.name in previous.finals:
                late.append(previous.finals[metric.name])
            rows[metric.name] = metric_rows(metric, events, unit.window_range, list(partials.values()), late)
            covers[metric.name] = etags
        manifest = self._writer.write_unit(unit, fingerprint, rows, covers, self._clock_ms())
        log.info("finalized %s %s/%s slice %d/%d: %d event(s)", unit.app_id, unit.dt, unit.hour, unit.slice,
                 unit.slices, events.num_rows)
        if manifest["done"] and self._after_hour is not None:
            self._after_hour(unit.app_id, unit.dt, unit.hour)
        return UnitReport(unit, "finalized", {n: t.num_rows for n, t in rows.items()}, events.num_rows,
                          {n: int(pc.sum(t["event_count"]).as_py() or 0) for n, t in rows.items()},
                          fingerprint, manifest["done"])

    def units_for(self, app_id: str, dt: str, hour: str) -> list[Unit]:
        """The (app, hour)'s units, sized from the raw table's file statistics."""
        rows = sum(count for _, count in self._reader.raw_files(app_id, dt, hour))
        return units.units_of(app_id, dt, hour, rows, self._metrics, self._rows_per_unit)

    def recompute_app_hour(self, app_id: str, dt: str, hour: str) -> list[UnitReport]:
        """Recompute every metric of one (app_id, dt, hour) from the raw table now and switch its
        finals (all slices, in this process). The narrow entry point for other features (privacy
        deletes, insights, backfill, replay): idempotent; an hour still open is left alone
        (``open``); one whose partials the committer has not yet archived waits
        (``waiting-for-archive``: run it again later)."""
        if not self.is_closed(dt, hour):
            return [UnitReport(Unit(app_id, dt, hour), "open", {})]
        keys = [k for m in self._metrics.metrics for k in self._reader.partial_etags(m, dt, hour)]
        if not self._reader.archived(keys):
            return [UnitReport(Unit(app_id, dt, hour), "waiting-for-archive", {})]
        return [self.run_unit(unit) for unit in self.units_for(app_id, dt, hour)]

    def handle_records(self, records: list[dict]) -> dict:
        """SQS records (the Lambda event's ``Records``) -> the partial batch response: a message that
        is not a unit, or whose unit failed, is reported and comes back (then goes to the DLQ)."""
        failures = []
        for record in records:
            try:
                self.run_unit(Unit.from_message(record["body"]))
            except Exception:  # noqa: BLE001 - any failure of one unit must not fail the others
                log.exception("finalization unit failed: %.200s", record.get("body"))
                failures.append({"itemIdentifier": record["messageId"]})
        return {"batchItemFailures": failures}

