"""``eventpipe redrive``: replay the batches Lambda gave up on, through the same handler.

Reads the on-failure records under ``aws/lambda/`` in the lake bucket
(:mod:`eventpipe.ops.failures`), finds the consumer of each record's event
source mapping, invokes that consumer with the batch exactly as it was
delivered, and moves a record that was replayed in full to
``aws/lambda-redriven/`` (kept, not deleted: it shows what was replayed). A
replay is idempotent: every consumer names its outputs deterministically (by
shard and first sequence number, documents by ``app_id:event_id``, bad rows by
record), so running it twice changes nothing. A consumer that still reports
``batchItemFailures`` or raises leaves its record where it is.

Locally the handlers of ``app.py`` are called in-process; on AWS the function
of each mapping is invoked with ``lambda:Invoke`` (mapping UUID -> function
from ``ListEventSourceMappings``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import orjson

from eventpipe.ops import failures

log = logging.getLogger(__name__)
REDRIVEN_PREFIX = "aws/lambda-redriven/"

#: consumer name, Lambda event -> the handler's response (None, or a dict with batchItemFailures).
Invoke = Callable[[str, dict], Any]


@dataclass(frozen=True)
class RedriveOutcome:
    key: str
    consumer: str | None
    records: int
    result: str  # "replayed", "failed: ...", "skipped: ..."


class Redriver:
    """Replays on-failure records of one lake bucket."""

    def __init__(self, s3, bucket: str, consumers_by_mapping: dict[str, str], invoke: Invoke) -> None:
        self._s3, self._bucket = s3, bucket
        self._consumers, self._invoke = consumers_by_mapping, invoke

    def _keys(self) -> Iterator[str]:
        for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=self._bucket, Prefix=failures.PREFIX):
            for obj in page.get("Contents", []):
                yield obj["Key"]

    def run(self, consumer: str | None = None, dry_run: bool = False, keep: bool = False) -> list[RedriveOutcome]:
        outcomes = []
        for key in sorted(self._keys()):
            body = self._s3.get_object(Bucket=self._bucket, Key=key)["Body"].read()
            try:
                record = failures.parse(key, body)
            except failures.InvalidFailureRecord as exc:
                outcomes.append(RedriveOutcome(key, None, 0, f"skipped: {exc}"))
                continue
            name = self._consumers.get(record.mapping_uuid)
            if name is None:
                outcomes.append(RedriveOutcome(key, None, len(record.records),
                                               f"skipped: no consumer has mapping {record.mapping_uuid}"))
                continue
            if consumer is not None and name != consumer:
                continue
            if dry_run:
                outcomes.append(RedriveOutcome(key, name, len(record.records), "would replay"))
                continue
            outcomes.append(RedriveOutcome(key, name, len(record.records), self._replay(key, name, record, keep)))
        return outcomes

    def _replay(self, key: str, name: str, record: failures.FailureRecord, keep: bool) -> str:
        try:
            response = self._invoke(name, record.event)
        except Exception as exc:  # noqa: BLE001 - a failed replay keeps its record for the next try
            log.warning("redrive %s: %s raised %s", key, name, exc)
            return f"failed: {type(exc).__name__}: {exc}"
        failed = (response or {}).get("batchItemFailures") if isinstance(response, dict) else None
        if failed:
            return f"failed: batchItemFailures from {failed[0].get('itemIdentifier')}"
        if not keep:
            target = REDRIVEN_PREFIX + key[len(failures.PREFIX):]
            self._s3.copy_object(Bucket=self._bucket, Key=target, CopySource={"Bucket": self._bucket, "Key": key})
            self._s3.delete_object(Bucket=self._bucket, Key=key)
        return "replayed"


def local_redriver(app_module, stream_arn: str) -> Redriver:
    """Redrive on the local stack: the runner's mapping UUIDs, the handlers of app.py in-process."""
    from chalice.app import KinesisEventConfig
    from chalice.local import LambdaContext

    container = app_module.container
    names = [s.name for s in app_module.app.event_sources if isinstance(s, KinesisEventConfig)]
    by_mapping = {failures.local_mapping_uuid(stream_arn, name): name for name in names}

    def invoke(name: str, event: dict) -> Any:
        return getattr(app_module, name)(event, LambdaContext(name, 1024, 900_000))

    return Redriver(container.clients.s3, container.settings.bucket, by_mapping, invoke)


def aws_redriver(clients, stream_arn: str) -> Redriver:
    """Redrive on AWS: mapping UUID -> function from ListEventSourceMappings, replay by ``lambda:Invoke``."""
    lam = clients.client("lambda")
    by_mapping: dict[str, str] = {}
    for page in lam.get_paginator("list_event_source_mappings").paginate(EventSourceArn=stream_arn):
        for mapping in page["EventSourceMappings"]:
            by_mapping[mapping["UUID"]] = mapping["FunctionArn"]

    def invoke(function_arn: str, event: dict) -> Any:
        answer = lam.invoke(FunctionName=function_arn, Payload=orjson.dumps(event))
        payload = orjson.loads(answer["Payload"].read() or b"null")
        if answer.get("FunctionError"):
            raise RuntimeError(f"{answer['FunctionError']}: {payload}")
        return payload

    return Redriver(clients.s3, clients.settings.bucket, by_mapping, invoke)


# ------------------------------------------------------------------ SQS dead-letter queues
#: function -> its queue's name suffix: the finalize-units queue's dead letters go back to it.
QUEUE_CONSUMERS = ("finalize_worker",)


class QueueRedriver:
    """Moves the messages of a dead-letter queue back to its source queue (the finalize-units
    queue: a unit is idempotent, so running it again is safe). A message is deleted from the
    dead-letter queue only after SQS accepted its copy (a crash in between sends it twice: harmless)."""

    def __init__(self, sqs, queue_url: str, dlq_url: str, consumer: str = "finalize_worker") -> None:
        self._sqs, self._url, self._dlq, self._consumer = sqs, queue_url, dlq_url, consumer

    def run(self, dry_run: bool = False, limit: int = 100_000) -> list[RedriveOutcome]:
        outcomes: list[RedriveOutcome] = []
        while len(outcomes) < limit:
            messages = self._sqs.receive_message(QueueUrl=self._dlq, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                                 VisibilityTimeout=0 if dry_run else 60).get("Messages", [])
            if not messages:
                break
            if dry_run:
                return [RedriveOutcome(m["MessageId"], self._consumer, 1, "would move back") for m in messages]
            sent = self._sqs.send_message_batch(QueueUrl=self._url, Entries=[
                {"Id": str(i), "MessageBody": m["Body"]} for i, m in enumerate(messages)])
            ok = {e["Id"] for e in sent.get("Successful", [])}
            moved = [m for i, m in enumerate(messages) if str(i) in ok]
            if moved:
                self._sqs.delete_message_batch(QueueUrl=self._dlq, Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(moved)])
            outcomes += [RedriveOutcome(m["MessageId"], self._consumer, 1,
                                        "replayed" if str(i) in ok else "failed: not sent")
                         for i, m in enumerate(messages)]
            if len(moved) < len(messages):
                break
        return outcomes


def queue_redriver(sqs, queue_name: str) -> QueueRedriver:
    """The redriver of ``queue_name``'s dead-letter queue ``<queue_name>-dlq``."""
    url = sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
    return QueueRedriver(sqs, url, sqs.get_queue_url(QueueName=f"{queue_name}-dlq")["QueueUrl"])
