"""The raw events Iceberg table on moto S3 + Glue: staged -> committed -> compacted -> expired.

Rules checked here:
* the archive consumer only stages (one file per batch, no commit); the committer makes one
  commit per run and is exactly-once across a crash between any two of its steps;
* compaction leaves one file per closed (app, hour) holding each (app_id, event_id) once by
  the duplicate rule (by arrival, whatever the event time), and readers of every snapshot
  see each acknowledged event, never a partition twice;
* expiry deletes the files only expired snapshots reached: the bytes leave S3.
"""

from __future__ import annotations

import orjson
import pyarrow as pa
import pytest
from moto import mock_aws

from chalicelib.lake import layout
from chalicelib.lake.badrows import S3BadRowsSink
from chalicelib.lake.consumers import ArchiveService
from chalicelib.lake.iceberg_io import BotoGlueCatalog
from chalicelib.lake.raw_commit import COMMIT_PROPERTY, StagedCommitter
from chalicelib.lake.raw_maintenance import MaintenanceReport, RawMaintenance
from chalicelib.lake.raw_table import RawTable
from chalicelib.lake.s3io import list_keys
from chalicelib.lake.state import StateStore
from chalicelib.processing.duplicates import DEDUPE_WINDOW_MS
from chalicelib.runtime.clients import Clients
from chalicelib.runtime.settings import Settings
from eventpipe.local.bootstrap import bootstrap
from tests.factories.lake import T0, Clock, canonical_lines, lambda_batches

HOUR = 3_600_000


class Table:
    def __init__(self):
        self.clients = Clients(Settings())
        bootstrap(self.clients)
        s = self.clients.settings
        self.s3, self.bucket = self.clients.s3, s.bucket
        self.clock = Clock(T0 + 30 * 60_000)
        self.state = StateStore(self.clients.dynamodb, s.state_table)
        self.raw = RawTable(BotoGlueCatalog(self.clients.glue, self.s3), s.glue_database, s.bucket)
        self.archive = ArchiveService(self.s3, self.bucket, self.state, S3BadRowsSink(self.s3, self.bucket, "archive"))
        self.committer = StagedCommitter(self.s3, self.bucket, self.raw, self.state)
        self.maintenance = RawMaintenance(self.s3, self.bucket, self.raw, self.clock, settle_ms=15 * 60_000,
                                          snapshot_retention_ms=HOUR, orphan_min_age_ms=HOUR)

    def keys(self, prefix: str) -> list[str]:
        return sorted(o["Key"] for o in list_keys(self.s3, self.bucket, prefix))

    def ids(self) -> list[tuple[str, str]]:
        rows = self.raw.scan(_all(), ("app_id", "event_id"))
        return sorted(zip(rows["app_id"].to_pylist(), rows["event_id"].to_pylist()))


def _all():
    from pyiceberg.expressions import AlwaysTrue
    return AlwaysTrue()


@pytest.fixture
def table():
    with mock_aws():
        yield Table()


def _ids(lines: list[bytes], app: str = "demo") -> list[tuple[str, str]]:
    return sorted({(app, orjson.loads(line)["event_id"]) for line in lines})


def test_the_archive_only_stages_and_one_committer_run_is_one_commit(table):
    lines = canonical_lines(600, seed=3)
    batches = lambda_batches(lines, seed=4)
    for batch in batches:
        assert table.archive.handle(batch) == {"batchItemFailures": []}
    assert len(table.keys(layout.STAGING_PREFIX)) == len(batches)  # one file per batch, every app in it
    assert table.raw.table().current_snapshot() is None  # no consumer commits
    report = table.committer.run()
    assert (report.commits, report.files, report.rows) == (1, len(batches), 600)
    assert len(table.raw.table().snapshots()) == 1
    assert table.keys(layout.STAGING_PREFIX) == [] and table.keys(layout.COMMITS_PREFIX) == []
    assert table.ids() == _ids(lines)
    # Progress per shard is what the committer made durable: the finalizer's coverage rule reads it.
    for shard, last in report.shards.items():
        assert table.state.archived_through(shard) == int(last)


