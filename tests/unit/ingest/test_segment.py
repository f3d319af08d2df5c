"""Segment messages -> the canonical envelope (the mapping table of docs/sending-events.md)."""

import orjson
import pytest

from chalicelib.http.errors import BadRequest, PayloadTooLarge
from chalicelib.ingest.names import event_type_for
from chalicelib.ingest.segment import BATCH_LIMIT_BYTES, MESSAGE_LIMIT_BYTES, SEGMENT
from chalicelib.ingest.validation import InvalidEvent, parse_timestamp, validate_event

RECEIVED = parse_timestamp("2026-03-01T12:00:00Z", "t")


def canonical(message, path="/v1/batch", context=None, sent_at=None, received_at=RECEIVED):
    """A message through the mapping and the one validator, as the service does it."""
    doc = {"batch": [message]} if path == "/v1/batch" else dict(message)
    if path == "/v1/batch" and context is not None:
        doc["context"] = context
    if path == "/v1/batch" and sent_at is not None:
        doc["sentAt"] = sent_at
    batch = SEGMENT.read(doc, path)
    raw = SEGMENT.to_raw_event(batch.messages[0], batch, received_at)
    line = orjson.loads(validate_event(raw, "demo", received_at).line)
    line["attributes"] = orjson.loads(line["attributes"])
    return line


def track(**fields):
    return {"type": "track", "event": "Order Completed", "userId": "u1", "messageId": "m-1",
            "properties": {"revenue": 9.5}, **fields}


def test_message_id_becomes_the_event_id():
    assert canonical(track(messageId="ajs-next-abc"))["event_id"] == "ajs-next-abc"


def test_a_message_id_longer_than_the_envelope_allows_becomes_a_stable_digest():
    long_id = "m" * 100
    first, again = canonical(track(messageId=long_id)), canonical(track(messageId=long_id))
    assert first["event_id"] == again["event_id"] and len(first["event_id"]) <= 64
    assert first["event_id"] != canonical(track(messageId=long_id + "x"))["event_id"]
    assert first["attributes"]["segment"]["messageId"] == long_id


def test_original_timestamp_is_corrected_by_segments_skew_rule():
    original, sent = "2026-03-01T11:00:00Z", "2026-03-01T11:00:30Z"
    event = canonical(track(originalTimestamp=original, timestamp="2020-01-01T00:00:00Z"), sent_at=sent)
    skew_corrected = RECEIVED - (parse_timestamp(sent, "s") - parse_timestamp(original, "o"))
    assert event["event_time"] == skew_corrected
    assert event["client_event_time"] == parse_timestamp(original, "o")


def test_a_messages_own_sent_at_wins_over_the_batchs():
    original, own, batch = "2026-03-01T11:00:00Z", "2026-03-01T11:00:10Z", "2026-03-01T11:59:00Z"
    event = canonical(track(timestamp=original, sentAt=own), sent_at=batch)
    assert event["event_time"] == RECEIVED - (parse_timestamp(own, "s") - parse_timestamp(original, "o"))


def test_timestamp_without_sent_at_is_taken_as_sent():
    assert canonical(track(timestamp="2026-03-01T10:00:00.250+01:00"))["event_time"] == parse_timestamp(
        "2026-03-01T09:00:00.250Z", "t")


def test_a_message_without_any_time_happened_when_it_was_received():
    assert canonical(track())["event_time"] == RECEIVED


def test_user_id_wins_over_anonymous_id_and_both_are_kept():
    event = canonical(track(userId="u-7", anonymousId="anon-3"))
    assert event["user_id"] == "u-7"
    assert (event["attributes"]["segment"]["userId"], event["attributes"]["segment"]["anonymousId"]) == (
        "u-7", "anon-3")
    assert canonical(track(userId=None, anonymousId="anon-3"))["user_id"] == "anon-3"


def test_track_names_are_normalized_and_the_original_is_kept():
    event = canonical(track(event="Checkout Step Viewed"))
    assert event["event_type"] == event_type_for("Checkout Step Viewed") == "checkout_step_viewed"
    assert event["attributes"]["segment"]["event"] == "Checkout Step Viewed"


