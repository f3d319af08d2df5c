"""The Segment- and PostHog-compatible routes over HTTP (chalice.test.Client on moto): every answer."""

import base64
import gzip
import json

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib.ingest.kinesis_writer import PutOutcome
from chalicelib.stream import codec
from tests.integration.api.conftest import read_stream

BASIC = {"Authorization": "Basic " + base64.b64encode(b"demo-key:").decode(), "Content-Type": "application/json"}
TRACK = {"type": "track", "event": "Level Up", "userId": "u1", "messageId": "m-1",
         "timestamp": "2026-03-01T11:59:00Z", "properties": {"level": 3}}
CAPTURE = {"event": "$pageview", "distinct_id": "d1", "uuid": "0190c3c4-0000-7000-8000-00000000000a",
           "timestamp": "2026-03-01T11:59:00Z", "properties": {"$current_url": "https://example.com/"}}


def post(client, path, body, headers=BASIC):
    if not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    response = client.http.post(path, headers=headers, body=body)
    return response.status_code, json.loads(response.body), response.headers


def stream_events(container):
    return [orjson.loads(line) for blob in read_stream(container) for line in codec.decode_record(blob).splitlines()]


def ingest_bad_rows(container):
    s3, bucket = container.clients.s3, container.settings.bucket
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="bad-rows/ingest/").get("Contents", [])]
    return [orjson.loads(line) for key in keys
            for line in s3.get_object(Bucket=bucket, Key=key)["Body"].read().splitlines()]


class ThrottledStream:
    def put(self, blobs):
        return PutOutcome(frozenset(), {i: "ProvisionedThroughputExceededException: Rate exceeded for shard"
                                        for i in range(len(blobs))})


# ------------------------------------------------------------------------------------------ Segment
def test_segment_batch_with_basic_auth_answers_success_and_writes_the_events(client, container):
    status, doc, headers = post(client, "/v1/batch", {"batch": [TRACK], "sentAt": "2026-03-01T12:00:00Z"})
    assert status == 200 and doc["success"] is True and doc["accepted"] == 1
    assert headers["Access-Control-Allow-Origin"] == "*"
    (event,) = stream_events(container)
    assert (event["event_id"], event["event_type"], event["app_id"]) == ("m-1", "level_up", "demo")


def test_segment_write_key_in_the_body_and_text_plain_gzip_are_accepted(client, container):
    body = gzip.compress(orjson.dumps({"writeKey": "demo-key", "userId": "u2", "event": "Signed Up"}))
    status, doc, _ = post(client, "/v1/t", body, {"Content-Type": "text/plain"})
    assert status == 200 and doc["accepted"] == 1
    assert [e["event_type"] for e in stream_events(container)] == ["signed_up"]


def test_segment_rejected_messages_are_named_in_the_answer_and_stored_as_bad_rows(client, container):
    invalid = {"type": "track", "userId": "u1", "messageId": "m-2"}
    status, doc, _ = post(client, "/v1/batch", {"batch": [TRACK, invalid]})
    assert status == 200 and (doc["accepted"], doc["rejected"]) == (1, 1)
    assert doc["errors"][0]["messageId"] == "m-2" and "needs event" in doc["errors"][0]["error"]
    (row,) = ingest_bad_rows(container)
    assert (row["event"]["app_id"], row["detail"], orjson.loads(row["raw_line"])) == (
        "demo", doc["errors"][0]["error"], invalid)


@pytest.mark.parametrize("path, headers, body, status, code, message", [
    ("/v1/batch", BASIC, '{"batch": [', 400, "invalid_request", "malformed JSON"),
    ("/v1/batch", BASIC, '{"messages": []}', 400, "invalid_request", 'body must be {"batch"'),
    ("/v1/batch", {**BASIC, "Authorization": "Basic " + base64.b64encode(b"nope:").decode()}, '{"batch": []}',
     401, "unauthorized", "unknown API key"),
    ("/v1/batch", {"Content-Type": "application/json"}, '{"batch": [], "writeKey": "nope"}', 401, "unauthorized",
     "unknown API key"),
    ("/v1/batch", {"Content-Type": "application/json"}, '{"batch": []}', 401, "unauthorized", "missing write key"),
    ("/v1/batch", BASIC, orjson.dumps({"batch": [TRACK] * 4000}), 413, "payload_too_large", "the limit is 512000"),
    ("/v1/track", BASIC, orjson.dumps({**TRACK, "properties": {"x": "y" * 40_000}}), 413, "payload_too_large",
     "the limit is 32768"),
    ("/v1/batch", {**BASIC, "Content-Encoding": "gzip"}, gzip.compress(b" " * (64 << 20)), 413, "payload_too_large",
     "exceeds the limit"),
    ("/v1/batch", {**BASIC, "Content-Encoding": "br"}, '{"batch": []}', 415, "unsupported_media_type", "'br'"),
])
def test_segment_whole_request_errors_have_segments_code_and_message(client, path, headers, body, status, code,
                                                                     message):
    got, doc, _ = post(client, path, body, headers)
    assert (got, doc["code"]) == (status, code) and message in doc["message"]


