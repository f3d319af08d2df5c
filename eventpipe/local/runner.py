"""Local event-source runner: what Lambda's Kinesis event source mapping does.

For each ``on_kinesis_record`` handler declared in app.py and each shard, a
poller reads the shard, builds Lambda-shaped Kinesis events, invokes the
handler with its BatchSize and batching window, honours ``batchItemFailures``
(re-delivery from the first failed sequence number), retries a batch whose
invocation raised, and checkpoints per shard in the state table so a restart
resumes where it stopped. After ``max_retries`` failed deliveries the batch
goes to the dead-letter sink (Lambda's on-failure destination) and the
shard moves on, so a poison batch never blocks it forever.
"""

from __future__ import annotations

import base64
import itertools
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from chalice.app import KinesisEventConfig
from chalice.local import LambdaContext

log = logging.getLogger("eventpipe.runner")
MAX_BATCH_BYTES = 6 * 1024 * 1024  # Lambda's invocation payload limit


@dataclass(frozen=True)
class Consumer:
    """One Kinesis-triggered handler and its event source mapping settings."""

    name: str
    handler: Callable[[dict, Any], Any]
    batch_size: int
    starting_position: str
    batching_window_s: float
    #: As the deployed mapping (chalicelib/pipeline.toml): retries after the first attempt (-1: forever),
    maximum_retry_attempts: int = 10
    #: records older than this go to the dead letter without an invocation (-1: never),
    maximum_record_age_s: int = -1
    #: and a batch whose invocation raised is split in two (not counted as a retry).
    bisect_on_error: bool = False


def consumers_from_app(app_module, pipeline=None) -> list[Consumer]:
    """The on_kinesis_record handlers of a Chalice app module, with their mapping settings.

    ``pipeline`` (a PipelineConfig) supplies every setting of the consumers it lists; others
    (the local-only tap) keep their decorator arguments.
    """
    consumers = []
    known = {c.name: c for c in pipeline.consumers} if pipeline is not None else {}
    for source in app_module.app.event_sources:
        if isinstance(source, KinesisEventConfig):
            handler = getattr(app_module, source.handler_string.rsplit(".", 1)[-1])
            if source.name in known:
                c = known[source.name]
                consumers.append(Consumer(source.name, handler, c.batch_size, c.starting_position,
                                          float(c.batching_window_s), c.maximum_retry_attempts,
                                          c.maximum_record_age_s, c.bisect_on_error))
            else:
                consumers.append(Consumer(source.name, handler, source.batch_size, source.starting_position,
                                          float(source.maximum_batching_window_in_seconds or 0)))
    return consumers


class CheckpointStore:
    """Per (consumer, shard) checkpoints in the DynamoDB state table.

    Each item also counts what the mapping did on that shard (``delivered`` records,
    ``retries``, ``dead_lettered`` records): ``GET /v1/pipeline`` reads them
    (chalicelib/lake/progress.py), as Lambda's CloudWatch metrics would on AWS.
    """

    def __init__(self, dynamodb, table: str, stream_arn: str) -> None:
        self._db, self._table, self._stream_arn = dynamodb, table, stream_arn

    def _key(self, consumer: str, shard_id: str) -> dict:
        return {"pk": {"S": f"checkpoint|{self._stream_arn}|{consumer}|{shard_id}"}}

    def get(self, consumer: str, shard_id: str) -> str | None:
        item = self._db.get_item(TableName=self._table, Key=self._key(consumer, shard_id),
                                 ConsistentRead=True).get("Item")
        return item["sequence_number"]["S"] if item else None

    def put(self, consumer: str, shard_id: str, sequence_number: str, delivered: int = 0) -> None:
        """Move the checkpoint to ``sequence_number`` and add ``delivered`` records to its count."""
        self._db.update_item(TableName=self._table, Key=self._key(consumer, shard_id),
                             UpdateExpression="SET sequence_number = :s, updated_ms = :t ADD delivered :n",
                             ExpressionAttributeValues={":s": {"S": sequence_number}, ":n": {"N": str(delivered)},
                                                        ":t": {"N": str(int(time.time() * 1000))}})

    def count(self, consumer: str, shard_id: str, counter: str, n: int = 1) -> None:
        """Add ``n`` to one counter of the shard's item (``retries``, ``dead_lettered``)."""
        self._db.update_item(TableName=self._table, Key=self._key(consumer, shard_id),
                             UpdateExpression="ADD #c :n", ExpressionAttributeNames={"#c": counter},
                             ExpressionAttributeValues={":n": {"N": str(n)}})


