"""Bad rows: what the indexer could not index, kept so nothing is lost.

A bad row is one JSON object. Its key is deterministic (derived from the
content, never from a clock), so a redelivered batch overwrites the same
objects instead of adding copies::

    bad-rows/search/dt=YYYY-MM-DD/<kind>-<sha256 prefix>.json

``dt`` is the event's day when the event is readable, else the record's
arrival day.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any, Mapping, Protocol, Sequence

import orjson

from chalicelib.search.naming import iso_date

DEFAULT_PREFIX = "bad-rows/search"

#: ``reason`` values.
UNDECODABLE_RECORD = "undecodable_record"
INVALID_EVENT = "invalid_event"
REJECTED_BY_INDEX = "rejected_by_index"


@dataclass(frozen=True)
class RecordRef:
    """Where a row came from: one Kinesis record of a Lambda batch."""

    sequence_number: str
    partition_key: str | None = None
    event_source_arn: str | None = None
    kinesis_event_id: str | None = None
    arrival_ms: int | None = None

    @classmethod
    def from_lambda(cls, record: Mapping[str, Any]) -> "RecordRef":
        kinesis = record.get("kinesis") or {}
        arrival = kinesis.get("approximateArrivalTimestamp")
        return cls(
            sequence_number=str(kinesis.get("sequenceNumber")),
            partition_key=kinesis.get("partitionKey"),
            event_source_arn=record.get("eventSourceARN"),
            kinesis_event_id=record.get("eventID"),
            arrival_ms=None if arrival is None else int(float(arrival) * 1000),
        )

    def to_dict(self) -> dict[str, Any]:
        return {"sequence_number": self.sequence_number, "partition_key": self.partition_key,
                "event_source_arn": self.event_source_arn, "kinesis_event_id": self.kinesis_event_id}


@dataclass(frozen=True)
class BadRow:
    reason: str
    detail: str
    dt: str
    name: str
    source: RecordRef
    line: int | None = None
    event: dict[str, Any] | None = None
    raw_line: str | None = None
    record_data_b64: str | None = None

    def to_json(self) -> bytes:
        body: dict[str, Any] = {"reason": self.reason, "detail": self.detail,
                                "source": {**self.source.to_dict(), "line": self.line}}
        if self.event is not None:
            body["event"] = self.event
        if self.raw_line is not None:
            body["raw_line"] = self.raw_line
        if self.record_data_b64 is not None:
            body["record_data_b64"] = self.record_data_b64
        return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(4, "big"))
        h.update(part)
    return h.hexdigest()[:40]


def _arrival_dt(ref: RecordRef) -> str:
    return iso_date(ref.arrival_ms) if ref.arrival_ms is not None else "unknown"


def undecodable_record(ref: RecordRef, data: bytes, detail: str) -> BadRow:
    return BadRow(UNDECODABLE_RECORD, detail, _arrival_dt(ref), f"record-{_digest(data)}", ref,
                  record_data_b64=base64.b64encode(data).decode())


def invalid_line(ref: RecordRef, line_no: int, line: bytes, detail: str,
                 event_time: Any = None) -> BadRow:
    """A line that is not a usable event (not JSON, or a bad envelope)."""
    dt = iso_date(event_time) if isinstance(event_time, int) and not isinstance(event_time, bool) \
        else _arrival_dt(ref)
    return BadRow(INVALID_EVENT, detail, dt, f"line-{_digest(line)}", ref, line=line_no,
                  raw_line=line.decode("utf-8", "replace"))


def rejected_event(ref: RecordRef, line_no: int, event: dict[str, Any], detail: str) -> BadRow:
    """An event the cluster refused (mapping conflict, too many fields...)."""
    name = f"event-{_digest(str(event['app_id']).encode(), str(event['event_id']).encode())}"
    return BadRow(REJECTED_BY_INDEX, detail, iso_date(event["event_time"]), name, ref,
                  line=line_no, event=event)


class BadRowsSink(Protocol):
    """Stores bad rows; must be idempotent per row key, and raise if anything was not stored."""

    def write(self, rows: Sequence[BadRow]) -> None: ...


def object_key(row: BadRow, prefix: str = DEFAULT_PREFIX) -> str:
    return f"{prefix.rstrip('/')}/dt={row.dt}/{row.name}.json"


class S3BadRowsSink:
    """Writes each bad row as one JSON object (``PutObject`` overwrites: retries are safe)."""

    def __init__(self, s3_client: Any, bucket: str, prefix: str = DEFAULT_PREFIX) -> None:
        self._s3 = s3_client
        self._bucket = bucket
        self._prefix = prefix

    def write(self, rows: Sequence[BadRow]) -> None:
        for row in rows:
            self._s3.put_object(Bucket=self._bucket, Key=object_key(row, self._prefix),
                                Body=row.to_json(), ContentType="application/json")


class MemoryBadRowsSink:
    """Keeps rows by key in memory (tests, local runs)."""

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        self.objects: dict[str, bytes] = {}
        self._prefix = prefix

    def write(self, rows: Sequence[BadRow]) -> None:
        for row in rows:
            self.objects[object_key(row, self._prefix)] = row.to_json()

    def rows(self) -> list[dict[str, Any]]:
        return [orjson.loads(body) for _, body in sorted(self.objects.items())]
