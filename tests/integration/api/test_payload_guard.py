"""Pathological bodies on the real API (chalice.test.Client on moto): each gets a clear 4xx (or, for an
event that is merely invalid, its per-event error in the 200), never a 5xx, and nothing is half-accepted:
a refused request writes nothing to the stream. Every answer conforms to the published OpenAPI document."""

from __future__ import annotations

import json

import orjson
import pytest

import app as app_module
from chalicelib.ingest.body import MAX_DEPTH
from chalicelib.ingest.sdk import MAX_MESSAGES_PER_REQUEST
from chalicelib.ingest.service import MAX_DECOMPRESSED_BYTES, MAX_EVENTS_PER_REQUEST
from chalicelib.stream import codec
from tests.contract import check_response, spec_of
from tests.integration.api.conftest import read_stream

JSON = {"x-api-key": "demo-key", "Content-Type": "application/json"}
NDJSON = {"x-api-key": "demo-key", "Content-Type": "application/x-ndjson"}
EVENT = b'{"event_type":"a","event_time":1700000000000'
SPEC = spec_of(app_module)


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def post(client, body: bytes, headers=JSON, path="/v1/events"):
    response = client.http.post(path, headers=headers, body=body)
    check_response(SPEC, path, "POST", response.status_code, response.headers, response.body)
    return response.status_code, json.loads(response.body)


def stored(container) -> list[dict]:
    return [orjson.loads(line) for blob in read_stream(container) for line in codec.decode_record(blob).splitlines()]


def refused(client, container, body: bytes, status: int, match: str, headers=JSON, path="/v1/events") -> dict:
    code, doc = post(client, body, headers, path)
    assert code == status, doc
    message = doc.get("error") or doc.get("message") or doc.get("detail")
    assert match in message, message
    assert read_stream(container) == []
    return doc


@pytest.mark.parametrize("body, match", [
    (b"[" + EVENT + b',"attributes":{"x":' + nested(MAX_DEPTH) + b"}}]", f"deeper than {MAX_DEPTH} levels"),
    (nested(2000), "depth limit exceeded"),
    (b"[" * (MAX_DECOMPRESSED_BYTES - 10), "malformed JSON"),
])
def test_nesting_deeper_than_the_limit_refuses_the_request_with_400(client, container, body, match):
    refused(client, container, body, 400, match)


def test_nesting_within_the_limit_is_stored(client, container):
    depth = MAX_DEPTH - 4  # the body, the array of events, the event and attributes take four levels
    status, doc = post(client, b"[" + EVENT + b',"attributes":{"x":' + nested(depth - 1) + b"}}]")
    assert status == 200 and doc["accepted"] == 1


@pytest.mark.parametrize("number", [b"1e400", b"-1e400", b"9" * 1000, b"1" + b"0" * 5000])
def test_numbers_beyond_the_double_range_are_400(client, container, number):
    refused(client, container, b"[" + EVENT + b',"attributes":{"n":' + number + b"}}]", 400, "infinity")


def test_integers_beyond_64_bits_are_read_as_doubles(client, container):
    status, doc = post(client, b"[" + EVENT + b',"attributes":{"n":18446744073709551617}}]')
    assert status == 200 and doc["accepted"] == 1
    assert orjson.loads(stored(container)[0]["attributes"]) == {"n": 1.8446744073709552e19}


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"nan", b"inf"])
def test_nan_and_infinity_literals_are_malformed_json(client, container, literal):
    refused(client, container, b"[" + EVENT + b',"attributes":{"n":' + literal + b"}}]", 400, "malformed JSON")


@pytest.mark.parametrize("text, match", [
    (b"\xff\xfe", "not valid UTF-8"),
    (b"\xed\xa0\x80", "not valid UTF-8"),           # a surrogate encoded in UTF-8 (CESU)
    (b"\\ud800", "surrogate"),                     # a lone high surrogate, escaped
    (b"\\udc00x", "surrogate"),                    # a lone low surrogate, escaped
])
def test_invalid_utf8_and_lone_surrogates_are_400(client, container, text, match):
    refused(client, container, b"[" + EVENT + b',"user_id":"' + text + b'"}]', 400, match)


