"""The Trino engine's pure parts: Glue -> Trino DDL, the lake mirror, the protocol's values (no server)."""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

import boto3
import pyarrow as pa
import pytest
from moto import mock_aws

from chalicelib.lake.glue import raw_table_input, rollup_table_input
from chalicelib.lake.legacy_archive import RAW_SCHEMA
from chalicelib.lake.glue import bad_rows_table_input
from eventpipe.query.trino_client import TrinoClient, TrinoResult, TrinoUnavailable, arrow_type, arrow_value
from eventpipe.query.trino_engine import (CatalogError, create_table_sql, iceberg_catalog_properties, mirror_buckets,
                                          trino_type)

LOCAL = lambda location: location.replace("s3://", "local:///lake/")  # noqa: E731


def test_hive_types_become_trino_types():
    assert trino_type("string") == "varchar" and trino_type("timestamp") == "timestamp(3)"
    assert trino_type("array<int>") == "array(integer)"
    assert trino_type("struct<a:bigint,b:array<struct<c:string>>>") == 'row("a" bigint, "b" array(row("c" varchar)))'
    assert trino_type("map<string,double>") == "map(varchar, double)"
    assert trino_type("decimal(10, 2)") == "decimal(10,2)"
    with pytest.raises(CatalogError, match="uniontype"):
        trino_type("uniontype<int,string>")


def test_raw_table_ddl_carries_partitions_and_every_projection_property():
    sql = create_table_sql(raw_table_input("lake", RAW_SCHEMA), '"c"."s"."events"', LOCAL)
    assert '"app_id" varchar WITH (partition_projection_type = \'INJECTED\')' in sql
    assert ("\"hour\" varchar WITH (partition_projection_digits = 2, partition_projection_range = ARRAY['0', '23'], "
            "partition_projection_type = 'INTEGER')") in sql
    assert "partition_projection_interval = 1, partition_projection_interval_unit = 'DAYS'" in sql
    assert "partition_projection_range = ARRAY['2024-01-01', 'NOW']" in sql
    assert "partitioned_by = ARRAY['app_id', 'dt', 'hour']" in sql and "format = 'PARQUET'" in sql
    assert "partition_projection_location_template = 'local:///lake/lake/events/app_id=${app_id}/dt=${dt}" in sql
    assert "external_location = 'local:///lake/lake/events/'" in sql
    # Columns first, then the partition keys in their order (Trino's rule), app_id not a data column.
    names = [line.split()[0].strip('"') for line in sql.splitlines()[1:] if line.startswith("   \"")]
    assert names[-3:] == ["app_id", "dt", "hour"] and names.count("app_id") == 1
    assert "'classification'" in sql and "'EXTERNAL'" not in sql  # Trino sets EXTERNAL itself


def test_json_serde_parameters_reach_trino_as_table_properties():
    import copy

    from chalicelib.stream.badrows import CONSUMERS
    table_input = copy.deepcopy(bad_rows_table_input("lake"))
    table_input["StorageDescriptor"]["Columns"][1]["Comment"] = "the consumer's detail"
    table_input["StorageDescriptor"]["SerdeInfo"]["Parameters"]["mapping.detail"] = "why"
    sql = create_table_sql(table_input, '"c"."s"."bad_rows"', LOCAL)
    assert "format = 'OPENX_JSON'" in sql
    assert "'mapping.detail'" in sql and "'ignore.malformed.json'" in sql
    assert f"partition_projection_values = ARRAY[{', '.join(repr(c) for c in CONSUMERS)}]" in sql
    assert "COMMENT 'the consumer''s detail'" in sql  # quotes doubled


def test_a_projection_property_without_trino_equivalent_is_refused():
    table = rollup_table_input("lake", "m", pa.schema([pa.field("event_count", pa.int64())]))
    table["Parameters"]["projection.dt.weird"] = "1"
    with pytest.raises(CatalogError, match="projection.dt.weird"):
        create_table_sql(table, '"c"."s"."m_rollup"', LOCAL)
    table = bad_rows_table_input("lake")
    table["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"] = "com.example.SerDe"
    with pytest.raises(CatalogError, match="com.example.SerDe"):
        create_table_sql(table, '"c"."s"."bad_rows"', LOCAL)