def lambda_record(record: dict, shard_id: str, stream_arn: str, region: str) -> dict:
    """One GetRecords record in the shape Lambda gives a Kinesis handler."""
    arrival = record.get("ApproximateArrivalTimestamp")
    return {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": record["PartitionKey"],
            "sequenceNumber": record["SequenceNumber"],
            "data": base64.b64encode(record["Data"]).decode("ascii"),
            "approximateArrivalTimestamp": arrival.timestamp() if arrival else time.time(),
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"{shard_id}:{record['SequenceNumber']}",
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": "arn:aws:iam::123456789012:role/eventpipe-local",
        "awsRegion": region,
        "eventSourceARN": stream_arn,
    }


def first_failed_sequence(result: Any, batch: list[dict]) -> str | None:
    """The sequence number to restart from, per Lambda's partial-batch rules.

    None means success. A malformed response or an unknown identifier fails
    the whole batch (restart at its first record), as Lambda does.
    """
    if not isinstance(result, dict) or not result.get("batchItemFailures"):
        return None
    sequences = {r["kinesis"]["sequenceNumber"] for r in batch}
    failed = []
    for item in result["batchItemFailures"]:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if identifier not in sequences:
            return batch[0]["kinesis"]["sequenceNumber"]
        failed.append(int(identifier))
    return str(min(failed))


