"""The ingest service: body -> validated events -> packed Kinesis records."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

from chalicelib.stream import codec
from chalicelib.http.errors import BadRequest, PayloadTooLarge, ServiceUnavailable
from chalicelib.ingest.validation import InvalidEvent, ValidatedEvent, validate_event
from chalicelib.ingest.body import decompress, parse_events
from chalicelib.ingest.kinesis_writer import PutOutcome

MAX_EVENTS_PER_REQUEST = 1000
MAX_DECOMPRESSED_BYTES = 5 * 1024 * 1024


class RecordSink(Protocol):
    def put(self, blobs: Sequence[bytes]) -> PutOutcome: ...


@dataclass(frozen=True)
class IngestResult:
    """The 200 response: accepted ids in request order and per-event errors."""

    event_ids: list[str]
    errors: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"accepted": len(self.event_ids), "rejected": len(self.errors),
                "event_ids": self.event_ids, "errors": self.errors}


@dataclass(frozen=True)
class PreparedBatch:
    """Validated events packed into records, before anything is written."""

    accepted: list[tuple[int, ValidatedEvent]]
    errors: list[dict[str, Any]]
    records: list[codec.PackedRecord]


class IngestService:
    """Validates a request's events and writes the valid ones to the stream."""

    def __init__(self, sink: RecordSink, clock_ms: Callable[[], int],
                 max_events: int = MAX_EVENTS_PER_REQUEST,
                 max_bytes: int = MAX_DECOMPRESSED_BYTES,
                 admit: Callable[[str, int], None] | None = None,
                 suppression: Callable[[str, Sequence[tuple[int, ValidatedEvent]]], list[int] | None] | None = None,
                 pseudonymiser: Callable[[str], Any] | None = None) -> None:
        #: app -> its Pseudonymiser (chalicelib/ingest/pseudonymise.py) or None: applied before validation.
        self._pseudonymiser = pseudonymiser
        self._sink = sink
        #: Suppressed users (chalicelib/ingest/suppression.py ``Suppression.keep``): their events are
        #: answered as accepted and written nowhere.
        self._suppression = suppression
        #: The app's rate limit (chalicelib/apps/ratelimit.py): raises 429 before anything is written.
        self._admit = admit
        self._clock_ms = clock_ms
        self._max_events = max_events
        self._max_bytes = max_bytes

    def prepare(self, app_id: str, body: bytes, content_type: str | None,
                content_encoding: str | None) -> PreparedBatch:
        """Decode, validate and pack; raises RequestError subclasses."""
        received_at = self._clock_ms()
        raw_events = parse_events(decompress(body, content_encoding, self._max_bytes), content_type,
                                  self._max_events)
        if not raw_events:
            raise BadRequest("the request holds no events")
        if len(raw_events) > self._max_events:
            raise PayloadTooLarge(f"the request holds {len(raw_events)} events; "
                                  f"the limit is {self._max_events} events per request")
        accepted: list[tuple[int, ValidatedEvent]] = []
        errors: list[dict[str, Any]] = []
        transform = self._pseudonymiser(app_id) if self._pseudonymiser is not None else None
        for index, raw in enumerate(raw_events):
            try:
                accepted.append((index, validate_event(transform.apply(raw) if transform else raw, app_id,
                                                       received_at)))
            except InvalidEvent as exc:
                errors.append({"index": index, "error": str(exc)})
        records = codec.pack([event.line for _, event in accepted])
        return PreparedBatch(accepted, errors, records)

    def ingest(self, app_id: str, body: bytes, content_type: str | None,
               content_encoding: str | None) -> IngestResult:
        batch = self.prepare(app_id, body, content_type, content_encoding)
        if self._admit is not None:
            self._admit(app_id, len(batch.accepted) + len(batch.errors))
        if self._suppression is not None and batch.accepted:
            kept = self._suppression(app_id, batch.accepted)
            if kept is not None:
                batch = PreparedBatch(batch.accepted, batch.errors,
                                      codec.pack([batch.accepted[i][1].line for i in kept], kept))
        if not batch.records:
            return IngestResult([], batch.errors)
        outcome = self._sink.put([record.data for record in batch.records])
        if not outcome.stored:
            raise ServiceUnavailable("the event stream cannot take the write right now; retry later",
                                     headers={"Retry-After": "1"})
        # An event is acknowledged only when the record holding it was stored.
        failed_positions = {}
        for record_position, record in enumerate(batch.records):
            if record_position not in outcome.stored:
                reason = outcome.failures.get(record_position, "not written")
                for position in record.event_indexes:
                    failed_positions[position] = reason
        event_ids = []
        errors = list(batch.errors)
        for position, (index, event) in enumerate(batch.accepted):
            if position in failed_positions:
                errors.append({"index": index, "error": "not stored, retry this event: "
                               + failed_positions[position]})
            else:
                event_ids.append(event.event_id)
        errors.sort(key=lambda e: e["index"])
        return IngestResult(event_ids, errors)
