"""Indexer and search-service control flow with scripted clients (no server)."""

from __future__ import annotations

import random

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opensearchpy.exceptions import ConnectionError as OSConnectionError
from opensearchpy.exceptions import ConnectionTimeout
from opensearchpy.exceptions import TransportError

from chalicelib.stream import codec
from chalicelib.search import IndexerConfig, MemoryBadRowsSink, index_kinesis_batch, search_events
from chalicelib.stream.retry import Backoff
from chalicelib.search.errors import SearchParameterError, SearchUnavailableError
from chalicelib.search.indexer import prepare_batch
from tests.conftest import kinesis_record
from tests.factories.search import NOW_MS, event, lines, raw_record, records

CONFIG = IndexerConfig(backoff=Backoff(max_attempts=3, base_s=0.01, cap_s=0.02))


class ScriptedBulk:
    """``bulk`` answers from ``respond(docs) -> response | exception``; records every call."""

    def __init__(self, respond):
        self.respond = respond
        self.calls: list[list[dict]] = []

    def bulk(self, body, **kwargs):
        lines = body.splitlines()
        docs = [orjson.loads(line) for line in lines[1::2]]
        self.calls.append(docs)
        outcome = self.respond(docs)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def ok(docs):
    return {"errors": False, "items": [{"index": {"status": 201}} for _ in docs]}


def run(batch, client, sink=None, config=CONFIG, sleeps=None):
    return index_kinesis_batch(batch, client=client, sink=sink or MemoryBadRowsSink(), clock=lambda: NOW_MS,
                               config=config, sleep=(sleeps.append if sleeps is not None else lambda s: None),
                               rng=random.Random(3))


def test_empty_batch_reports_no_failures_and_sends_nothing():
    client = ScriptedBulk(ok)
    assert run([], client).lambda_response() == {"batchItemFailures": []}
    assert client.calls == []


def test_request_level_400_is_bisected_down_to_the_offending_document():
    poison = event(text="poison")
    events = [event() for _ in range(6)] + [poison]

    def respond(docs):
        if any(d["event_id"] == poison["event_id"] for d in docs):
            return TransportError(400, "parse_exception", {"error": {"type": "parse_exception", "reason": "bad"}})
        return ok(docs)

    sink = MemoryBadRowsSink()
    result = run(records(events), ScriptedBulk(respond), sink)
    assert result.lambda_response() == {"batchItemFailures": []}
    assert (result.indexed, result.bad_rows, result.retries) == (6, 1, 0)
    [row] = sink.rows()
    assert row["event"]["event_id"] == poison["event_id"] and "parse_exception" in row["detail"]


def test_a_bulk_that_times_out_is_halved_until_its_requests_fit_the_timeout():
    """A slow cluster times out a large bulk on every attempt: resent whole, it would never pass."""
    def respond(docs):
        return ConnectionTimeout("TIMEOUT", "timed out", None) if len(docs) > 2 else ok(docs)

    client = ScriptedBulk(respond)
    result = run(records([event() for _ in range(8)]), client)
    assert result.lambda_response() == {"batchItemFailures": []}
    assert (result.indexed, result.retries) == (8, 0)
    assert [len(c) for c in client.calls] == [8, 4, 2, 2, 4, 2, 2]


def test_once_a_request_is_given_up_later_requests_are_not_sent():
    batch = records(*[[event(text="y" * 300)] for _ in range(4)])
    client = ScriptedBulk(lambda docs: OSConnectionError("N/A", "refused", None))
    config = IndexerConfig(max_bulk_bytes=600, backoff=Backoff(max_attempts=2, base_s=0.01))
    result = run(batch, client, config=config)
    assert len(client.calls) == 2, "only the first request is tried (twice); the rest is redelivered anyway"
    assert result.failed_sequence_number == batch[0]["kinesis"]["sequenceNumber"]
    assert result.indexed == 0