def test_properties_are_the_top_level_attributes_and_the_rest_goes_under_segment():
    event = canonical(track(properties={"revenue": 9.5, "currency": "EUR"}, integrations={"All": False}))
    assert event["attributes"]["revenue"] == 9.5 and event["attributes"]["currency"] == "EUR"
    assert event["attributes"]["segment"]["integrations"] == {"All": False}
    assert "properties" not in event["attributes"]["segment"]


@pytest.mark.parametrize("kind, extra, fields", [
    ("group", {"groupId": "g1", "traits": {"seats": 5}}, "traits"),  # the group's traits, not the user's
    ("page", {"name": "Pricing", "properties": {"path": "/pricing"}}, "properties"),
    ("screen", {"name": "Home", "properties": {"tab": 2}}, "properties"),
    ("alias", {"previousId": "anon-3"}, None),
])
def test_the_other_calls_are_events_of_their_own_type(kind, extra, fields):
    message = {"type": kind, "userId": "u1", "messageId": f"m-{kind}", **extra}
    event = canonical(message)
    assert event["event_type"] == kind
    expected_top = message[fields] if fields else {}
    assert {k: v for k, v in event["attributes"].items() if k != "segment"} == expected_top
    assert event["attributes"]["segment"]["type"] == kind
    for name in set(extra) - {fields}:
        assert event["attributes"]["segment"][name] == extra[name]


@pytest.mark.parametrize("path, kind", [("/v1/track", "track"), ("/v1/t", "track"), ("/v1/identify", "identify"),
                                        ("/v1/i", "identify"), ("/v1/page", "page"), ("/v1/alias", "alias")])
def test_single_call_routes_take_the_type_from_the_path(path, kind):
    body = {"userId": "u1", "event": "Signed Up", "previousId": "p", "writeKey": "k", "type": "ignored"}
    batch = SEGMENT.read(body, path)
    assert batch.key == "k" and batch.messages[0]["type"] == kind
    assert SEGMENT.body_limit(path) == MESSAGE_LIMIT_BYTES
    assert SEGMENT.body_limit("/v1/batch") == SEGMENT.body_limit("/v1/b") == BATCH_LIMIT_BYTES


# Rule: the user's traits are in attributes.traits whichever way a Segment-protocol client sent them.
@pytest.mark.parametrize("message, batch_context", [
    ({"type": "identify", "userId": "u1", "traits": {"plan": "pro"}}, None),  # analytics.js, analytics-python
    ({"type": "identify", "userId": "u1", "context": {"traits": {"plan": "pro"}, "locale": "fr"}}, None),  # Rudder
    ({"type": "identify", "userId": "u1"}, {"traits": {"plan": "pro"}, "locale": "fr"}),  # in the batch's context
])
def test_identify_traits_are_in_attributes_traits_whether_top_level_or_in_context(message, batch_context):
    event = canonical(message, context=batch_context)
    assert event["event_type"] == "identify" and event["attributes"]["traits"] == {"plan": "pro"}
    assert set(event["attributes"]) == {"traits", "segment"}
    assert "traits" not in event["attributes"]["segment"] and "traits" not in event["attributes"]["segment"].get(
        "context", {})


def test_the_identify_s_own_traits_win_over_context_traits_and_any_call_carries_context_traits():
    event = canonical({"type": "identify", "userId": "u1", "traits": {"plan": "pro"},
                       "context": {"traits": {"plan": "free", "email": "a@example.com"}}})
    assert event["attributes"]["traits"] == {"plan": "pro", "email": "a@example.com"}
    tracked = canonical(track(context={"traits": {"plan": "pro"}, "locale": "fr"}))
    assert tracked["attributes"]["traits"] == {"plan": "pro"} and tracked["attributes"]["revenue"] == 9.5
    assert tracked["attributes"]["segment"]["context"] == {"locale": "fr"}
    assert "traits" not in canonical(track())["attributes"]


