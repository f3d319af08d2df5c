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

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
from botocore.exceptions import ClientError

from chalicelib.lake import layout
from chalicelib.lake.reader import list_keys, read_many
from chalicelib.lake.sql_sketch import strip_register_columns
from chalicelib.processing import MetricDef, finalize, merge_partials, partials_schema


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


def read_stage_tables(s3, bucket: str, metric: MetricDef, stage: str, dt: str, hour: str) -> list[pa.Table]:
    keys = [o["Key"] for o in list_keys(s3, bucket, layout.rollup_prefix(metric.name, stage, dt, hour))
            if o["Key"].endswith(".parquet")]
    try:
        return [strip_register_columns(t, metric) for t in read_many(s3, bucket, keys)]
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
            raise RollupReadConflict(f"{stage} file of {metric} {dt}/{hour} vanished while reading") from exc
        raise


def read_partition(s3, bucket: str, metric: MetricDef, dt: str, hour: str, attempts: int = 3) -> pa.Table:
    """The rows of one (dt, hour) partition with the rule applied (final or partial, never both).

    A ``__final`` boolean column tells which rows came from the final file.
    """
    schema = partials_schema(metric)
    for attempt in range(attempts):
        try:
            # Partials are listed before finals: with the grace period on deletes this
            # order is not needed for correctness, but it makes a conflict rarer.
            partial = read_stage_tables(s3, bucket, metric, "partial", dt, hour)
            final = read_stage_tables(s3, bucket, metric, "final", dt, hour)
            break
        except RollupReadConflict:
            if attempt + 1 == attempts:
                raise
    def flagged(tables: list[pa.Table], is_final: bool) -> pa.Table:
        table = pa.concat_tables(tables) if tables else schema.empty_table()
        return table.append_column("__final", pa.array([is_final] * table.num_rows, pa.bool_()))

    return prefer_final(flagged(final, True), flagged(partial, False)).replace_schema_metadata(schema.metadata)


@dataclass(frozen=True)
class WindowRows:
    """Final measures of some windows, and the first window still answered from partials."""

    rows: pa.Table
    first_open_window_ms: int | None


def read_windows_status(s3, bucket: str, metric: MetricDef, start_ms: int, end_ms: int,
                        app_id: str | None = None, threads: int = 8) -> WindowRows:
    """Windows with start_ms <= window_start < end_ms, partitions read in parallel."""
    schema = partials_schema(metric)
    hours = partition_hours(start_ms, end_ms)
    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(hours)))) as pool:
        tables = list(pool.map(lambda part: read_partition(s3, bucket, metric, *part), hours))
    rows = pa.concat_tables(tables) if tables else schema.empty_table().append_column(
        "__final", pa.array([], pa.bool_()))
    mask = pc.and_(pc.greater_equal(rows["window_start"], start_ms), pc.less(rows["window_start"], end_ms))
    if app_id is not None:
        mask = pc.and_(mask, pc.equal(rows["app_id"], app_id))
    rows = rows.filter(mask)
    open_rows = rows.filter(pc.invert(rows["__final"]))
    first_open = pc.min(open_rows["window_start"]).as_py() if open_rows.num_rows else None
    rows = rows.drop_columns(["__final"]).replace_schema_metadata(schema.metadata)
    return WindowRows(finalize(merge_partials([rows])), first_open)


def read_windows(s3, bucket: str, metric: MetricDef, start_ms: int, end_ms: int,
                 app_id: str | None = None) -> pa.Table:
    """Final measures of the windows with start_ms <= window_start < end_ms."""
    return read_windows_status(s3, bucket, metric, start_ms, end_ms, app_id).rows
