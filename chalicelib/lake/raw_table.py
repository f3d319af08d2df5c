"""The raw events table: Apache Iceberg in the Glue catalog, written and read with pyiceberg.

One table, ``<database>.events`` (the name the views and named queries use), at
``s3://<bucket>/tables/events/``. Columns: the event envelope (instants as
``timestamptz``) plus ``dt`` (``YYYY-MM-DD``) and ``hour`` (``HH``) of
``event_time`` in UTC; partitioned by identity on ``app_id``, ``dt``, ``hour`` (plain
identity partitions: queries prune with ``WHERE app_id = .. AND dt = ..``, and no
native transform library is needed to write them).

Who writes (nobody else does):

* the archive consumer *stages* one Parquet file per Kinesis batch under
  ``staging/events/`` (no commit: per-batch commits would contend and bloat the
  metadata) — :mod:`chalicelib.lake.raw_commit` commits them every few minutes;
* compaction rewrites a closed (app, hour) into one deduplicated file in one
  commit, and maintenance expires snapshots and deletes the files no snapshot
  references (:mod:`chalicelib.lake.raw_maintenance`).

Readers (finalizer, replay, insights, the local SQL engines) read through
:class:`RawTable`: a snapshot is read atomically, so no reader sees an event
twice or misses one while a commit or a compaction lands. :meth:`RawTable.read_deduped`
applies the duplicate rule of :mod:`chalicelib.processing.duplicates` — the same one
compaction applies — so callers never dedupe on their own.
"""

from __future__ import annotations

import functools
from typing import Iterable

import pyarrow as pa
import pyarrow.compute as pc

from chalicelib.lake import layout
from chalicelib.processing.duplicates import DEDUPE_WINDOW_MS, kept_mask
from chalicelib.stream import envelope

TABLE_NAME = "events"
TABLE_PREFIX = "tables/events"
#: The raw rows as the readers get them: the envelope, instants as timestamp[ms, UTC].
RAW_WITH_APP = envelope.arrow_schema(timestamps=True)
PARTITION_COLUMNS = ("app_id", "dt", "hour")
TABLE_PROPERTIES = {
    "format-version": "2",
    "write.parquet.compression-codec": "zstd",
    # Appends every few minutes: merge small manifests so planning stays cheap.
    "commit.manifest-merge.enabled": "true",
    # Old metadata JSON files go with each commit (they are not data; snapshots keep history).
    "write.metadata.delete-after-commit.enabled": "true",
    "write.metadata.previous-versions-max": "20",
    # Compacted partitions are written as one file up to this size (uncompressed Arrow bytes).
    "write.target-file-size-bytes": str(512 * 1024 * 1024),
}


def table_location(bucket: str) -> str:
    return f"s3://{bucket}/{TABLE_PREFIX}"


def arrow_table_schema() -> pa.Schema:
    """The table's columns as Arrow (what writers hand to pyiceberg)."""
    instant = pa.timestamp("us", tz="UTC")
    fields = [pa.field(f.name, instant if f.kind == envelope.INSTANT else pa.string(), nullable=not f.required)
              for f in envelope.ENVELOPE]
    return pa.schema([*fields, pa.field("dt", pa.string(), nullable=False),
                      pa.field("hour", pa.string(), nullable=False)])


def iceberg_schema():
    from pyiceberg.io.pyarrow import pyarrow_to_schema
    from pyiceberg.table.name_mapping import MappedField, NameMapping

    arrow = arrow_table_schema()
    mapping = NameMapping([MappedField(field_id=i + 1, names=[f.name]) for i, f in enumerate(arrow)])
    return pyarrow_to_schema(arrow, name_mapping=mapping)


def partition_spec(schema):
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.transforms import IdentityTransform

    return PartitionSpec(*[PartitionField(source_id=schema.find_field(name).field_id, field_id=1000 + i,
                                          transform=IdentityTransform(), name=name)
                           for i, name in enumerate(PARTITION_COLUMNS)])


def to_table_rows(events: pa.Table) -> pa.Table:
    """Decoded or archived events (instants as int64 ms or timestamps) -> rows of the table."""
    schema = arrow_table_schema()
    columns = {}
    for field in schema:
        if field.name in ("dt", "hour"):
            continue
        column = events[field.name]
        if pa.types.is_timestamp(field.type):
            if not pa.types.is_timestamp(column.type):
                column = column.cast(pa.int64()).cast(pa.timestamp("ms", tz="UTC"))
            column = column.cast(field.type)
        columns[field.name] = column
    moments = columns["event_time"]
    columns["dt"] = pc.strftime(moments, format="%Y-%m-%d")
    columns["hour"] = pc.strftime(moments, format="%H")
    return pa.table(columns).cast(schema)


def to_reader_rows(rows: pa.Table) -> pa.Table:
    """Table rows -> the readers' schema (``RAW_WITH_APP``: no dt/hour, instants in ms)."""
    return pa.table({f.name: rows[f.name].cast(f.type) for f in RAW_WITH_APP}, schema=RAW_WITH_APP)


