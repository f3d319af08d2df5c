"""POST /v1/events and GET /v1/health through chalice.test.Client on moto."""

import gzip
import json

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib.stream import codec
from tests.integration.api.conftest import read_stream
from tests.conftest import load_sample

JSON = {"x-api-key": "demo-key", "Content-Type": "application/json"}


def post(client, body, headers=JSON):
    if not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    response = client.http.post("/v1/events", headers=headers, body=body)
    return response.status_code, json.loads(response.body)


def stream_events(container):
    return [orjson.loads(line) for blob in read_stream(container)
            for line in codec.decode_record(blob).splitlines()]


def test_valid_sample_is_accepted_and_written_to_the_stream(client, container):
    status, doc = post(client, load_sample("game_session.json"))
    assert status == 200 and doc["accepted"] == 24 and doc["rejected"] == 0 and doc["errors"] == []
    written = stream_events(container)
    assert [e["event_id"] for e in written] == doc["event_ids"]
    assert {e["app_id"] for e in written} == {"demo"}


def test_mixed_batch_accepts_the_valid_events_and_explains_each_rejection(client, container):
    status, doc = post(client, load_sample("mixed_valid_invalid.json"))
    assert status == 200
    assert (doc["accepted"], doc["rejected"]) == (2, 6)
    assert [e["index"] for e in doc["errors"]] == [1, 2, 3, 4, 5, 6]
    assert "must match" in doc["errors"][0]["error"]
    assert sorted(e["event_id"] for e in stream_events(container)) == sorted(doc["event_ids"])


def test_ndjson_and_gzip_bodies_are_accepted(client, container):
    ndjson = "".join(json.dumps(e) + "\n" for e in load_sample("gps_pings.ndjson")).encode()
    status, doc = post(client, gzip.compress(ndjson), {"x-api-key": "demo-key", "Content-Encoding": "gzip",
                                                       "Content-Type": "application/x-ndjson"})
    assert status == 200 and doc["accepted"] == 40
    assert len(stream_events(container)) == 40


def test_a_request_is_packed_into_one_record(client, container):
    events = [{"event_type": "gps_ping", "event_time": "2026-01-01T00:00:00Z", "sent_at": "2026-01-01T00:00:00Z",
               "attributes": {"lat": 37.5, "lon": 127.0, "n": i}} for i in range(1000)]
    status, doc = post(client, {"events": events})
    assert status == 200 and doc["accepted"] == 1000
    assert len(read_stream(container)) == 1


@pytest.mark.parametrize("headers, body, status, message", [
    ({"Content-Type": "application/json"}, "[]", 401, "missing API key"),
    ({"x-api-key": "nope", "Content-Type": "application/json"}, "[]", 401, "unknown API key"),
    (JSON, '{"events": [', 400, "malformed JSON"),
    ({**JSON, "Content-Type": "application/x-ndjson"}, '{"a":1}\n{bad', 400, "malformed NDJSON at line 2"),
    (JSON, '{"event_type": "a"}', 400, 'body must be {"events"'),
    (JSON, "[]", 400, "holds no events"),
    ({**JSON, "Content-Encoding": "gzip"}, b"garbage", 400, "not valid gzip"),
    ({**JSON, "Content-Type": "text/plain"}, "[]", 415, "text/plain is not supported"),
    ({"x-api-key": "demo-key"}, "[]", 415, "is not supported"),
    ({**JSON, "Content-Encoding": "br"}, "[]", 415, "Content-Encoding 'br' is not supported"),
])
def test_whole_request_errors_have_status_and_message(client, headers, body, status, message):
    got_status, doc = post(client, body, headers)
    assert got_status == status and message in doc["error"]


def test_more_than_1000_events_is_413(client):
    status, doc = post(client, [{"event_type": "a", "event_time": 1}] * 1001)
    assert status == 413 and "1001 events; the limit is 1000" in doc["error"]


def test_body_over_5_mib_is_413(client):
    status, doc = post(client, "[" + " " * (5 * 1024 * 1024) + "]")
    assert status == 413 and "the limit is 5242880 bytes" in doc["error"]


def test_gzip_bomb_is_413(client):
    bomb = gzip.compress(b"[" + b" " * (64 * 1024 * 1024) + b"]", compresslevel=9)
    status, doc = post(client, bomb, {**JSON, "Content-Encoding": "gzip"})
    assert status == 413 and "exceeds the limit of 5242880 bytes" in doc["error"]


def test_stream_that_cannot_take_the_write_is_503_with_retry_after(client, container):
    container.clients.kinesis.delete_stream(StreamName=container.settings.stream_name)
    response = client.http.post("/v1/events", headers=JSON,
                                body=json.dumps([{"event_type": "a", "event_time": "2026-01-01T00:00:00Z"}]))
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    assert "cannot take the write" in json.loads(response.body)["error"]


def test_second_app_events_are_stamped_with_its_own_app_id(client, container):
    key = container.apps.create_key("other-game")
    status, doc = post(client, [{"event_type": "a", "event_time": "2026-01-01T00:00:00Z",
                                 "sent_at": "2026-01-01T00:00:00Z"}], {**JSON, "x-api-key": key})
    assert status == 200 and [e["app_id"] for e in stream_events(container)] == ["other-game"]


def test_health_reports_each_component(client, container, monkeypatch):
    from chalicelib.http.health import HealthService
    # Every call checks afresh here (cache_s=0); the reuse of reports: test_unauthenticated_cost.py.
    monkeypatch.setitem(container.__dict__, "health", HealthService(container.clients, container.settings, cache_s=0))
    response = client.http.get("/v1/health")
    doc = json.loads(response.body)
    assert response.status_code == 200 and doc["status"] == "ok"
    assert set(doc["components"]) == {"kinesis", "apps_table", "s3"}
    _remove_bucket(container)
    response = client.http.get("/v1/health")
    assert response.status_code == 503
    assert json.loads(response.body)["components"]["s3"]["status"] == "down"


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
                           max_leaves=8)
events = st.dictionaries(st.sampled_from(["event_type", "event_time", "event_id", "user_id", "sent_at",
                                          "attributes", "other"]), json_values | st.just("level_up"), max_size=6)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(st.binary(max_size=64), st.lists(events, max_size=5).map(json.dumps),
                      st.lists(json_values, max_size=3).map(json.dumps)),
       content_type=st.sampled_from(["application/json", "application/x-ndjson", "text/csv"]))
def test_no_input_ever_produces_a_5xx(client, body, content_type):
    response = client.http.post("/v1/events", headers={**JSON, "Content-Type": content_type}, body=body)
    assert response.status_code in (200, 400, 413, 415)
    assert json.loads(response.body)


def _remove_bucket(container) -> None:
    """The lake bucket gone (it holds the raw table's first metadata file since bootstrap: empty it first)."""
    from chalicelib.lake import s3io
    s3, bucket = container.clients.s3, container.settings.bucket
    s3io.delete_keys(s3, bucket, [o["Key"] for o in s3io.list_keys(s3, bucket, "")])
    s3.delete_bucket(Bucket=bucket)
