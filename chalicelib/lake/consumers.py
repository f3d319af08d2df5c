"""The Kinesis-triggered lake writers: raw archive and windowed aggregation.

Both are services that receive their clients: ``handle(records)`` takes a
Lambda Kinesis batch and returns the partial-batch response.

Failure rules (Lambda re-delivers from the sequence number we report):

* an undecodable record, a line failing the schema or an event older than
  the maximum lateness is not an error: it goes to ``bad-rows/`` with the
  reason and the original bytes, and the batch goes on;
* a transient failure (S3 or DynamoDB errors, throttling) reports the batch's
  *first* record as failed. Every output object is named by shard and first
  sequence number, so the re-delivered batch overwrites what the failed
  attempt wrote instead of adding to it.
"""

from __future__ import annotations

import base64
import logging
from typing import Any, Callable, Mapping, Sequence

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.lake import layout
from chalicelib.lake.raw_archive import archive_files
from chalicelib.lake.sql_sketch import register_columns
from chalicelib.lake.state import StateStore
from chalicelib.processing import MetricSet, aggregate, decode_records, encode_parquet, watermark

log = logging.getLogger(__name__)
TRANSIENT_ERRORS = (ClientError, BotoCoreError)
#: A watermark older than any event: nothing is late before a shard has history.
NO_WATERMARK = -(2 ** 62)


def batch_identity(records: Sequence[Mapping[str, Any]]) -> tuple[str, str, str]:
    """(shard id, first sequence number, last sequence number) of a batch."""
    first = records[0]
    shard_id = first.get("eventID", "unknown:").split(":", 1)[0] or "unknown"
    return shard_id, first["kinesis"]["sequenceNumber"], records[-1]["kinesis"]["sequenceNumber"]


def retry_from_first(records: Sequence[Mapping[str, Any]]) -> dict:
    return {"batchItemFailures": [{"itemIdentifier": records[0]["kinesis"]["sequenceNumber"]}]}


def split_too_late(events: pa.Table, max_lateness_ms: int) -> tuple[pa.Table, pa.Table]:
    """Events whose event_time is more than max_lateness before they were received.

    Judged per event against its own ``received_at``, so the rule gives the
    same answer in the aggregation handler and in finalization.
    """
    limit = pc.subtract(events["received_at"], pa.scalar(max_lateness_ms, pa.int64()))
    old = pc.fill_null(pc.less(events["event_time"], limit), False)
    return events.filter(pc.invert(old)), events.filter(old)


class BadRowsWriter:
    """One NDJSON object per batch and source under ``bad-rows/<source>/``."""

    def __init__(self, s3, bucket: str, source: str, clock_ms: Callable[[], int]) -> None:
        self._s3, self._bucket, self._source, self._clock_ms = s3, bucket, source, clock_ms

    def write(self, shard_id: str, first_sequence: str, rows: list[dict]) -> str | None:
        if not rows:
            return None
        dt, _ = layout.dt_hour(self._clock_ms())
        key = layout.bad_rows_key(self._source, dt, shard_id, first_sequence)
        body = b"".join(orjson.dumps(row) + b"\n" for row in rows)
        self._s3.put_object(Bucket=self._bucket, Key=key, Body=body, ContentType="application/x-ndjson")
        log.warning("bad rows: %d row(s) -> s3://%s/%s", len(rows), self._bucket, key)
        return key


def bad_record_rows(bad, shard_id: str) -> list[dict]:
    return [{"reason": b.reason, "shard_id": shard_id, "sequence_number": b.sequence_number,
             "line": b.line_index, "data_b64": base64.b64encode(b.data).decode()} for b in bad]


def too_late_rows(events: pa.Table, max_lateness_ms: int) -> list[dict]:
    rows = events.select(["event_id", "event_type", "event_time", "received_at", "app_id", "user_id",
                          "client_event_time", "attributes", "sequence_number"]).to_pylist()
    return [{"reason": f"event_time is more than {max_lateness_ms // 3_600_000} h before received_at "
                       f"(maximum lateness)", "event": row} for row in rows]


