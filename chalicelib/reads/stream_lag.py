"""How far each consumer is behind the stream: the figures of Flink's job view, per consumer and shard.

Two sources, one shape (:class:`ShardLag`):

* :class:`CheckpointLag` (the local stack): the runner's checkpoints in the state
  table, and the records after each checkpoint read from Kinesis (``GetRecords``:
  free on moto, so the count and the oldest record's age are exact).
* :class:`CloudWatchLag` (AWS): Lambda keeps no readable checkpoints and a
  ``GetRecords`` would take the consumers' read throughput, so it asks CloudWatch
  for what Lambda and Kinesis publish: ``IteratorAge`` (the age of the newest
  record a function was given: how far behind it is), ``Errors`` (failed
  invocations, each retried) and the stream's ``IncomingRecords``. Records behind
  are not published per shard: None.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Sequence

from chalicelib.lake.progress import Checkpoint, read_checkpoints, read_watermarks


@dataclass(frozen=True)
class ShardLag:
    """One consumer on one shard (``shard_id`` "*" when the source has no per-shard figures).

    Attributes:
        consumer: the handler's name.
        shard_id: the shard.
        behind: records after the checkpoint (None: not known on this source).
        behind_capped: ``behind`` stopped counting at the cap.
        iterator_age_ms: age of the oldest unprocessed record (0 when caught up).
        delivered: records the consumer moved past (None: not known).
        retries: retried deliveries (on AWS: failed invocations, each retried).
        dead_lettered: records sent to the on-failure destination (None: counted from S3 by the caller).
        watermark_ms: the newest event time seen on the shard (aggregation only).
        updated_ms: when the checkpoint last moved.
    """

    consumer: str
    shard_id: str
    behind: int | None
    behind_capped: bool
    iterator_age_ms: int | None
    delivered: int | None
    retries: int | None
    dead_lettered: int | None
    watermark_ms: int | None = None
    updated_ms: int | None = None


@dataclass(frozen=True)
class StreamLag:
    """Every consumer's lag, and the stream's input rate when the source publishes it.

    Attributes:
        source: ``checkpoints`` or ``cloudwatch``.
        shards: the stream's shard ids.
        rows: one per consumer and shard.
        incoming_records_per_s: records put on the stream per second, last period (None: derive it from polls).
    """

    source: str
    shards: tuple[str, ...]
    rows: tuple[ShardLag, ...]
    incoming_records_per_s: float | None = None


class CheckpointLag:
    """Lag from the local runner's checkpoints and the records after them.

    Args:
        kinesis: a Kinesis client.
        dynamodb: a DynamoDB client.
        state_table: the state table holding the checkpoints and watermarks.
        stream_name: the stream.
        clock_ms: the wall clock (epoch ms).
        cap: stop counting records behind at this many per shard.
    """

    def __init__(self, kinesis, dynamodb, state_table: str, stream_name: str, clock_ms: Callable[[], int],
                 cap: int = 20_000) -> None:
        self._kinesis, self._db, self._table, self._stream = kinesis, dynamodb, state_table, stream_name
        self._clock_ms, self._cap = clock_ms, cap

    def _behind(self, shard_id: str, after: str | None) -> tuple[int, bool, int | None]:
        """(records after ``after``, capped, arrival ms of the first of them)."""
        kwargs = ({"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "StartingSequenceNumber": after} if after
                  else {"ShardIteratorType": "TRIM_HORIZON"})
        iterator = self._kinesis.get_shard_iterator(StreamName=self._stream, ShardId=shard_id,
                                                    **kwargs)["ShardIterator"]
        count, oldest = 0, None
        while iterator and count < self._cap:
            response = self._kinesis.get_records(ShardIterator=iterator, Limit=min(10_000, self._cap - count))
            records = response["Records"]
            if not records:
                break
            if oldest is None:
                oldest = int(records[0]["ApproximateArrivalTimestamp"].timestamp() * 1000)
            count += len(records)
            iterator = response.get("NextShardIterator")
        return count, count >= self._cap, oldest

    def read(self, consumers: Sequence[str]) -> StreamLag:
        summary = self._kinesis.describe_stream_summary(StreamName=self._stream)["StreamDescriptionSummary"]
        shards = tuple(s["ShardId"] for s in self._kinesis.list_shards(StreamName=self._stream)["Shards"])
        checkpoints: dict[tuple[str, str], Checkpoint] = {
            (c.consumer, c.shard_id): c for c in read_checkpoints(self._db, self._table, summary["StreamARN"])}
        watermarks = read_watermarks(self._db, self._table)
        names = list(dict.fromkeys([*consumers, *(c for c, _ in checkpoints)]))
        now = self._clock_ms()
        rows = []
        for consumer in names:
            for shard_id in shards:
                checkpoint = checkpoints.get((consumer, shard_id))
                behind, capped, oldest = self._behind(shard_id, checkpoint.sequence_number if checkpoint else None)
                rows.append(ShardLag(
                    consumer, shard_id, behind, capped, max(0, now - oldest) if oldest is not None else 0,
                    checkpoint.delivered if checkpoint else 0, checkpoint.retries if checkpoint else 0,
                    checkpoint.dead_lettered if checkpoint else 0,
                    watermarks.get((consumer, shard_id)),
                    checkpoint.updated_ms if checkpoint else None))
        return StreamLag("checkpoints", shards, tuple(rows))


class CloudWatchLag:
    """Lag from the metrics Lambda and Kinesis publish to CloudWatch.

    Args:
        cloudwatch: a CloudWatch client.
        kinesis: a Kinesis client (``ListShards`` only).
        stream_name: the stream.
        function_name: consumer name -> deployed function name.
        clock_ms: the wall clock (epoch ms).
        window_s: how far back to look; the newest period's value is reported.
        period_s: the metrics' period.
    """

    def __init__(self, cloudwatch, kinesis, stream_name: str, function_name: Callable[[str], str],
                 clock_ms: Callable[[], int], window_s: int = 600, period_s: int = 60) -> None:
        self._cw, self._kinesis, self._stream, self._function = cloudwatch, kinesis, stream_name, function_name
        self._clock_ms, self._window_s, self._period_s = clock_ms, window_s, period_s

    def _query(self, query_id: str, namespace: str, metric: str, dimension: tuple[str, str], stat: str) -> dict:
        return {"Id": query_id, "ReturnData": True, "MetricStat": {
            "Metric": {"Namespace": namespace, "MetricName": metric,
                       "Dimensions": [{"Name": dimension[0], "Value": dimension[1]}]},
            "Period": self._period_s, "Stat": stat}}

    def read(self, consumers: Sequence[str]) -> StreamLag:
        queries = [self._query("incoming", "AWS/Kinesis", "IncomingRecords", ("StreamName", self._stream), "Sum")]
        for i, consumer in enumerate(consumers):
            dimension = ("FunctionName", self._function(consumer))
            queries.append(self._query(f"age{i}", "AWS/Lambda", "IteratorAge", dimension, "Maximum"))
            queries.append(self._query(f"errors{i}", "AWS/Lambda", "Errors", dimension, "Sum"))
        end = self._clock_ms() // 1000
        results: dict[str, list[float]] = {}
        paginator = self._cw.get_paginator("get_metric_data")
        for page in paginator.paginate(MetricDataQueries=queries, ScanBy="TimestampDescending",
                                       StartTime=datetime.fromtimestamp(end - self._window_s, timezone.utc),
                                       EndTime=datetime.fromtimestamp(end, timezone.utc)):
            for result in page["MetricDataResults"]:
                results.setdefault(result["Id"], []).extend(result["Values"])  # newest first
        shards = tuple(s["ShardId"] for s in self._kinesis.list_shards(StreamName=self._stream)["Shards"])
        rows = []
        for i, consumer in enumerate(consumers):
            ages, errors = results.get(f"age{i}", []), results.get(f"errors{i}", [])
            rows.append(ShardLag(consumer, "*", None, False, int(ages[0]) if ages else None, None,
                                 int(sum(errors)), None))
        incoming = results.get("incoming", [])
        return StreamLag("cloudwatch", shards, tuple(rows), incoming[0] / self._period_s if incoming else None)
