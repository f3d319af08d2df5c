"""Search parameters, query building and cursors (pure)."""

from __future__ import annotations

import base64

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.http.errors import BadRequest
from chalicelib.search.errors import SearchParameterError
from chalicelib.search.naming import DAY_MS
from chalicelib.search.query import (QUERY_FLAGS, SearchSettings, build_search_body, decode_cursor, encode_cursor,
                                     parse_search_params, search_indices)
from tests.factories.search import NOW_MS

HOUR_MS = 3_600_000


def parse(params, app_id="app-a", now_ms=NOW_MS, **settings):
    return parse_search_params(app_id, params, now_ms, SearchSettings(**settings))


def test_search_parameter_error_is_a_400_request_error():
    assert issubclass(SearchParameterError, BadRequest) and SearchParameterError.status == 400


def test_defaults_are_the_last_24_hours_and_50_hits():
    query = parse({})
    assert (query.from_ms, query.to_ms, query.size) == (NOW_MS - DAY_MS, NOW_MS, 50)
    assert query.q is query.event_type is query.user_id is query.search_after is None
    assert parse(None).to_ms == NOW_MS


def test_from_alone_runs_until_now_and_to_alone_covers_the_day_before_it():
    assert parse({"from": "2026-11-25T00:00:00Z"}).to_ms == NOW_MS
    query = parse({"to": "2026-11-20T00:00:00Z"})
    assert query.to_ms - query.from_ms == DAY_MS


@pytest.mark.parametrize("size", ["0", "501", "-1", "ten", "1.5", ""])
def test_size_outside_1_to_500_is_rejected(size):
    if size == "":
        assert parse({"size": size}).size == 50  # empty means absent
        return
    with pytest.raises(SearchParameterError, match="size"):
        parse({"size": size})


def test_size_500_is_the_maximum():
    assert parse({"size": "500"}).size == 500


@pytest.mark.parametrize("value", ["2026-11-25T00:00:00", "2026-11-25", "yesterday", "1764000000000"])
def test_times_must_be_iso_8601_with_a_zone(value):
    with pytest.raises(SearchParameterError, match="from"):
        parse({"from": value})


def test_offsets_are_honoured():
    assert parse({"from": "2026-11-25T09:00:00+09:00"}).from_ms == NOW_MS - 12 * HOUR_MS


def test_from_must_be_before_to():
    with pytest.raises(SearchParameterError, match="before"):
        parse({"from": "2026-11-25T10:00:00Z", "to": "2026-11-25T10:00:00Z"})


def test_ranges_over_31_days_are_rejected_and_31_days_is_allowed():
    ok = parse({"from": "2026-10-25T00:00:00Z", "to": "2026-11-25T00:00:00Z"})
    assert len(search_indices(ok)) == 31
    with pytest.raises(SearchParameterError, match="maximum is 31 days"):
        parse({"from": "2026-10-25T00:00:00Z", "to": "2026-11-25T00:00:01Z"})


def test_unknown_parameters_are_rejected_by_name():
    with pytest.raises(SearchParameterError, match="'type'"):
        parse({"type": "chat"})


def test_a_parameter_given_twice_is_rejected():
    with pytest.raises(SearchParameterError, match="at most once"):
        parse({"event_type": ["a", "b"]})
    assert parse({"event_type": ["chat"]}).event_type == "chat"


@pytest.mark.parametrize("q", ["*foo", "gg *foo", "-*foo", "(*foo)", "foo | *bar", "\"a\" *", "*"])
def test_leading_wildcards_are_rejected(q):
    with pytest.raises(SearchParameterError, match="leading wildcards"):
        parse({"q": q})


@pytest.mark.parametrize("q", ["fo*", "a*", "gg fo*"])
def test_prefixes_shorter_than_three_characters_are_rejected(q):
    with pytest.raises(SearchParameterError, match="at least 3"):
        parse({"q": q})


@pytest.mark.parametrize("q", ["foo*", "gg wp", "\"gg wp\" -lag", r"\*literal", "boss | (heal + tank)"])
def test_ordinary_free_text_is_accepted(q):
    assert parse({"q": q}).q == q


def test_overlong_free_text_is_rejected():
    with pytest.raises(SearchParameterError, match="limit is 256"):
        parse({"q": "a" * 257})


@pytest.mark.parametrize("event_type", ["Chat", "chat message", "1chat", "x" * 65])
def test_event_type_must_look_like_an_event_type(event_type):
    with pytest.raises(SearchParameterError, match="event_type"):
        parse({"event_type": event_type})


def test_user_id_is_capped_at_128_characters():
    with pytest.raises(SearchParameterError, match="user_id"):
        parse({"user_id": "u" * 129})


def test_body_always_filters_by_the_callers_app_and_the_time_range():
    body = build_search_body(parse({"event_type": "chat_message", "user_id": "bob", "size": "10"}))
    filters = body["query"]["bool"]["filter"]
    assert filters[0] == {"term": {"app_id": "app-a"}}
    assert filters[1]["range"]["event_time"] == {"gte": NOW_MS - DAY_MS, "lt": NOW_MS, "format": "epoch_millis"}
    assert {"term": {"event_type": "chat_message"}} in filters and {"term": {"user_id": "bob"}} in filters
    assert body["size"] == 11, "one extra hit tells whether there is a next page"
    assert [next(iter(s)) for s in body["sort"]] == ["event_time", "event_id"]
    assert all(next(iter(s.values()))["order"] == "desc" for s in body["sort"])
    assert "must" not in body["query"]["bool"]