def test_segment_throttled_stream_is_429_with_retry_after(client, container):
    container.__dict__["kinesis_writer"] = ThrottledStream()
    status, doc, headers = post(client, "/v1/batch", {"batch": [TRACK]})
    assert (status, doc["code"], headers["Retry-After"]) == (429, "rate_limited", "1")


def test_segment_unavailable_stream_is_503_with_retry_after(client, container):
    container.clients.kinesis.delete_stream(StreamName=container.settings.stream_name)
    status, doc, headers = post(client, "/v1/batch", {"batch": [TRACK]})
    assert (status, doc["code"], headers["Retry-After"]) == (503, "service_unavailable", "1")


# ------------------------------------------------------------------------------------------ PostHog
def test_posthog_batch_answers_status_1_and_writes_the_events(client, container):
    status, doc, _ = post(client, "/batch/", {"api_key": "demo-key", "batch": [CAPTURE],
                                              "sent_at": "2026-03-01T12:00:00Z"}, {"Content-Type": "application/json"})
    assert status == 200 and doc["status"] == 1
    (event,) = stream_events(container)
    assert (event["event_id"], event["event_type"], event["user_id"]) == (CAPTURE["uuid"], "pageview", "d1")


@pytest.mark.parametrize("path", ["/capture/", "/e/", "/i/v0/e/"])
def test_posthog_js_gzip_bodies_on_every_capture_path_are_accepted(client, container, path):
    events = [{"event": "$autocapture", "properties": {"token": "demo-key", "distinct_id": "anon"}}]
    status, doc, _ = post(client, path + "?compression=gzip-js&ver=1.0", gzip.compress(orjson.dumps(events)),
                          {"Content-Type": "text/plain"})
    assert status == 200 and doc["accepted"] == 1


PH = {"Content-Type": "application/json"}


@pytest.mark.parametrize("path, headers, body, status, kind, message", [
    ("/batch/", PH, '{"api_key": "demo-key", "batch": [', 400, "validation_error", "malformed JSON"),
    ("/batch/", PH, '"hello"', 400, "validation_error", "must be a JSON object or an array"),
    ("/batch/", PH, '{"api_key": "nope", "batch": []}', 401, "authentication_error", "unknown API key"),
    ("/batch/", PH, '{"batch": []}', 401, "authentication_error", "missing project API key"),
    ("/batch/", {**PH, "Content-Encoding": "gzip"}, gzip.compress(b" " * (64 << 20)), 413, "validation_error",
     "exceeds the limit of 20971520"),
    ("/e/?compression=lz64", PH, "xyz", 415, "validation_error", "lz64"),
])
def test_posthog_whole_request_errors_have_posthogs_type_code_and_detail(client, path, headers, body, status, kind,
                                                                         message):
    got, doc, _ = post(client, path, body, headers)
    assert (got, doc["type"]) == (status, kind) and doc["code"] and message in doc["detail"]


def test_posthog_throttled_and_unavailable_streams_answer_429_and_503_with_retry_after(client, container):
    body = {"api_key": "demo-key", "batch": [CAPTURE]}
    container.__dict__["kinesis_writer"] = ThrottledStream()
    status, doc, headers = post(client, "/batch/", body, PH)
    assert (status, doc["code"], headers["Retry-After"]) == (429, "rate_limited", "1")
    del container.__dict__["kinesis_writer"], container.__dict__["sdk_ingest"]
    container.clients.kinesis.delete_stream(StreamName=container.settings.stream_name)
    status, doc, headers = post(client, "/batch/", body, PH)
    assert (status, doc["type"], headers["Retry-After"]) == (503, "server_error", "1")