def test_a_crash_between_journal_and_commit_loses_and_duplicates_nothing(table, monkeypatch):
    lines = canonical_lines(300, seed=5)
    for batch in lambda_batches(lines, seed=6):
        table.archive.handle(batch)
    boom = RuntimeError("killed before the commit")
    monkeypatch.setattr(table.raw, "table", lambda: (_ for _ in ()).throw(boom))
    with pytest.raises(RuntimeError):
        table.committer.run()
    monkeypatch.undo()
    assert len(table.keys(layout.COMMITS_PREFIX)) == 1  # the journal of a commit that never landed
    report = table.committer.run()
    assert report.dropped_journals == 1 and report.commits == 1
    assert table.ids() == _ids(lines)  # each once


def test_a_crash_after_the_commit_before_cleanup_commits_nothing_twice(table, monkeypatch):
    lines = canonical_lines(300, seed=7)
    for batch in lambda_batches(lines, seed=8):
        table.archive.handle(batch)
    real_finish = StagedCommitter._finish
    monkeypatch.setattr(StagedCommitter, "_finish", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("killed")))
    with pytest.raises(RuntimeError):
        table.committer.run()
    monkeypatch.setattr(StagedCommitter, "_finish", real_finish)
    assert table.keys(layout.STAGING_PREFIX) and table.keys(layout.COMMITS_PREFIX)  # committed, not cleaned
    report = table.committer.run()
    assert report.recovered == 1 and report.commits == 0
    assert table.ids() == _ids(lines)
    assert table.keys(layout.STAGING_PREFIX) == []
    assert all(s.summary[COMMIT_PROPERTY] for s in table.raw.table().snapshots())


def _events(rows: list[dict]) -> pa.Table:
    base = {"event_type": "click", "app_id": "demo", "user_id": "u1", "client_event_time": None, "attributes": "{}"}
    return pa.table({k: [r.get(k, base.get(k)) for r in rows] for k in
                     ("event_id", "event_type", "event_time", "received_at", "app_id", "user_id", "client_event_time",
                      "attributes")})


def _append(table: Table, rows: list[dict]) -> None:
    from chalicelib.lake.raw_table import to_table_rows
    table.raw.table().append(to_table_rows(_events(rows)))


def test_duplicates_are_decided_by_arrival_whatever_their_event_time(table):
    """A batch re-sent 38 minutes later with event times shifted by 38 minutes: the first copies are
    kept (some in hour 12, the copies in hour 13 dropped), and a copy arriving 24 h or more after
    the first is a new event."""
    shift = 38 * 60_000
    first = [{"event_id": f"e{i}", "event_time": T0 + 40 * 60_000 + i * 1000, "received_at": T0 + 41 * 60_000}
             for i in range(20)]
    resent = [{**r, "event_time": r["event_time"] + shift, "received_at": r["received_at"] + shift} for r in first]
    late = {"event_id": "e0", "event_time": T0 + 40 * 60_000, "received_at": T0 + 41 * 60_000 + DEDUPE_WINDOW_MS}
    _append(table, first)
    _append(table, resent)
    _append(table, [late])
    both = table.raw.read_deduped(T0, T0 + 2 * HOUR)
    assert sorted(both["event_id"].to_pylist()) == sorted([f"e{i}" for i in range(20)] + ["e0"])
    # Each hour on its own gives the same answer (no copy counted twice across the boundary).
    h12 = table.raw.read_deduped(T0, T0 + HOUR)
    h13 = table.raw.read_deduped(T0 + HOUR, T0 + 2 * HOUR)
    assert h12.num_rows + h13.num_rows == both.num_rows
    assert h13.num_rows == 0  # every copy in hour 13 is a re-sent duplicate


