"""Glue catalog: tables for the raw events and each metric, with partition projection.

Partition projection lets Athena compute partitions from the query instead
of a crawler or MSCK REPAIR: a partition written a second ago is queryable.
``app_id`` on the raw table is an *injected* projection: every Athena query
must name the app (``WHERE app_id = '...'``), which doubles as a tenant guard.

A rollup table's location is its metric's current definition tree
(``rollups/<metric>/def=<fingerprint>/``, chalicelib/lake/layout.py): the
template is generated from metrics.yaml, so a changed definition moves the
table to the fresh tree and SQL never mixes two definitions either. Final
files are one per app inside the ``dt``/``hour`` partition; ``app_id`` stays
a column (not a projected partition: partials mix apps, and an ``injected``
projection would make every query name one app), and a file's row-group
statistics (one app per file: min = max) let Athena skip the other apps'
finals without reading their rows.
"""

from __future__ import annotations

import pyarrow as pa
from botocore.exceptions import ClientError

from chalicelib.stream import badrows, envelope

PARQUET_STORAGE = {
    "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
    "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
    "SerdeInfo": {"SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
                  "Parameters": {"serialization.format": "1"}},
}
DATE_PROJECTION = {
    "projection.dt.type": "date", "projection.dt.format": "yyyy-MM-dd", "projection.dt.range": "2024-01-01,NOW",
    "projection.dt.interval": "1", "projection.dt.interval.unit": "DAYS",
    "projection.hour.type": "integer", "projection.hour.range": "0,23", "projection.hour.digits": "2",
}


def hive_type(arrow_type: pa.DataType) -> str:
    if pa.types.is_timestamp(arrow_type):
        return "timestamp"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "string"
    if pa.types.is_int64(arrow_type):
        return "bigint"
    if pa.types.is_int32(arrow_type) or pa.types.is_int16(arrow_type) or pa.types.is_int8(arrow_type):
        return "int"
    if pa.types.is_floating(arrow_type):
        return "double"
    if pa.types.is_boolean(arrow_type):
        return "boolean"
    if pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type):
        return "binary"
    if pa.types.is_list(arrow_type):
        return f"array<{hive_type(arrow_type.value_type)}>"
    if pa.types.is_struct(arrow_type):
        fields = ",".join(f"{f.name}:{hive_type(f.type)}" for f in arrow_type)
        return f"struct<{fields}>"
    raise ValueError(f"no Hive type for {arrow_type}")


def columns(schema: pa.Schema, exclude: set[str] = frozenset()) -> list[dict]:
    return [{"Name": f.name, "Type": hive_type(f.type)} for f in schema if f.name not in exclude]


def raw_table_input(bucket: str, schema: pa.Schema) -> dict:
    """The raw archive's Hive table before the Iceberg table (kept for reading an old archive)."""
    location = f"s3://{bucket}/events/"
    return {
        "Name": "events",
        "Description": "Every valid event, one row each (duplicates possible: dedupe on event_id)",
        "TableType": "EXTERNAL_TABLE",
        "PartitionKeys": [{"Name": "app_id", "Type": "string"}, {"Name": "dt", "Type": "string"},
                          {"Name": "hour", "Type": "string"}],
        "StorageDescriptor": {"Columns": columns(schema, {"app_id"}), "Location": location, **PARQUET_STORAGE},
        "Parameters": {"classification": "parquet", "EXTERNAL": "TRUE", "projection.enabled": "true",
                       "projection.app_id.type": "injected", **DATE_PROJECTION,
                       "storage.location.template": location + "app_id=${app_id}/dt=${dt}/hour=${hour}/"},
    }


def rollup_table_input(bucket: str, metric: str, schema: pa.Schema, description: str = "",
                       definition: str | None = None) -> dict:
    """``definition``: the metric's fingerprint (its tree); None only for tables without one (tests)."""
    location = f"s3://{bucket}/rollups/{metric}/" + (f"def={definition}/" if definition else "")
    extra = {"eventpipe.definition": definition} if definition else {}
    return {
        "Name": f"{metric}_rollup",
        "Description": description or f"Window aggregates of metric {metric}: stage=partial rows are mergeable "
                                      f"partials, stage=final rows replace them once a window is finalized",
        "TableType": "EXTERNAL_TABLE",
        "PartitionKeys": [{"Name": "stage", "Type": "string"}, {"Name": "dt", "Type": "string"},
                          {"Name": "hour", "Type": "string"}],
        "StorageDescriptor": {"Columns": columns(schema), "Location": location, **PARQUET_STORAGE},
        "Parameters": {"classification": "parquet", "EXTERNAL": "TRUE", "projection.enabled": "true",
                       "projection.stage.type": "enum", "projection.stage.values": "partial,final",
                       **DATE_PROJECTION, **extra,
                       "storage.location.template": location + "stage=${stage}/dt=${dt}/hour=${hour}/"},
    }


def catalog_table_inputs(bucket: str) -> list[dict]:
    """The Hive tables of the catalog: bad rows and one rollup table per metric.

    The one list of tables: the local bootstrap creates these on moto and the deployment
    template declares the same definitions (``bucket`` may be a placeholder there). The raw
    ``events`` table is Iceberg: pyiceberg creates it (``chalicelib.lake.raw_table.RawTable.create``:
    the local bootstrap, and on AWS the committer's first run).
    """
    from chalicelib.lake.sql_sketch import lake_schema  # lazily: only bootstrap and deploy need the tables
    from chalicelib.processing import load_metrics

    tables = [bad_rows_table_input(bucket), *insight_table_inputs(bucket)]
    tables += [rollup_table_input(bucket, metric.name, lake_schema(metric), metric.description, metric.fingerprint)
               for metric in load_metrics().metrics]
    return tables


