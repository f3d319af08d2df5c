"""Kinesis batch -> daily event indices.

Guarantees, per Lambda invocation:

* Every event ends up indexed, skipped as older than the retention, or in
  bad rows - or its record (and every later one) is reported in
  ``batchItemFailures`` so Lambda redelivers from there.
* Re-indexing is harmless: each event is an ``index`` op with a
  deterministic ``_id`` (app + event id), so a redelivered event overwrites
  itself and is counted once; bad-row keys are deterministic too.

Retries: whole-request throttling, 5xx and connection errors, and per-item
429/5xx, are retried with exponential backoff and jitter (``sleep`` and
``rng`` are injected). A request-level 400/413 is bisected down to the
single document, which then goes to bad rows. Per-item 400s go to bad rows
at once. A bad row names the error's types only: the cluster's message can
quote other apps' field names and types (it goes to the log instead).
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import orjson
from opensearchpy.exceptions import ConnectionError as OSConnectionError
from opensearchpy.exceptions import ConnectionTimeout
from opensearchpy.exceptions import TransportError

from chalicelib.stream import badrows
from chalicelib.stream.badrows import BadRow, BadRowsSink
from chalicelib.stream.records import RecordRef, batch_response, decode_batch
from chalicelib.search.bulk import (DEFAULT_BACKOFF, DEFAULT_MAX_BULK_ACTIONS, DEFAULT_MAX_BULK_BYTES, Backoff, BulkItem,
                                    Outcome, bulk_body, chunk_by_bytes, classify_item, encode_item,
                                    error_reason, public_reason)
from chalicelib.search.documents import InvalidDocument, document_id, event_to_document
from chalicelib.search.naming import DAY_MS, DEFAULT_PREFIX, check_prefix, index_for

log = logging.getLogger(__name__)

_FILTER_PATH = "errors,items.*.status,items.*.error"
#: Time kept back (beyond one request timeout) to write bad rows and return.
_SAFETY_S = 5.0


@dataclass(frozen=True)
class IndexerConfig:
    prefix: str = DEFAULT_PREFIX
    retention_days: int = 7
    max_bulk_bytes: int = DEFAULT_MAX_BULK_BYTES
    max_bulk_actions: int = DEFAULT_MAX_BULK_ACTIONS
    backoff: Backoff = DEFAULT_BACKOFF
    #: Stop retrying once this much sleeping has been done in one invocation
    #: (keep it well under the Lambda timeout); the rest is redelivered.
    max_total_sleep_s: float = 60.0
    request_timeout_s: float = 30.0
    #: ``refresh`` of the bulk requests (tests only; production leaves it to refresh_interval).
    refresh: bool = False

    def __post_init__(self) -> None:
        check_prefix(self.prefix)
        if self.retention_days < 1:
            raise ValueError("retention_days must be >= 1")


@dataclass(frozen=True)
class Origin:
    """Where a bulk item came from."""

    record: int
    line: int
    event: dict[str, Any]


@dataclass(frozen=True)
class IndexBatch:
    """Decoded, checked and encoded events of one batch, before any I/O."""

    refs: list[RecordRef]
    items: list[BulkItem]
    origins: list[Origin]
    bad_rows: list[tuple[int, BadRow]]
    events: int
    expired: int


@dataclass(frozen=True)
class IndexResult:
    records: int
    events: int
    indexed: int
    expired: int
    bad_rows: int
    retries: int
    #: Sequence number from which Lambda must redeliver, or None when all is settled.
    failed_sequence_number: str | None

    def lambda_response(self) -> dict[str, list[dict[str, str]]]:
        """The ``ReportBatchItemFailures`` response."""
        return batch_response(self.failed_sequence_number)


def prepare_batch(records: Sequence[Mapping[str, Any]], now_ms: int,
                  config: IndexerConfig = IndexerConfig()) -> IndexBatch:
    """Decode the records and build bulk items; unreadable input becomes bad rows. Pure."""
    cutoff_ms = now_ms - config.retention_days * DAY_MS
    refs: list[RecordRef] = []
    items: list[BulkItem] = []
    origins: list[Origin] = []
    bad: list[tuple[int, BadRow]] = []
    events = expired = 0
    for decoded in decode_batch(records):
        r, ref = decoded.index, decoded.ref
        refs.append(ref)
        if decoded.error is not None:
            bad.append((r, badrows.undecodable_record(ref, decoded.data, decoded.error)))
            continue
        for line_no, line in enumerate(decoded.lines):
            events += 1
            try:
                event = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                bad.append((r, badrows.invalid_line(ref, line_no, line, f"not JSON: {exc}")))
                continue
            try:
                document = event_to_document(event)
            except InvalidDocument as exc:
                bad.append((r, badrows.invalid_line(ref, line_no, line, str(exc))))
                continue
            if document["event_time"] < cutoff_ms:
                expired += 1
                continue
            items.append(encode_item(len(items), index_for(document["event_time"], config.prefix),
                                     document_id(document["app_id"], document["event_id"]), document))
            origins.append(Origin(r, line_no, event))
    return IndexBatch(refs, items, origins, bad, events, expired)


def _log_refusal(item: BulkItem, reason: str) -> None:
    """The cluster's whole message, for operators only (bad rows keep its types: ``public_reason``)."""
    log.warning("search indexer: %s in %s refused: %s", item.doc_id, item.index, reason)


