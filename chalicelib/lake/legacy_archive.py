"""The raw archive as it was before the Iceberg table: Hive-layout Parquet under ``events/``.

``events/app_id=<app>/dt=YYYY-MM-DD/hour=HH/<shard>-<first seq>.parquet`` (``app_id``
only in the path). Nothing writes it any more; ``eventpipe lake migrate`` reads it
(:func:`read_hour`) and appends it to the raw events table.
"""

from __future__ import annotations

import pyarrow as pa

from chalicelib.lake import layout
from chalicelib.lake.s3io import list_keys, list_prefixes, read_many
from chalicelib.stream import envelope

#: The columns of an archived file (``app_id``, ``dt`` and ``hour`` are in the path).
RAW_SCHEMA = envelope.arrow_schema(timestamps=True, without=(envelope.PARTITION_FIELD,))
RAW_WITH_APP = envelope.arrow_schema(timestamps=True)


def archived_hours(s3, bucket: str) -> list[tuple[str, str, str]]:
    """Every (app_id, dt, hour) the old archive holds."""
    found = []
    for app_prefix in list_prefixes(s3, bucket, layout.EVENTS_PREFIX):
        app_id = app_prefix.rstrip("/").split("app_id=", 1)[1]
        for day_prefix in list_prefixes(s3, bucket, app_prefix):
            dt = day_prefix.rstrip("/").split("dt=", 1)[1]
            for hour_prefix in list_prefixes(s3, bucket, day_prefix):
                found.append((app_id, dt, hour_prefix.rstrip("/").split("hour=", 1)[1]))
    return found


def hour_keys(s3, bucket: str, app_id: str, dt: str, hour: str) -> list[str]:
    return [o["Key"] for o in list_keys(s3, bucket, f"{layout.EVENTS_PREFIX}app_id={app_id}/dt={dt}/hour={hour}/")]


def read_hour(s3, bucket: str, app_id: str, keys: list[str]) -> pa.Table:
    """The rows of one app's archived files, ``app_id`` added from the path (readers' schema)."""
    tables = [t.cast(RAW_SCHEMA).add_column(4, "app_id", pa.array([app_id] * t.num_rows, pa.string()))
              for t in read_many(s3, bucket, keys)]
    return pa.concat_tables(tables) if tables else RAW_WITH_APP.empty_table()