class ArchiveService:
    """Every valid event as a Parquet row under ``events/``; records progress per shard."""

    def __init__(self, s3, bucket: str, state: StateStore, clock_ms: Callable[[], int]) -> None:
        self._s3, self._bucket, self._state = s3, bucket, state
        self._bad_rows = BadRowsWriter(s3, bucket, "archive", clock_ms)

    def handle(self, records: Sequence[Mapping[str, Any]]) -> dict:
        if not records:
            return {"batchItemFailures": []}
        shard_id, first_seq, last_seq = batch_identity(records)
        decoded = decode_records(records)
        events = decoded.events
        try:
            for part in archive_files(events):
                key = layout.raw_key(part.app_id, part.dt, part.hour, shard_id, first_seq)
                self._s3.put_object(Bucket=self._bucket, Key=key, Body=part.data)
            self._bad_rows.write(shard_id, first_seq, bad_record_rows(decoded.bad, shard_id))
            self._state.raise_archived_through(shard_id, last_seq)
        except TRANSIENT_ERRORS as exc:
            log.warning("archive %s %s..%s: transient failure, batch will be re-delivered: %s",
                        shard_id, first_seq, last_seq, exc)
            return retry_from_first(records)
        log.info("archive %s %s..%s: %d event(s), %d bad", shard_id, first_seq, last_seq, events.num_rows,
                 len(decoded.bad))
        return {"batchItemFailures": []}


class AggregationService:
    """Partial window aggregates per (app, metric, window, key) for each batch."""

    def __init__(self, s3, bucket: str, state: StateStore, metrics: MetricSet, clock_ms: Callable[[], int],
                 consumer: str = "aggregate_events") -> None:
        self._s3, self._bucket, self._state, self._metrics = s3, bucket, state, metrics
        self._consumer = consumer
        self._bad_rows = BadRowsWriter(s3, bucket, "aggregate", clock_ms)

    def handle(self, records: Sequence[Mapping[str, Any]]) -> dict:
        if not records:
            return {"batchItemFailures": []}
        shard_id, first_seq, last_seq = batch_identity(records)
        settings = self._metrics.settings
        try:
            seen = self._state.max_event_time(self._consumer, shard_id)
            # The watermark as it stood before this batch: results do not depend on
            # the order of events inside a batch.
            mark = NO_WATERMARK if seen is None else watermark(seen, settings.allowed_lateness_ms)
            decoded = decode_records(records, attribute_types=self._metrics.attribute_types)
            kept, too_late = split_too_late(decoded.events, settings.max_lateness_ms)
            partials = aggregate(kept, self._metrics, watermark_ms=mark)
            written = self._write_partials(partials, shard_id, first_seq, last_seq)
            self._bad_rows.write(shard_id, first_seq, bad_record_rows(decoded.bad, shard_id)
                                 + too_late_rows(too_late, settings.max_lateness_ms))
            if kept.num_rows:
                # An event stamped in the future (up to 24 h is accepted) must not drag the
                # watermark ahead and make everything after it "late": cap at arrival time.
                seen_now = pc.min_element_wise(kept["event_time"], kept["received_at"])
                self._state.raise_max_event_time(self._consumer, shard_id, pc.max(seen_now).as_py())
        except TRANSIENT_ERRORS as exc:
            log.warning("aggregate %s %s..%s: transient failure, batch will be re-delivered: %s",
                        shard_id, first_seq, last_seq, exc)
            return retry_from_first(records)
        log.info("aggregate %s %s..%s: %d event(s) -> %d partial file(s); %d bad, %d too late",
                 shard_id, first_seq, last_seq, kept.num_rows, written, len(decoded.bad), too_late.num_rows)
        return {"batchItemFailures": []}

    def _write_partials(self, partials: dict[str, pa.Table], shard_id: str, first_seq: str, last_seq: str) -> int:
        written = 0
        for name, table in partials.items():
            if table.num_rows == 0:
                continue
            hour_ms = pc.multiply(pc.divide(table["window_start"], layout.HOUR_MS), layout.HOUR_MS)
            for hour_start in pc.unique(hour_ms).to_pylist():
                dt, hour = layout.dt_hour(hour_start)
                part = table.filter(pc.equal(hour_ms, hour_start))
                self._s3.put_object(Bucket=self._bucket, Key=layout.partial_key(name, dt, hour, shard_id, first_seq),
                                    Body=encode_parquet(register_columns(part)),
                                    Metadata={"shard-id": shard_id, "last-sequence": last_seq})
                written += 1
        return written
