"""The SDK ingest service: rejects become bad rows first, a batch is acknowledged whole or not at all."""

import orjson
import pytest
from botocore.exceptions import ClientError

from chalicelib.http.dialects import SdkCall
from chalicelib.http.errors import ServiceUnavailable, TooManyRequests, Unauthorized
from chalicelib.ingest.kinesis_writer import PutOutcome
from chalicelib.ingest.sdk import SdkIngestService
from chalicelib.stream import badrows, codec

NOW = 1_772_366_400_000


class Sink:
    """Stores every record, or fails them with the given reason."""

    def __init__(self, failure: str | None = None) -> None:
        self.calls: list[list[bytes]] = []
        self._failure = failure

    def put(self, blobs):
        self.calls.append(list(blobs))
        if self._failure is None:
            return PutOutcome(frozenset(range(len(blobs))), {})
        return PutOutcome(frozenset(), {i: self._failure for i in range(len(blobs))})


class BrokenBadRows:
    def write(self, rows):
        raise ClientError({"Error": {"Code": "InternalError", "Message": "boom"}}, "PutObject")


def call(doc, path="/v1/batch", key="wk"):
    def authenticate(body_key):
        if body_key != key:
            raise Unauthorized("unknown API key")
        return "demo"
    return SdkCall(path, orjson.dumps(doc), "application/json", None, {}, authenticate)


def segment_batch(*messages):
    return {"writeKey": "wk", "batch": list(messages), "sentAt": "2026-03-01T12:00:00Z"}


GOOD = {"type": "track", "event": "Level Up", "userId": "u", "messageId": "m-good", "timestamp": "2026-03-01T11:59:00Z"}
BAD = {"type": "track", "userId": "u", "messageId": "m-bad", "writeKey": "wk"}


def events_written(sink):
    return [orjson.loads(line) for blob in sink.calls[-1] for line in codec.decode_record(blob).splitlines()]


def test_valid_messages_are_written_and_rejects_are_named_and_kept_as_bad_rows():
    sink, rows = Sink(), badrows.MemoryBadRowsSink("ingest")
    body = SdkIngestService(sink, rows, lambda: NOW).segment(call(segment_batch(GOOD, BAD)))
    assert body["success"] is True and body["accepted"] == 1
    assert body["errors"] == [{"index": 1, "messageId": "m-bad", "error": body["errors"][0]["error"]}]
    assert [e["event_id"] for e in events_written(sink)] == ["m-good"]
    (row,) = rows.rows()
    assert (row["reason"], row["record"]["line"], row["event"]["app_id"]) == ("invalid_event", 1, "demo")
    assert row["detail"] == body["errors"][0]["error"]
    assert orjson.loads(row["raw_line"]) == {k: v for k, v in BAD.items() if k != "writeKey"}
    assert all(key.startswith("bad-rows/ingest/") for key in rows.objects)


def test_a_retried_request_overwrites_its_bad_rows_object():
    rows = badrows.MemoryBadRowsSink("ingest")
    service = SdkIngestService(Sink(), rows, lambda: NOW)
    service.segment(call(segment_batch(GOOD, BAD)))
    first = dict(rows.objects)
    service.segment(call({**segment_batch(GOOD, BAD), "sentAt": "2026-03-01T12:00:05Z"}))
    assert rows.objects == first and len(first) == 1


def test_bad_rows_are_stored_before_anything_reaches_the_stream():
    sink = Sink()
    with pytest.raises(ServiceUnavailable) as refused:
        SdkIngestService(sink, BrokenBadRows(), lambda: NOW).segment(call(segment_batch(GOOD, BAD)))
    assert sink.calls == [] and refused.value.headers["Retry-After"]


@pytest.mark.parametrize("failure, error", [("ProvisionedThroughputExceededException: slow down", TooManyRequests),
                                            ("InternalFailure: oops", ServiceUnavailable)])
def test_a_batch_not_wholly_stored_is_refused_with_retry_after(failure, error):
    with pytest.raises(error) as refused:
        SdkIngestService(Sink(failure), badrows.MemoryBadRowsSink("ingest"), lambda: NOW).segment(
            call(segment_batch(GOOD)))
    assert refused.value.headers["Retry-After"] == "1"


def test_the_body_key_goes_to_the_route_authenticator():
    with pytest.raises(Unauthorized):
        SdkIngestService(Sink(), badrows.MemoryBadRowsSink("ingest"), lambda: NOW).segment(
            call({**segment_batch(GOOD), "writeKey": "other"}))


def test_posthog_answers_status_1_and_names_rejects_by_uuid():
    doc = {"api_key": "wk", "batch": [{"event": "$pageview", "distinct_id": "d", "uuid": "u-1"},
                                      {"event": "$pageview", "uuid": "u-2"}]}
    body = SdkIngestService(Sink(), badrows.MemoryBadRowsSink("ingest"), lambda: NOW).posthog(call(doc, "/batch"))
    assert (body["status"], body["accepted"]) == (1, 1)
    assert [(e["index"], e["uuid"]) for e in body["errors"]] == [(1, "u-2")]


@pytest.mark.parametrize("protocol, doc, path, secret", [
    ("segment", {"writeKey": "wk", "context": {"writeKey": "sk-batch-ctx"}, "batch": [
        {"type": "track", "event": "Level Up", "userId": "u", "messageId": "m1",
         "properties": {"writeKey": "sk-props", "level": 3}, "context": {"writeKey": "sk-ctx", "locale": "fr"}}]},
     "/v1/batch", ("sk-props", "sk-ctx", "sk-batch-ctx")),
    ("segment", {"writeKey": "wk", "type": "identify", "userId": "u", "messageId": "m2",
                 "traits": {"writeKey": "sk-traits", "plan": "pro"}}, "/v1/identify", ("sk-traits", "wk")),
    ("posthog", {"api_key": "wk", "batch": [
        {"event": "$pageview", "distinct_id": "u", "uuid": "p1", "token": "sk-top", "api_key": "sk-top2",
         "properties": {"api_key": "sk-props", "token": "sk-token", "$current_url": "/x"}}]},
     "/batch", ("sk-top", "sk-top2", "sk-props", "sk-token", "wk")),
])
def test_keys_sent_in_non_key_fields_are_never_stored_in_events(protocol, doc, path, secret):
    """A key sent in properties, traits or context (message or batch level) is stripped from the stored event;
    the rest of those objects is kept."""
    sink, rows = Sink(), badrows.MemoryBadRowsSink("ingest")
    service = SdkIngestService(sink, rows, lambda: NOW)
    body = getattr(service, protocol)(call(doc, path))
    assert body["accepted"] == 1 and not rows.objects
    [event] = events_written(sink)
    stored = orjson.dumps(event).decode()
    assert not [s for s in secret if s in stored], stored
    assert "writeKey" not in stored and '"api_key"' not in stored and '"token"' not in stored
    kept = event["attributes"]
    kept = orjson.loads(kept) if isinstance(kept, str) else kept  # the envelope carries attributes as JSON text
    traits = kept.get("traits") or {}  # identify traits live in attributes.traits (one place for every protocol)
    assert kept.get("level") == 3 or traits.get("plan") == "pro" or kept.get("$current_url") == "/x"