@dataclass
class _SendState:
    permanent: dict[int, str] = field(default_factory=dict)
    transient: set[int] = field(default_factory=set)
    retries: int = 0
    slept_s: float = 0.0


def _send_chunk(client: Any, chunk: list[BulkItem], config: IndexerConfig, state: _SendState,
                sleep: Callable[[float], None], rng: random.Random,
                time_left_s: Callable[[], float]) -> None:
    """Send one chunk until every item is settled or the retry or time budget is spent."""
    queue: deque[tuple[list[BulkItem], int]] = deque([(chunk, 0)])
    while queue:
        pending, retry = queue.popleft()
        if time_left_s() < config.request_timeout_s + _SAFETY_S:
            state.transient.update(item.position for item in pending)
            continue
        retry_items: list[BulkItem] = []
        try:
            response = client.bulk(body=bulk_body(pending), filter_path=_FILTER_PATH,
                                   request_timeout=config.request_timeout_s,
                                   **({"refresh": "true"} if config.refresh else {}))
        except TransportError as exc:
            status = exc.status_code
            if not isinstance(exc, OSConnectionError) and status in (400, 413):
                if len(pending) == 1:
                    info = exc.info.get("error", exc.info) if isinstance(exc.info, dict) else exc.info
                    _log_refusal(pending[0], error_reason(info))
                    state.permanent[pending[0].position] = f"request rejected ({status}): {public_reason(info)}"
                else:  # find the offending document(s) by halving
                    mid = len(pending) // 2
                    queue.extendleft([(pending[mid:], retry), (pending[:mid], retry)])
                continue
            if isinstance(exc, ConnectionTimeout) and len(pending) > 1:
                # A cluster slower than this request's size allows: resending it whole would time out
                # again, every time (no progress ever); halves do less work each (indexing is by _id).
                log.warning("search indexer: bulk of %d items timed out; halving it", len(pending))
                mid = len(pending) // 2
                queue.extendleft([(pending[mid:], retry), (pending[:mid], retry)])
                continue
            log.warning("search indexer: bulk of %d items failed (%s: %s), retry %d",
                        len(pending), type(exc).__name__, status, retry)
            retry_items = pending
        else:
            results = response.get("items") or []
            if len(results) != len(pending):  # cannot match items: retry them all
                retry_items = pending
            else:
                for item, result in zip(pending, results):
                    body = next(iter(result.values()))
                    outcome = classify_item(int(body.get("status", 500)), body.get("error"))
                    if outcome is Outcome.PERMANENT:
                        _log_refusal(item, error_reason(body.get("error")))
                        state.permanent[item.position] = public_reason(body.get("error"))
                    elif outcome is Outcome.TRANSIENT:
                        retry_items.append(item)
        if not retry_items:
            continue
        delay = config.backoff.delay(retry, rng)
        if (retry + 1 >= config.backoff.max_attempts or state.slept_s + delay > config.max_total_sleep_s
                or time_left_s() - delay < config.request_timeout_s + _SAFETY_S):
            state.transient.update(item.position for item in retry_items)
            continue
        sleep(delay)
        state.slept_s += delay
        state.retries += 1
        queue.append((retry_items, retry + 1))


def index_kinesis_batch(records: Sequence[Mapping[str, Any]], *, client: Any, sink: BadRowsSink,
                        clock: Callable[[], int], config: IndexerConfig = IndexerConfig(),
                        sleep: Callable[[float], None] = time.sleep,
                        rng: random.Random | None = None,
                        remaining_ms: Callable[[], int] | None = None) -> IndexResult:
    """Index one Lambda Kinesis batch (``event["Records"]``); see the module docstring.

    ``remaining_ms`` (e.g. the Lambda context's ``get_remaining_time_in_millis``)
    stops sending and retrying while there is still time to return a
    ``batchItemFailures`` answer, instead of timing out (which retries the whole batch).
    """
    rng = rng or random.Random()

    def time_left_s() -> float:
        return float("inf") if remaining_ms is None else remaining_ms() / 1000

    batch = prepare_batch(records, clock(), config)
    state = _SendState()
    stop_at: int | None = None  # record index from which everything is redelivered anyway
    for chunk in chunk_by_bytes(batch.items, config.max_bulk_bytes, config.max_bulk_actions):
        if stop_at is not None:
            state.transient.update(item.position for item in chunk)
            continue
        _send_chunk(client, chunk, config, state, sleep, rng, time_left_s)
        if state.transient:
            stop_at = min(batch.origins[p].record for p in state.transient)

    bad = list(batch.bad_rows)
    for position, reason in sorted(state.permanent.items()):
        origin = batch.origins[position]
        bad.append((origin.record, badrows.rejected_event(batch.refs[origin.record], origin.line,
                                                          origin.event, reason)))
    failed_records = {batch.origins[p].record for p in state.transient}
    if bad:
        try:
            sink.write([row for _, row in bad])
        except Exception as exc:  # any failure to store: the records must come again
            log.error("search indexer: writing %d bad rows failed: %s", len(bad), exc)
            failed_records.update(r for r, _ in bad)

    failed_seq = None
    if failed_records:
        failed_seq = min((batch.refs[r].sequence_number for r in failed_records), key=int)
    indexed = len(batch.items) - len(state.permanent) - len(state.transient)
    result = IndexResult(records=len(records), events=batch.events, indexed=indexed,
                         expired=batch.expired, bad_rows=len(bad), retries=state.retries,
                         failed_sequence_number=failed_seq)
    log.info("search indexer: %s", result)
    return result
