"""PostHog events -> the canonical envelope, and the body shapes PostHog's clients send."""

import base64
import gzip
import urllib.parse

import orjson
import pytest

from chalicelib.http.errors import BadRequest, UnsupportedMediaType
from chalicelib.ingest.posthog import POSTHOG
from chalicelib.ingest.validation import InvalidEvent, parse_timestamp, validate_event

RECEIVED = parse_timestamp("2026-03-01T12:00:00Z", "t")


def canonical(event, sent_at=None):
    doc = {"api_key": "k", "batch": [event], **({"sent_at": sent_at} if sent_at else {})}
    batch = POSTHOG.read(doc, "/batch")
    line = orjson.loads(validate_event(POSTHOG.to_raw_event(batch.messages[0], batch, RECEIVED), "demo",
                                       RECEIVED).line)
    line["attributes"] = orjson.loads(line["attributes"])
    return line


def capture(**fields):
    return {"event": "$pageview", "distinct_id": "d-1", "uuid": "0190c3c4-0000-7000-8000-000000000001",
            "properties": {"$current_url": "https://example.com/a"}, **fields}


def test_uuid_distinct_id_and_the_dollar_name_map_to_the_envelope():
    event = canonical(capture())
    assert (event["event_id"], event["user_id"], event["event_type"]) == (
        "0190c3c4-0000-7000-8000-000000000001", "d-1", "pageview")
    assert event["attributes"]["$current_url"] == "https://example.com/a"
    assert event["attributes"]["posthog"]["event"] == "$pageview"


def test_timestamp_is_corrected_by_sent_at():
    ts, sent = "2026-03-01T11:00:00Z", "2026-03-01T11:00:20Z"
    assert canonical(capture(timestamp=ts), sent_at=sent)["event_time"] == RECEIVED - (
        parse_timestamp(sent, "s") - parse_timestamp(ts, "t"))


def test_offset_without_timestamp_counts_back_from_the_receive_time():
    assert canonical(capture(offset=1500))["event_time"] == RECEIVED - 1500
    assert canonical(capture())["event_time"] == RECEIVED


def test_posthog_js_events_carry_the_key_and_distinct_id_in_properties():
    events = [{"event": "$autocapture", "properties": {"token": "phc_k", "distinct_id": "anon-1", "$el": "a"}}]
    batch = POSTHOG.read(events, "/e")
    assert batch.key == "phc_k"
    raw = POSTHOG.to_raw_event(batch.messages[0], batch, RECEIVED)
    assert raw["user_id"] == "anon-1" and "token" not in raw["attributes"]
    assert "phc_k" not in orjson.dumps(POSTHOG.redact(events[0])).decode()


def test_events_with_different_keys_in_one_request_are_refused():
    events = [{"event": "a", "properties": {"token": "k1"}}, {"event": "b", "properties": {"token": "k2"}}]
    with pytest.raises(BadRequest, match="different project API keys"):
        POSTHOG.read(events, "/e")


def test_a_single_event_body_is_one_event_with_its_key():
    batch = POSTHOG.read({"api_key": "k", "event": "signed up", "distinct_id": 5}, "/capture")
    assert batch.key == "k" and len(batch.messages) == 1
    raw = POSTHOG.to_raw_event(batch.messages[0], batch, RECEIVED)
    assert (raw["event_type"], raw["user_id"]) == ("signed_up", "5")
    assert "api_key" not in raw["attributes"]["posthog"]


@pytest.mark.parametrize("event, reason", [
    ({"distinct_id": "d"}, "event, the event's name"),
    ({"event": "a"}, "distinct_id is required"),
    ({"event": "a", "distinct_id": "d", "offset": -5}, "offset must be"),
    ({"event": "a", "distinct_id": "d", "uuid": 7.5}, "uuid must be a string"),
    ("$pageview", "must be a JSON object"),
])
def test_invalid_events_are_refused_with_the_reason(event, reason):
    batch = POSTHOG.read({"batch": [event]}, "/batch")
    with pytest.raises(InvalidEvent, match=reason):
        POSTHOG.to_raw_event(event, batch, RECEIVED)


# Rule: PostHog's person properties ($set_once, then $set winning) are the user's traits, in attributes.traits.
def test_set_and_set_once_are_the_traits_and_leave_the_properties():
    event = canonical(capture(event="$identify", properties={
        "$set": {"plan": "pro"}, "$set_once": {"plan": "free", "first_seen": "today"}, "$anon_distinct_id": "a"}))
    assert event["event_type"] == "identify"
    assert event["attributes"]["traits"] == {"plan": "pro", "first_seen": "today"}
    assert "$set" not in event["attributes"] and "$set_once" not in event["attributes"]
    assert event["attributes"]["$anon_distinct_id"] == "a" and "$set" not in event["attributes"]["posthog"]


def test_set_at_the_event_level_counts_and_the_properties_win_a_key():
    event = canonical(capture(event="$set", **{"$set": {"plan": "free", "seats": 2}},
                              properties={"$set": {"plan": "pro"}}))
    assert event["attributes"]["traits"] == {"plan": "pro", "seats": 2}
    assert "traits" not in canonical(capture())["attributes"]


def test_a_set_that_is_not_an_object_is_refused():
    batch = POSTHOG.read({"batch": []}, "/batch")
    with pytest.raises(InvalidEvent, match=r"properties.\$set must be a JSON object"):
        POSTHOG.to_raw_event(capture(properties={"$set": "pro"}), batch, RECEIVED)


def body_of(events):
    return orjson.dumps(events)


@pytest.mark.parametrize("make, content_type, query", [
    (lambda b: gzip.compress(b), "text/plain", {"compression": "gzip-js"}),
    (lambda b: gzip.compress(b), "text/plain", {}),  # not announced: sniffed
    (lambda b: b, "application/json", {}),
    (lambda b: ("data=" + urllib.parse.quote(base64.b64encode(b).decode())).encode(),
     "application/x-www-form-urlencoded", {"compression": "base64"}),
])
def test_every_body_encoding_posthog_js_uses_is_decoded(make, content_type, query):
    events = [{"event": "$pageview", "properties": {"token": "k", "distinct_id": "d"}}]
    assert POSTHOG.decode(make(body_of(events)), content_type, None, query, "/e") == events


def test_lz64_compression_is_refused_as_unsupported():
    with pytest.raises(UnsupportedMediaType, match="lz64"):
        POSTHOG.decode(b"xyz", "text/plain", None, {"compression": "lz64"}, "/e")