def insight_table_inputs(bucket: str) -> list[dict]:
    """``sessions`` (partitions app_id, dt: the day a session starts) and ``persons`` (partition app_id):
    one Parquet file per app and day / per app, rewritten at finalization (chalicelib/lake/people_tables.py).
    ``app_id`` is an injected projection, as on the raw table: every query names its app."""
    from chalicelib.lake import persons_table, sessions_table

    def table(name: str, prefix: str, schema: pa.Schema, description: str, by_day: bool) -> dict:
        location = f"s3://{bucket}/{prefix}/"
        keys = [{"Name": "app_id", "Type": "string"}] + ([{"Name": "dt", "Type": "string"}] if by_day else [])
        projection = {k: v for k, v in DATE_PROJECTION.items() if k.startswith("projection.dt.")} if by_day else {}
        return {
            "Name": name, "Description": description, "TableType": "EXTERNAL_TABLE", "PartitionKeys": keys,
            "StorageDescriptor": {"Columns": columns(schema), "Location": location, **PARQUET_STORAGE},
            "Parameters": {"classification": "parquet", "EXTERNAL": "TRUE", "projection.enabled": "true",
                           "projection.app_id.type": "injected", **projection,
                           "storage.location.template": location + "app_id=${app_id}/" + ("dt=${dt}/" if by_day else "")},
        }

    return [table(sessions_table.TABLE_NAME, sessions_table.TABLE_PREFIX, sessions_table.SCHEMA,
                  "Sessions by inactivity gap (per app setting, default 30 min), by the UTC day they start; "
                  "from the deduplicated raw events of finalized hours", True),
            table(persons_table.TABLE_NAME, persons_table.TABLE_PREFIX, persons_table.SCHEMA,
                  "Persons: the latest traits per user (ids merged by alias), first and last seen", False)]


def ensure_table(glue, database: str, table_input: dict) -> None:
    """Create or update a table so its definition matches the code."""
    try:
        glue.create_table(DatabaseName=database, TableInput=table_input)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "AlreadyExistsException":
            raise
        glue.update_table(DatabaseName=database, TableInput=table_input)


# ------------------------------------------------------------------ bad rows
# The bad rows (``stream/badrows.py``: one schema for every consumer), NDJSON under
# ``bad-rows/<consumer>/dt=<record arrival day>/app_id=<app>/``: the partitions are
# consumer and day, each app's files one folder below (read with the partition). Only events carry an app:
# ``event.app_id`` is the column to filter tenants on; undecodable input belongs to no
# app and is visible to operators only.
BAD_ROWS_TABLE = "bad_rows"
JSON_SERDE = "org.openx.data.jsonserde.JsonSerDe"
RECORD_TYPE = ("struct<shard_id:string,sequence_number:string,partition_key:string,event_source_arn:string,"
               "arrival_ms:bigint,line:bigint>")
BAD_ROWS_COLUMNS = [
    {"Name": "reason", "Type": "string", "Comment": "one of " + ", ".join(badrows.REASONS)},
    {"Name": "detail", "Type": "string", "Comment": "what exactly was wrong"},
    {"Name": "record", "Type": RECORD_TYPE, "Comment": "the Kinesis record (line: position in it, null: all)"},
    {"Name": "event", "Type": envelope.hive_struct(), "Comment": "the decoded event when there is one (app_id)"},
    {"Name": "raw_line", "Type": "string", "Comment": "the line that was not an event"},
    {"Name": "record_data_b64", "Type": "string", "Comment": "the undecodable record, base64"},
    {"Name": "truncated", "Type": "struct<field:string,original_bytes:bigint,sha256:string>",
     "Comment": "the input field cut to the bad-row cap, with the whole input's size and SHA-256 (null: kept whole)"},
]


def bad_rows_table_input(bucket: str) -> dict:
    location = f"s3://{bucket}/bad-rows/"
    return {
        "Name": BAD_ROWS_TABLE,
        "Description": "Rejected input with the reason, one JSON object per line; filter tenants on event.app_id",
        "TableType": "EXTERNAL_TABLE",
        "PartitionKeys": [{"Name": "consumer", "Type": "string"}, {"Name": "dt", "Type": "string"}],
        "StorageDescriptor": {
            "Columns": BAD_ROWS_COLUMNS,
            "Location": location,
            "InputFormat": "org.apache.hadoop.mapred.TextInputFormat",
            "OutputFormat": "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
            "SerdeInfo": {"SerializationLibrary": JSON_SERDE,
                          "Parameters": {"ignore.malformed.json": "true", "case.insensitive": "true"}},
        },
        "Parameters": {"classification": "json", "EXTERNAL": "TRUE", "projection.enabled": "true",
                       "projection.consumer.type": "enum", "projection.consumer.values": ",".join(badrows.CONSUMERS),
                       "projection.dt.type": "date", "projection.dt.format": "yyyy-MM-dd",
                       "projection.dt.range": "2024-01-01,NOW", "projection.dt.interval": "1",
                       "projection.dt.interval.unit": "DAYS",
                       "storage.location.template": location + "${consumer}/dt=${dt}/"},
    }


def ensure_bad_rows_table(glue, database: str, bucket: str) -> None:
    """Create or update the ``bad_rows`` table (idempotent)."""
    ensure_table(glue, database, bad_rows_table_input(bucket))
