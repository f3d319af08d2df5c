"""The Kinesis-triggered lake writers: raw archive and windowed aggregation.

Both are services that receive their clients: ``handle(records)`` takes a
Lambda Kinesis batch and returns the partial-batch response
(``stream.records``).

Failure rules (Lambda re-delivers from the sequence number we report):

* an undecodable record, a line failing the schema or an event older than
  the maximum lateness is not an error: it goes to ``bad-rows/`` with the
  reason and the original bytes (``stream.badrows``), and the batch goes on;
* a transient failure (S3 or DynamoDB errors, throttling) reports the batch's
  *first* record as failed. Every output object is named by shard and first
  sequence number, so the re-delivered batch overwrites what the failed
  attempt wrote instead of adding to it.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

import pyarrow as pa
import pyarrow.compute as pc
from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.lake import layout
from chalicelib.lake.raw_archive import staged_file
from chalicelib.lake.sql_sketch import register_columns
from chalicelib.lake.state import StateStore
from chalicelib.processing import BadRecord, MetricSet, decode_records, process_batch
from chalicelib.processing.app_groups import encode_by_app
from chalicelib.stream import badrows, envelope
from chalicelib.stream.badrows import BadRow, BadRowsSink
from chalicelib.stream.records import RecordRef, batch_position, batch_response, retry_whole_batch

log = logging.getLogger(__name__)
TRANSIENT_ERRORS = (ClientError, BotoCoreError)


def decode_bad_rows(bad: Sequence[BadRecord], records: Sequence[Mapping[str, Any]]) -> list[BadRow]:
    """Bad rows of the records and lines the decoder rejected."""
    rows = []
    for b in bad:
        ref = RecordRef.from_lambda(records[b.record_index])
        rows.append(badrows.undecodable_record(ref, b.data, b.reason) if b.line_index is None
                    else badrows.invalid_line(ref, b.line_index, b.data, b.reason))
    return rows


def too_late_rows(events: pa.Table, records: Sequence[Mapping[str, Any]], max_lateness_ms: int) -> list[BadRow]:
    """Bad rows of events older than the maximum lateness (the decoded event is kept)."""
    if events.num_rows == 0:
        return []
    detail = f"event_time is more than {max_lateness_ms // 3_600_000} h before received_at (maximum lateness)"
    refs = [RecordRef.from_lambda(r) for r in records]
    rows = events.select([*envelope.FIELD_NAMES, "record_index"]).to_pylist()
    return [badrows.too_late(refs[row.pop("record_index")], None, row, detail) for row in rows]


class ArchiveService:
    """Every valid event of a batch staged in one Parquet file (``layout.staged_key``); the
    committer appends staged files to the raw events table and records the progress per shard."""

    def __init__(self, s3, bucket: str, state: StateStore, bad_rows: BadRowsSink) -> None:
        self._s3, self._bucket, self._state, self._bad_rows = s3, bucket, state, bad_rows

    def handle(self, records: Sequence[Mapping[str, Any]]) -> dict:
        if not records:
            return batch_response()
        at = batch_position(records)
        decoded = decode_records(records)
        events = decoded.events
        try:
            self._s3.put_object(Bucket=self._bucket, Body=staged_file(events),
                                Key=layout.staged_key(at.shard_id, at.first_sequence, at.last_sequence))
            self._bad_rows.write(decode_bad_rows(decoded.bad, records))
        except TRANSIENT_ERRORS as exc:
            log.warning("archive %s %s..%s: transient failure, batch will be re-delivered: %s",
                        at.shard_id, at.first_sequence, at.last_sequence, exc)
            return retry_whole_batch(records)
        log.info("archive %s %s..%s: %d event(s), %d bad", at.shard_id, at.first_sequence, at.last_sequence,
                 events.num_rows, len(decoded.bad))
        return batch_response()


class AggregationService:
    """Partial window aggregates per (app, metric, window, key) for each batch."""

    def __init__(self, s3, bucket: str, state: StateStore, metrics: MetricSet, bad_rows: BadRowsSink,
                 consumer: str = "aggregate_events") -> None:
        self._s3, self._bucket, self._state, self._metrics = s3, bucket, state, metrics
        self._bad_rows, self._consumer = bad_rows, consumer

    def handle(self, records: Sequence[Mapping[str, Any]]) -> dict:
        if not records:
            return batch_response()
        at = batch_position(records)
        try:
            # The watermark as it stood before this batch: results do not depend on
            # the order of events inside a batch.
            seen = self._state.max_event_time(self._consumer, at.shard_id)
            result = process_batch(records, self._metrics, max_event_time_before=seen)
            written = self._write_partials(result.partials, at.shard_id, at.first_sequence, at.last_sequence)
            self._bad_rows.write(decode_bad_rows(result.bad, records)
                                 + too_late_rows(result.too_late, records, self._metrics.settings.max_lateness_ms))
            if result.max_event_time is not None:
                self._state.raise_max_event_time(self._consumer, at.shard_id, result.max_event_time)
        except TRANSIENT_ERRORS as exc:
            log.warning("aggregate %s %s..%s: transient failure, batch will be re-delivered: %s",
                        at.shard_id, at.first_sequence, at.last_sequence, exc)
            return retry_whole_batch(records)
        log.info("aggregate %s %s..%s: %d event(s) -> %d partial file(s); %d bad, %d too late", at.shard_id,
                 at.first_sequence, at.last_sequence, result.event_count, written, len(result.bad),
                 result.too_late.num_rows)
        return batch_response()

    def _write_partials(self, partials: dict[str, pa.Table], shard_id: str, first_seq: str, last_seq: str) -> int:
        written = 0
        for name, table in partials.items():
            if table.num_rows == 0:
                continue
            hour_ms = pc.multiply(pc.divide(table["window_start"], layout.HOUR_MS), layout.HOUR_MS)
            for hour_start in pc.unique(hour_ms).to_pylist():
                dt, hour = layout.dt_hour(hour_start)
                part = table.filter(pc.equal(hour_ms, hour_start))
                self._s3.put_object(Bucket=self._bucket, Key=layout.partial_key(self._metrics[name], dt, hour, shard_id, first_seq),
                                    Body=encode_by_app(register_columns(part)),
                                    Metadata={"shard-id": shard_id, "last-sequence": last_seq})
                written += 1
        return written