class ShardPoller:
    """Feeds one shard to one consumer; ``step()`` does one poll/invoke cycle."""

    def __init__(self, kinesis, consumer: Consumer, stream_name: str, stream_arn: str, shard_id: str,
                 checkpoints: CheckpointStore, region: str, dead_letter: Callable[[str, str, list[dict], str], None],
                 max_retries: int | None = None, backoff_s: float = 0.2, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, timeout_ms: int = 120_000,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.kinesis, self.consumer, self.shard_id = kinesis, consumer, shard_id
        self.stream_name, self.stream_arn, self.region = stream_name, stream_arn, region
        self.checkpoints, self.dead_letter = checkpoints, dead_letter
        self.max_retries = consumer.maximum_retry_attempts if max_retries is None else max_retries
        self.backoff_s, self.clock, self.sleep, self.wall_clock = backoff_s, clock, sleep, wall_clock
        self.timeout_ms = timeout_ms
        self.limit = consumer.batch_size  # halved by bisection, restored after a delivered batch
        self.buffer: list[dict] = []
        self.buffer_since: float | None = None
        self.attempts = 0
        self.delivered_records = 0
        self.iterator = self._iterator(checkpoints.get(consumer.name, shard_id))

    def _iterator(self, after: str | None, at: str | None = None) -> str:
        kwargs: dict = {"StreamName": self.stream_name, "ShardId": self.shard_id}
        if at is not None:
            kwargs.update(ShardIteratorType="AT_SEQUENCE_NUMBER", StartingSequenceNumber=at)
        elif after is not None:
            kwargs.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=after)
        else:
            kwargs["ShardIteratorType"] = self.consumer.starting_position
        return self.kinesis.get_shard_iterator(**kwargs)["ShardIterator"]

    def _fill(self) -> int:
        room = self.consumer.batch_size - len(self.buffer)
        if room <= 0:
            return 0
        if self.iterator is None:
            self.reset()
        response = self.kinesis.get_records(ShardIterator=self.iterator, Limit=min(10000, room))
        self.iterator = response.get("NextShardIterator")
        records = [lambda_record(r, self.shard_id, self.stream_arn, self.region) for r in response["Records"]]
        if records and not self.buffer:
            self.buffer_since = self.clock()
        self.buffer.extend(records)
        return len(records)

    def _next_batch(self) -> list[dict]:
        batch, size = [], 0
        for record in self.buffer[: self.limit]:
            size += len(record["kinesis"]["data"]) + 200
            if batch and size > MAX_BATCH_BYTES:
                break
            batch.append(record)
        return batch

    def _ready(self) -> bool:
        if not self.buffer:
            return False
        if len(self.buffer) >= self.consumer.batch_size or self.consumer.batching_window_s <= 0:
            return True
        return self.clock() - (self.buffer_since or 0) >= self.consumer.batching_window_s

    def step(self) -> int:
        """Poll once and deliver at most one batch; returns records delivered."""
        fetched = self._fill()
        if not self._ready():
            return 0 if fetched or self.buffer else -1
        batch = self._next_batch()
        first, last = batch[0]["kinesis"]["sequenceNumber"], batch[-1]["kinesis"]["sequenceNumber"]
        if self.consumer.maximum_record_age_s >= 0:
            oldest = self.wall_clock() - self.consumer.maximum_record_age_s
            expired = list(itertools.takewhile(lambda r: r["kinesis"]["approximateArrivalTimestamp"] < oldest, batch))
            if expired:  # as Lambda: too old to invoke with, straight to the on-failure destination
                self.dead_letter(self.consumer.name, self.shard_id, expired, "RecordAgeExceeded")
                self.checkpoints.count(self.consumer.name, self.shard_id, "dead_lettered", len(expired))
                return self._advance(expired, expired[-1]["kinesis"]["sequenceNumber"])
        try:
            result = self.consumer.handler({"Records": batch}, LambdaContext(self.consumer.name, 1024, self.timeout_ms))
            restart_at = first_failed_sequence(result, batch)
            reason, raised = f"batchItemFailures from {restart_at}", False
        except Exception as exc:  # a crashed invocation: Lambda retries the batch
            log.exception("%s %s: handler raised on %s..%s", self.consumer.name, self.shard_id, first, last)
            restart_at, reason, raised = first, f"{type(exc).__name__}: {exc}", True
        if restart_at is None:
            return self._advance(batch, last)
        done = [r for r in batch if int(r["kinesis"]["sequenceNumber"]) < int(restart_at)]
        if done:
            self.checkpoints.put(self.consumer.name, self.shard_id, done[-1]["kinesis"]["sequenceNumber"], len(done))
        if raised and self.consumer.bisect_on_error and len(batch) > 1:
            self.limit = max(1, len(batch) // 2)  # as Lambda: split in two, not counted as a retry
            log.warning("%s %s: bisecting %s..%s into %d record(s)", self.consumer.name, self.shard_id, first, last,
                        self.limit)
            self.buffer, self.buffer_since, self.iterator = [], None, None
            self.iterator = self._iterator(None, at=restart_at)
            return 0
        self.attempts += 1
        if 0 <= self.max_retries < self.attempts:
            rest = [r for r in batch if int(r["kinesis"]["sequenceNumber"]) >= int(restart_at)]
            log.error("%s %s: giving up on %s..%s after %d attempts; sent to dead-letter",
                      self.consumer.name, self.shard_id, restart_at, last, self.attempts)
            self.dead_letter(self.consumer.name, self.shard_id, rest, reason)
            self.checkpoints.count(self.consumer.name, self.shard_id, "dead_lettered", len(rest))
            return self._advance(batch, last, counted=len(done))
        log.warning("%s %s: retry %d from %s (%s)", self.consumer.name, self.shard_id, self.attempts, restart_at,
                    reason)
        self.checkpoints.count(self.consumer.name, self.shard_id, "retries")
        self.sleep(min(5.0, self.backoff_s * 2 ** (self.attempts - 1)))
        self.buffer, self.buffer_since = [], None
        self.iterator = None  # if the call below fails, reset() resumes from the checkpoint
        self.iterator = self._iterator(None, at=restart_at)
        return len(done)

    def reset(self) -> None:
        """Forget buffered records and read again after the checkpoint (after an error
        in the poller itself, e.g. an expired iterator or a network failure)."""
        self.buffer, self.buffer_since = [], None
        self.iterator = self._iterator(self.checkpoints.get(self.consumer.name, self.shard_id))

    def _advance(self, batch: list[dict], last: str, counted: int = 0) -> int:
        """Checkpoint past ``batch`` (its first ``counted`` records were already counted as delivered)."""
        self.checkpoints.put(self.consumer.name, self.shard_id, last, len(batch) - counted)
        self.buffer = self.buffer[len(batch):]
        self.buffer_since = self.clock() if self.buffer else None
        self.attempts = 0
        self.limit = self.consumer.batch_size
        self.delivered_records += len(batch)
        log.info("%s %s: delivered %d record(s) %s..%s", self.consumer.name, self.shard_id, len(batch),
                 batch[0]["kinesis"]["sequenceNumber"], last)
        return len(batch)


class Runner:
    """Runs a poller thread per (consumer, shard) until stopped."""

    def __init__(self, kinesis, dynamodb, state_table: str, stream_name: str, consumers: list[Consumer],
                 region: str, dead_letter: Callable[[str, str, list[dict], str], None],
                 poll_interval_s: float = 0.2, max_retries: int | None = None) -> None:
        self.kinesis, self.stream_name, self.consumers, self.region = kinesis, stream_name, consumers, region
        self.dead_letter, self.poll_interval_s, self.max_retries = dead_letter, poll_interval_s, max_retries
        summary = kinesis.describe_stream_summary(StreamName=stream_name)["StreamDescriptionSummary"]
        self.stream_arn = summary["StreamARN"]
        self.checkpoints = CheckpointStore(dynamodb, state_table, self.stream_arn)
        self.stop_event = threading.Event()
        self.threads: dict[tuple[str, str], threading.Thread] = {}

    def _poll_forever(self, poller: ShardPoller) -> None:
        while not self.stop_event.is_set():
            try:
                if poller.step() <= 0:
                    self.stop_event.wait(self.poll_interval_s)
            except Exception:  # network blips, expired iterators: resume from the checkpoint
                log.exception("%s %s: poll failed; resuming from the checkpoint", poller.consumer.name,
                              poller.shard_id)
                self.stop_event.wait(1.0)
                try:
                    poller.reset()
                except Exception:  # still unreachable: try again on the next turn
                    poller.iterator = None

    def start(self) -> None:
        shards = self.kinesis.list_shards(StreamName=self.stream_name)["Shards"]
        for consumer in self.consumers:
            for shard in shards:
                key = (consumer.name, shard["ShardId"])
                if key in self.threads:
                    continue
                poller = ShardPoller(self.kinesis, consumer, self.stream_name, self.stream_arn, shard["ShardId"],
                                     self.checkpoints, self.region, self.dead_letter, self.max_retries)
                thread = threading.Thread(target=self._poll_forever, args=(poller,), daemon=True,
                                          name=f"{consumer.name}-{shard['ShardId']}")
                self.threads[key] = thread
                thread.start()
                log.info("runner: %s <- %s (batch %d, window %.1fs)", consumer.name, shard["ShardId"],
                         consumer.batch_size, consumer.batching_window_s)

    def stop(self) -> None:
        self.stop_event.set()
        for thread in self.threads.values():
            thread.join(timeout=10)


@dataclass(frozen=True)
class ScheduledJob:
    """An ``@app.schedule`` handler and how often the local stack runs it."""

    name: str
    handler: Callable[[dict, Any], Any]
    interval_s: float


def schedule_interval_s(expression) -> float:
    """Seconds between runs for a Rate expression (Cron runs hourly locally)."""
    value, unit = getattr(expression, "value", None), getattr(expression, "unit", None)
    if value is None:
        return 3600.0
    return float(value) * {"MINUTES": 60, "HOURS": 3600, "DAYS": 86400}[unit]


def scheduled_jobs_from_app(app_module, override_s: float | None = None) -> list[ScheduledJob]:
    """The app's schedules; the interval is ``override_s``, else the stage's ``schedule_s`` of the
    function in chalicelib/pipeline.toml (e.g. the committer every few seconds locally), else its Rate."""
    from chalice.app import ScheduledEventConfig

    pipeline = getattr(app_module, "pipeline", None)
    jobs = []
    for source in app_module.app.event_sources:
        if isinstance(source, ScheduledEventConfig):
            handler = getattr(app_module, source.handler_string.rsplit(".", 1)[-1])
            staged = pipeline.function(source.name).schedule_s if pipeline is not None else None
            interval = override_s or staged or schedule_interval_s(source.schedule_expression)
            jobs.append(ScheduledJob(source.name, handler, interval))
    return jobs


def scheduled_event(name: str, region: str) -> dict:
    """The EventBridge scheduled event a Lambda receives."""
    return {"version": "0", "id": f"local-{name}-{time.time_ns()}", "detail-type": "Scheduled Event",
            "source": "aws.events", "account": "123456789012", "region": region,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "resources": [f"arn:aws:events:{region}:123456789012:rule/{name}"], "detail": {}}


def run_schedules(jobs: list[ScheduledJob], region: str, stop_event: threading.Event,
                  timeout_ms: int = 900_000) -> None:
    """Run each job at its interval (first run after one interval) until stopped."""
    due = {job.name: time.monotonic() + job.interval_s for job in jobs}
    while not stop_event.wait(1.0):
        for job in jobs:
            if time.monotonic() < due[job.name]:
                continue
            due[job.name] = time.monotonic() + job.interval_s
            try:
                result = job.handler(scheduled_event(job.name, region), LambdaContext(job.name, 1024, timeout_ms))
                log.info("schedule %s: %s", job.name, str(result)[:300])
            except Exception:  # a failed run is retried at the next interval, as EventBridge would
                log.exception("schedule %s failed", job.name)