def test_posthog_rejected_events_are_named_by_uuid_and_stored_without_the_key(client, container):
    bad = {"event": "$pageview", "uuid": "u-bad", "properties": {"token": "demo-key"}}
    status, doc, _ = post(client, "/e/", json.dumps([bad]), {"Content-Type": "text/plain"})
    assert status == 200 and doc["errors"][0]["uuid"] == "u-bad"
    (row,) = ingest_bad_rows(container)
    assert "demo-key" not in row["raw_line"] and row["event"]["event_id"] == "u-bad"


# ------------------------------------------------------------------------------------- no 5xx, ever
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
                           max_leaves=8)
segment_messages = st.dictionaries(
    st.sampled_from(["type", "event", "userId", "anonymousId", "messageId", "timestamp", "originalTimestamp",
                     "sentAt", "properties", "traits", "context", "groupId", "previousId", "name", "writeKey"]),
    json_values | st.sampled_from(["track", "identify", "alias", "group", "Order Completed", "u1"]), max_size=8)
def test_a_refused_8_mb_posthog_event_is_kept_capped_with_its_size_and_digest(client, container):
    """A PostHog event over the 1 MiB event limit is refused; its bad row keeps MAX_KEPT_BYTES of it, the size
    and SHA-256 of the whole (as stored: without the key), never the 8 MB."""
    import hashlib
    from chalicelib.stream.badrows import MAX_KEPT_BYTES
    big = {**CAPTURE, "uuid": "big-1", "properties": {"blob": "x" * (8 * 1024 * 1024)}}
    status, doc, _ = post(client, "/batch/", {"api_key": "demo-key", "batch": [CAPTURE, big]},
                          {"Content-Type": "application/json"})
    assert status == 200 and (doc["accepted"], doc["rejected"]) == (1, 1)
    s3, bucket = container.clients.s3, container.settings.bucket
    [obj] = s3.list_objects_v2(Bucket=bucket, Prefix="bad-rows/ingest/")["Contents"]
    assert obj["Size"] < MAX_KEPT_BYTES + 4096
    (row,) = ingest_bad_rows(container)
    whole = orjson.dumps(big, option=orjson.OPT_SORT_KEYS)
    assert row["truncated"] == {"field": "raw_line", "original_bytes": len(whole),
                                "sha256": hashlib.sha256(whole).hexdigest()}
    assert whole.decode().startswith(row["raw_line"]) and row["event"]["event_id"] == "big-1"


posthog_events = st.dictionaries(
    st.sampled_from(["event", "distinct_id", "uuid", "timestamp", "offset", "properties", "sent_at", "api_key"]),
    json_values | st.sampled_from(["$pageview", "d1", "demo-key"]), max_size=7)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(["/v1/batch", "/v1/track", "/v1/identify", "/v1/alias", "/v1/b"]),
       body=st.one_of(st.binary(max_size=64),
                      st.fixed_dictionaries({"batch": st.lists(segment_messages, max_size=4)},
                                            optional={"context": json_values, "sentAt": json_values}).map(json.dumps),
                      segment_messages.map(json.dumps)))
def test_no_segment_input_ever_produces_a_5xx(client, path, body):
    response = client.http.post(path, headers=BASIC, body=body)
    assert response.status_code in (200, 400, 401, 413, 415)
    assert json.loads(response.body)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(["/batch/", "/capture/", "/e/", "/i/v0/e/"]),
       body=st.one_of(st.binary(max_size=64),
                      st.fixed_dictionaries({"api_key": st.just("demo-key"),
                                             "batch": st.lists(posthog_events, max_size=4)},
                                            optional={"sent_at": json_values}).map(json.dumps),
                      st.lists(posthog_events, max_size=3).map(json.dumps), posthog_events.map(json.dumps)),
       query=st.sampled_from(["", "?compression=gzip-js", "?compression=base64"]),
       content_type=st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded"]))
def test_no_posthog_input_ever_produces_a_5xx(client, path, body, query, content_type):
    response = client.http.post(path + query, headers={"Content-Type": content_type}, body=body)
    assert response.status_code in (200, 400, 401, 413, 415)
    assert json.loads(response.body)
