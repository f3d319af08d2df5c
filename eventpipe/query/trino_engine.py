"""Athena SQL on a local Trino: the engine Athena (v3) runs, over a mirror of the lake.

The SQL is sent unmodified: Trino *is* the dialect, so nothing is translated.
What has to be translated is the catalog, because Athena DDL (``CREATE
EXTERNAL TABLE ... STORED AS``, ``MSCK REPAIR TABLE``) is refused by Trino's
Hive connector:

* The lake is copied from S3 (moto on the local stack) into a local directory
  that mirrors the keys, ``<root>/lake/<bucket>/<key>``
  (:func:`mirror_buckets`; only new or changed objects are copied). Trino reads
  it with its native local file system (``fs.native-local.enabled``,
  ``local.location=<root>``), so ``s3://bucket/key`` becomes
  ``local:///lake/bucket/key``. Reading moto S3 directly works too (see
  tests/integration/query/test_trino.py), but listing every projected partition of an
  unfiltered ``dt`` range through moto takes minutes.
* Each Glue table (as ``glue.get_tables`` returns it: the definitions the
  bootstrap and the deploy template write) becomes a Trino ``CREATE TABLE``
  (:func:`create_table_sql`) in a catalog with the file metastore
  (``hive.metastore=file``, under ``<root>/metastore``): columns and comments,
  partition keys, the storage format from the SerDe, ``external_location``,
  and partition projection as Trino's ``partition_projection_*`` table and
  column properties, which Trino stores back as Athena's ``projection.*`` /
  ``storage.location.template`` parameters. Every other table parameter and
  every SerDe parameter (e.g. ``mapping.source_record`` of the JSON bad rows)
  goes into ``extra_properties``: Trino's readers see table and SerDe
  parameters as one property set. A ``projection.*`` key without a Trino
  equivalent raises :class:`CatalogError` instead of being dropped.
* ``hive.ignore-absent-partitions=true``: a projected partition without files
  is empty, as on S3 (a missing local directory is an error otherwise).

* Iceberg tables (``table_type=ICEBERG`` in Glue: the raw ``events``) are read by Trino's
  Iceberg connector from the Glue catalog itself and S3 itself (moto on the local stack), in a
  second catalog ``<catalog>_iceberg`` (:func:`iceberg_catalog_properties`:
  ``iceberg.catalog.type=glue`` + ``hive.metastore.glue.endpoint-url``, native S3 with
  ``s3.endpoint`` and path-style access), so every query sees the table's current snapshot
  (commits and compactions land atomically) and nothing is mirrored. To keep the SQL unmodified
  (one database holding Hive and Iceberg tables, as in Athena), the Hive catalog redirects them:
  ``hive.iceberg-catalog-name=<catalog>_iceberg``, and each Iceberg table has a stub in the file
  metastore whose only meaning is ``table_type=ICEBERG`` (Trino's table redirection then sends
  every reference to ``events`` - in a query or inside a view - to the Iceberg catalog).

Views (``sql/views``) are created with their Athena text, in the catalog and
schema of the session, as Athena stores them (Trino views).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path
from typing import Callable, Iterable

import orjson

from eventpipe.query.iceberg_tables import is_iceberg
from eventpipe.query.local_engine import VIEW_NAME, QueryError, view_parts
from eventpipe.query.trino_client import TrinoClient, TrinoError

log = logging.getLogger(__name__)

FORMATS = {
    "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe": "PARQUET",
    "org.openx.data.jsonserde.JsonSerDe": "OPENX_JSON",
    "org.apache.hive.hcatalog.data.JsonSerDe": "JSON",
}
#: Athena's ``projection.<column>.<key>`` -> Trino's column property, and how its value is written.
PROJECTION_KEYS = {
    "type": ("partition_projection_type", "upper"),
    "values": ("partition_projection_values", "array"),
    "range": ("partition_projection_range", "array"),
    "interval": ("partition_projection_interval", "integer"),
    "interval.unit": ("partition_projection_interval_unit", "string"),
    "digits": ("partition_projection_digits", "integer"),
    "format": ("partition_projection_format", "string"),
}
DEFAULT_URL = "http://127.0.0.1:8081"  # scripts/trino-node.sh
#: Catalog settings beyond the metastore and file system. Trino loads the partitions of a scan
#: eagerly (into the plan) up to 100,000 by default; a named query with its default range projects
#: ~51,000 hourly partitions per rollup table (2024-01-01 until now, 2 stages), which made planning
#: take 15-23 s per view and late_events (4 views) run a 1 GB heap out of memory. Loading them
#: lazily, at split generation, gives the same answers in a few seconds.
TUNING = {"hive.max-partitions-for-eager-load": "1"}
#: Table parameters Trino sets itself on an external table.
_OWN_PARAMETERS = {"EXTERNAL"}
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class CatalogError(QueryError):
    """A Glue table definition has something Trino's Hive connector cannot represent."""


