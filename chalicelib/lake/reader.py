"""Reading the lake back: raw events by time range, rollup files by partition.

Plain boto3 + pyarrow (no s3fs): it works the same against AWS and moto.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from chalicelib.lake import layout
from chalicelib.lake.s3io import list_keys, list_prefixes, read_many, read_parquet  # noqa: F401 - re-exported
from chalicelib.lake.raw_archive import RAW_SCHEMA
from chalicelib.stream import envelope

RAW_WITH_APP = envelope.arrow_schema(timestamps=True)


def hours_between(start_ms: int, end_ms: int) -> list[tuple[str, str]]:
    """The (dt, hour) partitions that hold event times in [start_ms, end_ms)."""
    first = start_ms // layout.HOUR_MS * layout.HOUR_MS
    return [layout.dt_hour(h) for h in range(first, end_ms, layout.HOUR_MS)]


def read_raw_events(s3, bucket: str, start_ms: int, end_ms: int, app_ids: list[str] | None = None) -> pa.Table:
    """Raw events with start_ms <= event_time < end_ms, for every app (or the given ones)."""
    if app_ids is None:
        app_ids = [p.rstrip("/").split("app_id=", 1)[1] for p in list_prefixes(s3, bucket, layout.EVENTS_PREFIX)]
    keys, owners = [], []
    for app_id in app_ids:
        for dt, hour in hours_between(start_ms, end_ms):
            for obj in list_keys(s3, bucket, f"{layout.EVENTS_PREFIX}app_id={app_id}/dt={dt}/hour={hour}/"):
                keys.append(obj["Key"])
                owners.append(app_id)
    tables = []
    for app_id, table in zip(owners, read_many(s3, bucket, keys)):
        table = table.cast(RAW_SCHEMA).add_column(4, "app_id", pa.array([app_id] * table.num_rows, pa.string()))
        tables.append(table)
    if not tables:
        return RAW_WITH_APP.empty_table()
    events = pa.concat_tables(tables)
    start = pa.scalar(start_ms, pa.int64()).cast(RAW_SCHEMA.field("event_time").type)
    end = pa.scalar(end_ms, pa.int64()).cast(RAW_SCHEMA.field("event_time").type)
    return events.filter(pc.and_(pc.greater_equal(events["event_time"], start), pc.less(events["event_time"], end)))


def dedupe_events(events: pa.Table) -> pa.Table:
    """One row per (app_id, event_id): the copy received first."""
    if events.num_rows == 0:
        return events
    indexed = events.append_column("__row", pa.array(range(events.num_rows), pa.int64()))
    ordered = indexed.sort_by([("app_id", "ascending"), ("event_id", "ascending"), ("received_at", "ascending"),
                               ("__row", "ascending")])
    firsts = ordered.group_by(["app_id", "event_id"], use_threads=False).aggregate([("__row", "first")])
    rows = firsts["__row_first"]
    return events.take(rows.take(pc.sort_indices(rows)))
