"""Raw archive, aggregation and finalization on moto S3/DynamoDB, through the real services."""

from __future__ import annotations

import base64

import orjson
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from chalicelib.stream import codec
from chalicelib.runtime.clients import Clients
from chalicelib.runtime.settings import Settings
from chalicelib.lake import layout
from chalicelib.lake.finalizer import Finalizer
from chalicelib.lake.units import UNITS_PREFIX
from chalicelib.lake.badrows import S3BadRowsSink
from chalicelib.lake.consumers import AggregationService, ArchiveService
from chalicelib.lake.s3io import list_keys
from chalicelib.lake.rollups import read_windows
from chalicelib.lake.state import StateStore
from eventpipe.local.bootstrap import bootstrap
from chalicelib.processing import load_metrics
from tests.conftest import kinesis_record
from chalicelib.lake.raw_commit import StagedCommitter
from tests.factories.lake import (T0, Clock, canonical_lines, committing_finalizer, lambda_batches, raw_table_of,
                                  truth_class_activity, truth_event_counts)

HOUR = 3_600_000


class Lake:
    def __init__(self, s3=None):
        self.clients = Clients(Settings())
        bootstrap(self.clients)
        self.s3 = s3 or self.clients.s3
        self.bucket = self.clients.settings.bucket
        self.clock = Clock(T0 + 30 * 60_000)
        self.metrics = load_metrics()
        self.state = StateStore(self.clients.dynamodb, self.clients.settings.state_table)
        self.archive = ArchiveService(self.s3, self.bucket, self.state, S3BadRowsSink(self.s3, self.bucket, "archive"))
        self.aggregation = AggregationService(self.s3, self.bucket, self.state, self.metrics, S3BadRowsSink(self.s3, self.bucket, "aggregate"))
        self.raw = raw_table_of(self.clients, self.s3)
        self.committer = StagedCommitter(self.s3, self.bucket, self.raw, self.state)
        self.finalizer = committing_finalizer(self.committer, self.s3, self.bucket, self.state, self.metrics,
                                              self.clock, grace_ms=15 * 60_000, raw=self.raw)

    def deliver(self, batch, archive=True, aggregate=True):
        responses = []
        if archive:
            responses.append(self.archive.handle(batch))
        if aggregate:
            responses.append(self.aggregation.handle(batch))
        return responses

    def event_counts(self, start=T0 - HOUR, end=T0 + 2 * HOUR):
        table = read_windows(self.s3, self.bucket, self.metrics["event_counts"], start, end)
        return {(r["app_id"], r["window_start"], r["event_type"]): (r["count"], r["users"]) for r in table.to_pylist()}

    def keys(self, prefix):
        return sorted(o["Key"] for o in list_keys(self.s3, self.bucket, prefix))


@pytest.fixture
def lake():
    with mock_aws():
        yield Lake()


def assert_counts_match(got, truth, exact_users=False):
    assert {k: v[0] for k, v in got.items()} == {k: v[0] for k, v in truth.items()}
    for key, (_, users) in truth.items():
        assert abs(got[key][1] - users) <= (0 if exact_users else 1 + 0.07 * users)


