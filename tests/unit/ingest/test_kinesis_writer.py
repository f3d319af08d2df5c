"""PutRecords limits, retries with backoff, and exact partial outcomes."""

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from moto import mock_aws

from chalicelib.ingest.kinesis_writer import MAX_BYTES_PER_CALL, KinesisWriter, plan_calls
from chalicelib.stream.retry import Backoff


def test_calls_respect_500_records_and_5_mib():
    assert [len(c) for c in plan_calls([b"x"] * 1201, ["k"] * 1201)] == [500, 500, 201]
    big = [b"x" * (1024 * 1024 - 10)] * 7
    calls = plan_calls(big, ["k"] * 7)
    assert all(sum(len(big[i]) + 1 for i in call) <= MAX_BYTES_PER_CALL for call in calls)
    assert [len(c) for c in calls] == [5, 2]


def test_backoff_is_exponential_with_full_jitter_and_capped():
    policy = Backoff(base_s=0.1, cap_s=1.0)
    assert policy.delay(1, rand=lambda: 1.0) == pytest.approx(0.2)
    assert policy.delay(3, rand=lambda: 1.0) == pytest.approx(0.8)
    assert policy.delay(9, rand=lambda: 1.0) == 1.0
    assert policy.delay(9, rand=lambda: 0.0) == 0.0


class FlakyKinesis:
    """Wraps a real (moto) client; fails the records whose data is in the plan, as Kinesis does."""

    def __init__(self, client, fail_plan):
        self.client, self.fail_plan, self.calls = client, list(fail_plan), []

    def put_records(self, StreamName, Records):
        fail = self.fail_plan.pop(0) if self.fail_plan else set()
        self.calls.append(len(Records))
        if fail == "throttle-call":
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow"}},
                              "PutRecords")
        keep = [r for r in Records if r["Data"] not in fail]
        stored = iter(self.client.put_records(StreamName=StreamName, Records=keep)["Records"] if keep else [])
        out = [{"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "Rate exceeded"}
               if r["Data"] in fail else next(stored) for r in Records]
        return {"FailedRecordCount": len(Records) - len(keep), "Records": out}


@pytest.fixture
def kinesis():
    with mock_aws():
        client = boto3.client("kinesis", region_name="us-east-1")
        client.create_stream(StreamName="s", ShardCount=1)
        yield client


def stored_blobs(client):
    shard = client.list_shards(StreamName="s")["Shards"][0]["ShardId"]
    it = client.get_shard_iterator(StreamName="s", ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    return [r["Data"] for r in client.get_records(ShardIterator=it)["Records"]]


def test_failed_records_are_retried_until_stored_exactly_once(kinesis):
    flaky = FlakyKinesis(kinesis, [{b"a", b"c"}, {b"a"}, set()])
    sleeps = []
    outcome = KinesisWriter(flaky, "s", Backoff(max_attempts=5), sleep=sleeps.append).put([b"a", b"b", b"c"])
    assert outcome.stored == {0, 1, 2} and not outcome.failures
    assert flaky.calls == [3, 2, 1] and len(sleeps) == 2
    assert sorted(stored_blobs(kinesis)) == [b"a", b"b", b"c"]


def test_a_throttled_call_is_retried(kinesis):
    flaky = FlakyKinesis(kinesis, ["throttle-call", set()])
    outcome = KinesisWriter(flaky, "s", sleep=lambda s: None).put([b"a"])
    assert outcome.stored == {0}


def test_when_retries_run_out_the_outcome_names_each_unstored_record(kinesis):
    flaky = FlakyKinesis(kinesis, [{b"b"}] * 10)
    outcome = KinesisWriter(flaky, "s", Backoff(max_attempts=3), sleep=lambda s: None).put([b"a", b"b"])
    assert outcome.stored == {0}
    assert "ProvisionedThroughputExceededException" in outcome.failures[1]
    assert stored_blobs(kinesis) == [b"a"]


def test_non_retryable_errors_fail_at_once():
    client = boto3.client("kinesis", region_name="us-east-1")
    with Stubber(client) as stub:
        stub.add_client_error("put_records", service_error_code="ResourceNotFoundException",
                              service_message="Stream s not found")
        outcome = KinesisWriter(client, "s", sleep=lambda s: None).put([b"a"])
    assert outcome.stored == frozenset() and "ResourceNotFoundException" in outcome.failures[0]


def test_stubbed_partial_failure_response_is_parsed():
    client = boto3.client("kinesis", region_name="us-east-1")
    with Stubber(client) as stub:
        stub.add_response("put_records", {"FailedRecordCount": 1, "Records": [
            {"SequenceNumber": "1", "ShardId": "shardId-0"},
            {"ErrorCode": "InternalFailure", "ErrorMessage": "boom"}]})
        stub.add_response("put_records", {"Records": [
            {"SequenceNumber": "2", "ShardId": "shardId-0"}]})
        outcome = KinesisWriter(client, "s", sleep=lambda s: None).put([b"a", b"b"])
        stub.assert_no_pending_responses()
    assert outcome.stored == {0, 1}