@mock_aws
def test_mirror_copies_new_and_changed_objects_and_drops_deleted_ones(tmp_path):
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="lake")
    s3.put_object(Bucket="lake", Key="events/a.parquet", Body=b"1")
    s3.put_object(Bucket="lake", Key="events/b.parquet", Body=b"2")
    assert mirror_buckets(s3, ["lake"], tmp_path) == 2
    assert mirror_buckets(s3, ["lake"], tmp_path) == 0  # unchanged: nothing copied
    s3.put_object(Bucket="lake", Key="events/a.parquet", Body=b"changed")
    s3.delete_object(Bucket="lake", Key="events/b.parquet")
    assert mirror_buckets(s3, ["lake"], tmp_path) == 1
    assert (tmp_path / "lake/events/a.parquet").read_bytes() == b"changed"
    assert not (tmp_path / "lake/events/b.parquet").exists()


@mock_aws
def test_mirror_skips_the_iceberg_tables_trino_reads_from_s3(tmp_path):
    """The Iceberg table's files are read by Trino from S3 itself: mirroring them would only cost time."""
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="lake")
    for key in ("rollups/x.parquet", "tables/events/data/a.parquet", "tables/events/metadata/v1.json",
                "tables/events-other/b.parquet"):
        s3.put_object(Bucket="lake", Key=key, Body=b"1")
    assert mirror_buckets(s3, ["lake"], tmp_path, skip=["lake/tables/events/"]) == 2
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.*") if p.is_file()
                  and p.name != ".mirror.json") == ["lake/rollups/x.parquet", "lake/tables/events-other/b.parquet"]


def test_iceberg_catalog_reads_glue_and_s3_of_the_endpoint_path_style():
    local = iceberg_catalog_properties("http://127.0.0.1:5000", "us-east-1", "k", "s")
    assert local == {"iceberg.catalog.type": "glue", "hive.metastore.glue.region": "us-east-1",
                     "hive.metastore.glue.endpoint-url": "http://127.0.0.1:5000", "fs.native-s3.enabled": "true",
                     "s3.endpoint": "http://127.0.0.1:5000", "s3.path-style-access": "true", "s3.region": "us-east-1",
                     "hive.metastore.glue.aws-access-key": "k", "hive.metastore.glue.aws-secret-key": "s",
                     "s3.aws-access-key": "k", "s3.aws-secret-key": "s"}
    # On AWS: no endpoints, Trino's own credential chain.
    assert iceberg_catalog_properties(None, "eu-west-1") == {
        "iceberg.catalog.type": "glue", "hive.metastore.glue.region": "eu-west-1", "fs.native-s3.enabled": "true",
        "s3.region": "eu-west-1"}


def signature(raw: str, *args) -> dict:
    return {"rawType": raw, "arguments": list(args)}


def test_protocol_values_become_the_arrow_types_duckdb_answers():
    ts = signature("timestamp")
    row = signature("row", {"kind": "NAMED_TYPE", "value": {"fieldName": {"name": "x"},
                                                            "typeSignature": signature("integer")}})
    columns = (("t", "timestamp", arrow_type(ts)),
               ("z", "timestamp with time zone", arrow_type(signature("timestamp with time zone"))),
               ("d", "double", arrow_type(signature("double"))),
               ("a", "array(bigint)", arrow_type(signature("array", {"kind": "TYPE", "value": signature("bigint")}))),
               ("r", "row(x integer)", arrow_type(row)),
               ("m", "decimal(3,2)", arrow_type(signature("decimal", {"kind": "LONG", "value": 3},
                                                          {"kind": "LONG", "value": 2}))),
               ("b", "varbinary", arrow_type(signature("varbinary"))),
               ("day", "date", arrow_type(signature("date"))))
    table = TrinoResult(columns, (("2026-01-01 12:00:00.123", "2026-01-01 13:00:00.000 Europe/Paris", "NaN",
                                   [1, None], [7], "1.25", "AP8=", "2026-01-01"),)).to_arrow()
    assert table.schema.field("t").type == pa.timestamp("ms") and table.schema.field("a").type == pa.list_(pa.int64())
    [got] = table.to_pylist()
    assert got["t"] == datetime(2026, 1, 1, 12, 0, 0, 123000)
    assert got["z"] == datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
    assert got["d"] != got["d"]  # NaN
    assert (got["a"], got["r"], got["m"], got["b"], got["day"]) == ([1, None], {"x": 7}, Decimal("1.25"), b"\x00\xff",
                                                                      date(2026, 1, 1))
    assert arrow_value("Infinity", pa.float64()) == float("inf")


def test_no_server_is_a_typed_error():
    client = TrinoClient("http://127.0.0.1:9", timeout_s=2)
    assert client.ready() is False
    with pytest.raises(TrinoUnavailable, match="no Trino at http://127.0.0.1:9"):
        client.execute("SELECT 1")
