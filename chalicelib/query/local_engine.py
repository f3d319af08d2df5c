"""Athena SQL on the local stack: DuckDB over the Parquet lake on moto S3.

Tables are resolved from the Glue catalog (location, columns, partition
keys) and exposed to DuckDB as pyarrow datasets read straight from S3, so the
same files Athena would read are read here. DuckDB's httpfs extension cannot
be downloaded on this machine (see the platform notes), which is why S3 is
read through pyarrow rather than by DuckDB itself. Athena (Trino) SQL is
translated with sqlglot; queries run with the session time zone set to UTC,
as Athena does.

Tables with a JSON SerDe (``bad_rows``) are read as NDJSON: partition values
come from the table's ``storage.location.template`` (their paths need not be
``key=value``), the SerDe's ``mapping.<column>`` properties rename JSON keys,
and values are coerced to the declared column types (a value of another type
becomes NULL, a malformed line a row of NULLs, as with
``ignore.malformed.json``).

``LocalAthena(..., app_id="x")`` is a tenant-scoped session: every table is
registered already filtered to that app (``app_id`` column or partition, or
``event.app_id`` for bad rows; other tables are left out), file access and
configuration changes are switched off, so no SQL text can reach another
app's rows.
"""

from __future__ import annotations

import io
import logging
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import duckdb
import orjson
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.json as pajson
import sqlglot
from pyarrow import fs as pafs
from sqlglot import exp

log = logging.getLogger(__name__)


class QueryError(Exception):
    """The SQL could not be translated or executed."""


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

    @property
    def is_json(self) -> bool:
        return "json" in self.serde.lower()


def table_defs(glue, database: str) -> list[TableDef]:
    defs = []
    for page in glue.get_paginator("get_tables").paginate(DatabaseName=database):
        for table in page["TableList"]:
            if table.get("TableType") == "VIRTUAL_VIEW":
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


def translate(sql: str) -> str:
    """Athena (Trino) SQL -> DuckDB SQL (no column types: see :meth:`LocalAthena.translate`)."""
    try:
        statements = sqlglot.transpile(sql, read="athena", write="duckdb")
    except (sqlglot.errors.ParseError, sqlglot.errors.TokenError) as exc:
        raise QueryError(f"cannot parse the SQL: {exc}") from None
    if len(statements) != 1:
        raise QueryError("give exactly one SQL statement")
    return statements[0]


def parse_one(sql: str) -> exp.Expression:
    try:
        statements = [s for s in sqlglot.parse(sql, read="athena") if s is not None]
    except (sqlglot.errors.ParseError, sqlglot.errors.TokenError) as exc:
        raise QueryError(f"cannot parse the SQL: {exc}") from None
    if len(statements) != 1:
        raise QueryError("give exactly one SQL statement")
    return statements[0]


def view_parts(athena_sql: str) -> tuple[str, exp.Expression]:
    """``CREATE [OR REPLACE] VIEW name AS <query>`` (Athena) -> (name, the parsed query)."""
    create = parse_one(athena_sql)
    if not isinstance(create, exp.Create) or str(create.args.get("kind", "")).upper() != "VIEW":
        raise QueryError("expected exactly one CREATE [OR REPLACE] VIEW statement")
    target = create.this.this if isinstance(create.this, exp.Schema) else create.this
    return target.name, create.expression


def view_statement(athena_sql: str) -> tuple[str, str]:
    """``CREATE [OR REPLACE] VIEW name AS <query>`` -> (name, the query in DuckDB SQL, untyped)."""
    name, body = view_parts(athena_sql)
    return name, body.sql(dialect="duckdb")


def sql_type(kind: pa.DataType) -> str:
    """An Arrow type as a sqlglot (Trino-side) type string."""
    simple = {pa.string(): "VARCHAR", pa.large_string(): "VARCHAR", pa.int64(): "BIGINT", pa.int32(): "INT",
              pa.int16(): "SMALLINT", pa.int8(): "TINYINT", pa.float64(): "DOUBLE", pa.float32(): "REAL",
              pa.bool_(): "BOOLEAN", pa.binary(): "VARBINARY", pa.date32(): "DATE"}
    if kind in simple:
        return simple[kind]
    if pa.types.is_timestamp(kind):
        return "TIMESTAMP"
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return f"ARRAY<{sql_type(kind.value_type)}>"
    if pa.types.is_struct(kind):
        return "STRUCT<" + ", ".join(f"{f.name} {sql_type(f.type)}" for f in kind) + ">"
    if pa.types.is_decimal(kind):
        return "BIGINT" if kind.scale == 0 else f"DECIMAL({kind.precision}, {kind.scale})"
    return "UNKNOWN"