# ------------------------------------------------------------------ catalog translation
def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def _split_top(text: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text + ","):
        depth += ch == "<"
        depth -= ch == ">"
        if ch == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    return parts


def trino_type(hive: str) -> str:
    """A Glue (Hive) column type as Trino's: ``struct<a:int>`` -> ``row(a integer)``."""
    hive = hive.strip()
    simple = {"string": "varchar", "int": "integer", "integer": "integer", "bigint": "bigint",
              "smallint": "smallint", "tinyint": "tinyint", "double": "double", "float": "real",
              "boolean": "boolean", "binary": "varbinary", "date": "date", "timestamp": "timestamp(3)"}
    lower = hive.lower()
    if lower in simple:
        return simple[lower]
    if re.fullmatch(r"(decimal|char|varchar)\(\s*\d+\s*(,\s*\d+\s*)?\)", lower):
        return lower.replace(" ", "")
    match = re.fullmatch(r"(array|map|struct)<(.+)>", hive, flags=re.I)
    if match:
        kind, inner = match.group(1).lower(), match.group(2)
        if kind == "array":
            return f"array({trino_type(inner)})"
        parts = _split_top(inner)
        if kind == "map" and len(parts) == 2:
            return f"map({trino_type(parts[0])}, {trino_type(parts[1])})"
        if kind == "struct":
            fields = [part.split(":", 1) for part in parts]
            return "row(" + ", ".join(f"{quote(n.strip())} {trino_type(t)}" for n, t in fields) + ")"
    raise CatalogError(f"no Trino type for the column type {hive!r}")


def _property_value(value: str, how: str) -> str:
    if how == "upper":
        return literal(value.upper())
    if how == "array":
        return "ARRAY[" + ", ".join(literal(v.strip()) for v in value.split(",")) + "]"
    if how == "integer":
        if not re.fullmatch(r"\d+", value.strip()):
            raise CatalogError(f"expected an integer, not {value!r}")
        return value.strip()
    return literal(value)