def test_an_escaped_surrogate_pair_is_one_character(client, container):
    status, doc = post(client, b"[" + EVENT + b',"user_id":"\\ud83d\\ude00"}]')
    assert status == 200 and doc["accepted"] == 1
    assert stored(container)[0]["user_id"] == "\U0001F600"


def test_a_repeated_key_takes_its_last_value_and_is_stored_once(client, container):
    status, doc = post(client, b'[{"event_type":"first","event_type":"second","event_time":1700000000000,'
                               b'"attributes":{"k":1,"k":2}}]')
    assert status == 200 and doc["accepted"] == 1
    (line,) = stored(container)
    assert line["event_type"] == "second" and line["attributes"] == '{"k":2}'


def test_a_huge_string_is_refused_alone_by_its_rule(client, container):
    huge = b"x" * (MAX_DECOMPRESSED_BYTES - 200)
    status, doc = post(client, b"[" + EVENT + b',"attributes":{"s":"' + huge + b'"}},' + EVENT + b"}]")
    assert status == 200 and doc["accepted"] == 1 and doc["rejected"] == 1
    assert doc["errors"][0]["index"] == 0 and "the limit is 32768" in doc["errors"][0]["error"]
    assert len(stored(container)) == 1


@pytest.mark.parametrize("value", [b'"' + b"a" * 100_000 + b'"', nested(200), b'{"a":' * 100 + b"1" + b"}" * 100])
def test_an_event_type_of_any_shape_or_size_gets_a_short_per_event_error(client, container, value):
    status, doc = post(client, b'[{"event_time":1,"event_type":' + value + b"}]")
    assert status == 200 and doc["rejected"] == 1
    assert len(doc["errors"][0]["error"]) < 200


def test_a_million_tiny_ndjson_events_are_413_before_they_are_read(client, container):
    refused(client, container, b"{}\n" * 1_000_000, 413, f"more than {MAX_EVENTS_PER_REQUEST} events", NDJSON)


def test_a_json_array_of_over_a_million_events_is_413(client, container):
    body = b"[" + b"{}," * 1_700_000 + b"{}]"
    assert len(body) < MAX_DECOMPRESSED_BYTES
    refused(client, container, body, 413, f"the limit is {MAX_EVENTS_PER_REQUEST} events")


def test_a_body_over_5_mib_is_413(client, container):
    refused(client, container, b" " * MAX_DECOMPRESSED_BYTES + b"[]", 413, "the limit is 5242880 bytes")


def test_a_bad_ndjson_line_after_good_ones_refuses_the_whole_request(client, container):
    body = EVENT + b"}\n" + EVENT + b"}\n" + b'{"event_type":"a","event_time":NaN}\n'
    refused(client, container, body, 400, "malformed NDJSON at line 3", NDJSON)


def test_sdk_routes_apply_the_same_rules_in_their_error_shapes(client, container):
    segment = {"Content-Type": "application/json", "x-api-key": "demo-key"}
    doc = refused(client, container, b'{"batch":' + nested(300) + b"}", 400, "deeper than", segment, "/v1/batch")
    assert doc["code"] == "invalid_request"
    doc = refused(client, container, b'{"batch":[{"type":"track","n":NaN}]}', 400, "malformed", segment, "/v1/batch")
    doc = refused(client, container, b'{"api_key":"demo-key","batch":[{"event":"\\ud800"}]}', 400, "surrogate",
                  {"Content-Type": "application/json"}, "/batch")
    assert doc["type"] == "validation_error"


def test_sdk_requests_of_too_many_messages_are_413_before_anything_is_kept(client, container):
    body = b'{"api_key":"demo-key","batch":[' + b"{}," * MAX_MESSAGES_PER_REQUEST + b"{}]}"
    doc = refused(client, container, body, 413, f"the limit is {MAX_MESSAGES_PER_REQUEST} messages",
                  {"Content-Type": "application/json"}, "/batch")
    assert doc["code"] == "payload_too_large"
    s3 = container.clients.s3
    assert s3.list_objects_v2(Bucket=container.settings.bucket, Prefix="bad-rows/").get("KeyCount", 0) == 0