_INTEGERS = (exp.DataType.Type.BIGINT, exp.DataType.Type.INT, exp.DataType.Type.SMALLINT, exp.DataType.Type.TINYINT)
_FLOATS = (exp.DataType.Type.DOUBLE, exp.DataType.Type.FLOAT)


def trino_semantics(node: exp.Expression) -> exp.Expression:
    """Where DuckDB reads the same text differently than Trino (found by tests/query/test_trino.py).

    * ``CAST(double AS bigint)``: Trino rounds half away from zero (2.5 -> 3), DuckDB half to even
      (2.5 -> 2): round() first, which both engines do half away from zero. Needs the types.
    * ``format('%s-%d', ...)``: Java format patterns; DuckDB's format() takes ``{}`` patterns and
      returns ``'%s-%d'`` unchanged, its printf() takes these.
    * ``date_trunc`` / ``date_add`` of a date: a date in Trino, a timestamp in DuckDB: cast back.
    """
    if isinstance(node, (exp.Cast, exp.TryCast)) and node.to.this in _INTEGERS and node.this.type is not None \
            and node.this.type.this in _FLOATS:
        return node.__class__(this=exp.Round(this=node.this), to=node.to)
    if isinstance(node, exp.Format):
        return exp.Anonymous(this="printf", expressions=[node.this, *node.expressions])
    if isinstance(node, (exp.DateTrunc, exp.DateAdd)) and node.this is not None and node.this.type is not None \
            and node.this.type.this == exp.DataType.Type.DATE and not isinstance(node.parent, exp.Cast):
        return exp.Cast(this=node, to=exp.DataType.build("DATE"))
    return node


def bigint_sums(table: pa.Table) -> pa.Table:
    """DuckDB sums BIGINTs into HUGEINT (Arrow decimal128(38, 0)); Athena answers bigint: so do we."""
    for i, f in enumerate(table.schema):
        if pa.types.is_decimal(f.type) and f.type.scale == 0 and f.type.precision == 38:
            try:
                table = table.set_column(i, pa.field(f.name, pa.int64(), f.nullable), table.column(i).cast(pa.int64()))
            except pa.ArrowInvalid:
                pass  # beyond bigint: Athena would have failed; keep the exact value
    return table


