"""Reading metric windows with the lake's consistency rule.

The rule every reader applies (this module, the DuckDB/Athena views):

    for each (app_id, window_start): if any ``stage=final`` row exists, use the
    final rows only; otherwise merge the ``stage=partial`` rows.

What one app's read touches (``app_id`` given, the metrics API):

* **finals**: one GET per hour of the range, by name (``layout.final_key``):
  the app's own file, or a 404 when the app has no final rows there. No
  listing: a listing of an hour would return every app's keys. Warm reads are
  conditional GETs (``If-None-Match``: a 304 carries no body), or no request at
  all for an hour that lists no partials when the cached answer (a file or a
  404) was validated less than ``trust_s`` ago. That is safe for ``trust_s``
  below the finalizer's grace period: a final file is (re)written only from
  partials of its hour, and those partials stay until the grace period after
  the write, so a final that changed since the validation still has partials
  listed beside it. (A backfill rewrites finals without partials: a warm
  reader sees it within ``trust_s``.)
* **partials**: one listing per day of the range (the files of the still open
  hours: finalization deletes the rest after the grace period). These files
  mix every app of a batch, sorted by app in row groups of whole apps
  (chalicelib/processing/app_groups.py): of each file one app's read fetches
  the footer (one suffix GET, the whole file when it is small) and, when the
  footer's ``app_id`` statistics say the app may have rows there, one ranged
  GET of those row groups; the app's rows are cached per (file, ETag). So the
  bytes read do not grow with other apps' data; the listing and the footer
  GETs still grow with the number of files of the open hours
  (bench/tenant_scaling.py measures 1 vs 1,001 active apps).

Finalization writes each app's final file with one PUT (atomic) and deletes
the partials it replaced only after a grace period; partials are listed
before the finals are fetched, so a reader sees each (app, window) exactly
once: from partials if it fetched before the app's final file existed (those
partials outlive the read by the grace period), from the final file after
(see chalicelib/lake/finalizer.py). A reader without an app (operators,
tests) lists each day's finals instead, and applies the same rule per app.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from botocore.exceptions import ClientError

from chalicelib.lake import layout
from chalicelib.lake.s3io import list_keys, read_parquet, read_parquet_groups
from chalicelib.lake.sql_sketch import strip_register_columns
from chalicelib.processing import MetricDef, decode_parquet, finalize, merge_partials, partials_schema
from chalicelib.processing import app_groups
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

    def __init__(self, max_entries: int = 4096, clock_s: Callable[[], float] = time.monotonic) -> None:
        self._entries: OrderedDict[tuple[str, str], pa.Table] = OrderedDict()
        self._etags: dict[str, str] = {}
        #: "bucket/key" -> (when it was last checked against S3, its ETag then or None for a 404)
        self._validated: OrderedDict[str, tuple[float, str | None]] = OrderedDict()
        self._max = max_entries
        self._clock_s = clock_s
        self._lock = threading.Lock()

    def validated(self, name: str, etag: str | None) -> None:
        """Record that S3 just answered ``name`` ("bucket/key") with ``etag`` (None: no such key)."""
        with self._lock:
            self._validated[name] = (self._clock_s(), etag)
            self._validated.move_to_end(name)
            while len(self._validated) > self._max:
                self._validated.popitem(last=False)

    def trusted(self, name: str, key: str, max_age_s: float) -> tuple[bool, pa.Table | None]:
        """(True, table or None for a 404) when ``name`` was validated less than ``max_age_s`` ago
        and its table is still cached; else (False, None)."""
        if max_age_s <= 0:
            return False, None
        with self._lock:
            seen = self._validated.get(name)
            if seen is None or self._clock_s() - seen[0] >= max_age_s:
                return False, None
            if seen[1] is None:
                return True, None
            table = self._entries.get((key, seen[1]))
            return (True, table) if table is not None else (False, None)

    def etag(self, key: str) -> str | None:
        """The ETag of the newest cached version of ``key`` (for a conditional GET)."""
        with self._lock:
            etag = self._etags.get(key)
            return etag if etag is not None and (key, etag) in self._entries else None

    def get(self, key: str, etag: str) -> pa.Table | None:
        with self._lock:
            table = self._entries.get((key, etag))
            if table is not None:
                self._entries.move_to_end((key, etag))
            return table

    def put(self, key: str, etag: str, table: pa.Table) -> None:
        with self._lock:
            self._entries[(key, etag)] = table
            self._etags[key] = etag
            while len(self._entries) > self._max:
                (old, old_etag), _ = self._entries.popitem(last=False)
                if self._etags.get(old) == old_etag:
                    del self._etags[old]



DEFAULT_CACHE = FileCache()


def list_stage_day(s3, bucket: str, metric: MetricDef, stage: str, dt: str) -> dict[str, list[tuple[str, str]]]:
    """hour -> [(key, etag)] of the Parquet files of one stage and day."""
    found: dict[str, list[tuple[str, str]]] = {}
    for obj in list_keys(s3, bucket, layout.rollup_prefix(metric, stage, dt)):
        if obj["Key"].endswith(".parquet"):
            hour = layout.parse_partition(obj["Key"])["hour"]
            found.setdefault(hour, []).append((obj["Key"], obj.get("ETag", "")))
    return found


def _missing(exc: ClientError) -> bool:
    return exc.response["Error"]["Code"] in ("NoSuchKey", "404")


def read_app_final(s3, bucket: str, metric: MetricDef, dt: str, hour: str, app_id: str,
                   cache: FileCache, trust_s: float = 0.0) -> pa.Table | None:
    """One app's final rows of one hour, by name; None when the app has none there.

    ``trust_s`` > 0 (only for an hour that lists no partials: see the module docstring) answers
    from the cache without a request when the cached answer is younger than that."""
    key = layout.final_key(metric, dt, hour, app_id)
    name = f"{bucket}/{key}"
    trusted, table = cache.trusted(name, key, trust_s)
    if trusted:
        return table
    cached = cache.etag(key)
    try:
        response = s3.get_object(Bucket=bucket, Key=key, **({"IfNoneMatch": cached} if cached else {}))
    except ClientError as exc:
        if _missing(exc):
            cache.validated(name, None)
            return None
        if exc.response["Error"]["Code"] in ("304", "NotModified"):
            table = cache.get(key, cached)
            cache.validated(name, cached)
            return table
        raise
    table = with_slices(s3, bucket, metric, key, decode_parquet(response["Body"].read()))
    etag = response.get("ETag", "")
    cache.put(key, etag, table)
    cache.validated(name, etag)
    return table


def with_slices(s3, bucket: str, metric: MetricDef, key: str, head: pa.Table) -> pa.Table:
    """A final file's rows; a head of a split (app, hour) (no rows, ``layout.SLICES_KEY`` in its
    metadata) -> the rows of the slices it names, read by name (lake/final_writer.py)."""
    names = (head.schema.metadata or {}).get(layout.SLICES_KEY)
    if names is None:
        return strip_register_columns(head, metric)
    folder = key[:-len(".parquet")] + "/"
    return pa.concat_tables([strip_register_columns(read_parquet(s3, bucket, folder + name), metric)
                             for name in orjson.loads(names)] or [partials_schema(metric).empty_table()])


def _read_file(s3, bucket: str, metric: MetricDef, key: str, etag: str, cache: FileCache) -> pa.Table:
    table = cache.get(key, etag)
    if table is None:
        try:
            table = with_slices(s3, bucket, metric, key, read_parquet(s3, bucket, key))
        except ClientError as exc:
            if _missing(exc):
                raise RollupReadConflict(f"{key} vanished while reading") from exc
            raise
        cache.put(key, etag, table)
    return table


def _read_range(s3, bucket: str, metric: MetricDef, hours: list[tuple[str, str]], pool: ThreadPoolExecutor,
                cache: FileCache, app_id: str | None, trust_s: float = 0.0) -> list[pa.Table]:
    """One table per hour, the rule applied (only ``app_id``'s rows when given)."""
    days = sorted({dt for dt, _ in hours})
    # Partials are listed before finals are read: see the module docstring.
    partial_by_day = dict(zip(days, pool.map(lambda dt: list_stage_day(s3, bucket, metric, "partial", dt), days)))
    wanted = [(dt, hour, key, etag) for dt, hour in hours for key, etag in partial_by_day[dt].get(hour, [])]
    if app_id is None:
        partials = list(pool.map(lambda w: _read_file(s3, bucket, metric, w[2], w[3], cache), wanted))
    else:
        partials = list(pool.map(lambda w: _read_app_partial(s3, bucket, metric, w[2], w[3], app_id, cache), wanted))
    if app_id is not None:
        finals = list(pool.map(lambda h: read_app_final(s3, bucket, metric, *h, app_id, cache,
                                                        0.0 if partial_by_day[h[0]].get(h[1]) else trust_s), hours))
        final_by_hour = {h: [t] for h, t in zip(hours, finals) if t is not None}
    else:
        final_by_hour = _all_finals(s3, bucket, metric, hours, days, pool, cache)
    schema = partials_schema(metric)
    partial_by_hour: dict[tuple[str, str], list[pa.Table]] = {}
    for (dt, hour, _, _), table in zip(wanted, partials):
        partial_by_hour.setdefault((dt, hour), []).append(table)
    return [_prefer_final_flagged(final_by_hour.get(h, []), partial_by_hour.get(h, []), schema) for h in hours]


def _read_app_partial(s3, bucket: str, metric: MetricDef, key: str, etag: str, app_id: str,
                      cache: FileCache) -> pa.Table:
    """One app's rows of a partial file: its footer, then only the row groups that may hold the app
    (see chalicelib/processing/app_groups.py), cached per (file, app, ETag)."""
    name = f"{key}#app={app_id}"
    table = cache.get(name, etag)
    if table is not None:
        return table

    def select(metadata):  # noqa: ANN001, ANN202
        groups = app_groups.groups_of_app(metadata, app_id)
        return groups, app_groups.group_span(metadata, groups)

    try:
        rows, _ = read_parquet_groups(s3, bucket, key, select, app_groups.TAIL_BYTES)
    except ClientError as exc:
        if _missing(exc) or exc.response["Error"]["Code"] in ("PreconditionFailed", "412"):
            raise RollupReadConflict(f"{key} vanished or changed while reading") from exc
        raise
    table = strip_register_columns(rows, metric)
    table = table.filter(pc.equal(table["app_id"], app_id))
    cache.put(name, etag, table)
    return table


def _all_finals(s3, bucket: str, metric: MetricDef, hours: list[tuple[str, str]], days: list[str],
                pool: ThreadPoolExecutor, cache: FileCache) -> dict[tuple[str, str], list[pa.Table]]:
    """Every app's final files of the hours (listed per day)."""
    by_day = dict(zip(days, pool.map(lambda dt: list_stage_day(s3, bucket, metric, "final", dt), days)))
    wanted = [(dt, hour, key, etag) for dt, hour in hours for key, etag in by_day[dt].get(hour, [])
              if layout.final_app(key) is not None]
    tables = list(pool.map(lambda w: _read_file(s3, bucket, metric, w[2], w[3], cache), wanted))
    out: dict[tuple[str, str], list[pa.Table]] = {}
    for (dt, hour, _, _), table in zip(wanted, tables):
        out.setdefault((dt, hour), []).append(table)
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
                        attempts: int = 3, trust_s: float = 0.0) -> WindowRows:
    """Windows with start_ms <= window_start < end_ms (see the module docstring for what is read;
    ``trust_s``: below the finalizer's grace period, 0 to check every final file)."""
    schema = partials_schema(metric)
    hours = partition_hours(start_ms, end_ms)
    cache = DEFAULT_CACHE if cache is None else cache
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for attempt in range(attempts):
            try:
                tables = _read_range(s3, bucket, metric, hours, pool, cache, app_id, trust_s)
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
