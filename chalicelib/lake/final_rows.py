"""The rows a finalization writes: exact distinct counts, one file per app (pure, no I/O)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from chalicelib.lake.sql_sketch import register_columns
from chalicelib.processing import NO_WATERMARK, MetricDef, aggregate, encode_parquet, hll
from chalicelib.processing.decode import EVENT_SCHEMA
from chalicelib.processing.measures import ExactCountState, HllState, exact_counts, exact_sets, metric_states

#: Parquet metadata key of a final file's definition fingerprint.
DEFINITION_KEY = b"eventpipe.definition"



def exact_distinct(events: pa.Table, metric: MetricDef) -> pa.Table:
    """The metric's one-pass partials of ``events``, with the exact distinct count of every row.

    The distinct sketches are built as exact sets of hashes whatever their size
    (``exact_sets``), counted into ``<f>__exact``, then brought back to their
    canonical form (exact up to ``hll.EXACT_MAX`` values, registers above), so
    the final rows merge with any other sketch.
    """
    with exact_sets():
        rows = aggregate(events, [metric], watermark_ms=NO_WATERMARK)[metric.name]
    for field, state in metric_states(metric.measures):
        if state is HllState:
            prefix = field.column_prefix
            sketches = rows.column(state.column(prefix))
            exact_name = ExactCountState.column(prefix)
            rows = rows.set_column(rows.schema.get_field_index(exact_name), rows.schema.field(exact_name),
                                   exact_counts(sketches))
            rows = rows.set_column(rows.schema.get_field_index(state.column(prefix)),
                                   rows.schema.field(state.column(prefix)), hll.canonical(sketches))
    return rows


def raw_to_events(raw: pa.Table) -> pa.Table:
    """Archive rows (timestamps) -> the events table shape the aggregator takes (epoch ms)."""
    columns = {}
    for field in EVENT_SCHEMA:
        column = raw[field.name]
        columns[field.name] = column.cast(pa.int64()) if pa.types.is_timestamp(column.type) else column
    return pa.table(columns, schema=EVENT_SCHEMA)


def split_by_app(final: pa.Table) -> list[tuple[str, pa.Table]]:
    """(app_id, that app's rows) for each app of a partition's final rows, in app order."""
    if final.num_rows == 0:
        return []
    ordered = final.take(pc.sort_indices(final["app_id"]))  # a stable sort: row order kept within an app
    runs = pc.value_counts(ordered["app_id"].combine_chunks())  # in order of first appearance
    out, offset = [], 0
    for run in runs.to_pylist():
        out.append((run["values"], ordered.slice(offset, run["counts"])))
        offset += run["counts"]
    return out


def encode_final(metric: MetricDef, rows: pa.Table) -> bytes:
    """A final file's bytes: the rows with their SQL sketch columns, the definition in the metadata."""
    table = register_columns(rows)
    return encode_parquet(table.replace_schema_metadata(
        {**(table.schema.metadata or {}), DEFINITION_KEY: metric.fingerprint.encode()}))