class LocalAthena:
    """A DuckDB connection with the Glue database's tables registered.

    ``app_id``: a tenant-scoped session (see the module docstring).

    SQL is translated *with the column types* of the tables and views
    (sqlglot ``qualify`` + ``annotate_types``), so Athena's semantics survive
    where the dialects differ on types: ``bigint / bigint`` is an integer
    division in Trino and a float division in DuckDB, and is translated to a
    truncating division. SQL that cannot be typed (an unknown table, a
    construct sqlglot cannot qualify) is translated without types and noted in
    ``untyped`` (with the reason) and the log.
    """

    def __init__(self, glue, database: str, filesystem: pafs.FileSystem, threads: int = 2,
                 app_id: str | None = None) -> None:
        self.database = database
        self.app_id = app_id
        self.tables: list[str] = []
        self.views: list[str] = []
        self.untyped: list[tuple[str, str]] = []
        self._types: dict[str, dict[str, str]] = {}
        self.connection = duckdb.connect()
        self.connection.execute(f"SET threads={threads}")
        self.connection.execute("SET TimeZone='UTC'")
        self.connection.execute(f'CREATE SCHEMA IF NOT EXISTS "{database}"')
        for table in table_defs(glue, database):
            source = json_table_for(table, filesystem) if table.is_json else dataset_for(table, filesystem)
            if app_id is not None:
                column = scope_filter(table)
                if column is None:
                    log.info("table %s has no app column: left out of the session scoped to %s", table.name, app_id)
                    continue
                source = source.filter(column == pa.scalar(app_id, pa.string()))
            handle = f"__src_{table.name}"
            self.connection.register(handle, source)
            for qualified in (f'"{database}"."{table.name}"', f'"{table.name}"'):
                self.connection.execute(f"CREATE OR REPLACE VIEW {qualified} AS SELECT * FROM {handle}")
            self.tables.append(table.name)
            self._types[table.name] = {f.name: sql_type(f.type) for f in table.schema}
        if app_id is not None:
            # Only the registered (filtered) tables are reachable: no files, no settings changes.
            # DuckDB keeps its temp directory reachable even then, so give the session a
            # private one: sessions can never exchange files through it.
            self._temp_dir = tempfile.mkdtemp(prefix="eventpipe-duckdb-")
            for setting in (f"SET temp_directory='{self._temp_dir}'", "SET enable_external_access=false",
                            "SET python_enable_replacements=false", "SET lock_configuration=true"):
                self.connection.execute(setting)

    # -- translation
    def _typed(self, expression: exp.Expression) -> exp.Expression | None:
        from sqlglot.optimizer.annotate_types import annotate_types
        from sqlglot.optimizer.qualify import qualify
        from sqlglot.schema import MappingSchema
        schema = MappingSchema({self.database: self._types}, dialect="athena")
        try:
            qualified = qualify(expression.copy(), schema=schema, db=self.database, dialect="athena")
            return annotate_types(qualified, schema=schema, dialect="athena")
        except Exception as exc:  # noqa: BLE001 - whatever sqlglot cannot type: translate untyped
            text = expression.sql(dialect="athena")[:300]
            self.untyped.append((text, f"{type(exc).__name__}: {exc}"))
            log.warning("translated without column types (%s): %s", exc, text)
            return None

    def translate(self, athena_sql: str) -> str:
        """Athena SQL -> DuckDB SQL, typed when possible (see the class docstring)."""
        expression = parse_one(athena_sql)
        typed = self._typed(expression)
        return (typed or expression).transform(trino_semantics).sql(dialect="duckdb")

    # -- views
    def create_view(self, name: str, athena_sql: str) -> None:
        """Create a view from its query (Athena SQL)."""
        self._create_view(name, parse_one(athena_sql))

    def _create_view(self, name: str, body: exp.Expression) -> None:
        if not VIEW_NAME.fullmatch(name):
            raise QueryError(f"view name {name[:64]!r} must match {VIEW_NAME.pattern}")
        typed = self._typed(body)
        duckdb_body = (typed or body).transform(trino_semantics).sql(dialect="duckdb")
        for qualified in (f'"{self.database}"."{name}"', f'"{name}"'):
            try:
                self.connection.execute(f"CREATE OR REPLACE VIEW {qualified} AS {duckdb_body}")
            except duckdb.Error as exc:
                raise QueryError(f"view {name}: {exc}") from None
        # The view's column types for later typed translations: Trino's (sqlglot's annotation)
        # where known, else DuckDB's (HUGEINT sums are bigint on Athena).
        try:
            described = {row[0]: row[1] for row in self.connection.execute(f'DESCRIBE "{name}"').fetchall()}
        except duckdb.Error as exc:
            raise QueryError(f"view {name}: {exc}") from None
        annotated = {s.alias_or_name: s.type for s in typed.selects} if typed is not None else {}
        types = {}
        for column, duck_type in described.items():
            kind = annotated.get(column)
            if kind is not None and not kind.is_type(exp.DataType.Type.UNKNOWN):
                types[column] = kind.sql(dialect="athena")
            elif duck_type == "HUGEINT":
                types[column] = "BIGINT"
            else:
                types[column] = exp.DataType.build(duck_type, dialect="duckdb").sql(dialect="athena")
        self._types[name] = types
        if name not in self.views:
            self.views.append(name)

    def create_view_from_sql(self, athena_sql: str) -> str:
        """Run an Athena ``CREATE OR REPLACE VIEW`` statement; returns the view's name."""
        name, body = view_parts(athena_sql)
        self._create_view(name, body)
        return name

    def create_views(self, paths: Iterable[str | Path]) -> list[str]:
        """Create the views of these ``.sql`` files (one CREATE VIEW each), in order."""
        return [self.create_view_from_sql(Path(p).read_text()) for p in paths]

    # -- queries
    def query(self, athena_sql: str) -> pa.Table:
        sql = self.translate(athena_sql)
        try:
            relation = self.connection.sql(sql)
            return bigint_sums(relation.to_arrow_table()) if relation is not None else pa.table({})
        except duckdb.Error as exc:
            raise QueryError(str(exc)) from None