def hours_between(start_ms: int, end_ms: int) -> list[tuple[str, str]]:
    """The (dt, hour) partitions that hold event times in [start_ms, end_ms)."""
    first = start_ms // layout.HOUR_MS * layout.HOUR_MS
    return [layout.dt_hour(h) for h in range(first, end_ms, layout.HOUR_MS)]


def partition_filter(hours: Iterable[tuple[str, str]], app_ids: Iterable[str] | None = None):
    """A pyiceberg row filter selecting whole partitions (pruned by the manifests' partition values)."""
    from pyiceberg.expressions import And, EqualTo, In, Or, AlwaysFalse

    by_day: dict[str, set[str]] = {}
    for dt, hour in hours:
        by_day.setdefault(dt, set()).add(hour)
    expr = AlwaysFalse()
    for dt, day_hours in sorted(by_day.items()):
        expr = Or(expr, And(EqualTo("dt", dt), In("hour", sorted(day_hours))))
    if app_ids is not None:
        expr = And(In("app_id", sorted(set(app_ids))), expr)
    return expr


class RawTable:
    """Open (and create once) the Iceberg table; plan and read it.

    ``catalog`` is a pyiceberg catalog (:class:`chalicelib.lake.iceberg_io.BotoGlueCatalog` on AWS
    and moto); the object holds no snapshot: every read refreshes to the newest one.
    """

    def __init__(self, catalog, database: str, bucket: str) -> None:
        self._catalog, self._database, self._bucket = catalog, database, bucket

    @property
    def identifier(self) -> tuple[str, str]:
        return (self._database, TABLE_NAME)

    @functools.cached_property
    def _table(self):
        from pyiceberg.exceptions import NoSuchTableError

        try:
            return self._catalog.load_table(self.identifier)
        except NoSuchTableError:
            return self.create()

    def create(self):
        """Create the table if it does not exist (idempotent; a concurrent creator's table is loaded).

        When the catalog lost the table but its files are there (the local stack restores S3,
        not Glue), the newest metadata file is registered instead: no data is orphaned."""
        from pyiceberg.exceptions import NoSuchTableError, TableAlreadyExistsError

        try:
            return self._catalog.load_table(self.identifier)
        except NoSuchTableError:
            pass
        schema = iceberg_schema()
        try:
            existing = self._newest_metadata()
            if existing is not None:
                return self._catalog.register_table(self.identifier, existing)
            return self._catalog.create_table(self.identifier, schema=schema, location=table_location(self._bucket),
                                              partition_spec=partition_spec(schema), properties=TABLE_PROPERTIES)
        except TableAlreadyExistsError:
            return self._catalog.load_table(self.identifier)

    def _newest_metadata(self) -> str | None:
        from chalicelib.lake.s3io import list_keys

        s3 = getattr(self._catalog, "s3", None)
        if s3 is None:
            return None
        versions = {}
        for obj in list_keys(s3, self._bucket, f"{TABLE_PREFIX}/metadata/"):
            name = obj["Key"].rsplit("/", 1)[-1]
            if name.endswith(".metadata.json") and name.split("-", 1)[0].isdigit():
                versions[int(name.split("-", 1)[0])] = obj["Key"]
        return f"s3://{self._bucket}/{versions[max(versions)]}" if versions else None

    def table(self):
        """The pyiceberg table at its newest snapshot."""
        table = self._table
        table.refresh()
        return table

    # ----------------------------------------------------------------------------- reads
    def scan(self, row_filter, columns: tuple[str, ...] = ("*",)) -> pa.Table:
        return self.table().scan(row_filter=row_filter, selected_fields=columns).to_arrow()

    def data_files(self) -> list[dict]:
        """The current snapshot's data files: file_path, partition values, record_count, file_size_in_bytes."""
        table = self.table()
        if table.current_snapshot() is None:
            return []
        files = table.inspect.files().select(["file_path", "partition", "record_count", "file_size_in_bytes"])
        return files.to_pylist()

    def partitions(self) -> dict[tuple[str, str, str], list[dict]]:
        """(app_id, dt, hour) -> its data files."""
        found: dict[tuple[str, str, str], list[dict]] = {}
        for f in self.data_files():
            p = f["partition"]
            found.setdefault((p["app_id"], p["dt"], p["hour"]), []).append(f)
        return found

    def apps(self) -> list[str]:
        return sorted({app for app, _, _ in self.partitions()})

    def read_hours(self, hours: list[tuple[str, str]], app_ids: list[str] | None = None) -> pa.Table:
        """Every row of the partitions (duplicates included), in the readers' schema."""
        if not hours:
            return RAW_WITH_APP.empty_table()
        return to_reader_rows(self.scan(partition_filter(hours, app_ids)))

    def read_events(self, start_ms: int, end_ms: int, app_ids: list[str] | None = None) -> pa.Table:
        """Rows with start_ms <= event_time < end_ms (duplicates included)."""
        rows = self.read_hours(hours_between(start_ms, end_ms), app_ids)
        return _in_range(rows, start_ms, end_ms)

    def read_deduped(self, start_ms: int, end_ms: int, app_ids: list[str] | None = None) -> pa.Table:
        """Rows with start_ms <= event_time < end_ms, each (app_id, event_id) once by the duplicate rule.

        Copies of an event may sit in other hours (a re-sent batch with shifted event
        times): the ids of the neighbouring hours within the dedupe window are read too
        (three columns, pruned to the apps present), so the answer is the same whichever
        hour is asked first."""
        hours = hours_between(start_ms, end_ms)
        return _in_range(self.first_copies(self.read_hours(hours, app_ids), hours), start_ms, end_ms)

    def read_app_deduped(self, app_id: str, start_ms: int, end_ms: int) -> pa.Table:
        """One app's rows with start_ms <= event_time < end_ms, each event_id once by the duplicate rule.

        The scan is pruned to the app's partitions and, by the files' ``event_time`` statistics and a
        row filter applied while reading, to the range: a finalization unit holds its slice, never
        the app's whole hour. Every copy of the ids within the dedupe window is consulted (three
        columns), the range's own hours included, so slices of one hour agree with the whole hour."""
        from pyiceberg.expressions import And, GreaterThanOrEqual, LessThan

        hours = hours_between(start_ms, end_ms)
        row_filter = And(partition_filter(hours, [app_id]),
                         And(GreaterThanOrEqual("event_time", _iso(start_ms)), LessThan("event_time", _iso(end_ms))))
        rows = _in_range(to_reader_rows(self.scan(row_filter)), start_ms, end_ms)
        if rows.num_rows == 0:
            return rows
        first, last = layout.hour_start_ms(*hours[0]), layout.hour_start_ms(*hours[-1]) + layout.HOUR_MS
        reach = layout.HOUR_MS * (-(-DEDUPE_WINDOW_MS // layout.HOUR_MS))
        return self._kept(rows, hours_between(first - reach, last + reach), [app_id])

    def partition_files(self, hours: list[tuple[str, str]]) -> dict[tuple[str, str, str], list[tuple[str, int]]]:
        """(app_id, dt, hour) -> [(data file path, record count)] of the hours, from the table's
        manifests only (no data read): what the finalization planner sizes and fingerprints units by."""
        found: dict[tuple[str, str, str], list[tuple[str, int]]] = {}
        if not hours:
            return found
        table = self.table()
        if table.current_snapshot() is None:
            return found
        for task in table.scan(row_filter=partition_filter(hours)).plan_files():
            f = task.file
            p = f.partition
            found.setdefault((p[0], p[1], p[2]), []).append((f.file_path, int(f.record_count)))
        return found

    def _kept(self, rows: pa.Table, hours: list[tuple[str, str]], apps: list[str]) -> pa.Table:
        """``rows`` the duplicate rule keeps, every copy of their ids in ``hours`` consulted
        (a row read again from the table is a later-positioned copy of itself: the rule keeps the first)."""
        columns = ["app_id", "event_id", "received_at"]
        parts = [rows.select(columns)]
        ids = rows["event_id"].combine_chunks()
        reader = self.table().scan(row_filter=partition_filter(hours, apps),
                                   selected_fields=tuple(columns)).to_arrow_batch_reader()
        for batch in reader:
            hit = pa.Table.from_batches([batch]).select(columns)
            hit = hit.filter(pc.is_in(hit["event_id"], value_set=ids))
            if hit.num_rows:
                parts.append(hit.cast(parts[0].schema))
        keys = pa.concat_tables(parts)
        mask = kept_mask(keys["app_id"], keys["event_id"], keys["received_at"])
        return rows.filter(mask.slice(0, rows.num_rows))

    def first_copies(self, rows: pa.Table, hours: list[tuple[str, str]]) -> pa.Table:
        """Of ``rows`` (every row of the apps present in ``hours``), those the duplicate rule keeps,
        given every copy of their ids in the table (the neighbouring hours within the dedupe window)."""
        if rows.num_rows == 0:
            return rows
        apps = sorted(set(rows["app_id"].to_pylist()))
        first = layout.hour_start_ms(*hours[0])
        last = layout.hour_start_ms(*hours[-1]) + layout.HOUR_MS
        reach = layout.HOUR_MS * (-(-DEDUPE_WINDOW_MS // layout.HOUR_MS))
        inside = set(hours)
        return self._kept(rows, [h for h in hours_between(first - reach, last + reach) if h not in inside], apps)


def _iso(ms: int) -> str:
    from datetime import datetime, timezone
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="microseconds")


def _in_range(rows: pa.Table, start_ms: int, end_ms: int) -> pa.Table:
    if rows.num_rows == 0:
        return rows
    t = rows["event_time"].type
    start, end = pa.scalar(start_ms, pa.int64()).cast(t), pa.scalar(end_ms, pa.int64()).cast(t)
    return rows.filter(pc.and_(pc.greater_equal(rows["event_time"], start), pc.less(rows["event_time"], end)))
