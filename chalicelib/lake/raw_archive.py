"""The raw archive: every valid event as a Parquet row, partitioned by app and hour."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from chalicelib.lake import layout
from chalicelib.processing import encode_parquet
from chalicelib.stream import envelope

#: The archived columns (``app_id``, ``dt`` and ``hour`` live in the path): the envelope, instants as timestamps.
RAW_SCHEMA = envelope.arrow_schema(timestamps=True, without=(envelope.PARTITION_FIELD,))


@dataclass(frozen=True)
class PartitionFile:
    app_id: str
    dt: str
    hour: str
    rows: int
    data: bytes


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
        table = pa.table([chunk[f.name].cast(pa.int64()).cast(f.type) if pa.types.is_timestamp(f.type)
                          else chunk[f.name] for f in RAW_SCHEMA], schema=RAW_SCHEMA)
        dt, hour = layout.dt_hour(group["hour_ms"])
        files.append(PartitionFile(group["app_id"], dt, hour, table.num_rows, encode_parquet(table)))
    return files
