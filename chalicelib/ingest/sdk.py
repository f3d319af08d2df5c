"""SDK-compatible ingestion: Segment and PostHog requests -> the one validator -> Kinesis.

The same path as ``POST /v1/events`` from the validator on: each message is
mapped to a raw canonical event by its protocol (``segment.py``, ``posthog.py``),
validated by ``validation.validate_event``, packed by ``stream.codec`` and
written by the same ``KinesisWriter``. What differs is what the clients
understand:

* SDKs ignore the body of a 200, so a message that fails validation is also
  written to ``bad-rows/ingest/`` with the reason (before anything reaches the
  stream: if the bad rows cannot be stored the request is refused, 503, and
  nothing was written). The 200 body still names each reject.
* SDKs retry a whole batch or nothing, so a batch is acknowledged only when
  every record holding its events was stored: otherwise 503 (429 when Kinesis
  throttled) with ``Retry-After``, and the SDK resends it. Events already stored
  are then duplicates with the same ``event_id`` (``messageId`` / ``uuid``), which
  the pipeline's rule removes: finalized windows and the raw-archive reads keep
  one copy per ``(app_id, event_id)``, search documents are idempotent.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import orjson
from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.http.dialects import Script, SdkCall
from chalicelib.http.errors import PayloadTooLarge, ServiceUnavailable, TooManyRequests
from chalicelib.ingest.kinesis_writer import PutOutcome
from chalicelib.ingest import posthog as posthog_protocol
from chalicelib.ingest.posthog import POSTHOG
from chalicelib.ingest.sdk_protocol import SdkBatch, SdkProtocol
from chalicelib.ingest.segment import SEGMENT
from chalicelib.ingest.service import RecordSink
from chalicelib.ingest.validation import InvalidEvent, ValidatedEvent, validate_event
from chalicelib.stream import badrows, codec

log = logging.getLogger(__name__)

#: Kinesis error codes that mean "over capacity": answered 429 rather than 503.
THROTTLING_CODES = frozenset({"ProvisionedThroughputExceededException", "LimitExceededException",
                              "ThrottlingException", "KMSThrottlingException"})
RETRY_AFTER_S = "1"
#: Most messages one request may hold (the SDKs send 100 per batch by default): a body of millions
#: of tiny messages is refused (413) before any is mapped, validated or kept as a bad row.
MAX_MESSAGES_PER_REQUEST = 10_000


@dataclass(frozen=True)
class SdkPrepared:
    """A request's messages validated and packed, before anything is written.

    Attributes:
        accepted: (position in the request, validated event) of every valid message.
        errors: one ``{"index", <id field>, "error"}`` per rejected message (the 200 body).
        bad_rows: the same rejects as ``ingest`` bad rows.
        records: the packed Kinesis records of the accepted events.
    """

    accepted: list[tuple[int, ValidatedEvent]]
    errors: list[dict[str, Any]]
    bad_rows: list[badrows.BadRow]
    records: list[codec.PackedRecord]


def write_failure(outcome: PutOutcome, records: int) -> Exception:
    """The answer when some records were not stored: the SDK must resend the whole batch."""
    missing = records - len(outcome.stored)
    codes = {reason.split(":", 1)[0] for reason in outcome.failures.values()}
    message = (f"{missing} of {records} stream record(s) holding this batch were not stored; retry the batch "
               f"(events already stored are deduplicated by their id)")
    if codes and codes <= THROTTLING_CODES:
        return TooManyRequests("the event stream is over its write capacity: " + message,
                               headers={"Retry-After": RETRY_AFTER_S})
    return ServiceUnavailable("the event stream cannot take the write right now: " + message,
                              headers={"Retry-After": RETRY_AFTER_S})


class SdkIngestService:
    """Validates SDK requests' messages, keeps the rejects as bad rows and writes the rest to the stream."""

    def __init__(self, sink: RecordSink, bad_rows: badrows.BadRowsSink, clock_ms: Callable[[], int],
                 admit: Callable[[str, int], None] | None = None,
                 suppression: Callable[[str, Any], list[int] | None] | None = None,
                 pseudonymiser: Callable[[str], Any] | None = None) -> None:
        #: app -> its Pseudonymiser (chalicelib/ingest/pseudonymise.py) or None: applied before validation,
        #: and a rejected message of such an app is kept as a bad row without its content.
        self._pseudonymiser = pseudonymiser
        self._sink, self._bad_rows, self._clock_ms = sink, bad_rows, clock_ms
        #: Suppressed users (chalicelib/ingest/suppression.py): accepted in the answer, written nowhere.
        self._suppression = suppression
        #: The app's rate limit (chalicelib/apps/ratelimit.py): raises 429 before anything is written.
        self._admit = admit

    def segment(self, call: SdkCall) -> dict[str, Any]:
        """``POST /v1/batch`` and the single-call Segment routes."""
        return self.ingest(SEGMENT, call)

    def posthog(self, call: SdkCall) -> dict[str, Any]:
        """``POST /batch/``, ``/capture/``, ``/e/``, ``/i/v0/e/``."""
        return self.ingest(POSTHOG, call)

    def posthog_config(self, call: SdkCall, key: str) -> dict[str, Any] | Script:
        """``GET /array/<key>/config`` (JSON) and ``/config.js`` (script): the remote configuration.

        Raises:
            RequestError: 401 for an unknown key, 429 over the app's rate limit (a request of no events).
        """
        self._admit_request(call.authenticate(key))
        if call.path.endswith(".js"):
            return Script(posthog_protocol.remote_config_script())
        return posthog_protocol.remote_config()

    def posthog_flags(self, call: SdkCall) -> dict[str, Any]:
        """``POST /flags/`` and ``/decide/``: no flags (the key comes in the body, as on capture).

        Raises:
            RequestError: 400 for the body, 401 for the key, 429 over the app's rate limit.
        """
        doc = POSTHOG.decode(call.body, call.content_type, call.content_encoding, call.query, call.path)
        self._admit_request(call.authenticate(posthog_protocol.flags_key(doc)))
        return posthog_protocol.flags_answer()

    def _admit_request(self, app_id: str) -> None:
        if self._admit is not None:
            self._admit(app_id, 0)

    def ingest(self, protocol: SdkProtocol, call: SdkCall) -> dict[str, Any]:
        """Decode, authenticate, validate, store the rejects, write; returns the 200 body.

        Raises:
            RequestError: 400/413/415 for the body, 401 for the key, 429 over the app's rate limit
                (nothing written), 429/503 when storage fails.
        """
        received_at = self._clock_ms()
        doc = protocol.decode(call.body, call.content_type, call.content_encoding, call.query, call.path)
        batch = protocol.read(doc, call.path)
        app_id = call.authenticate(batch.key)
        if len(batch.messages) > MAX_MESSAGES_PER_REQUEST:
            raise PayloadTooLarge(f"the request holds {len(batch.messages)} messages; the limit is "
                                  f"{MAX_MESSAGES_PER_REQUEST} messages per request")
        prepared = self.prepare(protocol, app_id, batch, received_at)
        if self._admit is not None:
            self._admit(app_id, len(batch.messages))
        prepared = self._suppressed(app_id, prepared)
        if prepared.bad_rows:
            try:
                self._bad_rows.write(prepared.bad_rows)
            except (ClientError, BotoCoreError) as exc:
                raise ServiceUnavailable(f"rejected messages cannot be recorded right now ({type(exc).__name__}); "
                                         f"retry the batch", headers={"Retry-After": RETRY_AFTER_S}) from exc
        if prepared.records:
            outcome = self._sink.put([record.data for record in prepared.records])
            if len(outcome.stored) < len(prepared.records):
                raise write_failure(outcome, len(prepared.records))
        return protocol.success(len(prepared.accepted), prepared.errors)

    def _suppressed(self, app_id: str, prepared: SdkPrepared) -> SdkPrepared:
        """Without the events of suppressed users; their messages still count as accepted. (A message that
        failed validation has no user the list can be checked against: its bad row is kept.)"""
        if self._suppression is None or not prepared.accepted:
            return prepared
        kept = self._suppression(app_id, prepared.accepted)
        if kept is None:
            return prepared
        return SdkPrepared(prepared.accepted, prepared.errors, prepared.bad_rows,
                           codec.pack([prepared.accepted[i][1].line for i in kept], kept))

    def prepare(self, protocol: SdkProtocol, app_id: str, batch: SdkBatch, received_at: int) -> SdkPrepared:
        """Map and validate every message, pack the valid ones (nothing is written)."""
        accepted: list[tuple[int, ValidatedEvent]] = []
        rejected: list[tuple[int, Any, str]] = []
        transform = self._pseudonymiser(app_id) if self._pseudonymiser is not None else None
        for index, message in enumerate(batch.messages):
            try:
                raw = protocol.to_raw_event(message, batch, received_at)
                accepted.append((index, validate_event(transform.apply(raw) if transform else raw, app_id,
                                                       received_at)))
            except InvalidEvent as exc:
                rejected.append((index, message, str(exc)))
        errors, rows = self._rejects(protocol, app_id, received_at, rejected, withhold=transform is not None)
        return SdkPrepared(accepted, errors, rows, codec.pack([event.line for _, event in accepted]))

    def prepare_body(self, protocol: SdkProtocol, app_id: str, body: bytes, content_type: str | None,
                     content_encoding: str | None, path: str, query: Mapping[str, Any] | None = None) -> SdkPrepared:
        """Decode a body and :meth:`prepare` it, with no key (benchmarks, tests)."""
        doc = protocol.decode(body, content_type, content_encoding, query or {}, path)
        return self.prepare(protocol, app_id, protocol.read(doc, path), self._clock_ms())

    @staticmethod
    def _rejects(protocol: SdkProtocol, app_id: str, received_at: int,
                 rejected: list[tuple[int, Any, str]], withhold: bool = False
                 ) -> tuple[list[dict[str, Any]], list[badrows.BadRow]]:
        if not rejected:
            return [], []
        lines = ['{"withheld":"the app pseudonymises fields at ingest"}' if withhold else
                 orjson.dumps(protocol.redact(message), option=orjson.OPT_SORT_KEYS).decode()
                 for _, message, _ in rejected]
        digest = hashlib.sha256("\n".join([protocol.name, app_id, *lines]).encode()).hexdigest()[:32]
        errors, rows = [], []
        for (index, message, detail), line in zip(rejected, lines):
            sent_id = protocol.message_id(message)
            errors.append({"index": index, protocol.id_field: sent_id, "error": detail})
            rows.append(badrows.rejected_message(protocol.name, digest, received_at, app_id, index, line, detail,
                                                 sent_id if isinstance(sent_id, str) else None))
        log.warning("%s: %d of the request's messages rejected (bad rows %s)", protocol.name, len(rejected), digest)
        return errors, rows
