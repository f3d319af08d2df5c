"""Plans finalization: which (app, hour) units are due (the scheduled ``finalize_windows`` job).

Reads no event data: per closed hour with partials, one listing per metric of the partials, one
listing of the units' bookkeeping (``rollups/_units/dt=/hour=/``), the raw table's manifests
(files and record counts per (app_id, dt, hour)), and the ``app_id`` column of partial files it
has not seen before.

**Due** (exact and cheap): an (app, hour) of a closed hour is due when

* no done marker exists for its current input fingerprint — the raw (app, dt, hour) partition's
  data files (from the table's manifests), the metric definitions and the slice count
  (:func:`units.input_fingerprint`): a late event, a commit or a compaction of *that app's*
  partition changes it, another app's never does; or
* a partial file the planner has not seen before (or whose content changed) holds rows of the
  app — an event landing in a neighbouring hour's partition can still open a window of this hour
  (hopping windows), and only the partials say so. Such an hour waits until the committer has
  archived every record those partials came from.

Apps that are not due are left alone: a late event of one app re-finalizes that app's hour only.

Concurrency: two units of one (app, hour) may run at once (a re-delivered message, a planner run
while a unit is still working). One that read an older snapshot could write its finals after the
newer one wrote its done marker. A unit reads at its start and ends within the worker's timeout,
so for :data:`VERIFY_MS` after a done marker the planner checks that the finals still carry the
ETags the marker recorded (one HEAD per metric), and runs the (app, hour) again if not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import orjson

from chalicelib.lake import layout, units
from chalicelib.lake.final_writer import FinalWriter
from chalicelib.lake.raw_table import RawTable
from chalicelib.lake.s3io import list_keys
from chalicelib.lake.unit_inputs import ArchiveReader
from chalicelib.lake.units import Unit
from chalicelib.processing import MetricSet

#: The key of ``_seen.json`` holding app -> when its units were last sent to the queue.
IN_FLIGHT = "~sent"
#: How long after a done marker the planner checks the finals are still the marker's (the worker's
#: 900 s timeout, plus margin: a unit that started before the marker finished by then).
VERIFY_MS = 20 * 60_000


@dataclass
class HourPlan:
    dt: str
    hour: str
    partials: dict[str, dict[str, str]]          # metric -> {partial key: etag}
    seen: dict[str, dict]                        # the planner's record: key -> {etag, apps, at}
    new: dict[str, dict] = field(default_factory=dict)  # partials not seen before: key -> {etag, apps}
    waiting: bool = False                        # new partials whose records are not archived yet
    units: list[Unit] = field(default_factory=list)
    done_at: dict[str, int] = field(default_factory=dict)  # app -> when its current inputs were finalized
    in_flight: dict[str, int] = field(default_factory=dict)  # app -> when its units were sent (not done yet)


class Planner:
    def __init__(self, s3, bucket: str, metrics: MetricSet, raw: RawTable, reader: ArchiveReader,
                 writer: FinalWriter, clock_ms: Callable[[], int], close_delay_ms: int = 60_000,
                 rows_per_unit: int = units.ROWS_PER_UNIT, resend_ms: int = 0) -> None:
        """``resend_ms``: units sent to the queue less than this long ago are not sent again (the
        worker's visibility timeout: SQS brings a failed one back by itself); 0 when they run here."""
        self._resend_ms = resend_ms
        self._s3, self._bucket, self._metrics, self._raw = s3, bucket, metrics, raw
        self._reader, self._writer, self._clock_ms = reader, writer, clock_ms
        self._close_delay_ms, self._rows_per_unit = close_delay_ms, rows_per_unit

    def plan(self) -> list[HourPlan]:
        """Every closed hour that still has partials, with its due units."""
        by_hour: dict[tuple[str, str], dict[str, dict[str, str]]] = {}
        for metric in self._metrics.metrics:
            for obj in list_keys(self._s3, self._bucket, layout.rollup_prefix(metric, "partial")):
                part = layout.parse_partition(obj["Key"])
                by_hour.setdefault((part["dt"], part["hour"]), {}).setdefault(metric.name, {})[obj["Key"]] = \
                    obj.get("ETag", "")
        now = self._clock_ms()
        hours = sorted(h for h in by_hour if units.hour_closed(self._metrics, *h, now, self._close_delay_ms))
        files = self._raw.partition_files(hours)
        return [self._plan_hour(dt, hour, by_hour[(dt, hour)], files) for dt, hour in hours]

    def _plan_hour(self, dt: str, hour: str, partials: dict[str, dict[str, str]],
                   files: dict[tuple[str, str, str], list[tuple[str, int]]]) -> HourPlan:
        plan = HourPlan(dt, hour, partials, self._reader.seen(dt, hour))
        plan.in_flight = plan.seen.pop(IN_FLIGHT, {}) if self._resend_ms else {}
        current = {k: e for keys in partials.values() for k, e in keys.items()}
        fresh = sorted(k for k, e in current.items() if plan.seen.get(k, {}).get("etag") != e)
        if fresh and not self._reader.archived(fresh):
            plan.waiting = True
            return plan
        for key in fresh:
            apps = self._reader.apps_of(key)
            if apps is not None:
                plan.new[key] = {"etag": current[key], "apps": apps}
        new_apps = {a for entry in plan.new.values() for a in entry["apps"]}
        apps = ({a for a, d, h in files if (d, h) == (dt, hour)} | new_apps
                | {a for k, entry in plan.seen.items() if k in current for a in entry.get("apps", ())})
        done, slices = self._bookkeeping(dt, hour)
        definitions = {m.name: m.fingerprint for m in self._metrics.metrics}
        shares = units.sizing(self._metrics, dt, hour)
        for app in sorted(apps):
            app_files = files.get((app, dt, hour), [])
            n = units.slices_for(sum(c for _, c in app_files), self._rows_per_unit, shares)
            fp = units.input_fingerprint([f for f, _ in app_files], definitions, n)
            at, key = done.get(app, {}).get(fp, (None, None))
            if app not in new_apps and at is not None and (self._clock_ms() - at >= VERIFY_MS
                                                            or self._writer.verified(key)):
                plan.done_at[app] = at
            elif app not in new_apps and at is None and n > 1 and slices.get((app, fp, n), set()) >= set(range(n)) \
                    and self._writer.complete(app, dt, hour, fp, n, self._clock_ms()):
                pass  # every slice was written, the switch was not (two last slices at once): made now
            elif self._resend_ms and self._clock_ms() - plan.in_flight.get(app, -self._resend_ms) < self._resend_ms \
                    and app not in new_apps:
                pass  # sent a moment ago and still working (or coming back from SQS by itself)
            else:
                plan.units += [units.Unit(app, dt, hour, k, n) for k in range(n)]
        return plan

    def _bookkeeping(self, dt: str, hour: str) -> tuple[dict[str, dict[str, tuple[int, str]]], dict[tuple, set[int]]]:
        """app -> {fingerprint: (newest done time, its key)}, and (app, fp, n) -> the slices written."""
        done: dict[str, dict[str, tuple[int, str]]] = {}
        slices: dict[tuple, set[int]] = {}
        for obj in list_keys(self._s3, self._bucket, units.hour_prefix(dt, hour)):
            parsed = units.parse_unit_key(obj["Key"])
            if parsed is None:
                continue
            app, kind, f = parsed
            if kind == "done":
                done.setdefault(app, {})[f["fp"]] = max((f["at"], obj["Key"]),
                                                        done.get(app, {}).get(f["fp"], (f["at"], obj["Key"])))
            else:
                slices.setdefault((app, f["fp"], f["n"]), set()).add(f["k"])
        return done, slices

    def record(self, plan: HourPlan, planned_at: int) -> None:
        """After the hour's units were sent: its new partials are seen (with their apps, and when)."""
        sent = {u.app_id: planned_at for u in plan.units} if self._resend_ms else {}
        if not plan.new and not sent and all(k in plan.seen for keys in plan.partials.values() for k in keys):
            return
        current = {k for keys in plan.partials.values() for k in keys}
        seen: dict = {k: v for k, v in plan.seen.items() if k in current}
        seen.update({k: {**v, "at": planned_at} for k, v in plan.new.items()})
        if self._resend_ms:
            seen[IN_FLIGHT] = {**{a: t for a, t in plan.in_flight.items()
                                  if planned_at - t < self._resend_ms}, **sent}
        self._s3.put_object(Bucket=self._bucket, Key=units.seen_key(plan.dt, plan.hour), Body=orjson.dumps(seen),
                            ContentType="application/json")


class PartialCleaner:
    """Deletes an hour's partials once every app in them is covered by finals, plus a grace period
    longer than any query (a reader that listed a partial before the switch can still read it)."""

    def __init__(self, s3, bucket: str, clock_ms: Callable[[], int], grace_ms: int) -> None:
        self._s3, self._bucket, self._clock_ms, self._grace_ms = s3, bucket, clock_ms, grace_ms

    def deletable(self, plan: HourPlan) -> dict[str, list[str]]:
        """metric -> the partial keys that may go now."""
        if plan.waiting or plan.units or plan.new:
            return {}
        now, out = self._clock_ms(), {}
        for metric, keys in plan.partials.items():
            gone = []
            for key, etag in sorted(keys.items()):
                entry = plan.seen.get(key)
                if entry is None or entry.get("etag") != etag:
                    continue
                at = [plan.done_at.get(app) for app in entry.get("apps", ())]
                if all(t is not None and t >= entry["at"] and now - t >= self._grace_ms for t in at):
                    gone.append(key)
            if gone:
                out[metric] = gone
        return out

    def clean(self, plan: HourPlan) -> dict[str, int]:
        from chalicelib.lake.s3io import delete_keys

        return {metric: delete_keys(self._s3, self._bucket, keys) for metric, keys in self.deletable(plan).items()}
