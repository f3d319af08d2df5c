"""Failure handling against a live backend: throttling storms, an unreachable cluster,
mapping conflicts. Nothing may be lost and nothing stored twice."""

from __future__ import annotations

import boto3
import orjson
from moto import mock_aws

from chalicelib.lake.badrows import S3BadRowsSink
from chalicelib.search import index_kinesis_batch
from chalicelib.stream.badrows import object_key
from chalicelib.stream.records import RecordRef
from chalicelib.stream.retry import Backoff
from chalicelib.search.client import client_for_url
from tests.factories.search import FlakyBulk, RejectingBulk, TcpProxy, assert_indexed_once, event, from_sequence, records, stored


def _three_records(n: int = 10):
    events = [event(text=f"storm {i}") for i in range(3 * n)]
    return events, records(events[:n], events[n:2 * n], events[2 * n:])


def test_item_level_429_storm_is_retried_until_every_event_is_indexed(backend, client, sink, clock, rng):
    events, batch = _three_records()
    sleeps: list[float] = []
    flaky = FlakyBulk(client, ["429", "reject", "503", "reject", "reject"])
    result = index_kinesis_batch(batch, client=flaky, sink=sink, clock=clock, sleep=sleeps.append, rng=rng,
                                 config=backend.indexer_config(backoff=Backoff(max_attempts=8, base_s=0.1)))
    assert result.lambda_response() == {"batchItemFailures": []}
    assert (result.indexed, result.retries, len(sleeps)) == (30, 5, 5)
    assert all(0 <= sleep <= 0.1 * 2 ** i for i, sleep in enumerate(sleeps)), "full jitter under a doubling ceiling"
    assert_indexed_once(client, backend.prefix, events)


def test_429_storm_longer_than_the_retry_budget_fails_from_the_first_affected_record(
        backend, client, sink, clock, rng):
    events, batch = _three_records()
    in_second_record = {e["event_id"] for e in events[10:20]}
    flaky = FlakyBulk(client, ["reject"] * 100, pick=lambda n, doc: doc["event_id"] in in_second_record)
    config = backend.indexer_config(backoff=Backoff(max_attempts=4, base_s=0.01))
    first = index_kinesis_batch(batch, client=flaky, sink=sink, clock=clock, sleep=lambda s: None, rng=rng,
                                config=config)
    assert first.lambda_response() == {"batchItemFailures": [{"itemIdentifier": batch[1]["kinesis"]["sequenceNumber"]}]}
    assert first.indexed == 20

    redelivered = from_sequence(batch, first.failed_sequence_number)
    second = index_kinesis_batch(redelivered, client=client, sink=sink, clock=clock, config=config)
    assert second.lambda_response() == {"batchItemFailures": []}
    assert_indexed_once(client, backend.prefix, events)


def test_cluster_unreachable_for_the_whole_invocation_then_redelivery_indexes_each_event_once(
        backend, client, sink, clock, rng):
    events, batch = _three_records()
    proxy = TcpProxy(backend.url)  # not started: connection refused
    proxied = client_for_url(proxy.url, timeout_s=2)
    config = backend.indexer_config(backoff=Backoff(max_attempts=3, base_s=0.01))
    sleeps: list[float] = []
    first = index_kinesis_batch(batch, client=proxied, sink=sink, clock=clock, sleep=sleeps.append, rng=rng,
                                config=config)
    assert first.lambda_response() == {"batchItemFailures": [{"itemIdentifier": batch[0]["kinesis"]["sequenceNumber"]}]}
    assert (first.indexed, len(sleeps)) == (0, 2)
    assert stored(client, backend.prefix) == []

    proxy.start()
    try:
        second = index_kinesis_batch(from_sequence(batch, first.failed_sequence_number), client=proxied,
                                     sink=sink, clock=clock, config=config)
    finally:
        proxy.stop()
    assert second.lambda_response() == {"batchItemFailures": []}
    assert_indexed_once(client, backend.prefix, events)


def test_cluster_back_within_the_retry_budget_loses_nothing(backend, client, sink, clock, rng):
    events, batch = _three_records()
    proxy = TcpProxy(backend.url)
    proxy.start()
    proxied = client_for_url(proxy.url, timeout_s=2)
    warm = [event(text="before the outage")]
    index_kinesis_batch(records(warm), client=proxied, sink=sink, clock=clock, config=backend.indexer_config())
    proxy.stop()  # pooled keep-alive connections are cut too

    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 2:
            proxy.start()

    try:
        result = index_kinesis_batch(batch, client=proxied, sink=sink, clock=clock, sleep=sleep, rng=rng,
                                     config=backend.indexer_config(backoff=Backoff(max_attempts=5, base_s=0.01)))
    finally:
        proxy.stop()
    assert result.lambda_response() == {"batchItemFailures": []}
    assert result.retries == 2
    assert_indexed_once(client, backend.prefix, warm + events)


def test_event_refused_by_the_index_goes_to_s3_bad_rows_and_the_rest_is_indexed(backend, client, clock):
    """Rule: a per-item 400 puts that event (as it came off the stream) in the bad rows of its
    record, once however often the batch comes again; the other events are indexed.
    (The fixed mapping refuses no attribute any more: the refusal is injected.)"""
    number = event(level=3, text="level as a number")
    refused = event(level={"name": "boss"}, text="level as an object")
    others = [event(text=f"fine {n}") for n in range(5)]
    batch = records([number], [refused] + others)
    rejecting = RejectingBulk(client, lambda doc: doc["event_id"] == refused["event_id"],
                              {"type": "mapper_parsing_exception", "reason": "failed to parse field [x]"})
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="lake")
        sink = S3BadRowsSink(s3, "lake", "search")
        first = index_kinesis_batch(batch, client=rejecting, sink=sink, clock=clock, config=backend.indexer_config())
        again = index_kinesis_batch(batch, client=rejecting, sink=sink, clock=clock, config=backend.indexer_config())
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="lake")["Contents"]]
        [key] = keys
        row = orjson.loads(s3.get_object(Bucket="lake", Key=key)["Body"].read())

    assert first.lambda_response() == again.lambda_response() == {"batchItemFailures": []}
    assert (first.indexed, first.bad_rows) == (6, 1)
    assert key == object_key("search", RecordRef.from_lambda(batch[1]), app_id=refused["app_id"]), \
        "one object per app and source record"
    assert row["reason"] == "rejected_by_index"
    assert row["detail"] == "mapper_parsing_exception"
    assert row["event"] == refused, "the bad row holds the event exactly as it came off the stream"
    assert row["record"]["sequence_number"] == batch[1]["kinesis"]["sequenceNumber"]
    assert_indexed_once(client, backend.prefix, [number] + others)


def test_request_rejected_as_a_whole_is_bisected_so_only_the_offending_event_is_a_bad_row(
        backend, client, sink, clock):
    # An id over OpenSearch's 512-byte limit fails validation of the whole _bulk request (400).
    too_long = event(event_id="x" * 600)
    others = [event(text=f"fine {n}") for n in range(7)]
    result = index_kinesis_batch(records(others[:3] + [too_long] + others[3:]), client=client, sink=sink,
                                 clock=clock, config=backend.indexer_config())
    assert result.lambda_response() == {"batchItemFailures": []}
    assert (result.indexed, result.bad_rows) == (7, 1)
    [row] = sink.rows()
    assert row["event"]["event_id"] == too_long["event_id"]
    assert "action_request_validation_exception" in row["detail"]
    assert_indexed_once(client, backend.prefix, others)
