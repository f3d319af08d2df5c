"""The finalize-units queue: sending units, the worker's partial batch response, and the local
runner playing SQS -> Lambda on moto (delete on success, failures back after the visibility
timeout, the dead-letter queue after maxReceiveCount)."""

from __future__ import annotations

import orjson
import pytest
from moto import mock_aws

from chalicelib.lake.unit_queue import UnitQueue
from chalicelib.lake.units import Unit
from chalicelib.runtime.clients import Clients
from chalicelib.runtime.settings import Settings
from eventpipe.local.bootstrap import ensure_queue
from eventpipe.local.queue_runner import QueueConsumer, QueuePoller, acknowledged
from eventpipe.ops.redrive import queue_redriver


@pytest.fixture
def sqs():
    with mock_aws():
        yield Clients(Settings()).sqs


def drain(sqs, url: str) -> list[str]:
    bodies = []
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return bodies
        bodies += [m["Body"] for m in messages]
        sqs.delete_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                                                        for i, m in enumerate(messages)])


def test_units_are_sent_ten_per_call_and_each_arrives_once(sqs):
    """Rule: SendMessageBatch takes 10; every unit is sent, as its message."""
    url = ensure_queue(sqs, "units", 30, 3)
    units = [Unit(f"app{i}", "2026-01-01", "12", 0, 1) for i in range(23)]
    calls = []
    real = sqs.send_message_batch
    sqs.send_message_batch = lambda **kw: calls.append(len(kw["Entries"])) or real(**kw)
    UnitQueue(sqs, url).send(units)
    assert calls == [10, 10, 3]
    assert sorted(Unit.from_message(b) for b in drain(sqs, url)) == sorted(units)


def test_a_partial_batch_response_keeps_only_the_failed_messages():
    """Rule (Lambda's ReportBatchItemFailures): listed ids stay, the rest are deleted; a raise or an
    unknown id keeps the whole batch."""
    batch = [{"messageId": "a"}, {"messageId": "b"}, {"messageId": "c"}]
    assert acknowledged({"batchItemFailures": [{"itemIdentifier": "b"}]}, batch, False) == [batch[0], batch[2]]
    assert acknowledged({"batchItemFailures": []}, batch, False) == batch
    assert acknowledged(None, batch, True) == []
    assert acknowledged({"batchItemFailures": [{"itemIdentifier": "x"}]}, batch, False) == []


def test_the_runner_deletes_successes_and_a_poison_unit_reaches_the_dead_letter_queue_then_redrive(sqs):
    """Rule: a message the handler reports failed comes back; after maxReceiveCount receives SQS
    moves it to the DLQ; redrive moves it back to the queue."""
    url = ensure_queue(sqs, "units", 0, 2)
    good, poison = Unit("good", "2026-01-01", "12"), Unit("poison", "2026-01-01", "12")
    UnitQueue(sqs, url).send([good, poison])
    seen = []

    def handler(event, context):
        failures = []
        for record in event["Records"]:
            unit = Unit.from_message(record["body"])
            seen.append(unit.app_id)
            if unit.app_id == "poison":
                failures.append({"itemIdentifier": record["messageId"]})
        return {"batchItemFailures": failures}

    poller = QueuePoller(sqs, QueueConsumer("finalize_worker", handler, "units", 10, 0), "us-east-1", wait_s=0)
    for _ in range(6):
        poller.step()
    assert seen.count("good") == 1 and seen.count("poison") == 2
    dlq = sqs.get_queue_url(QueueName="units-dlq")["QueueUrl"]
    outcomes = queue_redriver(sqs, "units").run()
    assert [o.result for o in outcomes] == ["replayed"]
    assert drain(sqs, dlq) == []
    assert [orjson.loads(b)["app_id"] for b in drain(sqs, url)] == ["poison"]


def test_the_worker_reports_a_message_that_is_not_a_unit_alone():
    """Rule: a poison message fails alone; the batch's other units run."""
    from chalicelib.lake.unit_worker import FinalizeWorker

    class Worker(FinalizeWorker):
        def __init__(self):
            self.ran = []

        def run_unit(self, unit):
            self.ran.append(unit)

    worker = Worker()
    unit = Unit("app", "2026-01-01", "12")
    answer = worker.handle_records([{"messageId": "1", "body": unit.message()},
                                    {"messageId": "2", "body": "not a unit"},
                                    {"messageId": "3", "body": '{"app_id": "x", "dt": "2026-13-01", "hour": "12"}'}])
    assert answer == {"batchItemFailures": [{"itemIdentifier": "2"}, {"itemIdentifier": "3"}]}
    assert worker.ran == [unit]
