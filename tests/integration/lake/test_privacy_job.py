"""The deletion job's parts on moto: the raw table's writer lease, open hours, bad rows and dead letters."""

from __future__ import annotations

import base64
import time

import orjson
import pytest
from moto import mock_aws

from chalicelib.lake.erasure import ObjectEraser
from chalicelib.lake.privacy_job import DeletionJob
from chalicelib.lake.writer_lock import LockHeld, WriterLock
from chalicelib.runtime.container import Container
from chalicelib.runtime.settings import Settings
from chalicelib.stream import codec
from eventpipe.local.bootstrap import bootstrap


@pytest.fixture
def container():
    with mock_aws():
        c = Container(Settings())
        bootstrap(c.clients, shards=1)
        yield c


def line(app, user, n=0) -> bytes:
    return orjson.dumps({"event_id": f"{user}-{n}", "event_type": "probe", "event_time": 0, "received_at": 0,
                         "app_id": app, "user_id": user, "client_event_time": None, "attributes": "{}"})


def test_the_committer_does_nothing_while_another_writer_holds_the_lease_and_takes_it_once_expired(container):
    """commit_events skips its run while the deletion job holds the raw table's lease; a lease whose holder
    died is taken once it expires; an owner takes its own lease again at once."""
    now = [1_000_000]
    lock = WriterLock(container.clients.dynamodb, container.settings.state_table, lambda: now[0], lease_ms=1000)
    job = container.raw_table_job
    job._lock = lock
    lock.acquire("privacy-job:x")
    assert "skipped" in job.run()
    lock.acquire("privacy-job:x")  # its own lease: taken again
    with pytest.raises(LockHeld):
        lock.acquire("privacy-job:y")
    now[0] += 1001  # the holder died: its lease expires
    assert "commit" in job.run()


def test_bad_rows_and_dead_letters_lose_the_users_lines_and_keep_the_others(container):
    """A bad row that names the user anywhere (event, raw line, record data) is removed, another's stays;
    a dead letter's Kinesis record is re-encoded without the user's lines, a record of only theirs dropped."""
    s3, bucket = container.clients.s3, container.settings.bucket
    rows = [{"event": {"app_id": "a", "user_id": "gone"}}, {"raw_line": '{"userId": "gone"}'},
            {"record_data_b64": base64.b64encode(codec.encode_lines([line("a", "gone")])).decode()},
            {"event": {"app_id": "a", "user_id": "kept"}}]
    key = "bad-rows/archive/dt=2026-01-01/app_id=a/s-1.ndjson"
    s3.put_object(Bucket=bucket, Key=key, Body=b"".join(orjson.dumps(r) + b"\n" for r in rows))
    other = "bad-rows/archive/dt=2026-01-01/app_id=b/s-1.ndjson"  # another app's user of the same name
    s3.put_object(Bucket=bucket, Key=other, Body=orjson.dumps(rows[0] | {"event": {"app_id": "b", "user_id": "gone"}}))
    records = [{"kinesis": {"data": base64.b64encode(codec.encode_lines(lines)).decode()}}
               for lines in ([line("a", "gone"), line("a", "kept")], [line("a", "gone", 1)], [line("b", "gone")])]
    dl = "aws/lambda/m/shardId-0/2026/01/01/x"
    s3.put_object(Bucket=bucket, Key=dl, Body=orjson.dumps({"KinesisBatchInfo": {"batchSize": 3},
                                                            "payload": orjson.dumps({"Records": records}).decode()}))
    eraser = ObjectEraser(s3, bucket)
    targets = {"a": frozenset({"gone"})}
    assert eraser.bad_rows(targets) == 3 and eraser.dead_letters(targets) == 2
    assert [orjson.loads(x) for x in s3.get_object(Bucket=bucket, Key=key)["Body"].read().splitlines()] == [rows[3]]
    assert b"gone" in s3.get_object(Bucket=bucket, Key=other)["Body"].read()
    kept = orjson.loads(orjson.loads(s3.get_object(Bucket=bucket, Key=dl)["Body"].read())["payload"])["Records"]
    assert [codec.decode_record(base64.b64decode(r["kinesis"]["data"])) for r in kept] == [
        line("a", "kept") + b"\n", line("b", "gone") + b"\n"]
    assert eraser.bad_rows(targets) == 0 and eraser.dead_letters(targets) == 0  # idempotent