def test_any_batching_and_sharding_gives_the_one_pass_result_and_finalization_is_exact(lake):
    lines = canonical_lines(3000, seed=1)
    duplicated = lines + lines[:200]  # client retries: the same event_ids again
    for batch in lambda_batches(duplicated, seed=2):
        assert lake.deliver(batch) == [{"batchItemFailures": []}] * 2
    truth = truth_event_counts(lines)
    before = lake.event_counts()
    # Before finalization the partials count the 200 duplicates too.
    assert sum(v[0] for v in before.values()) == 3200

    lake.clock.now_ms = T0 + 3 * HOUR
    reports = lake.finalizer.run()
    assert {r.action for r in reports} == {"finalized"}
    assert_counts_match(lake.event_counts(), truth)
    classes = read_windows(lake.s3, lake.bucket, lake.metrics["class_activity"], T0 - HOUR, T0 + 2 * HOUR)
    got = {(r["app_id"], r["window_start"], r["character_class"]): (r["count"], r["value_sum"], r["value_min"],
                                                                     r["value_max"]) for r in classes.to_pylist()}
    expected = truth_class_activity(lines)
    assert got.keys() == expected.keys()
    for key, (count, total, low, high, n) in expected.items():
        assert got[key][0] == count and got[key][2:] == (low, high)
        assert got[key][1] == (pytest.approx(total) if n else None)

    # Covered partials stay for the grace period, then go; the answers never change.
    assert lake.keys(layout.rollup_prefix(lake.metrics["event_counts"], "partial"))
    lake.clock.now_ms += 16 * 60_000
    assert {r.action for r in lake.finalizer.run()} == {"cleaned"}
    assert lake.keys(layout.ROLLUPS_PREFIX) == [k for k in lake.keys(layout.ROLLUPS_PREFIX)
                                                if "stage=final" in k or k.startswith(UNITS_PREFIX)]
    assert_counts_match(lake.event_counts(), truth)


def test_raw_table_keeps_every_valid_event_as_a_typed_row(lake):
    lines = canonical_lines(500, seed=3)
    for batch in lambda_batches(lines, seed=4):
        lake.deliver(batch, aggregate=False)
    assert all(k.startswith("staging/events/shardId-") for k in lake.keys(layout.STAGING_PREFIX))
    lake.committer.run()
    raw = lake.raw.read_events(T0 - HOUR, T0 + 2 * HOUR)
    assert sorted(raw["event_id"].to_pylist()) == sorted(orjson.loads(line)["event_id"] for line in lines)
    assert str(raw.schema.field("event_time").type) == "timestamp[ms, tz=UTC]"
    stored = lake.raw.table().schema()
    assert str(stored.find_field("event_time").field_type) == "timestamptz"
    assert set(lake.raw.partitions()) == {("demo", "2026-01-01", "12")}


def test_poison_record_goes_to_bad_rows_with_its_bytes_and_the_batch_goes_on(lake):
    lines = canonical_lines(100, seed=5)
    good = [kinesis_record(codec.pack(lines[i:i + 50])[0].data, sequence_number=10 + i) for i in (0, 50)]
    poison = kinesis_record(b"\x00not a record at all", sequence_number=30)
    batch = [good[0], poison, good[1]]
    assert lake.deliver(batch) == [{"batchItemFailures": []}] * 2
    bad_keys = lake.keys("bad-rows/aggregate/")
    assert len(bad_keys) == 1
    [row] = [orjson.loads(x) for x in lake.s3.get_object(Bucket=lake.bucket, Key=bad_keys[0])["Body"].read().splitlines()]
    assert row["record"]["sequence_number"] == "30"
    assert base64.b64decode(row["record_data_b64"]) == b"\x00not a record at all"
    assert row["reason"] == "undecodable_record" and "format" in row["detail"]
    assert sum(v[0] for v in lake.event_counts().values()) == 100


def test_events_older_than_max_lateness_go_to_bad_rows_with_the_reason(lake):
    old = canonical_lines(5, seed=6, start_ms=T0 - 8 * 24 * HOUR, duration_ms=60_000)
    old = [orjson.dumps({**orjson.loads(line), "received_at": T0}) for line in old]
    lake.deliver([kinesis_record(codec.pack(old)[0].data)])
    rows = [orjson.loads(x) for k in lake.keys("bad-rows/aggregate/")
            for x in lake.s3.get_object(Bucket=lake.bucket, Key=k)["Body"].read().splitlines()]
    assert len(rows) == 5 and rows[0]["reason"] == "too_late" and "maximum lateness" in rows[0]["detail"]
    assert rows[0]["event"]["event_id"] == orjson.loads(old[0])["event_id"]