def test_the_retry_sleep_budget_bounds_the_invocation():
    client = ScriptedBulk(lambda docs: TransportError(429, "too_many_requests", {}))
    sleeps: list[float] = []
    config = IndexerConfig(max_total_sleep_s=1.0, backoff=Backoff(max_attempts=50, base_s=0.2, cap_s=0.4))
    batch = records([event()])
    result = run(batch, client, config=config, sleeps=sleeps)
    assert sum(sleeps) <= 1.0 and len(sleeps) >= 2
    first_seq = batch[0]["kinesis"]["sequenceNumber"]
    assert result.lambda_response() == {"batchItemFailures": [{"itemIdentifier": first_seq}]}


def test_failed_sequence_numbers_compare_as_integers():
    # "10" < "9" as strings; as Kinesis sequence numbers 9 comes first.
    batch = [kinesis_record(codec.encode_lines(lines([event()])), sequence_number=n) for n in (10, 9)]
    client = ScriptedBulk(lambda docs: {"errors": True, "items": [
        {"index": {"status": 503, "error": {"type": "unavailable"}}} for _ in docs]})
    assert run(batch, client).failed_sequence_number == "9"


def test_bad_rows_that_cannot_be_stored_fail_their_record():
    class BrokenSink:
        def write(self, rows):
            raise OSError("S3 unreachable")

    good, conflict = records([event()]), records([event()])
    conflict_id = orjson.loads(prepare_batch(conflict, NOW_MS).items[0].payload.split(b"\n")[1])["event_id"]

    def respond(docs):
        return {"errors": True, "items": [
            {"index": {"status": 400, "error": {"type": "mapper_parsing_exception"}}} if d["event_id"] == conflict_id
            else {"index": {"status": 201}} for d in docs]}

    result = run(good + conflict, ScriptedBulk(respond), BrokenSink())
    assert result.failed_sequence_number == conflict[0]["kinesis"]["sequenceNumber"]


def test_records_with_invalid_base64_become_bad_rows():
    bad = raw_record(b"x")
    bad["kinesis"]["data"] = "***not base64***"
    sink = MemoryBadRowsSink()
    result = run([bad], ScriptedBulk(ok), sink)
    assert result.bad_rows == 1 and sink.rows()[0]["reason"] == "undecodable_record"


def test_events_older_than_retention_are_dropped_before_any_request():
    batch = prepare_batch(records([event(at=NOW_MS - 8 * 86_400_000)]), NOW_MS, IndexerConfig(retention_days=7))
    assert (batch.items, batch.expired) == ([], 1)


class SpySearch:
    def __init__(self, outcome):
        self.outcome, self.kwargs = outcome, None

    def search(self, **kwargs):
        self.kwargs = kwargs
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


EMPTY = {"hits": {"total": {"value": 0, "relation": "eq"}, "hits": []}}


def test_search_goes_to_concrete_daily_indices_tolerating_missing_ones():
    spy = SpySearch(EMPTY)
    search_events(spy, "app-a", {"from": "2026-11-23T12:00:00Z", "to": "2026-11-25T12:00:00Z"}, NOW_MS)
    assert spy.kwargs["index"] == "events-2026.11.25,events-2026.11.24,events-2026.11.23"
    assert spy.kwargs["ignore_unavailable"] is True and spy.kwargs["allow_no_indices"] is True
    assert "*" not in spy.kwargs["index"]


@pytest.mark.parametrize("error,expected", [
    (OSConnectionError("N/A", "refused", None), SearchUnavailableError),
    (TransportError(503, "unavailable", {}), SearchUnavailableError),
    (TransportError(429, "too_many_requests", {}), SearchUnavailableError),
    (TransportError(400, "search_phase_execution_exception",
                    {"error": {"type": "search_phase_execution_exception"}}), SearchParameterError),
])
def test_cluster_errors_map_to_503_or_400(error, expected):
    with pytest.raises(expected):
        search_events(SpySearch(error), "app-a", {"q": "gg"}, NOW_MS)