def test_compaction_leaves_one_deduplicated_file_per_closed_partition_and_expiry_deletes_the_old(table):
    lines = canonical_lines(900, seed=9)
    duplicated = lines + lines[:100]  # client retries
    for i, batch in enumerate(lambda_batches(duplicated, seed=10)):
        table.archive.handle(batch)
        if i % 3 == 2:
            table.committer.run()  # several commits: several files per partition
    table.committer.run()
    before_files = table.raw.partitions()
    assert any(len(files) > 1 for files in before_files.values())
    assert len(table.ids()) == 1000  # duplicates in the table before compaction
    snapshot_before = table.raw.table().current_snapshot().snapshot_id

    table.clock.now_ms = T0 + 3 * HOUR  # the hours are closed
    report = MaintenanceReport()
    for app_id, dt, hour in table.maintenance.due():
        table.maintenance.compact(app_id, dt, hour, report)
    after_files = table.raw.partitions()
    assert set(after_files) == set(before_files)
    assert all(len(files) == 1 for files in after_files.values())
    assert table.ids() == _ids(lines)  # every acknowledged event exactly once
    assert table.maintenance.due() == []  # compacted partitions are done
    # The snapshot before compaction still reads the old files (time travel): readers never mix the two.
    old = table.raw.table().scan(snapshot_id=snapshot_before).to_arrow()
    assert old.num_rows == 1000

    replaced = {f["file_path"] for files in before_files.values() for f in files}
    assert all(table.s3.head_object(Bucket=table.bucket, Key=p.split("/", 3)[3]) for p in replaced)
    table.clock.now_ms = _utc_ms_now() + 2 * HOUR  # past the snapshot retention (snapshots carry wall time)
    report = MaintenanceReport()
    table.maintenance.expire(report)
    assert report.expired_snapshots >= 1 and report.deleted_files >= len(replaced)
    live = set(table.keys(layout_table_prefix()))
    assert not {p.split("/", 3)[3] for p in replaced} & live  # the replaced bytes left S3
    assert table.ids() == _ids(lines)


def layout_table_prefix() -> str:
    from chalicelib.lake.raw_table import TABLE_PREFIX
    return TABLE_PREFIX + "/"


def test_a_late_file_makes_a_compacted_partition_due_again(table):
    rows = [{"event_id": f"a{i}", "event_time": T0 + i * 1000, "received_at": T0 + 60_000} for i in range(5)]
    _append(table, rows)
    table.clock.now_ms = T0 + 3 * HOUR
    assert table.maintenance.due() == [("demo", "2026-01-01", "12")]
    table.maintenance.compact("demo", "2026-01-01", "12")
    assert table.maintenance.due() == []
    _append(table, [{"event_id": "late", "event_time": T0 + 5000, "received_at": T0 + 2 * HOUR},
                    {"event_id": "a1", "event_time": T0 + 1000, "received_at": T0 + 2 * HOUR}])
    assert table.maintenance.due() == [("demo", "2026-01-01", "12")]
    table.maintenance.compact("demo", "2026-01-01", "12")
    assert sorted(e for _, e in table.ids()) == sorted([f"a{i}" for i in range(5)] + ["late"])


def test_orphan_files_of_a_failed_commit_are_swept_after_their_minimum_age(table):
    _append(table, [{"event_id": "x", "event_time": T0, "received_at": T0}])
    orphan = layout_table_prefix() + "data/app_id=demo/dt=2026-01-01/hour=12/orphan.parquet"
    table.s3.put_object(Bucket=table.bucket, Key=orphan, Body=b"written by a commit that failed")
    report = MaintenanceReport()
    table.clock.now_ms = _utc_ms_now() + 10 * 60_000  # younger than the minimum age: kept
    table.maintenance.sweep_orphans(report)
    assert orphan in table.keys(layout_table_prefix())
    table.clock.now_ms = _utc_ms_now() + 2 * HOUR
    table.maintenance.sweep_orphans(report)
    assert orphan not in table.keys(layout_table_prefix()) and report.swept_orphans == 1
    assert table.ids() == [("demo", "x")]  # the table's own files are referenced: kept


def _utc_ms_now() -> int:
    import time
    return int(time.time() * 1000)


def test_retention_deletes_old_partitions_and_expiry_removes_their_bytes(table):
    _append(table, [{"event_id": "old", "event_time": T0, "received_at": T0},
                    {"event_id": "new", "event_time": T0 + 10 * 86_400_000, "received_at": T0 + 10 * 86_400_000}])
    keeper = RawMaintenance(table.s3, table.bucket, table.raw, Clock(T0 + 11 * 86_400_000), settle_ms=0,
                            retention_days=5, snapshot_retention_ms=0)
    report = keeper.run()
    keeper = RawMaintenance(table.s3, table.bucket, table.raw, Clock(_utc_ms_now() + 60_000), settle_ms=0,
                            snapshot_retention_ms=0)
    keeper.run()
    assert report.retention_deleted
    assert table.ids() == [("demo", "new")]
    assert not [k for k in table.keys(layout_table_prefix() + "data/") if "dt=2026-01-01" in k]
