"""Keeping the raw events table small and exact: compaction, snapshot expiry, file deletion, retention.

Run right after the committer, in the same invocation (one writer of the table
at a time; reserved concurrency 1 on AWS):

* **Compaction**: once an (app, hour) partition is closed (its hour ended more
  than ``settle_ms`` ago), its files become one file in one commit (an
  ``overwrite`` of exactly that partition), holding each ``(app_id, event_id)``
  once by the duplicate rule (:mod:`chalicelib.processing.duplicates`, copies in
  neighbouring hours considered). A reader of any snapshot sees the partition
  either before or after, never both. A late file committed into a compacted
  partition makes it due again. Snapshots of a compaction carry
  ``eventpipe.compaction`` in their summary; a partition whose only file was
  written by one is done.
* **Expiry**: snapshots older than :data:`SNAPSHOT_RETENTION_MS` are expired (the
  current one never), and every file only they reached (data files replaced by a
  compaction or a delete, their manifests and manifest lists) is deleted from S3
  in the same run: bytes leave S3 at most retention + one schedule period after
  they were replaced.
* **Orphans**: files under the table's location that no snapshot reaches and
  older than :data:`ORPHAN_MIN_AGE_MS` (written by a commit that failed) are
  deleted by a sweep at most once per :data:`SWEEP_PERIOD_MS`.
* **Retention**: partitions whose ``dt`` is older than ``retention_days`` are
  deleted (whole files, a metadata-only commit); expiry then removes their bytes.
  (S3 lifecycle rules must not expire an Iceberg table's files: the table would
  point at missing files.)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

import pyarrow as pa

from chalicelib.lake import layout, s3io
from chalicelib.lake.iceberg_io import split_location
from chalicelib.lake.raw_table import RawTable, TABLE_PREFIX, to_table_rows

log = logging.getLogger(__name__)
COMPACTION_PROPERTY = "eventpipe.compaction"
SNAPSHOT_RETENTION_MS = 6 * 3_600_000
ORPHAN_MIN_AGE_MS = 3_600_000
SWEEP_PERIOD_MS = 24 * 3_600_000
#: Partitions compacted per run at most (the rest wait for the next run).
MAX_COMPACTIONS_PER_RUN = 2000
#: One compaction commit rewrites partitions holding at most this many rows (and this many partitions):
#: the commit's metadata is written once for all of them.
MAX_COMPACTION_ROWS = 2_000_000
MAX_PARTITIONS_PER_COMMIT = 500


@dataclass
class MaintenanceReport:
    compacted: list[str] = field(default_factory=list)
    rows_before: int = 0
    rows_after: int = 0
    expired_snapshots: int = 0
    deleted_files: int = 0
    swept_orphans: int = 0
    retention_deleted: bool = False


class RawMaintenance:
    def __init__(self, s3, bucket: str, raw: RawTable, clock_ms: Callable[[], int], settle_ms: int,
                 retention_days: int = 0, snapshot_retention_ms: int = SNAPSHOT_RETENTION_MS,
                 orphan_min_age_ms: int = ORPHAN_MIN_AGE_MS) -> None:
        self._s3, self._bucket, self._raw, self._clock_ms = s3, bucket, raw, clock_ms
        self._settle_ms, self._retention_days = settle_ms, retention_days
        self._snapshot_retention_ms, self._orphan_min_age_ms = snapshot_retention_ms, orphan_min_age_ms

    def run(self, sweep: bool = False) -> MaintenanceReport:
        report = MaintenanceReport()
        self.apply_retention(report)
        for group in self._groups(self.due()[:MAX_COMPACTIONS_PER_RUN]):
            self.compact_many(group, report)
        self.expire(report)
        if sweep:
            self.sweep_orphans(report)
        return report

    # ------------------------------------------------------------------------ compaction
    def due(self) -> list[tuple[str, str, str]]:
        """Closed partitions with more than one file, or one file not written by a compaction."""
        table = self._raw.table()
        snapshot = table.current_snapshot()
        if snapshot is None:
            return []
        compactions = {s.snapshot_id for s in table.snapshots() if s.summary and s.summary[COMPACTION_PROPERTY]}
        known = {s.snapshot_id for s in table.snapshots()}
        files: dict[tuple[str, str, str], list[int]] = {}
        for entry in table.inspect.entries().select(["status", "snapshot_id", "data_file"]).to_pylist():
            if entry["status"] == 2 or entry["data_file"]["content"] != 0:
                continue
            p = entry["data_file"]["partition"]
            files.setdefault((p["app_id"], p["dt"], p["hour"]), []).append(entry["snapshot_id"])
        horizon = self._clock_ms() - self._settle_ms
        due = []
        for (app_id, dt, hour), added_by in sorted(files.items()):
            if layout.hour_start_ms(dt, hour) + layout.HOUR_MS > horizon:
                continue
            # One file whose snapshot was expired: it outlived the retention unchanged, so it was compacted.
            if len(added_by) == 1 and (added_by[0] in compactions or added_by[0] not in known):
                continue
            due.append((app_id, dt, hour))
        return due

    def compact(self, app_id: str, dt: str, hour: str, report: MaintenanceReport | None = None) -> int:
        """Rewrite one partition as one deduplicated file, in one commit; returns the rows kept."""
        return self.compact_many([(app_id, dt, hour)], report)

    def compact_many(self, partitions: list[tuple[str, str, str]], report: MaintenanceReport | None = None) -> int:
        """Rewrite each partition as one deduplicated file, all in **one** commit (an overwrite of
        exactly those partitions: the commit's manifests and metadata are written once)."""
        from pyiceberg.expressions import AlwaysFalse, And, EqualTo, Or

        kept_parts, before, where = [], 0, AlwaysFalse()
        for app_id, dt, hour in partitions:
            rows = self._raw.read_hours([(dt, hour)], [app_id])
            kept = self._raw.first_copies(rows, [(dt, hour)])
            kept_parts.append(kept.sort_by([("event_time", "ascending"), ("event_id", "ascending")]))
            before += rows.num_rows
            where = Or(where, And(EqualTo("app_id", app_id), And(EqualTo("dt", dt), EqualTo("hour", hour))))
        kept = pa.concat_tables(kept_parts)
        names = [f"{a}/{d}/{h}" for a, d, h in partitions]
        self._raw.table().overwrite(to_table_rows(kept), overwrite_filter=where,
                                    snapshot_properties={COMPACTION_PROPERTY: ",".join(names)[:4000]})
        log.info("compacted %d partition(s) in one commit: %d row(s) -> %d", len(partitions), before, kept.num_rows)
        if report is not None:
            report.compacted += names
            report.rows_before += before
            report.rows_after += kept.num_rows
        return kept.num_rows

    def _groups(self, partitions: list[tuple[str, str, str]]) -> list[list[tuple[str, str, str]]]:
        """Due partitions cut into commits of at most MAX_COMPACTION_ROWS rows / MAX_PARTITIONS_PER_COMMIT."""
        rows = {key: sum(f["record_count"] for f in files) for key, files in self._raw.partitions().items()}
        groups: list[list[tuple[str, str, str]]] = []
        size = 0
        for partition in partitions:
            n = rows.get(partition, 0)
            if not groups or len(groups[-1]) >= MAX_PARTITIONS_PER_COMMIT or (size + n > MAX_COMPACTION_ROWS
                                                                                and groups[-1]):
                groups.append([])
                size = 0
            groups[-1].append(partition)
            size += n
        return groups

    # ------------------------------------------------------------------------ expiry and deletes
    def expire(self, report: MaintenanceReport) -> None:
        table = self._raw.table()
        current = table.current_snapshot()
        cutoff = self._clock_ms() - self._snapshot_retention_ms
        old = [s.snapshot_id for s in table.snapshots()
               if s.timestamp_ms < cutoff and current is not None and s.snapshot_id != current.snapshot_id]
        if not old:
            return
        before = self._reachable(table)
        table.maintenance.expire_snapshots().by_ids(old).commit()
        table = self._raw.table()
        gone = before - self._reachable(table)
        report.expired_snapshots += len(old)
        report.deleted_files += self._delete_locations(gone)
        log.info("expired %d snapshot(s); deleted %d file(s) they alone reached", len(old), len(gone))

    def sweep_orphans(self, report: MaintenanceReport) -> None:
        """Delete files under the table's location that nothing references (failed commits)."""
        table = self._raw.table()
        keep = {split_location(p)[1] for p in self._reachable(table)}
        keep.add(split_location(table.metadata_location)[1])
        keep |= {split_location(entry.metadata_file)[1] for entry in table.metadata.metadata_log}
        cutoff = self._clock_ms() - self._orphan_min_age_ms
        orphans = [o["Key"] for o in s3io.list_keys(self._s3, self._bucket, TABLE_PREFIX + "/")
                   if o["Key"] not in keep and o["LastModified"].timestamp() * 1000 < cutoff]
        report.swept_orphans += s3io.delete_keys(self._s3, self._bucket, orphans)

    def apply_retention(self, report: MaintenanceReport) -> None:
        if self._retention_days <= 0:
            return
        from pyiceberg.expressions import LessThan

        cutoff_ms = self._clock_ms() - self._retention_days * 86_400_000
        cutoff = datetime.fromtimestamp(cutoff_ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d")
        table = self._raw.table()
        if table.current_snapshot() is None:
            return
        if any(f["partition"]["dt"] < cutoff for f in self._raw.data_files()):
            table.delete(delete_filter=LessThan("dt", cutoff))
            report.retention_deleted = True

    def _reachable(self, table) -> set[str]:
        """Every data file, manifest and manifest list any snapshot of the table reaches."""
        io = table.io
        paths: set[str] = set()
        seen_manifests: set[str] = set()
        for snapshot in table.snapshots():
            paths.add(snapshot.manifest_list)
            for manifest in snapshot.manifests(io):
                paths.add(manifest.manifest_path)
                if manifest.manifest_path in seen_manifests:
                    continue
                seen_manifests.add(manifest.manifest_path)
                for entry in manifest.fetch_manifest_entry(io, discard_deleted=True):
                    paths.add(entry.data_file.file_path)
        return paths

    def _delete_locations(self, locations: set[str]) -> int:
        by_bucket: dict[str, list[str]] = {}
        for location in locations:
            bucket, key = split_location(location)
            by_bucket.setdefault(bucket, []).append(key)
        return sum(s3io.delete_keys(self._s3, bucket, sorted(keys)) for bucket, keys in by_bucket.items())
