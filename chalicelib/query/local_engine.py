"""Athena SQL on the local stack: DuckDB over the Parquet lake on moto S3.

Tables are resolved from the Glue catalog (location, columns, partition
keys) and exposed to DuckDB as pyarrow datasets read straight from S3, so the
same files Athena would read are read here. DuckDB's httpfs extension cannot
be downloaded on this machine (see the platform notes), which is why S3 is
read through pyarrow rather than by DuckDB itself. Athena (Trino) SQL is
translated with sqlglot; queries run with the session time zone set to UTC,
as Athena does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import sqlglot
from pyarrow import fs as pafs


class QueryError(Exception):
    """The SQL could not be translated or executed."""


_SIMPLE_TYPES = {"string": pa.string(), "bigint": pa.int64(), "int": pa.int32(), "double": pa.float64(),
                 "float": pa.float32(), "boolean": pa.bool_(), "binary": pa.binary(),
                 "timestamp": pa.timestamp("ms", tz="UTC"), "date": pa.date32(), "smallint": pa.int16(),
                 "tinyint": pa.int8()}


def arrow_type(hive: str) -> pa.DataType:
    hive = hive.strip().lower()
    if hive in _SIMPLE_TYPES:
        return _SIMPLE_TYPES[hive]
    match = re.fullmatch(r"array<(.+)>", hive)
    if match:
        return pa.list_(arrow_type(match.group(1)))
    match = re.fullmatch(r"struct<(.+)>", hive)
    if match:
        fields = []
        depth, start, text = 0, 0, match.group(1)
        for i, ch in enumerate(text + ","):
            depth += ch == "<"
            depth -= ch == ">"
            if ch == "," and depth == 0:
                name, kind = text[start:i].split(":", 1)
                fields.append(pa.field(name, arrow_type(kind)))
                start = i + 1
        return pa.struct(fields)
    raise QueryError(f"unsupported column type {hive!r}")


@dataclass(frozen=True)
class TableDef:
    name: str
    location: str  # s3://bucket/prefix/
    schema: pa.Schema
    partition_schema: pa.Schema


def table_defs(glue, database: str) -> list[TableDef]:
    defs = []
    for page in glue.get_paginator("get_tables").paginate(DatabaseName=database):
        for table in page["TableList"]:
            if table.get("TableType") == "VIRTUAL_VIEW":
                continue
            storage = table["StorageDescriptor"]
            columns = [pa.field(c["Name"], arrow_type(c["Type"])) for c in storage["Columns"]]
            partitions = [pa.field(k["Name"], arrow_type(k["Type"])) for k in table.get("PartitionKeys", [])]
            defs.append(TableDef(table["Name"], storage["Location"], pa.schema(columns + partitions),
                                 pa.schema(partitions)))
    return defs


def s3_filesystem(endpoint_url: str | None, region: str, access_key: str | None = None,
                  secret_key: str | None = None) -> pafs.S3FileSystem:
    if endpoint_url:
        scheme, _, host = endpoint_url.partition("://")
        return pafs.S3FileSystem(endpoint_override=host, scheme=scheme, region=region,
                                 access_key=access_key or "testing", secret_key=secret_key or "testing")
    return pafs.S3FileSystem(region=region)


def dataset_for(table: TableDef, filesystem: pafs.FileSystem) -> ds.Dataset | pa.Table:
    path = table.location.removeprefix("s3://").rstrip("/")
    selector = pafs.FileSelector(path, recursive=True, allow_not_found=True)
    files = [f.path for f in filesystem.get_file_info(selector)
             if f.type == pafs.FileType.File and f.path.endswith(".parquet")]
    if not files:
        return table.schema.empty_table()
    partitioning = ds.partitioning(table.partition_schema, flavor="hive") if table.partition_schema else None
    return ds.dataset(files, schema=table.schema, format="parquet", filesystem=filesystem,
                      partitioning=partitioning, partition_base_dir=path)


def translate(sql: str) -> str:
    """Athena (Trino) SQL -> DuckDB SQL."""
    try:
        statements = sqlglot.transpile(sql, read="athena", write="duckdb")
    except sqlglot.errors.ParseError as exc:
        raise QueryError(f"cannot parse the SQL: {exc}") from None
    if len(statements) != 1:
        raise QueryError("give exactly one SQL statement")
    return statements[0]


class LocalAthena:
    """A DuckDB connection with the Glue database's tables registered."""

    def __init__(self, glue, database: str, filesystem: pafs.FileSystem, threads: int = 2) -> None:
        self.database = database
        self.connection = duckdb.connect()
        self.connection.execute(f"SET threads={threads}")
        self.connection.execute("SET TimeZone='UTC'")
        self.connection.execute(f'CREATE SCHEMA IF NOT EXISTS "{database}"')
        for table in table_defs(glue, database):
            source = dataset_for(table, filesystem)
            handle = f"__src_{table.name}"
            self.connection.register(handle, source)
            for qualified in (f'"{database}"."{table.name}"', f'"{table.name}"'):
                self.connection.execute(f"CREATE OR REPLACE VIEW {qualified} AS SELECT * FROM {handle}")

    def create_view(self, name: str, athena_sql: str) -> None:
        body = translate(athena_sql)
        for qualified in (f'"{self.database}"."{name}"', f'"{name}"'):
            self.connection.execute(f"CREATE OR REPLACE VIEW {qualified} AS {body}")

    def query(self, athena_sql: str) -> pa.Table:
        try:
            return self.connection.sql(translate(athena_sql)).to_arrow_table()
        except duckdb.Error as exc:
            raise QueryError(str(exc)) from None