def create_table_sql(table: dict, qualified_name: str, location: Callable[[str], str]) -> str:
    """The Trino ``CREATE TABLE`` of a Glue table (a ``get_table(s)`` item or a TableInput).

    Args:
        table: The Glue definition.
        qualified_name: ``catalog.schema.table``, already quoted.
        location: Maps an ``s3://`` location of the definition to the one Trino reads.
    """
    name = table["Name"]
    storage = table["StorageDescriptor"]
    serde = storage.get("SerdeInfo", {})
    library = serde.get("SerializationLibrary", "")
    if library not in FORMATS:
        raise CatalogError(f"table {name}: SerDe {library!r} is not one Trino reads here ({', '.join(FORMATS)})")
    parameters = dict(table.get("Parameters", {}))
    partition_keys = [k["Name"] for k in table.get("PartitionKeys", [])]
    projected = parameters.pop("projection.enabled", "false").lower() == "true"
    template = parameters.pop("storage.location.template", None)
    column_properties: dict[str, list[str]] = {k: [] for k in partition_keys}
    for key in sorted(k for k in parameters if k.startswith("projection.")):
        column, _, what = key.removeprefix("projection.").partition(".")
        if column not in column_properties or what not in PROJECTION_KEYS:
            raise CatalogError(f"table {name}: partition projection property {key!r} has no Trino equivalent")
        prop, how = PROJECTION_KEYS[what]
        try:
            column_properties[column].append(f"{prop} = {_property_value(parameters.pop(key), how)}")
        except CatalogError as exc:
            raise CatalogError(f"table {name}: {key}: {exc}") from None

    def column_sql(col: dict, props: list[str] | None = None) -> str:
        text = f"   {quote(col['Name'])} {trino_type(col['Type'])}"
        if col.get("Comment"):
            text += f" COMMENT {literal(col['Comment'])}"
        if props:
            text += f" WITH ({', '.join(props)})"
        return text

    columns = [column_sql(c) for c in storage["Columns"]]
    columns += [column_sql(k, column_properties[k["Name"]] if projected else None)
                for k in table.get("PartitionKeys", [])]
    extra = {k: v for k, v in parameters.items() if k not in _OWN_PARAMETERS}
    for key, value in serde.get("Parameters", {}).items():
        if key in extra and extra[key] != value:
            raise CatalogError(f"table {name}: {key} is both a table and a SerDe parameter, with other values")
        extra[key] = value
    properties = [f"external_location = {literal(location(storage['Location']))}",
                  f"format = {literal(FORMATS[library])}"]
    if partition_keys:
        properties.append("partitioned_by = ARRAY[" + ", ".join(literal(k) for k in partition_keys) + "]")
    if projected:
        properties.append("partition_projection_enabled = true")
        if template:
            properties.append(f"partition_projection_location_template = {literal(location(template))}")
    if extra:
        keys, values = zip(*sorted(extra.items()))
        properties.append("extra_properties = MAP(ARRAY[" + ", ".join(map(literal, keys)) + "], ARRAY["
                          + ", ".join(map(literal, values)) + "])")
    comment = f"\nCOMMENT {literal(table['Description'])}" if table.get("Description") else ""
    return (f"CREATE TABLE {qualified_name} (\n" + ",\n".join(columns) + f"\n){comment}\nWITH (\n   "
            + ",\n   ".join(properties) + "\n)")


def glue_tables(glue, database: str) -> list[dict]:
    """The database's tables (not its views), as Glue defines them."""
    tables = []
    for page in glue.get_paginator("get_tables").paginate(DatabaseName=database):
        tables += [t for t in page["TableList"] if t.get("TableType") != "VIRTUAL_VIEW"]
    return tables


def iceberg_catalog_properties(endpoint_url: str | None, region: str, access_key: str | None = None,
                               secret_key: str | None = None) -> dict[str, str]:
    """Trino Iceberg catalog properties reading the Glue catalog and S3 (``endpoint_url``: moto's)."""
    properties = {"iceberg.catalog.type": "glue", "hive.metastore.glue.region": region,
                  "fs.native-s3.enabled": "true", "s3.region": region}
    if endpoint_url:
        properties.update({"hive.metastore.glue.endpoint-url": endpoint_url, "s3.endpoint": endpoint_url,
                           "s3.path-style-access": "true"})
    if access_key and secret_key:
        properties.update({"hive.metastore.glue.aws-access-key": access_key,
                           "hive.metastore.glue.aws-secret-key": secret_key,
                           "s3.aws-access-key": access_key, "s3.aws-secret-key": secret_key})
    return properties


