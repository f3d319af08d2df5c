"""Event validation rules, one test per rule."""

import orjson
import pytest

from chalicelib.ingest.validation import InvalidEvent, ms_to_iso, parse_timestamp, validate_event

NOW = 1_767_268_800_000  # 2026-01-01T12:00:00Z


def ok(**fields):
    raw = {"event_type": "level_up", "event_time": "2026-01-01T11:59:00Z", **fields}
    return validate_event(raw, "demo", NOW, new_id=lambda: "generated-id")


def line(event):
    return orjson.loads(event.line)


def reason(raw):
    with pytest.raises(InvalidEvent) as info:
        validate_event(raw, "demo", NOW)
    return str(info.value)


def test_canonical_line_has_fixed_fields_and_server_stamps():
    event = line(ok(user_id="u1", attributes={"level": 3}))
    assert list(event) == ["event_id", "event_type", "event_time", "received_at", "app_id", "user_id",
                           "client_event_time", "attributes"]
    assert event["app_id"] == "demo" and event["received_at"] == NOW
    assert event["event_time"] == NOW - 60_000
    assert orjson.loads(event["attributes"]) == {"level": 3}


def test_app_id_comes_from_the_key_never_from_the_body():
    assert "unknown field" in reason({"event_type": "a", "event_time": NOW, "app_id": "other"})


def test_missing_event_id_gets_a_server_uuid():
    assert ok().event_id == "generated-id"
    assert validate_event({"event_type": "a", "event_time": NOW}, "demo", NOW).event_id.count("-") == 4


def test_epoch_milliseconds_are_accepted():
    assert ok(event_time=NOW - 5).event_time == NOW - 5


def test_iso_offset_is_converted_to_utc():
    assert ok(event_time="2026-01-01T20:59:00+09:00").event_time == NOW - 60_000


@pytest.mark.parametrize("raw, expected", [
    ({"event_time": NOW}, "event_type is required"),
    ({"event_type": "LevelUp", "event_time": NOW}, "must match ^[a-z][a-z0-9_]{0,63}$"),
    ({"event_type": "a" * 65, "event_time": NOW}, "must match"),
    ({"event_type": 5, "event_time": NOW}, "must match"),
    ({"event_type": "a"}, "event_time is required"),
    ({"event_type": "a", "event_time": None}, "event_time is required"),
    ({"event_type": "a", "event_time": "yesterday"}, "is not an ISO-8601 timestamp"),
    ({"event_type": "a", "event_time": "2026-01-01T12:00:00"}, "has no time zone"),
    ({"event_type": "a", "event_time": True}, "got a boolean"),
    ({"event_type": "a", "event_time": 1.5}, "got float"),
    ({"event_type": "a", "event_time": -1}, "out of range"),
    ({"event_type": "a", "event_time": NOW + 24 * 3600 * 1000 + 1}, "more than 24 h in the future"),
    ({"event_type": "a", "event_time": NOW, "event_id": ""}, "event_id must not be empty"),
    ({"event_type": "a", "event_time": NOW, "event_id": "x" * 65}, "event_id has 65 characters; the limit is 64"),
    ({"event_type": "a", "event_time": NOW, "event_id": 7}, "event_id must be a string"),
    ({"event_type": "a", "event_time": NOW, "user_id": "u" * 129}, "user_id has 129 characters; the limit is 128"),
    ({"event_type": "a", "event_time": NOW, "attributes": [1]}, "attributes must be a JSON object, got an array"),
    ({"event_type": "a", "event_time": NOW, "attributes": {"t": "x" * 33000}}, "the limit is 32768"),
    ({"event_type": "a", "event_time": NOW, "colour": "red"}, "unknown field(s) 'colour'"),
    ({"event_type": "a", "event_time": NOW, "sent_at": "soon"}, "sent_at 'soon' is not an ISO-8601"),
    ("text", "an event must be a JSON object, got a string"),
    (None, "got null"),
])
def test_invalid_event_is_rejected_with_a_reason_naming_the_field(raw, expected):
    assert expected in reason(raw)


def test_sent_at_corrects_client_clock_skew_and_keeps_the_original():
    # The device clock is 10 minutes behind: it says it sent at 11:50 what the server got at 12:00.
    event = line(ok(event_time="2026-01-01T11:49:00Z", sent_at="2026-01-01T11:50:00Z"))
    assert event["event_time"] == NOW - 60_000
    assert event["client_event_time"] == parse_timestamp("2026-01-01T11:49:00Z", "t")


def test_future_limit_applies_after_skew_correction():
    assert ok(event_time=NOW + 3600_000 * 30, sent_at=NOW + 3600_000 * 30).event_time == NOW


def test_ms_to_iso_round_trips():
    assert parse_timestamp(ms_to_iso(NOW + 123), "t") == NOW + 123
