"""The lake's copies of the sketches for SQL, and files written before the exact distinct counts."""

from __future__ import annotations

from chalicelib.lake.sql_sketch import lake_schema, register_columns, strip_register_columns
from chalicelib.processing import aggregate, hll, load_metrics
from tests.factories.processing import T0, event, events_table

METRICS = load_metrics()


def test_rollup_files_carry_registers_and_exact_hashes_for_sql():
    partials = aggregate(events_table([event(i, user_id=f"u{i % 3}") for i in range(10)]),
                         [METRICS["event_counts"]], watermark_ms=T0)["event_counts"]
    table = register_columns(partials)
    assert table.schema.names == lake_schema(METRICS["event_counts"]).names
    assert {"user_id__registers", "user_id__hashes", "user_id__exact"} <= set(table.schema.names)
    assert table["user_id__hashes"].to_pylist() == hll.sql_hashes(partials["user_id__hll"]).to_pylist()
    assert len(table["user_id__hashes"][0].as_py()) == 3


def test_a_file_written_before_the_exact_count_reads_with_nulls():
    partials = aggregate(events_table([event(i) for i in range(5)]), [METRICS["event_counts"]],
                         watermark_ms=T0)["event_counts"]
    older = register_columns(partials).drop_columns(["user_id__exact", "user_id__hashes"])
    read = strip_register_columns(older, METRICS["event_counts"])
    assert read.schema == partials.schema
    assert read["user_id__exact"].null_count == read.num_rows