class FailingS3:
    """A real (moto) S3 client whose put_object fails on chosen calls."""

    def __init__(self, client, fail_on: set[int], error: Exception | None = None):
        self._client, self._fail_on, self._error, self.calls = client, fail_on, error, 0

    def put_object(self, **kwargs):
        self.calls += 1
        if self.calls in self._fail_on:
            raise self._error or ClientError({"Error": {"Code": "SlowDown", "Message": "Reduce your request rate"}},
                                             "PutObject")
        return self._client.put_object(**kwargs)

    def __getattr__(self, name):
        return getattr(self._client, name)


def test_transient_s3_failure_reports_the_batch_and_redelivery_counts_it_once(lake):
    lines = canonical_lines(400, seed=7)
    batches = lambda_batches(lines, seed=8)
    flaky = FailingS3(lake.s3, fail_on={2})
    aggregation = AggregationService(flaky, lake.bucket, lake.state, lake.metrics, S3BadRowsSink(flaky, lake.bucket, "aggregate"))
    response = aggregation.handle(batches[0])
    assert response == {"batchItemFailures": [{"itemIdentifier": batches[0][0]["kinesis"]["sequenceNumber"]}]}
    for batch in batches:  # Lambda re-delivers from that record: the first batch again, then the rest
        assert aggregation.handle(batch) == {"batchItemFailures": []}
        lake.archive.handle(batch)
    # Re-processing overwrote the first attempt's files: exact even before finalization.
    assert_counts_match(lake.event_counts(), truth_event_counts(lines))


def test_crash_mid_batch_loses_nothing_and_counts_nothing_twice_after_finalization(lake):
    lines = canonical_lines(600, seed=9)
    batches = lambda_batches(lines, seed=10, max_batch_records=12)
    crashing = FailingS3(lake.s3, fail_on={3}, error=MemoryError("Lambda ran out of memory"))
    with pytest.raises(MemoryError):
        AggregationService(crashing, lake.bucket, lake.state, lake.metrics, S3BadRowsSink(crashing, lake.bucket, "aggregate")).handle(batches[0])
    # Some of the crashed attempt's files were written; Lambda re-delivers the batch.
    assert lake.keys(layout.ROLLUPS_PREFIX)
    for batch in batches:
        lake.deliver(batch)
    lake.clock.now_ms = T0 + 3 * HOUR
    lake.finalizer.run()
    assert_counts_match(lake.event_counts(), truth_event_counts(lines))


def test_late_event_after_finalization_triggers_refinalization(lake):
    lines = canonical_lines(300, seed=11)
    for batch in lambda_batches(lines, seed=12):
        lake.deliver(batch)
    lake.clock.now_ms = T0 + 3 * HOUR
    lake.finalizer.run()
    late = canonical_lines(1, seed=99, start_ms=T0 + 60_000, duration_ms=1000)
    late = [orjson.dumps({**orjson.loads(late[0]), "event_id": "late-one", "received_at": lake.clock.now_ms})]
    lake.deliver([kinesis_record(codec.pack(late)[0].data, "shardId-000000000001", 10_000)])
    before = lake.event_counts()
    assert sum(v[0] for v in before.values()) == 300  # final preferred until re-finalized
    reports = lake.finalizer.run()
    assert [r.action for r in reports if r.metric == "event_counts"] == ["finalized"]
    assert_counts_match(lake.event_counts(), truth_event_counts(lines + late))
    late_rows = read_windows(lake.s3, lake.bucket, lake.metrics["event_counts"], T0, T0 + HOUR)
    assert sum(late_rows["late_count"].to_pylist()) == 1


def test_finalization_waits_until_the_raw_archive_holds_the_records(lake):
    lines = canonical_lines(100, seed=13)
    for batch in lambda_batches(lines, seed=14):
        lake.deliver(batch, archive=False)
    lake.clock.now_ms = T0 + 3 * HOUR
    assert {r.action for r in lake.finalizer.run()} == {"waiting-for-archive"}
    assert sum(v[0] for v in lake.event_counts().values()) == 100  # still answered from partials
    for batch in lambda_batches(lines, seed=14):
        lake.deliver(batch, aggregate=False)
    assert {r.action for r in lake.finalizer.run()} == {"finalized"}


