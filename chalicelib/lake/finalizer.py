"""Finalization / compaction of metric windows (an ``@app.schedule`` job), and backfill.

For a (metric, dt, hour) partition whose windows all closed more than the
allowed lateness ago, the job recomputes the windows from the *raw events table*
with duplicate ``event_id``s removed, and replaces the partition's partials
with compacted files, **one per app** (``layout.final_key``). The mechanism
that keeps every reader consistent (Athena lists every file under a table's
location; the metrics API GETs one app's final files by name):

1. ``stage=final/dt=/hour=/app-<app>.parquet`` holds *all* of that app's
   windows starting in the hour and is written with one PUT, atomic on S3.
   The rule is per (app, window) — final rows if any exist, else the merged
   partials — so an app's file is the unit that must switch atomically: a
   reader of app A sees either A's final file (every A window of the hour,
   final) or not yet (every A window from partials). Other apps' files being
   written before or after changes nothing for A. Athena and DuckDB, reading
   every app's files, apply the same rule per (app, window).
2. ``_manifest.json`` beside them, written after every app's file, records
   which partial files the finals cover, when they were written and under
   which definition fingerprint (files starting with ``_`` are ignored by
   Athena, DuckDB and pyarrow datasets). Each final file carries the same
   fingerprint in its Parquet metadata (``eventpipe.definition``).
3. Covered partials are deleted only after a grace period longer than any
   query, so a reader that listed the partials before the switch can still
   read them — never a moment where a window counts twice or not at all.
   Every app that has partials in the hour gets a final file (a tombstone row
   when all its events were duplicates), so no app is left reading partials
   that are about to go.

A partial that is not in the manifest (an event that arrived after the
window was finalized) makes the partition due again: it is re-finalized from
the raw table, which also holds that event. The raw table keeps every event, so
a re-finalization writes a file for every app that had one before. Before
finalizing, the job checks that the committer has made durable in the table every
record the partials came from (per-shard progress vs. each partial's last
sequence number), so a lagging archive can never make a finalized window
lose events.

Backfill (:meth:`Finalizer.backfill_partition`) runs the same computation for
an hour that may have no partials at all (a metric added to metrics.yaml, or
a changed definition: its fingerprint names a fresh, empty tree) and writes
the same deterministic keys, so running it twice leaves the same files.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Callable

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from botocore.exceptions import ClientError

from chalicelib.lake import layout
from chalicelib.lake.raw_table import RawTable
from chalicelib.lake.s3io import list_keys, read_many
from chalicelib.lake.final_rows import (DEFINITION_KEY, encode_final, exact_distinct,  # noqa: F401 - re-exported
                                        raw_to_events, split_by_app)
from chalicelib.lake.sql_sketch import strip_register_columns
from chalicelib.lake.state import StateStore
from chalicelib.processing import MetricDef, MetricSet, hll, merge_partials, partials_schema, split_too_late

log = logging.getLogger(__name__)
MANIFEST = "_manifest.json"


class BackfillRequestError(ValueError):
    """A backfill invocation whose payload names no known metric and hour."""


@dataclass(frozen=True)
class PartitionReport:
    metric: str
    dt: str
    hour: str
    action: str  # finalized | waiting-for-archive | cleaned | backfilled | open
    rows: int = 0
    partials: int = 0
    events: int = 0


def manifest_key(metric: MetricDef, dt: str, hour: str) -> str:
    return layout.rollup_prefix(metric, "final", dt, hour) + MANIFEST


class Finalizer:
    def __init__(self, s3, bucket: str, state: StateStore, metrics: MetricSet, clock_ms: Callable[[], int],
                 grace_ms: int = 15 * 60_000, close_delay_ms: int = 60_000, *, raw: RawTable) -> None:
        self._s3, self._bucket, self._state, self._metrics, self._raw = s3, bucket, state, metrics, raw
        self._clock_ms, self._grace_ms, self._close_delay_ms = clock_ms, grace_ms, close_delay_ms

    def run(self) -> list[PartitionReport]:
        """Finalize or clean every due partition of every metric (one run at a time:
        on AWS give the schedule's function a reserved concurrency of 1).

        Hour by hour, so the metrics share one read of the hour's raw events and at
        most one hour of raw events is held in memory."""
        due: dict[tuple[str, str], list[tuple[MetricDef, dict[str, str]]]] = {}
        for metric in self._metrics.metrics:
            for partition, etags in self._partials_by_partition(metric).items():
                due.setdefault(partition, []).append((metric, etags))
        reports = []
        for (dt, hour), work in sorted(due.items()):
            self._raw_cache: dict[tuple[int, int], pa.Table] = {}
            for metric, etags in work:
                report = self.finalize_partition(metric, dt, hour, etags)
                if report is not None:
                    reports.append(report)
        self._raw_cache = {}
        return reports

    def _partials_by_partition(self, metric: MetricDef, dt: str | None = None,
                               hour: str | None = None) -> dict[tuple[str, str], dict[str, str]]:
        """(dt, hour) -> {partial key: ETag}."""
        found: dict[tuple[str, str], dict[str, str]] = {}
        for obj in list_keys(self._s3, self._bucket, layout.rollup_prefix(metric, "partial", dt, hour)):
            part = layout.parse_partition(obj["Key"])
            found.setdefault((part["dt"], part["hour"]), {})[obj["Key"]] = obj.get("ETag", "")
        return found

    def is_closed(self, metric: MetricDef, dt: str, hour: str) -> bool:
        """Every window starting in the hour ended more than the allowed lateness ago."""
        last_window_end = layout.hour_start_ms(dt, hour) + layout.HOUR_MS - metric.window.slide_ms + metric.window.size_ms
        horizon = self._clock_ms() - self._metrics.settings.allowed_lateness_ms - self._close_delay_ms
        return last_window_end <= horizon

    def _manifest(self, metric: MetricDef, dt: str, hour: str) -> dict | None:
        try:
            body = self._s3.get_object(Bucket=self._bucket, Key=manifest_key(metric, dt, hour))["Body"].read()
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
                return None
            raise
        return orjson.loads(body)

    def finalize_partition(self, metric: MetricDef, dt: str, hour: str,
                           partial_etags: dict[str, str]) -> PartitionReport | None:  # noqa: C901
        """Finalize (or clean up) one partition; ``partial_etags`` maps its partial keys to ETags."""
        if not self.is_closed(metric, dt, hour):
            return None
        partial_keys = sorted(partial_etags)
        manifest = self._manifest(metric, dt, hour)
        # A manifest covers its partials only beside the final files written with it: two runs at
        # once can leave one run's final files (some or all) with the other's manifest (then: due again).
        covered: dict[str, str] = manifest["covers"] if manifest and self._pairs(manifest, metric, dt, hour) \
            else {}
        # A covered name with new content (a re-delivered batch rewrote it) is not covered.
        uncovered = [k for k in partial_keys if covered.get(k) != partial_etags[k]]
        if not uncovered:  # nothing new: only the grace-period cleanup may be due
            if manifest and self._clock_ms() - manifest["finalized_at"] >= self._grace_ms:
                deleted = self._delete_unchanged(partial_keys, covered)
                return PartitionReport(metric.name, dt, hour, "cleaned", partials=deleted)
            return None
        if not self._archived(partial_keys):
            return PartitionReport(metric.name, dt, hour, "waiting-for-archive", partials=len(partial_keys))
        # Late counts: the previous final already holds those of the partials it covered.
        late_sources = uncovered + (self._final_keys(metric, dt, hour) if manifest else [])
        final = self.compute_final(metric, dt, hour, late_sources, partial_keys)
        self.write_final(metric, dt, hour, final, partial_etags)
        log.info("finalized %s %s/%s: %d row(s) from the raw table, replacing %d partial file(s)",
                 metric.name, dt, hour, final.num_rows, len(partial_keys))
        return PartitionReport(metric.name, dt, hour, "finalized", final.num_rows, len(partial_keys))

    def backfill_partition(self, metric: MetricDef, dt: str, hour: str) -> PartitionReport:
        """Recompute one closed partition from the raw table and write its finals (idempotent).

        Works without partials (a new metric, or a new definition's empty tree); partials
        present under the current definition are covered by the manifest as finalization
        would, and their late counts are carried over. An open partition is left alone.
        """
        if not self.is_closed(metric, dt, hour):
            return PartitionReport(metric.name, dt, hour, "open")
        partial_etags = self._partials_by_partition(metric, dt, hour).get((dt, hour), {})
        partial_keys = sorted(partial_etags)
        if partial_keys and not self._archived(partial_keys):
            return PartitionReport(metric.name, dt, hour, "waiting-for-archive", partials=len(partial_keys))
        if getattr(self, "_raw_hour", None) != (dt, hour):  # metrics of one hour share its raw events
            self._raw_cache, self._raw_hour = {}, (dt, hour)
        # Late counts as finalization keeps them: from the partials a previous final does not cover,
        # and from that final (which holds those of the partials it covered).
        manifest = self._manifest(metric, dt, hour)
        covered: dict[str, str] = manifest["covers"] if manifest and self._pairs(manifest, metric, dt, hour) else {}
        late_sources = [k for k in partial_keys if covered.get(k) != partial_etags[k]]
        late_sources += self._final_keys(metric, dt, hour) if manifest else []
        final = self.compute_final(metric, dt, hour, late_sources, partial_keys)
        self.write_final(metric, dt, hour, final, partial_etags)
        events = int(pc.sum(final["event_count"]).as_py() or 0) if final.num_rows else 0
        return PartitionReport(metric.name, dt, hour, "backfilled", final.num_rows, len(partial_keys), events)

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

    # ------------------------------------------------------------------ writes (layout of the finals)
    def write_final(self, metric: MetricDef, dt: str, hour: str, final: pa.Table, covers: dict[str, str]) -> None:
        """One final file per app (one PUT each), then the partition's manifest."""
        finals: dict[str, str] = {}
        for app_id, rows in split_by_app(final):
            key = layout.final_key(metric, dt, hour, app_id)
            finals[key] = self._s3.put_object(Bucket=self._bucket, Key=key, Body=encode_final(metric, rows)).get("ETag")
        self._s3.put_object(Bucket=self._bucket, Key=manifest_key(metric, dt, hour), Body=orjson.dumps(
            {"finalized_at": self._clock_ms(), "covers": covers, "rows": final.num_rows,
             "definition": metric.fingerprint, "finals": finals}), ContentType="application/json")

    def _final_keys(self, metric: MetricDef, dt: str, hour: str) -> list[str]:
        return [o["Key"] for o in list_keys(self._s3, self._bucket, layout.rollup_prefix(metric, "final", dt, hour))
                if layout.final_app(o["Key"]) is not None]

    def _pairs(self, manifest: dict, metric: MetricDef, dt: str, hour: str) -> bool:
        """The partition's final files are exactly the ones written with this manifest (key and
        ETag); manifests from before ``finals`` was recorded are trusted."""
        recorded = manifest.get("finals")
        if recorded is None:
            return True
        current = {o["Key"]: o.get("ETag") for o in list_keys(self._s3, self._bucket,
                                                               layout.rollup_prefix(metric, "final", dt, hour))
                   if layout.final_app(o["Key"]) is not None}
        return current == recorded

    def _archived(self, partial_keys: list[str]) -> bool:
        """True when the raw table holds every record the partials came from (the committer's progress)."""
        progress: dict[str, int | None] = {}
        for key in partial_keys:
            meta = self._s3.head_object(Bucket=self._bucket, Key=key)["Metadata"]
            shard = meta["shard-id"]
            if shard not in progress:
                progress[shard] = self._state.archived_through(shard)
            if progress[shard] is None or progress[shard] < int(meta["last-sequence"]):
                return False
        return True

    def compute_final(self, metric: MetricDef, dt: str, hour: str, late_sources: list[str],
                      partial_keys: list[str]) -> pa.Table:
        """Exact, duplicate-free window rows of the partition, from the raw table."""
        hour_start = layout.hour_start_ms(dt, hour)
        # Windows starting in this hour hold events up to the end of the last window.
        start, end = hour_start, hour_start + layout.HOUR_MS - metric.window.slide_ms + metric.window.size_ms
        # Each (app, event_id) once, by the duplicate rule compaction applies too (by arrival:
        # a copy re-sent with shifted event times is dropped whichever hour it landed in).
        raw = self._deduped_raw(start, end)
        in_range = pc.and_(pc.greater_equal(raw["event_time"].cast(pa.int64()), start),
                           pc.less(raw["event_time"].cast(pa.int64()), end))
        if not pc.all(in_range).as_py():  # (no copy of the hour's events when all of them are in range)
            raw = raw.filter(in_range)
        events, _ = split_too_late(raw_to_events(raw), self._metrics.settings.max_lateness_ms)
        rows = exact_distinct(events, metric)
        rows = rows.filter(pc.and_(pc.greater_equal(rows["window_start"], hour_start),
                                   pc.less(rows["window_start"], hour_start + layout.HOUR_MS)))
        return self._with_tombstones(metric, self._with_late_counts(metric, rows, late_sources), partial_keys)

    def _deduped_raw(self, start_ms: int, end_ms: int) -> pa.Table:
        """The deduplicated raw events of a range, read once per hour for every metric: over the widest
        range any metric needs (callers keep their own range), so an hour's events are held once."""
        cache = getattr(self, "_raw_cache", {})
        for (start, end), table in cache.items():
            if start <= start_ms and end_ms <= end:
                return table
        widest = max(m.window.size_ms - m.window.slide_ms for m in self._metrics.metrics)
        hour_start = start_ms // layout.HOUR_MS * layout.HOUR_MS
        start, end = start_ms, max(end_ms, hour_start + layout.HOUR_MS + widest)
        cache.clear()
        cache[(start, end)] = self._raw.read_deduped(start, end)
        self._raw_cache = cache
        return cache[(start, end)]

    def _with_tombstones(self, metric: MetricDef, rows: pa.Table, partial_keys: list[str]) -> pa.Table:
        """Add an empty row (event_count 0) for each (app, window) that has partials but
        no final row — e.g. all its events were duplicates of events in a neighbouring
        hour. Readers take the final rows of a window when any exist, so the tombstone
        retires those partials; readers drop rows with event_count 0."""
        schema = partials_schema(metric)
        windows = pa.concat_tables([strip_register_columns(t, metric).select(["app_id", "window_start", "window_end"])
                                    for t in read_many(self._s3, self._bucket, partial_keys)]
                                   or [schema.empty_table().select(["app_id", "window_start", "window_end"])])
        windows = windows.group_by(["app_id", "window_start", "window_end"]).aggregate([])
        have = rows.select(["app_id", "window_start"]).group_by(["app_id", "window_start"]).aggregate([])
        have = have.append_column("__have", pa.array([True] * have.num_rows, pa.bool_()))
        missing = windows.join(have, ["app_id", "window_start"], join_type="left outer")
        missing = missing.filter(pc.is_null(missing["__have"])).drop_columns(["__have"])
        if missing.num_rows == 0:
            return rows
        empty_sketch = hll.sketch_of([])
        columns = {}
        for field in schema:
            if field.name in missing.column_names:
                columns[field.name] = missing[field.name]
            elif field.name.endswith("__hll"):
                columns[field.name] = pa.array([empty_sketch] * missing.num_rows, field.type)
            elif not field.nullable:
                columns[field.name] = pa.array([0] * missing.num_rows, field.type)
            else:
                columns[field.name] = pa.nulls(missing.num_rows, field.type)
        return pa.concat_tables([rows, pa.table(columns, schema=schema)])

    def _with_late_counts(self, metric: MetricDef, rows: pa.Table, late_sources: list[str]) -> pa.Table:
        """Carry late_count over from the replaced partials (it is arrival history,
        which the raw table cannot reproduce); at-least-once, like the partials."""
        sources = read_many(self._s3, self._bucket, late_sources)
        schema = partials_schema(metric)
        if not sources or rows.num_rows == 0:
            return rows.cast(schema)
        merged = merge_partials([strip_register_columns(t, metric) for t in sources])
        keys = ["app_id", "window_start", *[k.name for k in metric.keys]]
        late = merged.select([*keys, "late_count"]).rename_columns([*keys, "__late"])
        joined = rows.drop_columns(["late_count"]).join(late, keys, join_type="left outer")
        late_count = pc.fill_null(joined["__late"], 0)
        out = joined.drop_columns(["__late"]).append_column("late_count", late_count)
        return out.select(schema.names).sort_by([(k, "ascending") for k in keys]).cast(schema)

    def _delete_unchanged(self, keys: list[str], covered: dict[str, str]) -> int:
        """Delete the covered partials whose content is still the covered one."""
        unchanged = []
        for key in keys:
            try:
                etag = self._s3.head_object(Bucket=self._bucket, Key=key)["ETag"]
            except ClientError as exc:
                if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
                    continue
                raise
            if etag == covered.get(key):
                unchanged.append(key)
        self._delete(unchanged)
        return len(unchanged)

    def _delete(self, keys: list[str]) -> None:  # noqa: D102
        for i in range(0, len(keys), 1000):
            self._s3.delete_objects(Bucket=self._bucket, Delete={
                "Objects": [{"Key": k} for k in keys[i:i + 1000]], "Quiet": True})
