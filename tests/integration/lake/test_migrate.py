"""``eventpipe lake migrate``: an archive in the Hive layout of before the Iceberg table (written here as
that archive consumer wrote it: one zstd Parquet file per batch and (app, hour) under
events/app_id=/dt=/hour=, app_id only in the path) ends up in the raw events table, every row once,
the old files deleted; a crash after a commit and a re-run lose nothing and compaction leaves one copy."""

from __future__ import annotations

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from moto import mock_aws
from pyiceberg.expressions import AlwaysTrue

from chalicelib.lake import layout, s3io
from chalicelib.lake.legacy_archive import RAW_SCHEMA
from chalicelib.lake.raw_maintenance import RawMaintenance
from chalicelib.processing import decode_records, encode_parquet
from chalicelib.runtime.clients import Clients
from chalicelib.runtime.settings import Settings
from eventpipe.local.bootstrap import bootstrap
from eventpipe.ops.migrate import Migration
from tests.factories.lake import T0, Clock, canonical_lines, lambda_batches, raw_table_of


def write_old_archive(s3, bucket: str, batches: list[list[dict]]) -> int:
    """What ArchiveService wrote before the table: per batch, one file per (app, hour)."""
    files = 0
    for batch in batches:
        events = decode_records(batch).events
        shard, first = batch[0]["eventID"].split(":")[0], batch[0]["kinesis"]["sequenceNumber"]
        hour_ms = pc.multiply(pc.divide(events["event_time"], layout.HOUR_MS), layout.HOUR_MS)
        for app_id, start in {(a, h) for a, h in zip(events["app_id"].to_pylist(), hour_ms.to_pylist())}:
            mask = pc.and_(pc.equal(events["app_id"], app_id), pc.equal(hour_ms, start))
            chunk = events.filter(mask)
            table = pa.table([chunk[f.name].cast(pa.int64()).cast(f.type) if pa.types.is_timestamp(f.type)
                              else chunk[f.name] for f in RAW_SCHEMA], schema=RAW_SCHEMA)
            dt, hour = layout.dt_hour(start)
            s3.put_object(Bucket=bucket, Key=layout.raw_key(app_id, dt, hour, shard, first), Body=encode_parquet(table))
            files += 1
    return files


@pytest.fixture
def lake():
    with mock_aws():
        clients = Clients(Settings())
        bootstrap(clients)
        yield clients


def test_the_old_archive_is_migrated_once_and_its_files_deleted(lake):
    s = lake.settings
    lines = canonical_lines(400, seed=81) + canonical_lines(300, seed=82, app_id="beta", start_ms=T0 + 50 * 60_000)
    lines = lines + lines[:30]  # client retries: the old archive held copies too
    files = write_old_archive(lake.s3, s.bucket, lambda_batches(lines, seed=83))
    raw = raw_table_of(lake)

    dry = Migration(lake.s3, s.bucket, raw).run(dry_run=True)
    assert (dry.files, dry.rows, dry.commits) == (files, 730, 0)
    assert raw.table().current_snapshot() is None

    report = Migration(lake.s3, s.bucket, raw, max_commit_rows=300).run()
    assert report.rows == 730 and report.commits >= 2 and report.deleted == files
    assert list(s3io.list_keys(lake.s3, s.bucket, layout.EVENTS_PREFIX)) == []
    rows = raw.scan(AlwaysTrue(), ("app_id", "event_id", "event_time"))
    assert rows.num_rows == 730
    expected = {(orjson.loads(x)["app_id"], orjson.loads(x)["event_id"]) for x in lines}
    assert set(zip(rows["app_id"].to_pylist(), rows["event_id"].to_pylist())) == expected
    assert Migration(lake.s3, s.bucket, raw).run().rows == 0  # nothing left: re-running is a no-op

    # Compaction of the migrated hours keeps each (app, event) once.
    keeper = RawMaintenance(lake.s3, s.bucket, raw, Clock(T0 + 5 * 3_600_000), settle_ms=0)
    keeper.run()
    rows = raw.scan(AlwaysTrue(), ("app_id", "event_id"))
    assert sorted(zip(rows["app_id"].to_pylist(), rows["event_id"].to_pylist())) == sorted(expected)


def test_a_crash_after_a_commit_before_the_deletes_duplicates_nothing_after_compaction(lake, monkeypatch):
    s = lake.settings
    lines = canonical_lines(200, seed=84)
    write_old_archive(lake.s3, s.bucket, lambda_batches(lines, seed=85))
    raw = raw_table_of(lake)
    monkeypatch.setattr(s3io, "delete_keys", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("killed")))
    with pytest.raises(RuntimeError):
        Migration(lake.s3, s.bucket, raw).run()
    monkeypatch.undo()
    Migration(lake.s3, s.bucket, raw).run()  # the same files again
    assert raw.scan(AlwaysTrue(), ("event_id",)).num_rows == 400
    RawMaintenance(lake.s3, s.bucket, raw, Clock(T0 + 5 * 3_600_000), settle_ms=0).run()
    ids = raw.scan(AlwaysTrue(), ("event_id",))["event_id"].to_pylist()
    assert sorted(ids) == sorted(orjson.loads(x)["event_id"] for x in lines)


def test_the_lake_commands_migrate_commit_and_show_the_table(monkeypatch, capsys):
    """`eventpipe lake migrate`, `lake commit` and `lake status` on a moto server, as docs/operations.md shows them."""
    from chalicelib.runtime.container import Container
    from eventpipe import cli
    from tests.conftest import fresh_moto_server

    with fresh_moto_server() as url:
        monkeypatch.setenv("EVENTPIPE_AWS_ENDPOINT_URL", url)
        monkeypatch.setenv("EVENTPIPE_BUCKET", "lake-cli")
        monkeypatch.setenv("EVENTPIPE_GLUE_DATABASE", "eventpipe_cli")  # moto's Glue is per process: a database of its own
        container = Container(Settings.from_env())
        bootstrap(container.clients, shards=1)
        write_old_archive(container.clients.s3, "lake-cli", lambda_batches(canonical_lines(120, seed=86), seed=87))
        assert cli.main(["lake", "migrate"]) == 0
        assert "120 row(s) -> 1 commit(s)" in capsys.readouterr().out
        assert cli.main(["lake", "commit"]) == 0
        assert orjson.loads(capsys.readouterr().out)["maintenance"]["compacted"] == ["demo/2026-01-01/12"]
        assert cli.main(["lake", "status"]) == 0
        out = capsys.readouterr().out
        assert "staged: 0 file(s)" in out and "app_id=demo dt=2026-01-01 hour=12: 1 file(s), 120 row(s)" in out
        assert "eventpipe.migration" in out and "eventpipe.compaction" in out  # the snapshots say who wrote them
