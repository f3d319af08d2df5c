"""Finalization of metric windows: plan, then units (the ``finalize_windows`` schedule), and backfill.

For an hour whose windows all closed more than the allowed lateness ago, each app's windows are
recomputed from the *raw events table* (duplicates removed) and replace the app's partials with
final files (``layout.final_key``). The pieces, one job each:

* :class:`chalicelib.lake.planner.Planner` — which (app, hour) units are due (file statistics and
  listings only, no data reads); :class:`chalicelib.lake.planner.PartialCleaner` — deletes
  partials once every app in them is covered, after a grace period;
* :class:`chalicelib.lake.unit_worker.FinalizeWorker` — one unit: one read of the app's raw rows
  (:class:`chalicelib.lake.unit_inputs.ArchiveReader`), every metric's rows
  (:mod:`chalicelib.lake.unit_rows`, pure), the files (:class:`chalicelib.lake.final_writer.FinalWriter`).

The rule every reader applies is per (app, window): final rows if any exist, else the merged
partials. An app's final file (or the head naming its slices) is written with one PUT, atomic on
S3; partials are deleted only a grace period after the finals covering every app in them, so a
reader that listed them before the switch can still read them — never a moment where a window
counts twice or not at all. Every app with partials in the hour gets a final (a tombstone row when
all its events were duplicates), so no app is left reading partials that are about to go.

:class:`Finalizer` runs a plan: on AWS its units go to the ``finalize-units`` SQS queue (the
``finalize_worker`` function consumes them); tests, the local stack without a queue, replay and
backfill run them in-process (``dispatch=None``). Backfill (:meth:`Finalizer.backfill_partition`)
recomputes an hour that may have no partials at all (a metric added to metrics.yaml, or a changed
definition: its fingerprint names a fresh, empty tree) with the same deterministic keys.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Callable

from chalicelib.lake import layout
from chalicelib.lake.final_rows import DEFINITION_KEY  # noqa: F401 - re-exported
from chalicelib.lake.final_writer import FinalWriter
from chalicelib.lake.planner import HourPlan, PartialCleaner, Planner
from chalicelib.lake.raw_table import RawTable, hours_between
from chalicelib.lake.slice_sweeper import SliceSweeper
from chalicelib.lake.state import StateStore
from chalicelib.lake.unit_inputs import ArchiveReader
from chalicelib.lake.unit_worker import FinalizeWorker, UnitReport
from chalicelib.lake.units import ROWS_PER_UNIT, Unit
from chalicelib.processing import MetricDef, MetricSet

log = logging.getLogger(__name__)


class BackfillRequestError(ValueError):
    """A backfill invocation whose payload names no known metric and hour."""


@dataclass(frozen=True)
class PartitionReport:
    metric: str
    dt: str
    hour: str
    action: str  # finalized | queued | waiting-for-archive | cleaned | backfilled | open
    rows: int = 0
    partials: int = 0
    events: int = 0


#: Queued units are sent again after this long without a done marker (a worker's 900 s timeout, plus margin).
RESEND_MS = 20 * 60_000
#: Sends units to the workers (the SQS queue on AWS); None runs them in this process.
Dispatch = Callable[[list[Unit]], None]


class Finalizer:
    """The scheduled job (plan, dispatch, clean) and backfill, over the planner, worker and cleaner."""

    def __init__(self, s3, bucket: str, state: StateStore, metrics: MetricSet, clock_ms: Callable[[], int],
                 grace_ms: int = 15 * 60_000, close_delay_ms: int = 60_000, *, raw: RawTable,
                 dispatch: Dispatch | None = None, rows_per_unit: int = ROWS_PER_UNIT,
                 after_hour: Callable[[str, str, str], object] | None = None) -> None:
        self._metrics, self._clock_ms, self._dispatch = metrics, clock_ms, dispatch
        reader = ArchiveReader(s3, bucket, metrics, raw, state)
        writer = FinalWriter(s3, bucket, metrics)
        self.worker = FinalizeWorker(reader, writer, metrics, clock_ms, close_delay_ms, rows_per_unit, after_hour)
        # Units sent to the queue are not sent again while a worker may still hold them (its timeout).
        resend_ms = 0 if dispatch is None else RESEND_MS
        self.planner = Planner(s3, bucket, metrics, raw, reader, writer, clock_ms, close_delay_ms, rows_per_unit,
                               resend_ms)
        self.cleaner = PartialCleaner(s3, bucket, clock_ms, grace_ms)
        self.sweeper = SliceSweeper(s3, bucket, metrics, writer, clock_ms, grace_ms)
        self._reader, self._raw = reader, raw
        self._backfilled: dict[tuple[str, str], list[UnitReport]] = {}

    def run(self) -> list[PartitionReport]:
        """Plan every closed hour with partials; dispatch its due units (or run them here); clean
        the partials every app of which is covered. One planner run at a time (reserved
        concurrency 1); the units may run at any concurrency."""
        reports: list[PartitionReport] = []
        for plan in self.planner.plan():
            planned_at = self._clock_ms()
            if plan.waiting:
                reports += self._per_metric(plan, "waiting-for-archive")
                continue
            for metric, count in self.cleaner.clean(plan).items():
                reports.append(PartitionReport(metric, plan.dt, plan.hour, "cleaned", partials=count))
            if not plan.units:
                self.planner.record(plan, planned_at)
                self._sweep(plan.dt, plan.hour)  # the hour is settled: superseded slice files go
                continue
            if self._dispatch is not None:
                self._dispatch(plan.units)
                self.planner.record(plan, planned_at)
                reports += self._per_metric(plan, "queued")
                continue
            done = [self.worker.run_unit(unit) for unit in plan.units]
            self.planner.record(plan, planned_at)
            reports += self._per_metric(plan, "finalized", done)
        return reports

    def _sweep(self, dt: str, hour: str, grace_ms: int | None = None) -> None:
        swept = self.sweeper.sweep(dt, hour, grace_ms=grace_ms)
        if swept:
            log.info("swept %d superseded slice file(s) and manifest(s) of %s/%s", swept, dt, hour)

    def _per_metric(self, plan: HourPlan, action: str, done: list[UnitReport] = ()) -> list[PartitionReport]:
        out = []
        for metric, keys in sorted(plan.partials.items()):
            rows = sum(r.rows.get(metric, 0) for r in done)
            events = sum(r.metric_events.get(metric, 0) for r in done)
            out.append(PartitionReport(metric, plan.dt, plan.hour, action, rows, len(keys), events))
        return out

    # ------------------------------------------------------------------------------ backfill
    def apps_of_hour(self, dt: str, hour: str) -> list[str]:
        """Apps with raw rows the hour's windows read (a window may end in the next hour) or rows in
        its partials (every metric)."""
        start, end = Unit("-", dt, hour).event_range(self._metrics)
        apps = {a for a, _, _ in self._raw.partition_files(hours_between(start, end))}
        for metric in self._metrics.metrics:
            for key in self._reader.partial_etags(metric, dt, hour):
                apps |= set(self._reader.apps_of(key) or ())
        return sorted(apps)

    def backfill_partition(self, metric: MetricDef, dt: str, hour: str) -> PartitionReport:
        """Recompute one closed hour from the raw table and write its finals (idempotent): every
        app and every metric (one read per unit), reported for ``metric``. Works without partials
        (a new metric, or a new definition's empty tree); late counts are carried over as
        finalization keeps them. An open hour is left alone. The metrics of one hour share one
        computation within this object (``eventpipe backfill`` asks hour by hour, metric by metric)."""
        key = (dt, hour)
        if key not in self._backfilled:
            reports = [r for app in self.apps_of_hour(dt, hour) for r in self.worker.recompute_app_hour(app, dt, hour)]
            if not reports and not self.worker.is_closed(dt, hour):
                reports = [UnitReport(Unit("-", dt, hour), "open", {})]
            if reports and all(r.action == "finalized" for r in reports):
                # Recomputed here and now (a backfill, a deletion request): the superseded slices go at
                # once, a reader that loses one re-lists and reads the new head.
                self._sweep(dt, hour, grace_ms=0)
            self._backfilled = {key: reports}
        reports = self._backfilled[key]
        for action in ("open", "waiting-for-archive"):
            if any(r.action == action for r in reports):
                if action == "waiting-for-archive":
                    self._backfilled = {}
                return PartitionReport(metric.name, dt, hour, action)
        partials = len(self._reader.partial_etags(metric, dt, hour))
        return PartitionReport(metric.name, dt, hour, "backfilled", sum(r.rows.get(metric.name, 0) for r in reports),
                               partials, sum(r.metric_events.get(metric.name, 0) for r in reports))

    def backfill_request(self, request: object) -> dict:
        """``{"metric", "dt", "hour"}`` (a ``finalize_windows`` invocation) -> ``{"backfill": report}``."""
        try:
            metric = self._metrics[request["metric"]]  # type: ignore[index]
            dt, hour = str(request["dt"]), str(request["hour"])  # type: ignore[index]
            layout.hour_start_ms(dt, hour)
        except (KeyError, TypeError, ValueError) as exc:
            raise BackfillRequestError(f"a backfill request is {{metric, dt: YYYY-MM-DD, hour: HH}} of a known "
                                       f"metric, not {request!r}") from exc
        report = self.backfill_partition(metric, dt, hour)
        return {"backfill": dataclasses.asdict(report)}