# ------------------------------------------------------------------ the lake mirror
def mirror_buckets(s3, buckets: Iterable[str], root: Path, skip: Iterable[str] = ()) -> int:
    """Copy every object of the buckets to ``root/<bucket>/<key>``; returns how many were copied.

    Objects already there with the same size and ETag (``root/.mirror.json``) are
    skipped; files of objects that no longer exist are removed. ``skip``: ``bucket/prefix``
    strings whose objects are not mirrored (the Iceberg tables, read from S3 itself).
    """
    skip = tuple(skip)
    root.mkdir(parents=True, exist_ok=True)
    manifest_path = root / ".mirror.json"
    old = orjson.loads(manifest_path.read_bytes()) if manifest_path.exists() else {}
    new, copied = {}, 0
    for bucket in sorted(set(buckets)):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                key = f"{bucket}/{obj['Key']}"
                target = root / key
                if obj["Key"].endswith("/") or ".." in Path(obj["Key"]).parts or key.startswith(skip):
                    continue
                stamp = f"{obj['Size']}:{obj.get('ETag', '')}"
                new[key] = stamp
                if old.get(key) == stamp and target.exists():
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(bucket, obj["Key"], str(target))
                copied += 1
    for key in set(old) - set(new):
        (root / key).unlink(missing_ok=True)
    manifest_path.write_bytes(orjson.dumps(new))
    return copied


def _bucket_of(location: str) -> str:
    if not location.startswith("s3://"):
        raise CatalogError(f"location {location!r} is not on S3")
    return location.removeprefix("s3://").split("/", 1)[0]


# ------------------------------------------------------------------ the engine
def default_url() -> str:
    return os.environ.get("TRINO_URL") or DEFAULT_URL


def default_catalog() -> str:
    return os.environ.get("EVENTPIPE_TRINO_CATALOG") or "eventpipe"


