"""Reading metric windows with the lake's consistency rule.

The rule every reader applies (this module, the DuckDB/Athena views):

    for each (app_id, window_start): if any ``stage=final`` row exists, use the
    final rows only; otherwise merge the ``stage=partial`` rows.

Finalization writes the final file with one PUT (atomic) and deletes the
partials it replaced only after a grace period, so a reader that lists the
two stages at different moments, in either order, still sees each window
exactly once (see chalicelib/lake/finalizer.py).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
from botocore.exceptions import ClientError

from chalicelib.lake import layout
from chalicelib.lake.reader import list_keys, read_parquet
from chalicelib.lake.sql_sketch import strip_register_columns
from chalicelib.processing import MetricDef, finalize, merge_partials, partials_schema
from chalicelib.processing.partials import estimated_measures


class RollupReadConflict(Exception):
    """A listed file vanished while reading (a concurrent cleanup); read again."""


def partition_hours(start_ms: int, end_ms: int) -> list[tuple[str, str]]:
    first = start_ms // layout.HOUR_MS * layout.HOUR_MS
    return [layout.dt_hour(h) for h in range(first, max(end_ms, first + 1), layout.HOUR_MS)]


def prefer_final(final: pa.Table, partial: pa.Table) -> pa.Table:
    """Final rows, plus the partial rows of windows that have no final row."""
    if final.num_rows == 0 or partial.num_rows == 0:
        return final if partial.num_rows == 0 else partial
    done = final.select(["app_id", "window_start"]).group_by(["app_id", "window_start"]).aggregate([])
    done = done.append_column("__done", pa.array([True] * done.num_rows))
    joined = partial.join(done, ["app_id", "window_start"], join_type="left outer")
    open_rows = joined.filter(pc.is_null(joined["__done"])).drop_columns(["__done"])
    return pa.concat_tables([final, open_rows.select(final.column_names).cast(final.schema)])


class FileCache:
    """Parsed rollup files keyed by (key, ETag): a changed file has a new ETag.

    Finals and partials are written once per name and only replaced whole, so a
    warm Lambda container answers repeated dashboard queries without re-reading
    unchanged files. Bounded by entry count (oldest first out).
    """

    def __init__(self, max_entries: int = 4096) -> None:
        self._entries: OrderedDict[tuple[str, str], pa.Table] = OrderedDict()
        self._max = max_entries
        self._lock = threading.Lock()

    def get(self, key: str, etag: str) -> pa.Table | None:
        with self._lock:
            table = self._entries.get((key, etag))
            if table is not None:
                self._entries.move_to_end((key, etag))
            return table

    def put(self, key: str, etag: str, table: pa.Table) -> None:
        with self._lock:
            self._entries[(key, etag)] = table
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)


DEFAULT_CACHE = FileCache()


def list_stage_day(s3, bucket: str, metric: MetricDef, stage: str, dt: str) -> dict[str, list[tuple[str, str]]]:
    """hour -> [(key, etag)] of the Parquet files of one stage and day."""
    found: dict[str, list[tuple[str, str]]] = {}
    for obj in list_keys(s3, bucket, layout.rollup_prefix(metric.name, stage, dt)):
        if obj["Key"].endswith(".parquet"):
            hour = layout.parse_partition(obj["Key"])["hour"]
            found.setdefault(hour, []).append((obj["Key"], obj.get("ETag", "")))
    return found


def _read_file(s3, bucket: str, metric: MetricDef, key: str, etag: str, cache: FileCache) -> pa.Table:
    table = cache.get(key, etag)
    if table is None:
        try:
            table = strip_register_columns(read_parquet(s3, bucket, key), metric)
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
                raise RollupReadConflict(f"{key} vanished while reading") from exc
            raise
        cache.put(key, etag, table)
    return table


def _read_range(s3, bucket: str, metric: MetricDef, hours: list[tuple[str, str]], pool: ThreadPoolExecutor,
                cache: FileCache) -> list[pa.Table]:
    days = sorted({dt for dt, _ in hours})
    # Partials are listed before finals: with the grace period on deletes the
    # order is not needed for correctness, but it makes a read conflict rarer.
    listings = list(pool.map(lambda job: list_stage_day(s3, bucket, metric, *job),
                             [(stage, dt) for stage in ("partial", "final") for dt in days]))
    partial_by_day = dict(zip(days, listings[:len(days)]))
    final_by_day = dict(zip(days, listings[len(days):]))
    wanted = [(dt, hour, stage, key, etag) for dt, hour in hours
              for stage, by_day in (("partial", partial_by_day), ("final", final_by_day))
              for key, etag in by_day[dt].get(hour, [])]
    tables = list(pool.map(lambda w: _read_file(s3, bucket, metric, w[3], w[4], cache), wanted))
    schema = partials_schema(metric)
    out = []
    for dt, hour in hours:
        parts = {"partial": [], "final": []}
        for (w_dt, w_hour, stage, _, _), table in zip(wanted, tables):
            if (w_dt, w_hour) == (dt, hour):
                parts[stage].append(table)
        out.append(_prefer_final_flagged(parts["final"], parts["partial"], schema))
    return out


def _prefer_final_flagged(final: list[pa.Table], partial: list[pa.Table], schema: pa.Schema) -> pa.Table:
    """Apply the rule to one partition; ``__final`` tells which rows came from the final file."""
    def flagged(tables: list[pa.Table], is_final: bool) -> pa.Table:
        table = pa.concat_tables(tables) if tables else schema.empty_table()
        return table.append_column("__final", pa.array([is_final] * table.num_rows, pa.bool_()))

    return prefer_final(flagged(final, True), flagged(partial, False)).replace_schema_metadata(schema.metadata)


@dataclass(frozen=True)
class WindowRows:
    """Final measures of some windows, the first window still answered from partials, and per row
    the measures whose value is an estimate (``list<string>``, aligned with ``rows``)."""

    rows: pa.Table
    first_open_window_ms: int | None
    estimated: pa.Array | None = None


def read_windows_status(s3, bucket: str, metric: MetricDef, start_ms: int, end_ms: int,
                        app_id: str | None = None, threads: int = 16, cache: FileCache | None = None,
                        attempts: int = 3) -> WindowRows:
    """Windows with start_ms <= window_start < end_ms (listing per day, files read in parallel)."""
    schema = partials_schema(metric)
    hours = partition_hours(start_ms, end_ms)
    cache = DEFAULT_CACHE if cache is None else cache
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for attempt in range(attempts):
            try:
                tables = _read_range(s3, bucket, metric, hours, pool, cache)
                break
            except RollupReadConflict:  # a grace-period cleanup raced this read: list again
                if attempt + 1 == attempts:
                    raise
    rows = pa.concat_tables(tables) if tables else schema.empty_table().append_column(
        "__final", pa.array([], pa.bool_()))
    mask = pc.and_(pc.greater_equal(rows["window_start"], start_ms), pc.less(rows["window_start"], end_ms))
    if app_id is not None:
        mask = pc.and_(mask, pc.equal(rows["app_id"], app_id))
    rows = rows.filter(mask)
    open_rows = rows.filter(pc.invert(rows["__final"]))
    first_open = pc.min(open_rows["window_start"]).as_py() if open_rows.num_rows else None
    rows = rows.drop_columns(["__final"]).replace_schema_metadata(schema.metadata)
    return _results(merge_partials([rows]), first_open)


def _results(merged: pa.Table, first_open: int | None) -> WindowRows:
    """Measures of merged rows, with which are estimates: a distinct count is exact where one final
    row answers the window (its exact count) or where the merged sketch is still an exact set."""
    # A final row without events is a tombstone (a window finalized empty): not a result.
    kept = merged.filter(pc.greater(merged["event_count"], 0))
    return WindowRows(finalize(kept), first_open, estimated_measures(kept))


def read_windows(s3, bucket: str, metric: MetricDef, start_ms: int, end_ms: int,
                 app_id: str | None = None) -> pa.Table:
    """Final measures of the windows with start_ms <= window_start < end_ms."""
    return read_windows_status(s3, bucket, metric, start_ms, end_ms, app_id).rows
