"""The archive consumer's output: one staged Parquet file per Kinesis batch, every app in it.

The committer (:mod:`chalicelib.lake.raw_commit`) appends staged files to the raw
events Iceberg table every few minutes; nothing reads staged files but the committer.
"""

from __future__ import annotations

import pyarrow as pa

from chalicelib.lake.raw_table import arrow_table_schema, to_table_rows
from chalicelib.processing import encode_parquet


def staged_file(events: pa.Table) -> bytes:
    """Decoded events (instants as int64 ms) -> the Parquet bytes of their staged file.

    Rows are the table's (``dt``/``hour`` included), sorted by app and event time, so the
    committer concatenates files without converting them. A batch without valid events
    still stages an empty file: the committer records the shard's progress from it."""
    if events.num_rows == 0:
        return encode_parquet(arrow_table_schema().empty_table())
    rows = to_table_rows(events).sort_by([("app_id", "ascending"), ("event_time", "ascending")])
    return encode_parquet(rows)
