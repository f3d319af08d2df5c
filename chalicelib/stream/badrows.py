"""Bad rows: input a consumer could not use, kept with the reason so nothing is lost.

One schema and one writer for every consumer (``archive``, ``aggregate``,
``search``) and for the SDK-compatible ingestion routes (``ingest``: messages a
Segment or PostHog client sent that fail validation; the clients ignore the body
of a 200, so the rejects are kept here). A bad row is one JSON object::

    {"reason": "invalid_event", "detail": "missing required field(s): app_id",
     "record": {"shard_id", "sequence_number", "partition_key", "event_source_arn", "arrival_ms", "line"},
     "event": {...} | null,          # the decoded event when there is one (it carries app_id)
     "raw_line": "..." | null,       # the line that was not an event
     "record_data_b64": "..." | null,  # the undecodable record
     "truncated": {"field", "original_bytes", "sha256"} | null}  # what was cut (see below)

A bad row keeps at most ``MAX_KEPT_BYTES`` of the input it holds (``cap``, the one rule,
applied when a row is serialized): a longer ``raw_line`` keeps its first bytes (whole
characters), a longer record its first bytes (``record_data_b64`` stays decodable), a
longer event its envelope without ``attributes``; ``truncated`` then names the field, the
size of the whole input in bytes and its SHA-256, so the original can be recognised (e.g.
in the raw archive or a client's log) without being stored twice. ``detail`` keeps at most
``MAX_DETAIL_CHARS`` characters.

Rows are stored per app and source record, one NDJSON object each::

    bad-rows/<consumer>/dt=<record arrival day>/app_id=<app>/<shard id>-<sequence number>.ndjson

``<app>`` is the app of the row's event; rows with no event, or an event whose app id
is not a valid one (undecodable records, lines that were not JSON), go under
``app_id=_unattributed`` (no app id starts with ``_``). So one app's bad rows are found
by listing its own prefixes (``app_prefix``), never by reading another app's objects,
while the Glue table's partitions stay ``<consumer>/dt=<day>/`` (Athena, Trino with
``hive.recursive-directories`` and the local DuckDB engine read the files below a
partition's location).

For ``ingest`` the "record" is the request: ``shard_id`` is the protocol
(``segment``, ``posthog``), ``sequence_number`` a digest of the app and the
rejected messages, ``line`` the message's position in the request, ``event`` holds
``app_id`` and ``received_at`` and ``raw_line`` the message as sent, keys removed.

The key depends only on the record, never on a clock or the batch, so a
re-delivered record overwrites its object instead of adding copies (Lambda
re-delivers a failed batch from some record on, and every consumer judges a
record the same way each time). The Glue table ``bad_rows`` (``lake/glue.py``)
reads them, partitioned by consumer and day.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

import orjson

from chalicelib.stream.envelope import APP_ID_PATTERN
from chalicelib.stream.instants import iso_date
from chalicelib.stream.records import RecordRef

PREFIX = "bad-rows"
#: The app part of rows that belong to no app (no valid app id can start with ``_``).
UNATTRIBUTED = "_unattributed"
_APP_ID_RE = re.compile(APP_ID_PATTERN)
CONSUMERS = ("archive", "aggregate", "search", "ingest")

#: ``reason`` values: a stable code; ``detail`` says what exactly.
UNDECODABLE_RECORD = "undecodable_record"
INVALID_EVENT = "invalid_event"
TOO_LATE = "too_late"
REJECTED_BY_INDEX = "rejected_by_index"
REASONS = (UNDECODABLE_RECORD, INVALID_EVENT, TOO_LATE, REJECTED_BY_INDEX)

#: Most bytes of input one bad row keeps (raw_line, the record, the event); the rest is summed up
#: in ``truncated`` (size and SHA-256). A validated event (attributes <= 32 KiB) always fits.
MAX_KEPT_BYTES = 64 * 1024
#: Most characters of ``detail`` kept.
MAX_DETAIL_CHARS = 2048


def _summary(field: str, data: bytes) -> dict[str, Any]:
    return {"field": field, "original_bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def cap(raw_line: str | None, record_data_b64: str | None, event: dict[str, Any] | None,
        limit: int = MAX_KEPT_BYTES) -> tuple[str | None, str | None, dict[str, Any] | None, dict[str, Any] | None]:
    """(raw_line, record_data_b64, event, truncated) as a bad row keeps them (see the module docstring)."""
    if raw_line is not None:
        data = raw_line.encode("utf-8", "replace")
        if len(data) > limit:
            return data[:limit].decode("utf-8", "ignore"), record_data_b64, event, _summary("raw_line", data)
    if record_data_b64 is not None and len(record_data_b64) > limit:
        data = base64.b64decode(record_data_b64)
        kept = base64.b64encode(data[:limit // 4 * 3]).decode()  # the first bytes, still valid base64
        return raw_line, kept, event, _summary("record_data_b64", data)
    if event is not None:
        data = orjson.dumps(event, option=orjson.OPT_SORT_KEYS)
        if len(data) > limit:
            return raw_line, record_data_b64, {**event, "attributes": None}, _summary("event", data)
    return raw_line, record_data_b64, event, None


@dataclass(frozen=True)
class BadRow:
    """One rejected record, line or event.

    Attributes:
        reason: one of ``REASONS``.
        detail: the human-readable why.
        record: the Kinesis record it came from.
        line: the line's position among the record's non-empty lines (None: the whole record).
        event: the decoded event (times as epoch ms) when there is one.
        raw_line: the original line when it was not an event.
        record_data_b64: the record's data, base64, when the record was undecodable.
    """

    reason: str
    detail: str
    record: RecordRef
    line: int | None = None
    event: dict[str, Any] | None = None
    raw_line: str | None = None
    record_data_b64: str | None = None

    def __post_init__(self) -> None:
        if self.reason not in REASONS:
            raise ValueError(f"unknown bad-row reason {self.reason!r}")

    def to_dict(self) -> dict[str, Any]:
        """The row as stored: input capped (``cap``), ``detail`` shortened."""
        raw_line, record_data_b64, event, truncated = cap(self.raw_line, self.record_data_b64, self.event)
        return {"reason": self.reason, "detail": self.detail[:MAX_DETAIL_CHARS],
                "record": {**self.record.to_dict(), "line": self.line},
                "event": event, "raw_line": raw_line, "record_data_b64": record_data_b64, "truncated": truncated}

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict(), option=orjson.OPT_SORT_KEYS)


def undecodable_record(ref: RecordRef, data: bytes, detail: str) -> BadRow:
    return BadRow(UNDECODABLE_RECORD, detail, ref, record_data_b64=base64.b64encode(data).decode())


def invalid_line(ref: RecordRef, line_no: int | None, line: bytes, detail: str) -> BadRow:
    """A line that is not a usable event (not JSON, or a bad envelope)."""
    return BadRow(INVALID_EVENT, detail, ref, line=line_no, raw_line=line.decode("utf-8", "replace"))


def too_late(ref: RecordRef, line_no: int | None, event: dict[str, Any], detail: str) -> BadRow:
    """An event older than the maximum lateness (not aggregated; the raw archive keeps it)."""
    return BadRow(TOO_LATE, detail, ref, line=line_no, event=event)


def rejected_event(ref: RecordRef, line_no: int | None, event: dict[str, Any], detail: str) -> BadRow:
    """An event the search cluster refused (mapping conflict, too many fields...)."""
    return BadRow(REJECTED_BY_INDEX, detail, ref, line=line_no, event=event)


def rejected_message(source: str, request_id: str, received_at: int, app_id: str, index: int, message: str,
                     detail: str, event_id: str | None = None) -> BadRow:
    """A message an SDK-compatible route refused (consumer ``ingest``).

    Args:
        source: the protocol (``segment``, ``posthog``); it names the object like a shard would.
        request_id: names the request's object (a digest of its rejects: a retried request overwrites it).
        received_at: when the API received it (its day partitions the object).
        app_id: the app of the key the request carried.
        index: the message's position in the request.
        message: the message as sent, as JSON, without the key it may carry.
        detail: why it was refused.
        event_id: the id it would have had, when it carried one.
    """
    ref = RecordRef(sequence_number=request_id, shard_id=source, arrival_ms=received_at)
    return BadRow(INVALID_EVENT, detail, ref, line=index, raw_line=message,
                  event={"app_id": app_id, "received_at": received_at, "event_id": event_id})


def owner(row: BadRow) -> str:
    """The app a row belongs to: its event's app id when valid, else ``UNATTRIBUTED``."""
    app_id = (row.event or {}).get("app_id")
    return app_id if isinstance(app_id, str) and _APP_ID_RE.fullmatch(app_id) else UNATTRIBUTED


