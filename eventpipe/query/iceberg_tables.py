"""Iceberg tables of the Glue catalog as lazy Arrow datasets for DuckDB (the local engine).

A Glue table whose ``Parameters`` say ``table_type = ICEBERG`` (any case; what Athena and
pyiceberg write) is not a directory of Parquet files: its rows are the data files of the
current snapshot. DuckDB's iceberg extension cannot be downloaded here, so:

* **pyiceberg plans** the files (:class:`chalicelib.lake.iceberg_io.BotoGlueCatalog` on the
  engine's boto3 Glue and S3 clients: metadata, manifest list, manifests). A tenant-scoped
  session plans with the row filter ``app_id = <app>``, so the manifests' partition values
  prune the other apps' files before anything is read;
* **pyarrow reads** the planned Parquet files lazily, as one fragment per data file carrying
  its identity partition values as the fragment's partition expression, so DuckDB's pushed-down
  filters (``WHERE dt = ..``) skip whole files without opening them. The bytes come through the
  same boto3 S3 client (:class:`BotoS3Handler`), so every request of the engine is the client's
  (a botocore hook sees them, and it works on AWS, moto server and in-process moto alike);
* columns are the Iceberg schema's (``dt`` and ``hour`` are real columns, instants are
  ``timestamp(us, UTC)``);
* a snapshot with delete files (merge-on-read deletes, as Athena's or Trino's ``DELETE``
  write) is read by pyiceberg itself, which applies them (eagerly, into memory).

A session sees the snapshot that was current when it was made.
"""

from __future__ import annotations

import logging
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
from pyarrow import fs as pafs

log = logging.getLogger(__name__)

ICEBERG = "iceberg"


def is_iceberg(parameters: dict[str, str] | None) -> bool:
    """Whether a Glue table's ``Parameters`` mark it as an Iceberg table."""
    return str((parameters or {}).get("table_type", "")).lower() == ICEBERG


class BotoS3Handler(pafs.FileSystemHandler):
    """A read-only pyarrow file system over a boto3 S3 client (paths are ``bucket/key``).

    Reads go through pyiceberg's FileIO of :mod:`chalicelib.lake.iceberg_io` (one GET for
    small objects, ranged GETs for large ones); sizes known from the plan spare a HEAD.
    """

    def __init__(self, s3, sizes: dict[str, int] | None = None) -> None:
        from chalicelib.lake.iceberg_io import S3FileIO

        self._io = S3FileIO(s3)
        self._s3 = s3
        self._sizes = dict(sizes or {})

    # -- what pyarrow's dataset reader uses
    def get_type_name(self) -> str:
        return "boto-s3"

    def normalize_path(self, path: str) -> str:
        return path.removeprefix("s3://")

    def open_input_file(self, path: str) -> pa.NativeFile:
        stream = self._io.new_input("s3://" + self.normalize_path(path)).open()
        return pa.PythonFile(stream, mode="r")

    def open_input_stream(self, path: str) -> pa.NativeFile:
        return self.open_input_file(path)

    def get_file_info(self, paths: list[str]) -> list[pafs.FileInfo]:
        infos = []
        for path in paths:
            path = self.normalize_path(path)
            size = self._sizes.get(path)
            if size is None:
                bucket, _, key = path.partition("/")
                try:
                    size = int(self._s3.head_object(Bucket=bucket, Key=key)["ContentLength"])
                except self._s3.exceptions.ClientError:
                    infos.append(pafs.FileInfo(path, pafs.FileType.NotFound))
                    continue
            infos.append(pafs.FileInfo(path, pafs.FileType.File, size=size))
        return infos

    # -- the rest: this file system only reads
    def equals(self, other: Any) -> bool:
        return self is other

    def get_file_info_selector(self, selector):
        raise NotImplementedError("listing: the files come from the Iceberg plan")

    def _read_only(self, *_: Any, **__: Any):
        raise OSError("read-only file system")

    create_dir = delete_dir = delete_dir_contents = delete_root_dir_contents = delete_file = _read_only
    move = copy_file = open_output_stream = open_append_stream = _read_only


def _partition_expression(values: dict[str, Any], columns: dict[str, str]) -> ds.Expression:
    expression = ds.scalar(True)
    for field_name, column in columns.items():
        value = values.get(field_name)
        expression &= ds.field(column).is_null() if value is None else ds.field(column) == value
    return expression


class IcebergSource:
    """Plans Iceberg tables of one Glue database and hands DuckDB a dataset per table."""

    def __init__(self, glue, s3, database: str) -> None:
        from chalicelib.lake.iceberg_io import BotoGlueCatalog

        self.catalog = BotoGlueCatalog(glue, s3)
        self.s3 = s3
        self.database = database

    def dataset(self, name: str, app_id: str | None = None) -> ds.Dataset | pa.Table:
        """The table's rows at its current snapshot.

        ``app_id``: plan only that app's partitions (a table without an ``app_id`` column is
        planned whole: the scoped session leaves it out)."""
        from pyiceberg.expressions import AlwaysTrue, EqualTo
        from pyiceberg.io.pyarrow import schema_to_pyarrow
        from pyiceberg.transforms import IdentityTransform

        table = self.catalog.load_table((self.database, name))
        schema = schema_to_pyarrow(table.schema(), include_field_ids=False)
        scoped = app_id is not None and "app_id" in schema.names
        row_filter = EqualTo("app_id", app_id) if scoped else AlwaysTrue()
        scan = table.scan(row_filter=row_filter)
        tasks = list(scan.plan_files())
        if any(task.delete_files for task in tasks):
            log.info("table %s has delete files: read by pyiceberg (deletes applied)", name)
            return scan.to_arrow().cast(schema)
        files = [task.file for task in tasks]
        if not files:
            return schema.empty_table()
        handler = BotoS3Handler(self.s3, {f.file_path.removeprefix("s3://"): f.file_size_in_bytes for f in files})
        filesystem = pafs.PyFileSystem(handler)
        parquet = ds.ParquetFileFormat()
        fragments = []
        for f in files:
            if f.file_format.name != "PARQUET":
                raise ValueError(f"table {name}: data file format {f.file_format.name} is not read here")
            spec = table.specs()[f.spec_id]
            identity = {p.name: table.schema().find_column_name(p.source_id)
                        for p in spec.fields if isinstance(p.transform, IdentityTransform)}
            values = {p.name: f.partition[i] for i, p in enumerate(spec.fields)}
            fragments.append(parquet.make_fragment(
                f.file_path.removeprefix("s3://"), filesystem, file_size=f.file_size_in_bytes,
                partition_expression=_partition_expression({k: values[k] for k in identity}, identity)))
        return ds.FileSystemDataset(fragments, schema, parquet, filesystem)
