"""``eventpipe lake migrate``: the Hive-layout raw archive (``events/``) into the raw events Iceberg table.

Before the Iceberg table, the archive consumer wrote one Parquet file per (app, hour)
and batch under ``events/app_id=<app>/dt=<day>/hour=<hh>/``. The migration reads those
hours (:mod:`chalicelib.lake.legacy_archive`), appends them to the table in few commits
(about :data:`MAX_COMMIT_ROWS` rows each, every commit naming the hours it holds in its
snapshot summary), and deletes an hour's old files only after the commit holding its rows
landed. A crash between a commit and the deletes leaves those files to be migrated again:
their rows are then in the table twice until compaction keeps one (the duplicate rule), so
re-running the migration is always safe. ``--dry-run`` only counts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pyarrow as pa

from chalicelib.lake import legacy_archive, s3io
from chalicelib.lake.raw_table import RawTable, to_table_rows

log = logging.getLogger(__name__)
MAX_COMMIT_ROWS = 2_000_000
MIGRATION_PROPERTY = "eventpipe.migration"


@dataclass
class MigrationReport:
    hours: int = 0
    files: int = 0
    rows: int = 0
    commits: int = 0
    deleted: int = 0

    def describe(self) -> str:
        return (f"lake migrate: {self.hours} archived hour(s), {self.files} file(s), {self.rows} row(s) -> "
                f"{self.commits} commit(s) to the raw events table; {self.deleted} old file(s) deleted")


class Migration:
    def __init__(self, s3, bucket: str, raw: RawTable, max_commit_rows: int = MAX_COMMIT_ROWS) -> None:
        self._s3, self._bucket, self._raw, self._max_rows = s3, bucket, raw, max_commit_rows

    def run(self, dry_run: bool = False) -> MigrationReport:
        report = MigrationReport()
        pending: list[tuple[str, list[str], pa.Table]] = []
        rows = 0
        for app_id, dt, hour in legacy_archive.archived_hours(self._s3, self._bucket):
            keys = legacy_archive.hour_keys(self._s3, self._bucket, app_id, dt, hour)
            table = legacy_archive.read_hour(self._s3, self._bucket, app_id, keys)
            report.hours += 1
            report.files += len(keys)
            report.rows += table.num_rows
            if dry_run:
                continue
            pending.append((f"{app_id}/{dt}/{hour}", keys, table))
            rows += table.num_rows
            if rows >= self._max_rows:
                self._commit(pending, report)
                pending, rows = [], 0
        if pending:
            self._commit(pending, report)
        return report

    def _commit(self, pending: list[tuple[str, list[str], pa.Table]], report: MigrationReport) -> None:
        tables = [table for _, _, table in pending if table.num_rows]
        if tables:
            rows = to_table_rows(pa.concat_tables(tables)).sort_by([("app_id", "ascending"),
                                                                   ("event_time", "ascending")])
            hours = ",".join(name for name, _, _ in pending)
            self._raw.table().append(rows, snapshot_properties={MIGRATION_PROPERTY: hours[:4000]})
            report.commits += 1
        old = [key for _, keys, _ in pending for key in keys]
        report.deleted += s3io.delete_keys(self._s3, self._bucket, old)
        log.info("migrated %d hour(s) (%d file(s)) into the raw events table", len(pending), len(old))