def test_no_request_is_started_without_time_left_for_it_before_the_lambda_timeout():
    left_s = [60.0]  # a simulated invocation: each request takes its full 10 s timeout

    def respond(docs):
        left_s[0] -= 10
        return TransportError(503, "unavailable", {})

    def sleep(seconds):
        left_s[0] -= seconds

    client = ScriptedBulk(respond)
    config = IndexerConfig(request_timeout_s=10, backoff=Backoff(max_attempts=50, base_s=1, cap_s=1))
    batch = records([event()])
    result = index_kinesis_batch(batch, client=client, sink=MemoryBadRowsSink(), clock=lambda: NOW_MS,
                                 config=config, sleep=sleep, rng=random.Random(1),
                                 remaining_ms=lambda: int(left_s[0] * 1000))
    assert result.failed_sequence_number == batch[0]["kinesis"]["sequenceNumber"]
    assert len(client.calls) == 5
    assert left_s[0] >= 5, "returned with time to spare"


class FaultyCluster:
    """An in-memory cluster whose ``bulk`` follows a drawn fault plan, then behaves."""

    def __init__(self, plan, poison):
        self.plan, self.poison, self.docs = list(plan), poison, {}

    def bulk(self, body, **kwargs):
        step = self.plan.pop(0) if self.plan else "ok"
        if step == "down":
            raise OSConnectionError("N/A", "connection refused", None)
        if step == "429":
            raise TransportError(429, "too_many_requests", {})
        lines = body.splitlines()
        items = []
        for n, (action, doc) in enumerate(zip(lines[0::2], lines[1::2])):
            meta, source = orjson.loads(action)["index"], orjson.loads(doc)
            if source["event_id"] in self.poison:
                items.append({"index": {"status": 400, "error": {"type": "mapper_parsing_exception"}}})
            elif step == "flaky" and n % 3 == 0:
                items.append({"index": {"status": 429, "error": {"type": "es_rejected_execution_exception"}}})
            else:
                self.docs[(meta["_index"], meta["_id"])] = source
                items.append({"index": {"status": 201}})
        return {"errors": True, "items": items}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["ok", "down", "429", "flaky"]), max_size=12),
       st.lists(st.integers(min_value=1, max_value=12), min_size=1, max_size=6),
       st.sets(st.integers(min_value=0, max_value=40), max_size=3),
       st.integers(min_value=300, max_value=5_000))
def test_redelivering_from_the_reported_sequence_number_loses_nothing_and_stores_nothing_twice(
        plan, record_sizes, poison_positions, max_bulk_bytes):
    groups, n = [], 0
    for size in record_sizes:
        groups.append([event(event_id=f"e{n + k}", text="t" * 50) for k in range(size)])
        n += size
    poison = {f"e{p}" for p in poison_positions if p < n}
    batch = records(*groups)
    cluster, sink = FaultyCluster(plan, poison), MemoryBadRowsSink()
    config = IndexerConfig(max_bulk_bytes=max_bulk_bytes, backoff=Backoff(max_attempts=3, base_s=0.01))
    pending = batch
    for _ in range(len(plan) + 2):  # each invocation consumes at least one planned fault
        result = index_kinesis_batch(pending, client=cluster, sink=sink, clock=lambda: NOW_MS, config=config,
                                     sleep=lambda s: None, rng=random.Random(0))
        if result.failed_sequence_number is None:
            break
        pending = [r for r in pending
                   if int(r["kinesis"]["sequenceNumber"]) >= int(result.failed_sequence_number)]
    else:
        pytest.fail("still failing after the fault plan ran out")
    stored_ids = [source["event_id"] for source in cluster.docs.values()]
    bad_ids = [row["event"]["event_id"] for row in sink.rows()]
    assert len(stored_ids) == len(set(stored_ids))
    assert sorted(stored_ids + bad_ids) == sorted(f"e{k}" for k in range(n))
    assert set(bad_ids) == poison