def app_prefix(consumer: str, day: str, app_id: str, prefix: str = PREFIX) -> str:
    """Where one app's (or ``UNATTRIBUTED``) bad rows of one consumer and arrival day are (``YYYY-MM-DD``)."""
    if consumer not in CONSUMERS:
        raise ValueError(f"unknown consumer {consumer!r}")
    if app_id != UNATTRIBUTED and not _APP_ID_RE.fullmatch(app_id):
        raise ValueError(f"invalid app id {app_id!r}")
    return f"{prefix.rstrip('/')}/{consumer}/dt={day}/app_id={app_id}/"


def object_key(consumer: str, ref: RecordRef, prefix: str = PREFIX, app_id: str = UNATTRIBUTED) -> str:
    """Where the bad rows of one app from one record of one consumer are stored (deterministic)."""
    dt = iso_date(ref.arrival_ms) if ref.arrival_ms is not None else "unknown"
    return f"{app_prefix(consumer, dt, app_id, prefix)}{ref.shard_id}-{ref.sequence_number or 'unknown'}.ndjson"


def group_by_object(consumer: str, rows: Sequence[BadRow], prefix: str = PREFIX) -> dict[str, bytes]:
    """Object key -> NDJSON body of the rows, one object per app and source record."""
    grouped: dict[str, list[bytes]] = defaultdict(list)
    for row in rows:
        grouped[object_key(consumer, row.record, prefix, owner(row))].append(row.to_json())
    return {key: b"\n".join(lines) + b"\n" for key, lines in grouped.items()}


class BadRowsSink(Protocol):
    """Stores bad rows of one consumer; idempotent per record, raises if anything was not stored."""

    def write(self, rows: Sequence[BadRow]) -> None: ...


class MemoryBadRowsSink:
    """Keeps objects by key in memory (tests, benchmarks)."""

    def __init__(self, consumer: str = "search", prefix: str = PREFIX) -> None:
        self.objects: dict[str, bytes] = {}
        self._consumer, self._prefix = consumer, prefix

    def write(self, rows: Sequence[BadRow]) -> None:
        self.objects.update(group_by_object(self._consumer, rows, self._prefix))

    def rows(self) -> list[dict[str, Any]]:
        return [orjson.loads(line) for _, body in sorted(self.objects.items()) for line in body.splitlines()]
