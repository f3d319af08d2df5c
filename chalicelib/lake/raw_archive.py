"""The raw archive: every valid event as a Parquet row, partitioned by app and hour."""

from __future__ import annotations

import io
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from chalicelib.lake import layout

TS = pa.timestamp("ms", tz="UTC")
#: The archived columns (``app_id``, ``dt`` and ``hour`` live in the path).
RAW_SCHEMA = pa.schema([
    ("event_id", pa.string()),
    ("event_type", pa.string()),
    ("event_time", TS),
    ("received_at", TS),
    ("user_id", pa.string()),
    ("client_event_time", TS),
    ("attributes", pa.string()),  # the JSON object as sent
])


@dataclass(frozen=True)
class PartitionFile:
    app_id: str
    dt: str
    hour: str
    rows: int
    data: bytes


def encode_parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", use_dictionary=True, write_statistics=True)
    return sink.getvalue()


def archive_files(events: pa.Table) -> list[PartitionFile]:
    """Split decoded events (event_time etc. as int64 ms) into one Parquet file per partition."""
    if events.num_rows == 0:
        return []
    hour_ms = pc.multiply(pc.divide(events["event_time"], layout.HOUR_MS), layout.HOUR_MS)
    parts = pa.table({"app_id": events["app_id"], "hour_ms": hour_ms})
    files = []
    for group in parts.group_by(["app_id", "hour_ms"]).aggregate([]).to_pylist():
        mask = pc.and_(pc.equal(events["app_id"], group["app_id"]), pc.equal(hour_ms, group["hour_ms"]))
        chunk = events.filter(mask)
        table = pa.table({
            "event_id": chunk["event_id"],
            "event_type": chunk["event_type"],
            "event_time": chunk["event_time"].cast(pa.int64()).cast(TS),
            "received_at": chunk["received_at"].cast(pa.int64()).cast(TS),
            "user_id": chunk["user_id"],
            "client_event_time": chunk["client_event_time"].cast(pa.int64()).cast(TS),
            "attributes": chunk["attributes"],
        }, schema=RAW_SCHEMA)
        dt, hour = layout.dt_hour(group["hour_ms"])
        files.append(PartitionFile(group["app_id"], dt, hour, table.num_rows, encode_parquet(table)))
    return files