def default_root(catalog: str) -> Path:
    """Where the lake's mirror and the metastore of a catalog live: ~/.cache/eventpipe/trino-lake/."""
    cache = os.environ.get("EVENTPIPE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "eventpipe")
    return Path(cache) / "trino-lake" / catalog


class TrinoAthena:
    """A Trino catalog holding the Glue database's tables over a mirror of the lake.

    Args:
        client: A client of the local Trino node.
        glue: A Glue client (the table definitions).
        s3: An S3 client (the lake's objects).
        database: The Glue database; the Trino schema has the same name.
        root: A directory the Trino node can read: the mirror and the metastore.
        catalog: The Trino catalog to (re)create; its previous tables and views are dropped.
        iceberg_properties: The Iceberg catalog's access to Glue and S3
            (:func:`iceberg_catalog_properties`); needed when the database has Iceberg tables.
    """

    def __init__(self, client: TrinoClient, glue, s3, database: str, root: Path, catalog: str = "eventpipe",
                 catalog_properties: dict[str, str] | None = None,
                 iceberg_properties: dict[str, str] | None = None) -> None:
        if not (_IDENT.fullmatch(catalog) and _IDENT.fullmatch(database)):
            raise QueryError("catalog and database names must be identifiers")
        self.database, self.catalog, self.root = database, catalog, Path(root).resolve()
        self.catalog_properties = dict(catalog_properties or {})
        self.client = client.with_session(catalog, database)
        self.views: list[str] = []
        self.definitions = glue_tables(glue, database)
        iceberg = [t for t in self.definitions if is_iceberg(t.get("Parameters"))]
        self.iceberg_catalog = f"{catalog}_iceberg" if iceberg else None
        if iceberg and iceberg_properties is None:
            raise CatalogError(f"tables {', '.join(t['Name'] for t in iceberg)} are Iceberg tables: "
                               "give iceberg_properties (Trino's access to Glue and S3)")
        self.copied = mirror_buckets(s3, {_bucket_of(t["StorageDescriptor"]["Location"]) for t in self.definitions},
                                     self.root / "lake",
                                     skip=[t["StorageDescriptor"]["Location"].removeprefix("s3://").rstrip("/") + "/"
                                           for t in iceberg])
        self._create_catalog(iceberg_properties)
        self.tables = [t["Name"] for t in self.definitions]
        for table in self.definitions:
            if is_iceberg(table.get("Parameters")):
                self._redirect_to_iceberg(table["Name"])
            else:  # a table without files yet is empty on S3 (Athena): Trino wants its directory
                (self.root / "lake" / table["StorageDescriptor"]["Location"][5:]).mkdir(parents=True, exist_ok=True)
                self.execute(create_table_sql(table, self.qualified(table["Name"]), self.location))

    def location(self, s3_location: str) -> str:
        """``s3://bucket/key`` -> the mirror's ``local:///lake/bucket/key``."""
        _bucket_of(s3_location)
        return "local:///lake/" + s3_location.removeprefix("s3://")

    def qualified(self, name: str) -> str:
        return f"{quote(self.catalog)}.{quote(self.database)}.{quote(name)}"

    def _create_catalog(self, iceberg_properties: dict[str, str] | None) -> None:
        metastore = self.root / "metastore"
        self.execute(f"DROP CATALOG IF EXISTS {quote(self.catalog)}")
        self.execute(f"DROP CATALOG IF EXISTS {quote(self.catalog + '_iceberg')}")
        shutil.rmtree(metastore, ignore_errors=True)
        (metastore / self.database).mkdir(parents=True)
        properties = {"hive.metastore": "file", "hive.metastore.catalog.dir": "local:///metastore",
                      "fs.native-local.enabled": "true", "local.location": str(self.root),
                      "hive.ignore-absent-partitions": "true",
                      # Athena reads every file below a partition's location (bad rows: app_id=<app>/ folders).
                      "hive.recursive-directories": "true", **TUNING, **self.catalog_properties}
        if self.iceberg_catalog:
            self.execute(f"CREATE CATALOG {quote(self.iceberg_catalog)} USING iceberg WITH ("
                         + ", ".join(f"{quote(k)} = {literal(v)}" for k, v in (iceberg_properties or {}).items()) + ")")
            properties["hive.iceberg-catalog-name"] = self.iceberg_catalog
        self.execute(f"CREATE CATALOG {quote(self.catalog)} USING hive WITH ("
                     + ", ".join(f"{quote(k)} = {literal(v)}" for k, v in properties.items()) + ")")
        self.execute(f"CREATE SCHEMA {quote(self.catalog)}.{quote(self.database)}")

    def _redirect_to_iceberg(self, name: str) -> None:
        """A stub of an Iceberg table in the file metastore: its ``table_type=ICEBERG`` makes the Hive
        connector redirect every reference to the Iceberg catalog's table of the same name (which
        reads Glue and S3); the stub's column and (empty) location are never read."""
        if not _IDENT.fullmatch(name):
            raise CatalogError(f"table name {name[:64]!r} is not an identifier")
        stub = self.root / "iceberg-redirects" / name
        stub.mkdir(parents=True, exist_ok=True)
        self.execute(f"CREATE TABLE {self.qualified(name)} (redirected varchar) WITH ("
                     f"format = 'PARQUET', external_location = {literal('local:///iceberg-redirects/' + name)}, "
                     "extra_properties = MAP(ARRAY['table_type'], ARRAY['ICEBERG']))")

    def execute(self, sql: str):
        return self.client.execute(sql)

    # -- views
    def create_view_from_sql(self, athena_sql: str) -> str:
        """Run an Athena ``CREATE OR REPLACE VIEW`` statement as it is; returns the view's name."""
        name, _ = view_parts(athena_sql)
        if not VIEW_NAME.fullmatch(name):
            raise QueryError(f"view name {name[:64]!r} must match {VIEW_NAME.pattern}")
        self.execute(athena_sql)
        if name not in self.views:
            self.views.append(name)
        return name

    def create_views(self, paths: Iterable[str | Path]) -> list[str]:
        return [self.create_view_from_sql(Path(p).read_text()) for p in paths]

    # -- queries
    def query(self, athena_sql: str):
        """Run Athena SQL unmodified; the rows as an Arrow table."""
        return self.client.query(athena_sql)

    def drop(self) -> None:
        """Drop the catalogs (the mirror stays for the next session)."""
        for catalog in filter(None, (self.catalog, self.iceberg_catalog)):
            try:
                self.execute(f"DROP CATALOG IF EXISTS {quote(catalog)}")
            except TrinoError as exc:
                log.warning("could not drop catalog %s: %s", catalog, exc)
