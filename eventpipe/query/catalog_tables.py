"""The Glue catalog as Arrow: table definitions, S3 datasets, the JSON SerDe, tenant scoping.

``eventpipe.query.local_engine`` registers these in DuckDB; the rules here are the Athena
behaviours it needs to reproduce (Hive types, partition values from the location template,
``mapping.<column>`` SerDe properties, malformed JSON as rows of NULLs).
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.json as pajson
from pyarrow import fs as pafs

from eventpipe.query.errors import QueryError
from eventpipe.query.iceberg_tables import is_iceberg


_SIMPLE_TYPES = {"string": pa.string(), "bigint": pa.int64(), "int": pa.int32(), "double": pa.float64(),
                 "float": pa.float32(), "boolean": pa.bool_(), "binary": pa.binary(),
                 "timestamp": pa.timestamp("ms", tz="UTC"), "date": pa.date32(), "smallint": pa.int16(),
                 "tinyint": pa.int8()}


VIEW_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")

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
    #: The SerDe class (``SerdeInfo.SerializationLibrary``); "" when unknown.
    serde: str = ""
    serde_parameters: dict = field(default_factory=dict, compare=False)
    #: ``storage.location.template`` (partition projection), if any.
    location_template: str | None = None
    #: An Iceberg table (``table_type=ICEBERG``): its files and columns come from the table's
    #: metadata (:mod:`eventpipe.query.iceberg_tables`); ``schema`` is empty until then.
    iceberg: bool = False

    @property
    def is_json(self) -> bool:
        return "json" in self.serde.lower()


def table_defs(glue, database: str) -> list[TableDef]:
    defs = []
    for page in glue.get_paginator("get_tables").paginate(DatabaseName=database):
        for table in page["TableList"]:
            if table.get("TableType") == "VIRTUAL_VIEW":
                continue
            if is_iceberg(table.get("Parameters")):
                defs.append(TableDef(table["Name"], table["StorageDescriptor"]["Location"], pa.schema([]),
                                     pa.schema([]), iceberg=True))
                continue
            storage = table["StorageDescriptor"]
            columns = [pa.field(c["Name"], arrow_type(c["Type"])) for c in storage["Columns"]]
            partitions = [pa.field(k["Name"], arrow_type(k["Type"])) for k in table.get("PartitionKeys", [])]
            serde = storage.get("SerdeInfo", {})
            defs.append(TableDef(table["Name"], storage["Location"], pa.schema(columns + partitions),
                                 pa.schema(partitions), serde.get("SerializationLibrary", ""),
                                 dict(serde.get("Parameters", {})),
                                 table.get("Parameters", {}).get("storage.location.template")))
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


# ------------------------------------------------------------------ JSON SerDe tables
def _visible(path: str) -> bool:
    """Hive, Athena and pyarrow skip files whose name starts with ``_`` or ``.``."""
    return not path.rsplit("/", 1)[-1].startswith(("_", "."))


def partition_matcher(table: TableDef) -> re.Pattern:
    """A regex giving the partition values of a file path (``bucket/prefix/.../file``)."""
    base = table.location.removeprefix("s3://").rstrip("/") + "/"
    if table.location_template:
        template = table.location_template.removeprefix("s3://").rstrip("/") + "/"
        pattern, pos = "", 0
        for match in re.finditer(r"\$\{(\w+)\}", template):
            pattern += re.escape(template[pos:match.start()]) + f"(?P<{match.group(1)}>[^/]+)"
            pos = match.end()
        return re.compile(pattern + re.escape(template[pos:]))
    parts = "".join(f"{re.escape(f.name)}=(?P<{f.name}>[^/]+)/" for f in table.partition_schema)
    return re.compile(re.escape(base) + parts)


def coerce(value: Any, kind: pa.DataType) -> Any:
    """A JSON value as the column type; None when it is not one (as the OpenX SerDe reads it)."""
    if value is None:
        return None
    if pa.types.is_string(kind):
        if isinstance(value, str):
            return value
        return orjson.dumps(value).decode()  # objects, arrays, numbers, booleans: their JSON text
    if pa.types.is_integer(kind):
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
            return int(value)
        return None
    if pa.types.is_floating(kind):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        try:
            return float(value) if isinstance(value, str) else None
        except ValueError:
            return None
    if pa.types.is_boolean(kind):
        return value if isinstance(value, bool) else None
    if pa.types.is_struct(kind):
        if not isinstance(value, dict):
            return None
        return {f.name: coerce(value.get(f.name), f.type) for f in kind}
    if pa.types.is_list(kind):
        return [coerce(v, kind.value_type) for v in value] if isinstance(value, list) else None
    return None  # timestamps, binary: not read from JSON here


def parse_ndjson(data: bytes, schema: pa.Schema, mapping: dict[str, str] | None = None) -> pa.Table:
    """NDJSON bytes -> a table of ``schema`` (data columns only).

    ``mapping`` is column -> JSON key (the SerDe's ``mapping.<column>``).
    pyarrow's reader is tried first; input it refuses (a value of another type
    than declared) is coerced line by line.
    """
    mapping = mapping or {}
    json_schema = pa.schema([pa.field(mapping.get(f.name, f.name), f.type) for f in schema])
    try:
        table = pajson.read_json(io.BytesIO(data), parse_options=pajson.ParseOptions(
            explicit_schema=json_schema, unexpected_field_behavior="ignore", newlines_in_values=False))
        return table.rename_columns(schema.names).cast(schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    rows = []
    for line in data.splitlines():
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            obj = None
        if not isinstance(obj, dict):
            rows.append({f.name: None for f in schema})  # ignore.malformed.json: a row of NULLs
            continue
        rows.append({f.name: coerce(obj.get(mapping.get(f.name, f.name)), f.type) for f in schema})
    return pa.Table.from_pylist(rows, schema=schema)


def json_table_for(table: TableDef, filesystem: pafs.FileSystem) -> pa.Table:
    """Every visible file under the table's location read as NDJSON, with partition columns."""
    path = table.location.removeprefix("s3://").rstrip("/")
    selector = pafs.FileSelector(path, recursive=True, allow_not_found=True)
    matcher = partition_matcher(table)
    partition_names = set(table.partition_schema.names)
    data_schema = pa.schema([f for f in table.schema if f.name not in partition_names])
    mapping = {k.removeprefix("mapping."): v for k, v in table.serde_parameters.items() if k.startswith("mapping.")}
    pieces = []
    for info in filesystem.get_file_info(selector):
        if info.type != pafs.FileType.File or not _visible(info.path):
            continue
        match = matcher.match(info.path)
        if match is None:
            continue  # outside the partition layout: Athena would not read it either
        with filesystem.open_input_stream(info.path) as stream:
            data = stream.read()
        part = parse_ndjson(data, data_schema, mapping)
        for f in table.partition_schema:
            values = pa.array([match.group(f.name)] * part.num_rows, pa.string()).cast(f.type)
            part = part.append_column(f, values)
        pieces.append(part.select(table.schema.names))
    return pa.concat_tables(pieces) if pieces else table.schema.empty_table()


def scope_filter(table: TableDef) -> ds.Expression | None:
    """The filter that keeps one app's rows of a table, or None when it has no app column."""
    names = table.schema.names
    if "app_id" in names:
        return ds.field("app_id")
    if "event" in names:
        kind = table.schema.field("event").type
        if pa.types.is_struct(kind) and kind.get_field_index("app_id") >= 0:
            return ds.field("event", "app_id")
    return None
