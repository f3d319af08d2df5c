"""The local event-source runner follows Lambda's Kinesis event source mapping rules."""

import boto3
import pytest
from moto import mock_aws

from eventpipe.local.runner import CheckpointStore, Consumer, ShardPoller, first_failed_sequence
from tests.conftest import kinesis_record


@pytest.fixture
def aws():
    with mock_aws():
        kinesis = boto3.client("kinesis", region_name="us-east-1")
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        kinesis.create_stream(StreamName="s", ShardCount=1)
        dynamodb.create_table(TableName="state", BillingMode="PAY_PER_REQUEST",
                              AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                              KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
        arn = kinesis.describe_stream_summary(StreamName="s")["StreamDescriptionSummary"]["StreamARN"]
        shard = kinesis.list_shards(StreamName="s")["Shards"][0]["ShardId"]
        yield kinesis, CheckpointStore(dynamodb, "state", arn), arn, shard


def put(kinesis, *payloads):
    for payload in payloads:
        kinesis.put_record(StreamName="s", Data=payload, PartitionKey="k")


class Recorder:
    """A handler that records what it got and answers from a script."""

    def __init__(self, script=()):
        self.script, self.batches = list(script), []

    def __call__(self, event, context):
        self.batches.append([r["kinesis"]["sequenceNumber"] for r in event["Records"]])
        action = self.script.pop(0) if self.script else None
        if isinstance(action, Exception):
            raise action
        return action(event) if callable(action) else None


def poller(aws, handler, batch_size=10, dead=None, max_retries=3):
    kinesis, checkpoints, arn, shard = aws
    consumer = Consumer("c", handler, batch_size, "TRIM_HORIZON", 0)
    return ShardPoller(kinesis, consumer, "s", arn, shard, checkpoints, "us-east-1",
                       dead_letter=lambda *a: dead.append(a) if dead is not None else None,
                       max_retries=max_retries, sleep=lambda s: None)


def test_batches_are_lambda_shaped_and_respect_batch_size(aws):
    put(aws[0], b"a", b"b", b"c")
    handler = Recorder()
    p = poller(aws, handler, batch_size=2)
    p.step()
    p.step()
    assert handler.batches == [["1", "2"], ["3"]]


def test_batch_item_failure_redelivers_from_the_first_failed_record(aws):
    put(aws[0], b"a", b"b", b"c", b"d")
    handler = Recorder([lambda e: {"batchItemFailures": [{"itemIdentifier": "3"}, {"itemIdentifier": "4"}]}])
    p = poller(aws, handler)
    p.step()
    p.step()
    assert handler.batches == [["1", "2", "3", "4"], ["3", "4"]]
    assert aws[1].get("c", aws[3]) == "4"


def test_unknown_item_identifier_fails_the_whole_batch(aws):
    assert first_failed_sequence({"batchItemFailures": [{"itemIdentifier": "99"}]},
                                 [kinesis_record(b"x", sequence_number=5)]) == "5"
    assert first_failed_sequence({"batchItemFailures": []}, [kinesis_record(b"x")]) is None


def test_a_raising_handler_gets_the_same_batch_again(aws):
    put(aws[0], b"a", b"b")
    handler = Recorder([RuntimeError("crash"), None])
    p = poller(aws, handler)
    p.step()
    p.step()
    assert handler.batches == [["1", "2"], ["1", "2"]]
    assert aws[1].get("c", aws[3]) == "2"


def test_restart_resumes_after_the_checkpoint(aws):
    put(aws[0], b"a", b"b")
    first = Recorder()
    poller(aws, first).step()
    put(aws[0], b"c")
    second = Recorder()
    poller(aws, second).step()
    assert second.batches == [["3"]]


def test_poison_batch_goes_to_dead_letter_after_max_retries_and_the_shard_moves_on(aws):
    put(aws[0], b"a", b"b")
    dead = []
    handler = Recorder([RuntimeError("poison")] * 3)
    p = poller(aws, handler, dead=dead, max_retries=2)
    for _ in range(3):
        p.step()
    assert len(dead) == 1 and [r["kinesis"]["sequenceNumber"] for r in dead[0][2]] == ["1", "2"]
    assert "poison" in dead[0][3]
    put(aws[0], b"c")
    p.step()
    assert handler.batches[-1] == ["3"]


class IteratorFailsOnce:
    """A real (moto) Kinesis client whose first AT_SEQUENCE_NUMBER iterator request fails."""

    def __init__(self, client):
        self._client, self.failed = client, False

    def get_shard_iterator(self, **kwargs):
        if kwargs.get("ShardIteratorType") == "AT_SEQUENCE_NUMBER" and not self.failed:
            self.failed = True
            raise ConnectionError("endpoint unreachable")
        return self._client.get_shard_iterator(**kwargs)

    def __getattr__(self, name):
        return getattr(self._client, name)


def test_a_failed_rewind_never_skips_the_records_to_redeliver(aws):
    kinesis, checkpoints, arn, shard = aws
    put(kinesis, b"a", b"b", b"c")
    handler = Recorder([lambda e: {"batchItemFailures": [{"itemIdentifier": "2"}]}])
    consumer = Consumer("c", handler, 2, "TRIM_HORIZON", 0)
    p = ShardPoller(IteratorFailsOnce(kinesis), consumer, "s", arn, shard, checkpoints, "us-east-1",
                    dead_letter=lambda *a: None, sleep=lambda s: None)
    with pytest.raises(ConnectionError):
        p.step()  # delivers 1..2, is told to restart at 2, and the rewind fails
    p.reset()  # what the runner loop does after a poll error
    p.step()
    p.step()
    delivered = [seq for batch in handler.batches for seq in batch]
    assert delivered == ["1", "2", "2", "3"]
    assert checkpoints.get("c", shard) == "3"


def mapped_poller(aws, handler, dead, **settings):
    """A poller whose consumer carries deployed-mapping settings (as chalicelib/pipeline.toml gives)."""
    kinesis, checkpoints, arn, shard = aws
    consumer = Consumer("c", handler, settings.pop("batch_size", 10), "TRIM_HORIZON", 0, **settings)
    return ShardPoller(kinesis, consumer, "s", arn, shard, checkpoints, "us-east-1",
                       dead_letter=lambda *a: dead.append(a), sleep=lambda s: None)


def test_a_raising_batch_is_bisected_before_retries_count(aws):
    put(aws[0], b"a", b"b", b"c", b"d")
    dead, batches = [], []

    def handler(event, context):  # record 2 is poison
        batches.append([r["kinesis"]["sequenceNumber"] for r in event["Records"]])
        if "2" in batches[-1]:
            raise RuntimeError("bad record")

    p = mapped_poller(aws, handler, dead, maximum_retry_attempts=1, bisect_on_error=True)
    for _ in range(7):
        p.step()
    # halved until the poison record stands alone; only then do failures count as retries
    assert batches == [["1", "2", "3", "4"], ["1", "2"], ["1"], ["2", "3", "4"], ["2"], ["2"], ["3", "4"]]
    assert [[r["kinesis"]["sequenceNumber"] for r in d[2]] for d in dead] == [["2"]]


def test_records_older_than_the_maximum_age_go_to_the_dead_letter_uninvoked(aws):
    put(aws[0], b"a", b"b")
    dead = []
    handler = Recorder()
    p = mapped_poller(aws, handler, dead, maximum_record_age_s=60)
    p.wall_clock = lambda: 4_000_000_000.0  # far in the future: every record is too old
    p.step()
    assert handler.batches == [] and dead[0][3] == "RecordAgeExceeded"
    assert aws[1].get("c", aws[3]) == "2"


def test_consumers_take_their_mapping_settings_from_the_pipeline_config():
    import app
    from eventpipe.local.runner import consumers_from_app
    from chalicelib.runtime.pipeline_config import load_pipeline_config

    config = load_pipeline_config("local")
    consumers = {c.name: c for c in consumers_from_app(app, config)}
    for expected in config.consumers:
        c = consumers[expected.name]
        assert (c.batch_size, c.batching_window_s, c.starting_position, c.maximum_retry_attempts,
                c.maximum_record_age_s, c.bisect_on_error) == (
            expected.batch_size, expected.batching_window_s, expected.starting_position,
            expected.maximum_retry_attempts, expected.maximum_record_age_s, expected.bisect_on_error)
    assert app.pipeline.stage == "local"
