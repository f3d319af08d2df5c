"""A batch the runner gave up on is written as Lambda's on-failure record and `eventpipe redrive`
replays it through the same handler, exactly once however often it runs (moto server)."""

from __future__ import annotations

import random
import time

import orjson
import pyarrow.parquet as pq
import pyarrow as pa
import pytest

import app as app_module
from chalicelib.lake.rollups import read_windows_status
from chalicelib.runtime.container import Container
from chalicelib.runtime.settings import Settings
from chalicelib.stream.instants import ms_to_iso
from eventpipe import cli
from eventpipe.local.bootstrap import bootstrap
from eventpipe.local.processes import _stream_arn, s3_dead_letter
from eventpipe.local.runner import CheckpointStore, Consumer, ShardPoller
from eventpipe.ops import failures
from eventpipe.ops.redrive import REDRIVEN_PREFIX, local_redriver
from tests.conftest import fresh_moto_server


@pytest.fixture
def stack(monkeypatch):
    with fresh_moto_server() as url:
        monkeypatch.setenv("EVENTPIPE_AWS_ENDPOINT_URL", url)
        suffix = f"{random.getrandbits(32):08x}"  # moto's state is per process: names no earlier test used
        for name, value in (("EVENTPIPE_STREAM", f"events-{suffix}"), ("EVENTPIPE_APPS_TABLE", f"apps-{suffix}"),
                            ("EVENTPIPE_STATE_TABLE", f"state-{suffix}"), ("EVENTPIPE_BUCKET", f"lake-{suffix}"),
                            ("EVENTPIPE_GLUE_DATABASE", f"eventpipe_{suffix}")):
            monkeypatch.setenv(name, value)
        container = Container(Settings.from_env())
        bootstrap(container.clients, shards=1)
        monkeypatch.setattr(app_module, "container", container)
        yield container


