"""Glue table for the bad rows (NDJSON under ``bad-rows/<source>/dt=YYYY-MM-DD/``).

Call :func:`ensure_bad_rows_table` from bootstrap (next to the raw and rollup
tables). Bad rows are JSON objects, one per line, written by three sources:

* ``aggregate`` / ``archive`` (chalicelib/lake/processor.py): an undecodable
  record or line (``reason``, ``shard_id``, ``sequence_number``, ``line``,
  ``data_b64``) or an event older than the maximum lateness (``reason``,
  ``event``: the decoded event, times in epoch ms);
* ``search`` (chalicelib/search/badrows.py): ``reason``, ``detail``,
  ``source`` (the Kinesis record: an object), ``event`` | ``raw_line`` |
  ``record_data_b64``.

``source`` is also the partition key (the path's second level, not written
``source=``), so the JSON key ``source`` is mapped to the column
``source_record`` (OpenX SerDe ``mapping.*`` property). Only events carry an
app: ``event.app_id`` is the column to filter tenants on; undecodable input
belongs to no app and is visible to operators only.
"""

from __future__ import annotations

from chalicelib.lake.glue import ensure_table

BAD_ROWS_TABLE = "bad_rows"
JSON_SERDE = "org.openx.data.jsonserde.JsonSerDe"
SOURCES = ("aggregate", "archive", "search")

EVENT_TYPE = ("struct<event_id:string,event_type:string,event_time:bigint,received_at:bigint,app_id:string,"
              "user_id:string,client_event_time:bigint,attributes:string,sequence_number:string>")
SOURCE_RECORD_TYPE = ("struct<sequence_number:string,partition_key:string,event_source_arn:string,"
                      "kinesis_event_id:string,line:bigint>")
BAD_ROWS_COLUMNS = [
    {"Name": "reason", "Type": "string", "Comment": "why the row was rejected"},
    {"Name": "detail", "Type": "string", "Comment": "search: the error detail"},
    {"Name": "shard_id", "Type": "string", "Comment": "aggregate/archive: the Kinesis shard"},
    {"Name": "sequence_number", "Type": "string", "Comment": "aggregate/archive: the Kinesis record"},
    {"Name": "line", "Type": "bigint", "Comment": "aggregate/archive: line in the record (null: whole record)"},
    {"Name": "data_b64", "Type": "string", "Comment": "aggregate/archive: the original bytes, base64"},
    {"Name": "event", "Type": EVENT_TYPE, "Comment": "the event, when it could be decoded (has app_id)"},
    {"Name": "source_record", "Type": SOURCE_RECORD_TYPE, "Comment": "search: the JSON key 'source'"},
    {"Name": "raw_line", "Type": "string", "Comment": "search: the line that was not an event"},
    {"Name": "record_data_b64", "Type": "string", "Comment": "search: the undecodable record, base64"},
]


def bad_rows_table_input(bucket: str) -> dict:
    location = f"s3://{bucket}/bad-rows/"
    return {
        "Name": BAD_ROWS_TABLE,
        "Description": "Rejected input with the reason, one JSON object per line; filter tenants on event.app_id",
        "TableType": "EXTERNAL_TABLE",
        "PartitionKeys": [{"Name": "source", "Type": "string"}, {"Name": "dt", "Type": "string"}],
        "StorageDescriptor": {
            "Columns": BAD_ROWS_COLUMNS,
            "Location": location,
            "InputFormat": "org.apache.hadoop.mapred.TextInputFormat",
            "OutputFormat": "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
            "SerdeInfo": {"SerializationLibrary": JSON_SERDE,
                          "Parameters": {"ignore.malformed.json": "true", "case.insensitive": "true",
                                         "mapping.source_record": "source"}},
        },
        "Parameters": {"classification": "json", "EXTERNAL": "TRUE", "projection.enabled": "true",
                       "projection.source.type": "enum", "projection.source.values": ",".join(SOURCES),
                       "projection.dt.type": "date", "projection.dt.format": "yyyy-MM-dd",
                       "projection.dt.range": "2024-01-01,NOW", "projection.dt.interval": "1",
                       "projection.dt.interval.unit": "DAYS",
                       "storage.location.template": location + "${source}/dt=${dt}/"},
    }


def ensure_bad_rows_table(glue, database: str, bucket: str) -> None:
    """Create or update the ``bad_rows`` table (idempotent)."""
    ensure_table(glue, database, bad_rows_table_input(bucket))