class ObservedS3:
    """Runs a reader after every write or delete: what any reader could see at that moment."""

    def __init__(self, client, observe):
        self._client, self._observe, self.seen = client, observe, []

    def put_object(self, **kwargs):
        result = self._client.put_object(**kwargs)
        self.seen.append(self._observe())
        return result

    def delete_objects(self, **kwargs):
        result = self._client.delete_objects(**kwargs)
        self.seen.append(self._observe())
        return result

    def __getattr__(self, name):
        return getattr(self._client, name)


def test_readers_during_compaction_see_every_window_exactly_once(lake):
    lines = canonical_lines(800, seed=15)
    for batch in lambda_batches(lines, seed=16):
        lake.deliver(batch)
    expected = {k: v[0] for k, v in lake.event_counts().items()}
    assert sum(expected.values()) == 800

    def counts():
        return {k: v[0] for k, v in lake.event_counts().items()}

    observed = ObservedS3(lake.s3, counts)
    lake.clock.now_ms = T0 + 3 * HOUR
    lake.committer.run()
    Finalizer(observed, lake.bucket, lake.state, lake.metrics, lake.clock, raw=lake.raw).run()
    lake.clock.now_ms += 16 * 60_000
    Finalizer(observed, lake.bucket, lake.state, lake.metrics, lake.clock, raw=lake.raw).run()
    assert len(observed.seen) >= 8  # final files, manifests, deletes of every metric
    assert all(seen == expected for seen in observed.seen)


def test_a_covered_partial_rewritten_by_a_redelivery_is_refinalized_not_lost(lake):
    lines = canonical_lines(40, seed=31, duration_ms=60_000)
    first = kinesis_record(codec.pack(lines[:20])[0].data, "shardId-000000000000", 101)
    second = kinesis_record(codec.pack(lines[20:])[0].data, "shardId-000000000000", 102)
    lake.deliver([first])
    lake.clock.now_ms = T0 + 3 * HOUR
    assert {r.action for r in lake.finalizer.run()} == {"finalized"}
    # The batch is re-delivered from the same record, now with one more: same object names.
    lake.deliver([first, second])
    assert {r.action for r in lake.finalizer.run()} == {"finalized"}
    lake.clock.now_ms += 16 * 60_000
    lake.finalizer.run()  # grace-period cleanup
    assert_counts_match(lake.event_counts(), truth_event_counts(lines), exact_users=False)


def test_copies_of_an_event_in_neighbouring_hours_count_once_after_finalization(lake):
    [line] = canonical_lines(1, seed=32, start_ms=T0 + HOUR - 1000, duration_ms=1)
    event = orjson.loads(line)
    retried = orjson.dumps({**event, "event_time": event["event_time"] + 2000, "received_at": event["received_at"] + 2000})
    lake.deliver([kinesis_record(codec.pack([line])[0].data, "shardId-000000000000", 200)])
    lake.deliver([kinesis_record(codec.pack([retried])[0].data, "shardId-000000000001", 300)])
    lake.clock.now_ms = T0 + 4 * HOUR
    lake.finalizer.run()
    assert sum(v[0] for v in lake.event_counts().values()) == 1


def test_a_future_dated_event_does_not_make_the_shard_count_everything_late(lake):
    lines = canonical_lines(10, seed=33, duration_ms=60_000)
    future = orjson.dumps({**orjson.loads(lines[0]), "event_id": "from-the-future",
                           "event_time": orjson.loads(lines[0])["received_at"] + 20 * HOUR})
    lake.deliver([kinesis_record(codec.pack([future])[0].data, "shardId-000000000000", 400)], archive=False)
    lake.deliver([kinesis_record(codec.pack(lines)[0].data, "shardId-000000000000", 401)], archive=False)
    table = read_windows(lake.s3, lake.bucket, lake.metrics["event_counts"], T0 - HOUR, T0 + 2 * HOUR)
    assert sum(table["late_count"].to_pylist()) == 0
