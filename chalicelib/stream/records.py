"""Lambda Kinesis batches: the one record decoder and the partial-batch response.

Every consumer starts here. A Lambda Kinesis event's ``Records`` become
:class:`DecodedRecord` values (where the record came from, its NDJSON lines,
or why it could not be read), and a consumer answers with
:func:`batch_response`: ``ReportBatchItemFailures`` semantics, i.e. Lambda
re-delivers the batch from the reported sequence number on (inclusive) and
treats everything before it as done.

The analytics consumers parse lines columnar (``processing/decode.py`` hands
the records' zstd frames straight to DuckDB) but read records through
:func:`record_data` all the same, so a record is judged the same way by every
consumer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from chalicelib.stream import codec

try:  # SIMD base64: ~10x faster than binascii on 10k records
    import pybase64 as _b64
except ImportError:  # pragma: no cover - exercised only without pybase64
    import base64 as _b64


@dataclass(frozen=True)
class RecordRef:
    """Where a row came from: one Kinesis record of a Lambda batch."""

    sequence_number: str
    shard_id: str = "unknown"
    partition_key: str | None = None
    event_source_arn: str | None = None
    arrival_ms: int | None = None

    @classmethod
    def from_lambda(cls, record: Mapping[str, Any]) -> "RecordRef":
        kinesis = record.get("kinesis") if isinstance(record, Mapping) else None
        kinesis = kinesis if isinstance(kinesis, Mapping) else {}
        arrival = kinesis.get("approximateArrivalTimestamp")
        event_id = record.get("eventID") if isinstance(record, Mapping) else None
        shard_id = str(event_id).split(":", 1)[0] if event_id else "unknown"
        try:
            arrival_ms = None if arrival is None else int(float(arrival) * 1000)
        except (TypeError, ValueError):
            arrival_ms = None
        return cls(sequence_number=str(kinesis.get("sequenceNumber", "")), shard_id=shard_id or "unknown",
                   partition_key=kinesis.get("partitionKey"),
                   event_source_arn=record.get("eventSourceARN") if isinstance(record, Mapping) else None,
                   arrival_ms=arrival_ms)

    def to_dict(self) -> dict[str, Any]:
        return {"shard_id": self.shard_id, "sequence_number": self.sequence_number,
                "partition_key": self.partition_key, "event_source_arn": self.event_source_arn,
                "arrival_ms": self.arrival_ms}


class UndecodableRecord(codec.UndecodableRecord):
    """A Lambda record whose data is not a packed record; ``data`` is what there was to keep."""

    def __init__(self, reason: str, data: bytes) -> None:
        super().__init__(reason)
        self.reason = reason
        self.data = data


def record_data(record: Mapping[str, Any]) -> bytes:
    """The decoded data of one Lambda Kinesis record, its ``EP1Z`` header checked.

    Raises:
        UndecodableRecord: not a Kinesis Lambda record, invalid base64, or another format.
    """
    try:
        data = record["kinesis"]["data"]
        record["kinesis"]["sequenceNumber"]
    except (KeyError, TypeError):
        raise UndecodableRecord("not a Kinesis Lambda record (kinesis.data/sequenceNumber)",
                                repr(record).encode()[:65536]) from None
    try:
        raw = _b64.b64decode(data, validate=True)
    except (ValueError, TypeError) as exc:
        raise UndecodableRecord(f"invalid base64: {exc}",
                                data.encode() if isinstance(data, str) else bytes(data)) from None
    if raw[:4] != codec.MAGIC or len(raw) < codec.HEADER_SIZE:
        raise UndecodableRecord(f"unknown record format {raw[:4]!r}", raw)
    return raw


@dataclass(frozen=True)
class DecodedRecord:
    """One record of a batch: its non-empty NDJSON lines, or why it could not be read.

    Attributes:
        index: position in the batch.
        ref: where it came from.
        lines: the non-empty event lines (empty when ``error`` is set).
        error: why the record is undecodable, else None.
        data: the record's data (base64-decoded when possible), kept for bad rows.
    """

    index: int
    ref: RecordRef
    lines: tuple[bytes, ...]
    error: str | None
    data: bytes


def decode_batch(records: Sequence[Mapping[str, Any]]) -> list[DecodedRecord]:
    """Decode every record of a Lambda Kinesis batch into its event lines (row-wise consumers)."""
    out = []
    for i, record in enumerate(records):
        ref = RecordRef.from_lambda(record)
        try:
            raw = record_data(record)
            payload = codec.decode_record(raw)
        except UndecodableRecord as exc:
            out.append(DecodedRecord(i, ref, (), exc.reason, exc.data))
            continue
        except codec.UndecodableRecord as exc:
            out.append(DecodedRecord(i, ref, (), str(exc), raw))
            continue
        out.append(DecodedRecord(i, ref, tuple(line for line in payload.split(b"\n") if line.strip()), None, raw))
    return out


@dataclass(frozen=True)
class BatchPosition:
    """The shard and the first/last sequence numbers of a batch (output objects are named by the first)."""

    shard_id: str
    first_sequence: str
    last_sequence: str


def batch_position(records: Sequence[Mapping[str, Any]]) -> BatchPosition:
    first, last = RecordRef.from_lambda(records[0]), RecordRef.from_lambda(records[-1])
    return BatchPosition(first.shard_id, first.sequence_number, last.sequence_number)


def batch_response(failed_sequence: str | None = None) -> dict[str, list[dict[str, str]]]:
    """The ``ReportBatchItemFailures`` answer: re-deliver from ``failed_sequence`` on, or nothing."""
    if failed_sequence is None:
        return {"batchItemFailures": []}
    return {"batchItemFailures": [{"itemIdentifier": failed_sequence}]}


def retry_whole_batch(records: Sequence[Mapping[str, Any]]) -> dict[str, list[dict[str, str]]]:
    """Re-deliver the batch from its first record (its outputs are named by it, so they are overwritten)."""
    return batch_response(RecordRef.from_lambda(records[0]).sequence_number)