def test_group_traits_stay_the_group_s_attributes_and_user_traits_come_from_the_context():
    event = canonical({"type": "group", "userId": "u1", "groupId": "g1", "traits": {"seats": 5},
                       "context": {"traits": {"plan": "pro"}}})
    assert event["attributes"]["seats"] == 5 and event["attributes"]["traits"] == {"plan": "pro"}


def test_a_property_named_traits_is_kept_in_the_metadata_and_bad_traits_are_refused():
    event = canonical(track(properties={"traits": "listed"}))
    assert "traits" not in event["attributes"] and event["attributes"]["segment"]["shadowed_traits"] == "listed"
    batch = SEGMENT.read({"batch": []}, "/v1/batch")
    with pytest.raises(InvalidEvent, match="context.traits must be a JSON object"):
        SEGMENT.to_raw_event({"type": "identify", "userId": "u", "context": {"traits": [1]}}, batch, RECEIVED)


def test_the_batch_context_is_merged_into_each_message_context_which_wins():
    event = canonical(track(context={"locale": "fr-FR"}), context={"locale": "en-US", "ip": "192.0.2.1"})
    assert event["attributes"]["segment"]["context"] == {"locale": "fr-FR", "ip": "192.0.2.1"}


def test_the_write_key_is_never_kept():
    event = canonical(track(writeKey="secret-key"))
    assert "secret-key" not in orjson.dumps(event).decode()
    assert "writeKey" not in SEGMENT.redact(track(writeKey="secret-key"))


def test_a_property_named_like_the_metadata_is_kept_inside_it():
    event = canonical(track(properties={"segment": "enterprise"}))
    assert event["attributes"]["segment"]["shadowed_property"] == "enterprise"
    assert event["attributes"]["segment"]["type"] == "track"


@pytest.mark.parametrize("message, reason", [
    ({"type": "track", "userId": "u"}, "a track needs event"),
    ({"type": "track", "event": "A"}, "needs userId or anonymousId"),
    ({"type": "alias", "userId": "u"}, "needs userId and previousId"),
    ({"type": "group", "userId": "u"}, "needs groupId"),
    ({"type": "purchase", "userId": "u"}, "must be one of track, identify"),
    ({"type": "track", "event": "A", "userId": {"id": 1}}, "userId must be a string"),
    ({"type": "track", "event": "A", "userId": "u", "properties": [1]}, "properties must be a JSON object"),
    ({"type": "track", "event": "A", "userId": "u", "timestamp": "yesterday"}, "not an ISO-8601 timestamp"),
    ([1, 2], "must be a JSON object"),
])
def test_invalid_messages_are_refused_with_the_reason(message, reason):
    batch = SEGMENT.read({"batch": [message]}, "/v1/batch")
    with pytest.raises(InvalidEvent, match=reason):
        validate_event(SEGMENT.to_raw_event(batch.messages[0], batch, RECEIVED), "demo", RECEIVED)


def test_a_message_over_32_kb_is_refused():
    message = track(properties={"blob": "x" * MESSAGE_LIMIT_BYTES})
    batch = SEGMENT.read({"batch": [message]}, "/v1/batch")
    with pytest.raises(InvalidEvent, match=f"the limit is {MESSAGE_LIMIT_BYTES} bytes"):
        SEGMENT.to_raw_event(message, batch, RECEIVED)


@pytest.mark.parametrize("doc, reason", [([], "must be a JSON object"), ({"batch": {}}, 'body must be {"batch"'),
                                         ({"batch": [], "context": 3}, "context must be a JSON object")])
def test_malformed_bodies_are_a_bad_request(doc, reason):
    with pytest.raises(BadRequest, match=reason):
        SEGMENT.read(doc, "/v1/batch")


def test_a_batch_over_500_kb_is_too_large():
    body = orjson.dumps({"batch": [track(properties={"p": "x" * 1000})] * 600})
    with pytest.raises(PayloadTooLarge):
        SEGMENT.decode(body, "application/json", None, {}, "/v1/batch")