def test_free_text_uses_simple_query_string_without_fuzzy_or_slop_operators():
    sqs = build_search_body(parse({"q": "gg wp"}))["query"]["bool"]["must"][0]["simple_query_string"]
    assert sqs["query"] == "gg wp"
    assert sqs["fields"] == ["attr.text", "attr.text.keyword", "attr.numbers", "attr.flags", "attributes.*"]
    flags = set(sqs["flags"].split("|"))
    assert flags == set(QUERY_FLAGS.split("|")) and not flags & {"FUZZY", "NEAR", "SLOP", "ALL"}
    assert sqs["lenient"] is True and sqs["default_operator"] == "and"


def test_indices_are_the_concrete_daily_names_of_the_range():
    query = parse({"from": "2026-11-23T12:00:00Z", "to": "2026-11-25T00:00:00Z"}, prefix="staging")
    assert search_indices(query, SearchSettings(prefix="staging")) == ["staging-2026.11.24", "staging-2026.11.23"]


def _next_page(params, sort=(NOW_MS - HOUR_MS, "ev-9")):
    query = parse(params)
    return query, encode_cursor(query, list(sort))


def test_cursor_resumes_after_the_last_hit_within_the_first_pages_window():
    first, cursor = _next_page({"q": "gg"})
    second = parse({"q": "gg", "cursor": cursor}, now_ms=NOW_MS + 5 * HOUR_MS)
    assert second.search_after == (NOW_MS - HOUR_MS, "ev-9")
    assert (second.from_ms, second.to_ms) == (first.from_ms, first.to_ms)
    assert build_search_body(second)["search_after"] == [NOW_MS - HOUR_MS, "ev-9"]


def test_cursor_is_url_safe():
    _, cursor = _next_page({"q": "gg"}, sort=(NOW_MS, "ü/+?&=" * 5))
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


@pytest.mark.parametrize("changed", [{"q": "other"}, {"q": "gg", "event_type": "chat"}, {"q": "gg", "user_id": "u"},
                                     {"q": "gg", "from": "2026-11-25T00:00:00Z"}])
def test_cursor_for_a_different_query_is_rejected(changed):
    _, cursor = _next_page({"q": "gg"})
    with pytest.raises(SearchParameterError, match="different query"):
        parse({**changed, "cursor": cursor})


def test_cursor_of_another_app_is_rejected():
    _, cursor = _next_page({"q": "gg"})
    with pytest.raises(SearchParameterError, match="different query"):
        parse({"q": "gg", "cursor": cursor}, app_id="app-b")


def test_size_may_change_between_pages():
    _, cursor = _next_page({"q": "gg", "size": "10"})
    assert parse({"q": "gg", "size": "20", "cursor": cursor}).size == 20


@pytest.mark.parametrize("cursor", ["not-base64!", "e30", base64.urlsafe_b64encode(b"[1,2]").decode(),
                                    base64.urlsafe_b64encode(orjson.dumps(
                                        {"v": 1, "f": "x", "w": ["a", 1], "a": [1, "b"]})).decode()])
def test_malformed_cursors_are_rejected(cursor):
    with pytest.raises(SearchParameterError, match="malformed"):
        parse({"cursor": cursor})


def test_a_forged_cursor_window_is_still_capped_at_31_days():
    query = parse({})
    forged = base64.urlsafe_b64encode(orjson.dumps({"v": 1, "f": query.fingerprint, "w": [0, NOW_MS],
                                                    "a": [NOW_MS, "x"]})).decode()
    with pytest.raises(SearchParameterError, match="maximum"):
        parse({"cursor": forged})


@given(st.integers(min_value=-2**62, max_value=2**62), st.text(max_size=80))
def test_cursor_round_trips_any_sort_values(event_time, event_id):
    query = parse({"q": "gg"})
    assert decode_cursor(encode_cursor(query, [event_time, event_id]), query.fingerprint)[2] == (event_time, event_id)


@pytest.mark.parametrize("params, message", [
    ({"size": "\u00b2"}, "size must be a whole number"),
    ({"size": "9" * 5000}, "size must be a whole number"),
    ({"from": "0001-01-01T00:00:00+01:00", "to": "0001-01-02T00:00:00Z"}, "outside 1970..9998"),
    ({"from": "9999-12-31T00:00:00Z", "to": "9999-12-31T23:59:59-01:00"}, "outside 1970..9998"),
    ({"size": ["1", "2"]}, "at most once"),
])
def test_edge_inputs_are_parameter_errors_not_crashes(params, message):
    from chalicelib.search.errors import SearchParameterError
    from chalicelib.search.query import parse_search_params
    with pytest.raises(SearchParameterError, match=message):
        parse_search_params("demo", params, 1_767_268_800_000)


def test_a_forged_cursor_with_huge_times_is_rejected():
    import base64

    import orjson

    from chalicelib.search.errors import SearchParameterError
    from chalicelib.search.query import _fingerprint, parse_search_params
    values = {name: None for name in ("q", "event_type", "user_id", "from", "to", "size", "cursor")}
    forged = {"v": 1, "f": _fingerprint("demo", values), "w": [9 * 10 ** 18, 9 * 10 ** 18 + 1000], "a": [1, "x"]}
    token = base64.urlsafe_b64encode(orjson.dumps(forged)).rstrip(b"=").decode()
    with pytest.raises(SearchParameterError, match="cursor is malformed"):
        parse_search_params("demo", {"cursor": token}, 1_767_268_800_000)