def keys(container, prefix):
    pages = container.clients.s3.get_paginator("list_objects_v2").paginate(Bucket=container.settings.bucket,
                                                                          Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def archived_event_ids(container):
    """Every archived row: staged batches not committed yet and the raw table's rows."""
    from pyiceberg.expressions import AlwaysTrue

    ids = []
    for key in keys(container, STAGING):
        body = container.clients.s3.get_object(Bucket=container.settings.bucket, Key=key)["Body"].read()
        ids += pq.read_table(pa.BufferReader(body)).column("event_id").to_pylist()
    ids += container.raw_table.scan(AlwaysTrue(), ("event_id",))["event_id"].to_pylist()
    return sorted(ids)


STAGING = "staging/events/"


def give_up_on_everything(container):
    """The runner with archive_events failing every attempt (S3 'down'): the batch is dead-lettered."""
    s = container.settings
    kinesis = container.clients.kinesis
    arn = _stream_arn(container)
    shard = kinesis.list_shards(StreamName=s.stream_name)["Shards"][0]["ShardId"]

    def broken(event, context):
        raise ConnectionError("S3 is down")

    consumer = Consumer("archive_events", broken, 100, "TRIM_HORIZON", 0, maximum_retry_attempts=1)
    poller = ShardPoller(kinesis, consumer, s.stream_name, arn, shard, CheckpointStore(container.clients.dynamodb,
                         s.state_table, arn), s.region, s3_dead_letter(container.clients.s3, s.bucket, arn, s.region),
                         sleep=lambda _: None)
    for _ in range(10):
        poller.step()
        if keys(container, failures.PREFIX):
            return arn
    raise AssertionError("the batch was never dead-lettered")


def test_a_dead_lettered_batch_is_replayed_once_through_the_same_handler(stack):
    events = [{"event_type": "level_up", "event_time": "2026-01-01T12:00:00Z", "event_id": f"e-{i}",
               "user_id": f"u{i % 3}"} for i in range(40)]
    result = stack.ingest.ingest("demo", orjson.dumps({"events": events}), "application/json", None)
    assert result.to_dict()["accepted"] == 40
    arn = give_up_on_everything(stack)

    [key] = keys(stack, failures.PREFIX)
    mapping = failures.local_mapping_uuid(arn, "archive_events")
    assert key.startswith(f"aws/lambda/{mapping}/shardId-000000000000/")
    record = failures.parse(key, stack.clients.s3.get_object(Bucket=stack.settings.bucket, Key=key)["Body"].read())
    assert record.condition == "RetryAttemptsExhausted" and len(record.records) == 1
    assert archived_event_ids(stack) == []

    redriver = local_redriver(app_module, arn)
    [outcome] = redriver.run()
    assert (outcome.consumer, outcome.result) == ("archive_events", "replayed")
    assert archived_event_ids(stack) == sorted(e["event_id"] for e in events)
    assert keys(stack, failures.PREFIX) == [] and len(keys(stack, REDRIVEN_PREFIX)) == 1
    assert redriver.run() == [], "nothing left to replay"

    # A replay of the same record again (e.g. --keep, or a copy put back) changes nothing.
    archive_before = keys(stack, STAGING)
    stack.clients.s3.copy_object(Bucket=stack.settings.bucket, Key=key,
                                 CopySource={"Bucket": stack.settings.bucket, "Key": keys(stack, REDRIVEN_PREFIX)[0]})
    assert [o.result for o in redriver.run(keep=True)] == ["replayed"]
    assert [o.result for o in redriver.run(keep=True)] == ["replayed"]
    assert keys(stack, STAGING) == archive_before  # the replayed batch is staged under the same name
    assert archived_event_ids(stack) == sorted(e["event_id"] for e in events)
    stack.raw_table_job.run()
    assert archived_event_ids(stack) == sorted(e["event_id"] for e in events)


def test_a_record_whose_consumer_still_fails_stays_for_the_next_redrive(stack, monkeypatch):
    stack.ingest.ingest("demo", orjson.dumps({"events": [{"event_type": "a", "event_time": 1_767_268_800_000}]}),
                        "application/json", None)
    arn = give_up_on_everything(stack)
    monkeypatch.setattr(stack.archive, "handle", lambda records: {"batchItemFailures": [
        {"itemIdentifier": records[0]["kinesis"]["sequenceNumber"]}]})
    [outcome] = local_redriver(app_module, arn).run()
    assert outcome.result.startswith("failed: batchItemFailures")
    assert len(keys(stack, failures.PREFIX)) == 1
    assert cli.main(["redrive", "--dry-run"]) == 0
    assert cli.main(["redrive"]) == 1, "the command fails while a replay fails"
    assert len(keys(stack, failures.PREFIX)) == 1


def test_objects_that_are_not_failure_records_are_skipped_with_the_reason():
    with pytest.raises(failures.InvalidFailureRecord, match="no payload"):
        failures.parse("aws/lambda/u/shard/2026/01/01/x", orjson.dumps({
            "requestContext": {"condition": "RetryAttemptsExhausted"}, "KinesisBatchInfo": {"shardId": "s"}}))
    with pytest.raises(failures.InvalidFailureRecord, match="not under"):
        failures.parse("elsewhere/x", b"{}")


def deliver_to(container, name: str, handler) -> None:
    """One consumer of the app reads the shard to its tip (the runner's loop, inline)."""
    s = container.settings
    kinesis = container.clients.kinesis
    arn = _stream_arn(container)
    shard = kinesis.list_shards(StreamName=s.stream_name)["Shards"][0]["ShardId"]
    consumer = Consumer(name, handler, 100, "TRIM_HORIZON", 0)
    poller = ShardPoller(kinesis, consumer, s.stream_name, arn, shard, CheckpointStore(container.clients.dynamodb,
                         s.state_table, arn), s.region, s3_dead_letter(container.clients.s3, s.bucket, arn, s.region),
                         sleep=lambda _: None)
    for _ in range(5):
        poller.step()


def test_a_dead_lettered_batch_replayed_before_finalization_leaves_the_final_rows_exact(stack):
    """The archive gave up on a batch the aggregation consumer did process: the finalizer waits for
    the archive (it never finalizes from an archive missing those events); after the redrive the
    final rows hold every event once, and the distinct counts are exact."""
    hour_ms = 3_600_000
    start = (int(time.time() * 1000) // hour_ms - 2) * hour_ms  # an hour long closed, within max lateness
    events = [{"event_type": "level_up", "event_time": ms_to_iso(start + i * 20_000), "event_id": f"d-{i}",
               "user_id": f"u{i % 7}"} for i in range(60)]
    assert stack.ingest.ingest("demo", orjson.dumps({"events": events}), "application/json",
                               None).to_dict()["accepted"] == 60
    arn = give_up_on_everything(stack)
    deliver_to(stack, "aggregate_events", app_module.aggregate_events)
    metric = stack.metrics["event_counts"]
    reports = [r for r in stack.finalizer.run() if r.metric == "event_counts"]
    assert reports and {r.action for r in reports} == {"waiting-for-archive"}

    [outcome] = local_redriver(app_module, arn).run()
    assert outcome.result == "replayed"
    stack.raw_table_job.run()  # the commit_events schedule: the replayed batch reaches the raw table
    assert {r.action for r in stack.finalizer.run() if r.metric == "event_counts"} == {"finalized"}
    status = read_windows_status(stack.clients.s3, stack.settings.bucket, metric, start, start + hour_ms, "demo")
    assert status.first_open_window_ms is None, "every window is answered from the final rows"
    rows = status.rows.to_pylist()
    expected: dict[int, tuple[int, set[str]]] = {}
    for e in events:
        window = (start + int(e["event_id"][2:]) * 20_000) // 60_000 * 60_000
        count, users = expected.get(window, (0, set()))
        expected[window] = (count + 1, users | {e["user_id"]})
    assert {r["window_start"]: (r["count"], r["users"]) for r in rows} == \
        {w: (c, len(u)) for w, (c, u) in expected.items()}
