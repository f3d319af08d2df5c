"""The final rows of one unit, every metric, from tables already read (pure: no I/O, no clock).

Inputs: the unit's deduplicated raw events (its event-time range), and per metric the app's
partial rows of the hour (for tombstones) and the rows whose ``late_count`` carries over (the
partials a previous final does not cover, plus that final). Output: per metric the rows of the
windows the unit owns (:attr:`Unit.window_range`), in the partials schema, sorted by key.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from chalicelib.lake.final_rows import exact_distinct, raw_to_events
from chalicelib.lake.sql_sketch import strip_register_columns
from chalicelib.processing import MetricDef, MetricSet, hll, merge_partials, partials_schema, split_too_late

WINDOW_KEYS = ["app_id", "window_start", "window_end"]


def in_windows(rows: pa.Table, start_ms: int, end_ms: int) -> pa.Table:
    """Rows whose window_start is in [start_ms, end_ms)."""
    if rows.num_rows == 0:
        return rows
    return rows.filter(pc.and_(pc.greater_equal(rows["window_start"], start_ms), pc.less(rows["window_start"], end_ms)))


def unit_events(raw: pa.Table, metrics: MetricSet) -> pa.Table:
    """Deduplicated raw rows -> the events the finals aggregate (too-late events dropped)."""
    events, _ = split_too_late(raw_to_events(raw), metrics.settings.max_lateness_ms)
    return events


def metric_rows(metric: MetricDef, events: pa.Table, window_range: tuple[int, int],
                partials: list[pa.Table], late_sources: list[pa.Table]) -> pa.Table:
    """One metric's final rows of the owned windows: exact distinct counts, carried-over late
    counts, and a tombstone for every (app, window) that has partial rows but no final row."""
    start, end = window_range
    rows = in_windows(exact_distinct(events, metric), start, end)
    rows = with_late_counts(metric, rows, [in_windows(strip_register_columns(t, metric), start, end)
                                           for t in late_sources])
    windows = [in_windows(strip_register_columns(t, metric), start, end).select(WINDOW_KEYS) for t in partials]
    return with_tombstones(metric, rows, windows)


def with_late_counts(metric: MetricDef, rows: pa.Table, sources: list[pa.Table]) -> pa.Table:
    """Carry late_count over from the replaced partials (arrival history, which the raw table
    cannot reproduce); at-least-once, like the partials."""
    schema = partials_schema(metric)
    keys = ["app_id", "window_start", *[k.name for k in metric.keys]]
    sources = [s for s in sources if s.num_rows]
    if not sources or rows.num_rows == 0:
        return rows.cast(schema).sort_by([(k, "ascending") for k in keys])
    merged = merge_partials(sources)
    late = merged.select([*keys, "late_count"]).rename_columns([*keys, "__late"])
    joined = rows.drop_columns(["late_count"]).join(late, keys, join_type="left outer")
    out = joined.drop_columns(["__late"]).append_column("late_count", pc.fill_null(joined["__late"], 0))
    return out.select(schema.names).sort_by([(k, "ascending") for k in keys]).cast(schema)


def with_tombstones(metric: MetricDef, rows: pa.Table, partial_windows: list[pa.Table]) -> pa.Table:
    """Add an empty row (event_count 0) for each (app, window) with partials but no final row —
    e.g. all its events were duplicates of events in a neighbouring hour. Readers take the final
    rows of a window when any exist, so the tombstone retires those partials; readers drop rows
    with event_count 0."""
    schema = partials_schema(metric)
    windows = pa.concat_tables([w.cast(schema.empty_table().select(WINDOW_KEYS).schema) for w in partial_windows]
                               or [schema.empty_table().select(WINDOW_KEYS)])
    windows = windows.group_by(WINDOW_KEYS).aggregate([])
    have = rows.select(["app_id", "window_start"]).group_by(["app_id", "window_start"]).aggregate([])
    have = have.append_column("__have", pa.array([True] * have.num_rows, pa.bool_()))
    missing = windows.join(have, ["app_id", "window_start"], join_type="left outer")
    missing = missing.filter(pc.is_null(missing["__have"])).drop_columns(["__have"])
    if missing.num_rows == 0:
        return rows
    missing = missing.sort_by([(k, "ascending") for k in WINDOW_KEYS])
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


def tombstone_only(rows: pa.Table) -> bool:
    """True when no row of a final counts an event (every row a tombstone)."""
    return rows.num_rows == 0 or not pc.any(pc.greater(rows["event_count"], 0)).as_py()