def test_a_regulation_whose_hours_are_still_open_stays_running_with_its_ids_until_they_close(container):
    """When an affected hour is still open the regulation stays running (its ids and hours kept); the next
    run after the hour closed re-finalizes it and only then is the regulation done, its ids dropped."""
    from chalicelib.lake.raw_table import to_table_rows
    import pyarrow as pa

    at = int(time.time() * 1000)
    container.raw_table.table().append(to_table_rows(pa.table({
        "event_id": ["e1", "e2"], "event_type": ["probe"] * 2, "event_time": [at, at], "received_at": [at, at],
        "app_id": ["a", "a"], "user_id": ["gone", "kept"], "client_event_time": pa.nulls(2, pa.int64()),
        "attributes": ["{}"] * 2})))
    reg = container.regulation_store.create("a", "delete", ["gone"], {"role": "test"})
    outcome = ["open"]

    class Refinalizer:
        def refinalize(self, app_id, dt, hour):
            return outcome[0]

    base = container.deletion_job()
    job = DeletionJob(container.regulation_store, container.writer_lock, base._committer, container.raw_table,
                      base._maintenance, base._eraser, None, lambda: Refinalizer(), lambda: at)
    job.run()
    pending = container.regulation_store.get(reg.id)
    assert pending.status == "running" and pending.user_ids == ["gone"] and pending.results["hours"]
    assert pending.results["raw_rows"] == 1
    outcome[0] = "done"
    job.run()
    done = container.regulation_store.get(reg.id)
    assert done.status == "done" and done.user_ids == [] and "hours" not in done.results
    assert container.raw_table.table().scan().to_arrow()["user_id"].to_pylist() == ["kept"]


def test_in_a_versioned_bucket_no_older_version_of_a_cleaned_object_is_left(container):
    """Should the bucket keep versions, a rewritten or deleted bad-row object keeps no version naming the user."""
    s3, bucket = container.clients.s3, container.settings.bucket
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    mixed = "bad-rows/archive/dt=2026-01-01/app_id=a/s-1.ndjson"
    only = "bad-rows/archive/dt=2026-01-01/app_id=a/s-2.ndjson"
    for _ in range(2):
        s3.put_object(Bucket=bucket, Key=mixed, Body=b'{"event":{"user_id":"gone"}}\n{"event":{"user_id":"kept"}}\n')
        s3.put_object(Bucket=bucket, Key=only, Body=b'{"event":{"user_id":"gone"}}\n')
    assert ObjectEraser(s3, bucket).bad_rows({"a": frozenset({"gone"})}) == 2  # the current versions
    versions = s3.list_object_versions(Bucket=bucket, Prefix="bad-rows/")
    bodies = [s3.get_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])["Body"].read()
              for v in versions.get("Versions", [])]
    assert bodies == [b'{"event":{"user_id":"kept"}}\n'] and not versions.get("DeleteMarkers")
    table_key = "tables/events/data/x.parquet"
    for body in (b"old", b"new"):
        s3.put_object(Bucket=bucket, Key=table_key, Body=body)
    s3.put_object(Bucket=bucket, Key="tables/events/data/gone.parquet", Body=b"old")
    s3.delete_object(Bucket=bucket, Key="tables/events/data/gone.parquet")
    assert ObjectEraser(s3, bucket).purge_noncurrent("tables/events/") == 3
    left = s3.list_object_versions(Bucket=bucket, Prefix="tables/events/")
    assert [v["Key"] for v in left["Versions"] if "/data/" in v["Key"]] == [table_key]
    assert not left.get("DeleteMarkers")
