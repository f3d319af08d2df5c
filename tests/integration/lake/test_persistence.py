"""The data folder of the local stack (moto server): save, restore into a new moto, a new stream epoch."""

from __future__ import annotations

import time

import orjson
import pytest
import requests
from moto.server import ThreadedMotoServer

from chalicelib.apps.keys import AppStore
from chalicelib.lake import layout
from chalicelib.lake.finalizer import Finalizer
from chalicelib.lake.s3io import list_keys, read_many
from chalicelib.lake.sql_sketch import strip_register_columns
from chalicelib.processing import finalize, load_metrics, merge_partials
from chalicelib.runtime.container import Container
from chalicelib.runtime.settings import Settings
from eventpipe.local import persistence
from eventpipe.local.bootstrap import bootstrap
from eventpipe.local.moto_server import use_time_ordered_sequences
from eventpipe.local.persistence import DataFolder, drain
from eventpipe.local.processes import _stream_arn, s3_dead_letter
from eventpipe.local.runner import CheckpointStore, Consumer, ShardPoller
from eventpipe.local.stack import free_port

HOUR = 3_600_000
#: Two hours ago: windows closed by the finalizer's clock below, inside every retention.
START = (int(time.time() * 1000) // HOUR - 2) * HOUR
CONSUMERS = ("archive_events", "aggregate_events")


@pytest.fixture
def moto(monkeypatch):
    from moto.kinesis import models
    monkeypatch.setattr(models.Shard, "put_record", models.Shard.put_record)  # undone after the test
    use_time_ordered_sequences()  # what the stack's moto runs (eventpipe/local/moto_server.py)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    requests.post(f"{url}/moto-api/reset", timeout=10)
    monkeypatch.setenv("EVENTPIPE_AWS_ENDPOINT_URL", url)
    try:
        yield url
    finally:
        server.stop()


def fresh_container(shards: int = 2) -> Container:
    container = Container(Settings.from_env())
    bootstrap(container.clients, shards=shards, demo_app="demo", demo_key="demo-key")
    return container


def folder(container, path) -> DataFolder:
    s = container.settings
    return DataFolder(path, container.clients.s3, container.clients.dynamodb, s.state_table, s.apps_table)


def send(container, n: int, seed: int) -> list[dict]:
    events = [{"event_type": "level_up", "event_id": f"e-{seed}-{i}", "user_id": f"u{i % 7}",
               "event_time": START + (i * 7919 + seed) % (50 * 60_000)} for i in range(n)]
    for i in range(0, n, 100):
        result = container.ingest.ingest("demo", orjson.dumps({"events": events[i:i + 100]}), "application/json",
                                         None).to_dict()
        assert result["accepted"] == len(events[i:i + 100])
    return events


def run_consumer(container, name: str) -> None:
    """Deliver the whole stream to one consumer, as the runner does (checkpoints in the state table)."""
    s, clients = container.settings, container.clients
    arn = _stream_arn(container)
    handler = {"archive_events": container.archive.handle, "aggregate_events": container.aggregation.handle}[name]
    for shard in clients.kinesis.list_shards(StreamName=s.stream_name)["Shards"]:
        poller = ShardPoller(clients.kinesis, Consumer(name, lambda e, c: handler(e["Records"]), 10_000,
                                                       "TRIM_HORIZON", 0),
                             s.stream_name, arn, shard["ShardId"], CheckpointStore(clients.dynamodb, s.state_table,
                                                                                    arn),
                             s.region, s3_dead_letter(clients.s3, s.bucket, arn, s.region))
        while poller.step() > 0:
            pass


def restart(url: str) -> None:
    """What a restart of the stack does to moto: everything is gone."""
    requests.post(f"{url}/moto-api/reset", timeout=10)


def final_counts(container) -> dict[int, int]:
    metric = load_metrics()["event_counts"]
    s = container.settings
    keys = [o["Key"] for o in list_keys(container.clients.s3, s.bucket, layout.rollup_prefix(metric, "final"))
            if o["Key"].endswith(".parquet")]
    rows = finalize(merge_partials([strip_register_columns(t, metric)
                                    for t in read_many(container.clients.s3, s.bucket, keys)])).to_pylist()
    return {r["window_start"]: r["count"] for r in rows if r["count"]}


def truth(events: list[dict]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for e in {e["event_id"]: e for e in events}.values():
        counts[e["event_time"] // 60_000 * 60_000] = counts.get(e["event_time"] // 60_000 * 60_000, 0) + 1
    return counts


def finalizer(container) -> Finalizer:
    container.raw_table_job.run()  # the commit_events schedule runs before (every few seconds locally)
    return Finalizer(container.clients.s3, container.settings.bucket, container.state, container.metrics,
                     clock_ms=lambda: START + 5 * HOUR, grace_ms=0, close_delay_ms=0, raw=container.raw_table)


def test_windows_open_before_the_restart_are_finalized_exactly_after_it(moto, tmp_path):
    before = fresh_container()
    sent = send(before, 400, seed=1)
    for name in CONSUMERS:
        run_consumer(before, name)
    assert drain(before.clients.kinesis, before.clients.dynamodb, before.settings.state_table,
                 before.settings.stream_name, CONSUMERS, timeout_s=5).drained
    folder(before, tmp_path).save()

    restart(moto)
    after = Container(Settings.from_env())
    report = folder(after, tmp_path).restore(folder(after, tmp_path).load(), after.settings.region)
    bootstrap(after.clients, shards=2)  # the new, empty stream: its sequence numbers start again at 1
    assert report.objects > 0 and report.apps == 1
    sent += send(after, 300, seed=2)  # the same hour's windows get more events on the new stream

    run_consumer(after, "aggregate_events")  # the archive is behind: these partials must wait for it
    reports = finalizer(after).run()
    assert reports and {r.action for r in reports} == {"waiting-for-archive"}

    run_consumer(after, "archive_events")
    assert {r.action for r in finalizer(after).run()} == {"finalized"}
    assert final_counts(after) == truth(sent)


def test_restored_objects_keep_body_content_type_and_metadata_and_the_state_keeps_its_meaning(moto, tmp_path):
    before = fresh_container()
    s = before.settings
    key = AppStore(before.clients.dynamodb, s.apps_table).create_key("my-game")
    send(before, 50, seed=3)
    for name in CONSUMERS:
        run_consumer(before, name)
    before.raw_table_job.run()  # the archive's staged batches committed: the progress is the committer's
    before.clients.s3.put_object(Bucket=s.bucket, Key="notes/a.json", Body=b'{"a": 1}', ContentType="application/json",
                                 Metadata={"who": "test"})
    objects = {o["Key"]: o["ETag"] for o in list_keys(before.clients.s3, s.bucket, "")}
    partials = {k: before.clients.s3.head_object(Bucket=s.bucket, Key=k)["Metadata"] for k in objects
                if "/stage=partial/" in k}
    shards = sorted({m["shard-id"] for m in partials.values()})
    progress = {shard: before.state.archived_through(shard) for shard in shards}
    checkpoints = CheckpointStore(before.clients.dynamodb, s.state_table, _stream_arn(before))
    positions = {shard: checkpoints.get("archive_events", shard) for shard in shards}
    saved = folder(before, tmp_path).save()
    assert saved.objects == len(objects) and saved.fetched == len(objects)

    restart(moto)
    after = Container(Settings.from_env())
    folder(after, tmp_path).restore(folder(after, tmp_path).load(), s.region)
    bootstrap(after.clients, shards=2, demo_app="demo", demo_key="demo-key")
    assert {o["Key"]: o["ETag"] for o in list_keys(after.clients.s3, s.bucket, "")} == objects, "same ETags"
    note = after.clients.s3.get_object(Bucket=s.bucket, Key="notes/a.json")
    assert (note["Body"].read(), note["ContentType"], note["Metadata"]) == (b'{"a": 1}', "application/json",
                                                                            {"who": "test"})
    assert {k: after.clients.s3.head_object(Bucket=s.bucket, Key=k)["Metadata"] for k in partials} == partials
    apps = AppStore(after.clients.dynamodb, s.apps_table)
    assert apps.authenticate(key) == "my-game" and apps.authenticate("demo-key") == "demo"
    assert after.apps.is_operator("demo"), "bootstrap kept the restored demo app"
    assert {shard: after.state.archived_through(shard) for shard in shards} == progress
    checkpoints = CheckpointStore(after.clients.dynamodb, s.state_table, _stream_arn(after))
    assert {shard: checkpoints.get("archive_events", shard) for shard in shards} == positions
    [new] = send(after, 1, seed=5)
    every_shard = [sh["ShardId"] for sh in after.clients.kinesis.list_shards(StreamName=s.stream_name)["Shards"]]
    put = [int(r["SequenceNumber"]) for shard in every_shard for r in after.clients.kinesis.get_records(
        ShardIterator=after.clients.kinesis.get_shard_iterator(StreamName=s.stream_name, ShardId=shard,
                                                               ShardIteratorType="TRIM_HORIZON")["ShardIterator"])[
        "Records"]]
    assert min(put) > max(int(p) for p in positions.values()), "the new stream's numbers are all greater"


def test_after_a_crash_partials_whose_records_never_reached_the_archive_do_not_block_finalization(moto, tmp_path):
    before = fresh_container()
    archived = send(before, 200, seed=6)
    run_consumer(before, "archive_events")
    send(before, 100, seed=7)  # aggregated, then the stack is killed before the archive writes them
    run_consumer(before, "aggregate_events")
    folder(before, tmp_path).save()  # the last periodic save before the SIGKILL

    restart(moto)
    after = Container(Settings.from_env())
    folder(after, tmp_path).restore(folder(after, tmp_path).load(), after.settings.region)
    bootstrap(after.clients, shards=2)
    assert {r.action for r in finalizer(after).run()} == {"finalized"}
    assert final_counts(after) == truth(archived), "the finals hold what the archive holds"


def test_a_save_fetches_only_changed_objects_and_a_failed_save_leaves_the_previous_one(moto, tmp_path, monkeypatch):
    container = fresh_container(shards=1)
    s = container.settings
    bootstrapped = len(list(list_keys(container.clients.s3, s.bucket, "")))  # the raw table's first metadata
    for i in range(5):
        container.clients.s3.put_object(Bucket=s.bucket, Key=f"k/{i}", Body=f"v{i}".encode())
    data = folder(container, tmp_path)
    assert data.save().fetched == 5 + bootstrapped
    assert data.save().fetched == 0
    container.clients.s3.put_object(Bucket=s.bucket, Key="k/0", Body=b"changed")
    container.clients.s3.delete_object(Bucket=s.bucket, Key="k/1")
    report = data.save()
    assert (report.fetched, report.objects) == (1, 4 + bootstrapped)
    assert len(list((tmp_path / "blobs").iterdir())) == 4 + bootstrapped, "the blobs nothing refers to are gone"

    container.clients.s3.put_object(Bucket=s.bucket, Key="k/9", Body=b"new")
    before = (tmp_path / "snapshot.json").read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(persistence, "_write_atomically", crash)
    with pytest.raises(OSError):
        data.save()
    monkeypatch.undo()
    assert (tmp_path / "snapshot.json").read_bytes() == before
    snapshot = data.load()
    assert sorted(k for k in snapshot["buckets"][s.bucket] if k.startswith("k/")) == ["k/0", "k/2", "k/3", "k/4"]
    assert all((tmp_path / "blobs" / e["blob"]).exists() for e in snapshot["buckets"][s.bucket].values())


def test_drain_names_the_consumer_that_is_behind(moto):
    container = fresh_container(shards=1)
    send(container, 10, seed=4)
    run_consumer(container, "archive_events")
    s = container.settings
    report = drain(container.clients.kinesis, container.clients.dynamodb, s.state_table, s.stream_name, CONSUMERS,
                   timeout_s=0.5, poll_s=0.1)
    assert not report.drained and set(report.behind) == {"aggregate_events"}
    assert "aggregate_events 1 record(s) behind" in report.describe()
