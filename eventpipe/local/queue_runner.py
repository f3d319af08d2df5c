"""Local SQS event-source runner: what Lambda's SQS event source mapping does (on moto's SQS).

For each ``on_sqs_message`` handler of app.py, a poller receives up to the handler's batch size
(``chalicelib/pipeline.toml`` ``[functions.<name>]``: batch_size, visibility_timeout_s), invokes
the handler with Lambda-shaped SQS records, and then, as Lambda with ``ReportBatchItemFailures``:

* the handler returned: every message not listed in ``batchItemFailures`` is deleted; the listed
  ones stay and come back when their visibility timeout ends;
* the handler raised (or answered an identifier it was not given): nothing is deleted.

A message received more than the queue's ``maxReceiveCount`` times is moved to the dead-letter
queue by SQS itself (moto implements the redrive policy the bootstrap sets).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable

from chalice.app import SQSEventConfig
from chalice.local import LambdaContext

from eventpipe.deploy.lambda_events import sqs_record as lambda_sqs_record

log = logging.getLogger("eventpipe.queue_runner")


@dataclass(frozen=True)
class QueueConsumer:
    name: str
    handler: Callable[[dict, Any], Any]
    queue: str
    batch_size: int
    visibility_timeout_s: int
    timeout_ms: int = 900_000


def queue_consumers_from_app(app_module, pipeline=None) -> list[QueueConsumer]:
    """The app's on_sqs_message handlers with their settings (pipeline.toml wins over the decorator)."""
    out = []
    for source in app_module.app.event_sources:
        if isinstance(source, SQSEventConfig):
            handler = getattr(app_module, source.handler_string.rsplit(".", 1)[-1])
            own = pipeline.function(source.name) if pipeline is not None else None
            batch = (own.batch_size if own and own.batch_size else None) or source.batch_size
            visibility = (own.visibility_timeout_s if own and own.visibility_timeout_s is not None else None)
            timeout_s = own.timeout_s if own and own.timeout_s else 900
            out.append(QueueConsumer(source.name, handler, source.queue, batch,
                                     30 if visibility is None else visibility, timeout_s * 1000))
    return out


def acknowledged(result: Any, batch: list[dict], raised: bool) -> list[dict]:
    """The records to delete, per Lambda's partial batch response rules."""
    if raised:
        return []
    if not isinstance(result, dict) or not result.get("batchItemFailures"):
        return batch
    ids = {r["messageId"] for r in batch}
    failed = set()
    for item in result["batchItemFailures"]:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if identifier not in ids:
            return []  # a malformed response fails the whole batch
        failed.add(identifier)
    return [r for r in batch if r["messageId"] not in failed]


class QueuePoller:
    """Feeds one queue to one handler; ``step()`` does one receive/invoke/delete cycle."""

    def __init__(self, sqs, consumer: QueueConsumer, region: str, wait_s: int = 1) -> None:
        self.sqs, self.consumer, self.region, self.wait_s = sqs, consumer, region, wait_s
        self.url = sqs.get_queue_url(QueueName=consumer.queue)["QueueUrl"]
        self.arn = sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.delivered = self.failed = 0

    def step(self) -> int:
        """Receive and deliver at most one batch; returns the messages acknowledged (-1: queue empty)."""
        messages = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=self.consumer.batch_size,
                                            VisibilityTimeout=self.consumer.visibility_timeout_s,
                                            WaitTimeSeconds=self.wait_s, AttributeNames=["All"]).get("Messages", [])
        if not messages:
            return -1
        batch = [lambda_sqs_record(m, self.arn, self.region) for m in messages]
        try:
            result = self.consumer.handler({"Records": batch},
                                           LambdaContext(self.consumer.name, 1024, self.consumer.timeout_ms))
            raised = False
        except Exception:  # a crashed invocation: every message comes back after its visibility timeout
            log.exception("%s: handler raised on %d message(s)", self.consumer.name, len(batch))
            result, raised = None, True
        done = acknowledged(result, batch, raised)
        if done:
            self.sqs.delete_message_batch(QueueUrl=self.url, Entries=[
                {"Id": str(i), "ReceiptHandle": r["receiptHandle"]} for i, r in enumerate(done)])
        self.delivered += len(done)
        self.failed += len(batch) - len(done)
        if len(done) < len(batch):
            log.warning("%s: %d of %d message(s) failed; they come back after %d s", self.consumer.name,
                        len(batch) - len(done), len(batch), self.consumer.visibility_timeout_s)
        return len(done)


def run_queue_pollers(sqs, consumers: list[QueueConsumer], region: str, stop_event: threading.Event,
                      idle_s: float = 0.5) -> list[threading.Thread]:
    """One thread per consumer, polling until ``stop_event`` is set."""
    def loop(consumer: QueueConsumer) -> None:
        poller = None
        while not stop_event.is_set():
            try:
                poller = poller or QueuePoller(sqs, consumer, region)
                if poller.step() < 0:
                    stop_event.wait(idle_s)
            except Exception:  # moto restarting, the queue not there yet: try again
                log.exception("%s: poll failed", consumer.name)
                stop_event.wait(1.0)

    threads = []
    for consumer in consumers:
        thread = threading.Thread(target=loop, args=(consumer,), daemon=True, name=f"sqs-{consumer.name}")
        thread.start()
        threads.append(thread)
        log.info("runner: %s <- sqs %s (batch %d, visibility %d s)", consumer.name, consumer.queue,
                 consumer.batch_size, consumer.visibility_timeout_s)
    return threads
