"""Athena SQL on the local stack: DuckDB over the Parquet lake on moto S3.

Tables are resolved from the Glue catalog (location, columns, partition
keys) and exposed to DuckDB as pyarrow datasets read straight from S3, so the
same files Athena would read are read here. Iceberg tables (``table_type=ICEBERG``,
the raw ``events``) are planned by pyiceberg and read lazily through the boto3 S3
client (:mod:`eventpipe.query.iceberg_tables`); a tenant-scoped session plans only
its app's partitions. DuckDB's httpfs extension cannot
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

import dataclasses
import logging
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Iterable

import duckdb
import pyarrow as pa
import sqlglot
from pyarrow import fs as pafs
from sqlglot import exp

log = logging.getLogger(__name__)


from eventpipe.query.catalog_tables import (VIEW_NAME, TableDef, arrow_type, coerce, dataset_for,  # noqa: F401
                                            json_table_for, parse_ndjson, partition_matcher, s3_filesystem,
                                            scope_filter, table_defs)
from eventpipe.query.errors import QueryError  # noqa: F401 - re-exported
from eventpipe.query.iceberg_tables import IcebergSource


def _s3_client_like(glue):
    """An S3 client on the Glue client's endpoint and region (when the caller gave none)."""
    import boto3
    return boto3.client("s3", endpoint_url=glue.meta.endpoint_url, region_name=glue.meta.region_name)

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
    """Where DuckDB reads the same text differently than Trino (found by tests/integration/query/test_trino.py).

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


def _release(connection: duckdb.DuckDBPyConnection, temp_dirs: list[str]) -> None:
    try:
        connection.close()
    finally:
        for path in temp_dirs:
            shutil.rmtree(path, ignore_errors=True)


class LocalAthena:
    """A DuckDB connection with the Glue database's tables registered.

    ``app_id``: a tenant-scoped session (see the module docstring).
    ``s3``: the boto3 S3 client Iceberg tables are planned and read with (default: one made like
    the Glue client: same endpoint and region); ``filesystem`` reads the other tables.

    SQL is translated *with the column types* of the tables and views
    (sqlglot ``qualify`` + ``annotate_types``), so Athena's semantics survive
    where the dialects differ on types: ``bigint / bigint`` is an integer
    division in Trino and a float division in DuckDB, and is translated to a
    truncating division. SQL that cannot be typed (an unknown table, a
    construct sqlglot cannot qualify) is translated without types and noted in
    ``untyped`` (with the reason) and the log.
    """

    def __init__(self, glue, database: str, filesystem: pafs.FileSystem, threads: int = 2,
                 app_id: str | None = None, s3=None) -> None:
        self.database = database
        self.app_id = app_id
        self.tables: list[str] = []
        self.views: list[str] = []
        self.untyped: list[tuple[str, str]] = []
        self._types: dict[str, dict[str, str]] = {}
        self._temp_dir: str | None = None
        self.connection = duckdb.connect()
        # The connection and a scoped session's temp directory go when the session is closed
        # (close(), ``with``), and at the latest when it is collected or the process exits.
        self._temp_dirs: list[str] = []
        self._finalizer = weakref.finalize(self, _release, self.connection, self._temp_dirs)
        self.connection.execute(f"SET threads={threads}")
        self.connection.execute("SET TimeZone='UTC'")
        self.connection.execute(f'CREATE SCHEMA IF NOT EXISTS "{database}"')
        iceberg = None
        for table in table_defs(glue, database):
            if table.iceberg:  # planned by pyiceberg; a scoped session plans only its app's partitions
                iceberg = iceberg or IcebergSource(glue, s3 if s3 is not None else _s3_client_like(glue), database)
                source = iceberg.dataset(table.name, app_id)
                table = dataclasses.replace(table, schema=source.schema)
            else:
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
            self._temp_dirs.append(self._temp_dir)
            for setting in (f"SET temp_directory='{self._temp_dir}'", "SET enable_external_access=false",
                            "SET python_enable_replacements=false", "SET lock_configuration=true"):
                self.connection.execute(setting)

    # -- lifetime
    def close(self) -> None:
        """Close the connection and delete the session's temp directory (idempotent)."""
        self._finalizer()

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def __enter__(self) -> "LocalAthena":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

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
