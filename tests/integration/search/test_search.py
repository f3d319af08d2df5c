"""GET /v1/search against a live backend (osmem and, with OPENSEARCH_URL, a real node)."""

from __future__ import annotations

import pytest

from chalicelib.ingest.validation import ms_to_iso
from chalicelib.search import SearchParameterError, index_kinesis_batch, search_events
from chalicelib.search.naming import DAY_MS
from tests.factories.search import HOUR_MS, NOW_MS, event, records

MIN = 60_000


@pytest.fixture
def seeded(backend, client, sink, clock):
    """Two apps' events over three days; returns them by name."""
    ev = {
        "gg": event(text="gg wp everyone", user_id="alice", at=NOW_MS - 1 * HOUR_MS),
        "boss": event(text="boss fight need heal", user_id="bob", at=NOW_MS - 2 * HOUR_MS),
        "login": event(event_type="session_start", user_id="alice", at=NOW_MS - 3 * HOUR_MS, platform="ios"),
        "ping": event(event_type="gps_ping", user_id="bob", at=NOW_MS - 4 * HOUR_MS, lat=37.5, lon=127.0),
        "old": event(text="gg from two days ago", user_id="alice", at=NOW_MS - 2 * DAY_MS),
        "other_app": event(app_id="app-b", text="gg wp from app b", user_id="alice", at=NOW_MS - HOUR_MS),
    }
    index_kinesis_batch(records(list(ev.values())[:3], list(ev.values())[3:]), client=client, sink=sink,
                        clock=clock, config=backend.indexer_config())
    return ev


def ids(result) -> list[str]:
    return [hit["event_id"] for hit in result["hits"]]


def test_default_window_is_the_last_24_hours_newest_first(backend, client, seeded):
    result = search_events(client, "app-a", {}, NOW_MS, backend.search_settings)
    assert ids(result) == [seeded[k]["event_id"] for k in ("gg", "boss", "login", "ping")]
    assert result["total"] == 4
    assert result["next_cursor"] is None


def test_free_text_matches_words_in_attributes_text(backend, client, seeded):
    result = search_events(client, "app-a", {"q": "heal"}, NOW_MS, backend.search_settings)
    assert ids(result) == [seeded["boss"]["event_id"]]
    result = search_events(client, "app-a", {"q": "gg wp"}, NOW_MS, backend.search_settings)
    assert ids(result) == [seeded["gg"]["event_id"]]


def test_free_text_trailing_prefix_and_boolean_operators(backend, client, seeded):
    result = search_events(client, "app-a", {"q": "fig*"}, NOW_MS, backend.search_settings)
    assert ids(result) == [seeded["boss"]["event_id"]]
    result = search_events(client, "app-a", {"q": "gg | heal"}, NOW_MS, backend.search_settings)
    assert ids(result) == [seeded[k]["event_id"] for k in ("gg", "boss")]


def test_leading_wildcard_is_rejected_before_reaching_the_cluster(backend, client, seeded):
    with pytest.raises(SearchParameterError, match="leading wildcard"):
        search_events(client, "app-a", {"q": "*eal"}, NOW_MS, backend.search_settings)


def test_event_type_filter(backend, client, seeded):
    result = search_events(client, "app-a", {"event_type": "gps_ping"}, NOW_MS, backend.search_settings)
    assert ids(result) == [seeded["ping"]["event_id"]]


def test_user_id_filter(backend, client, seeded):
    result = search_events(client, "app-a", {"user_id": "bob"}, NOW_MS, backend.search_settings)
    assert ids(result) == [seeded[k]["event_id"] for k in ("boss", "ping")]


def test_time_range_is_half_open_from_inclusive_to_exclusive(backend, client, seeded):
    params = {"from": "2026-11-25T08:00:00Z", "to": "2026-11-25T11:00:00Z"}  # ping at 08:00, gg at 11:00
    result = search_events(client, "app-a", params, NOW_MS, backend.search_settings)
    assert ids(result) == [seeded[k]["event_id"] for k in ("boss", "login", "ping")]


def test_explicit_range_reaches_older_daily_indices(backend, client, seeded):
    params = {"q": "gg", "from": "2026-11-20T00:00:00+09:00", "to": "2026-11-26T00:00:00Z"}
    result = search_events(client, "app-a", params, NOW_MS, backend.search_settings)
    assert ids(result) == [seeded[k]["event_id"] for k in ("gg", "old")]


def test_an_app_never_sees_another_apps_events(backend, client, seeded):
    result_b = search_events(client, "app-b", {"q": "gg"}, NOW_MS, backend.search_settings)
    assert ids(result_b) == [seeded["other_app"]["event_id"]]
    result_a = search_events(client, "app-a", {"user_id": "alice", "q": "app"}, NOW_MS, backend.search_settings)
    assert ids(result_a) == []
    assert search_events(client, "app-c", {}, NOW_MS, backend.search_settings)["total"] == 0


def test_hits_are_events_as_ingested_with_iso_times_and_attribute_objects(backend, client, seeded):
    [hit] = search_events(client, "app-a", {"event_type": "gps_ping"}, NOW_MS, backend.search_settings)["hits"]
    ping = seeded["ping"]
    assert hit == {
        "event_id": ping["event_id"], "event_type": "gps_ping", "event_time": "2026-11-25T08:00:00.000Z",
        "received_at": ms_to_iso(ping["received_at"]), "app_id": "app-a", "user_id": "bob",
        "client_event_time": None, "attributes": {"lat": 37.5, "lon": 127.0},
    }


def test_no_index_for_the_range_gives_an_empty_result(backend, client, seeded):
    params = {"from": "2025-01-01T00:00:00Z", "to": "2025-01-10T00:00:00Z"}
    assert search_events(client, "app-a", params, NOW_MS, backend.search_settings) == \
        {"total": 0, "hits": [], "next_cursor": None}


def test_cursor_pagination_returns_every_hit_exactly_once_in_order(backend, client, sink, clock):
    # 23 events over two days, with ties on event_time to exercise the event_id tiebreak.
    base = NOW_MS - 14 * HOUR_MS
    events = [event(text="page me", at=base + (n // 3) * HOUR_MS, event_id=f"p-{n:02d}") for n in range(23)]
    events.append(event(text="page me", app_id="app-b", at=base))
    index_kinesis_batch(records(events[:12], events[12:]), client=client, sink=sink, clock=clock,
                        config=backend.indexer_config())
    seen: list[dict] = []
    params = {"q": "page", "size": "5"}
    for _ in range(10):
        result = search_events(client, "app-a", params, NOW_MS, backend.search_settings)
        assert result["total"] == 23
        seen += result["hits"]
        if result["next_cursor"] is None:
            break
        params = {**params, "cursor": result["next_cursor"]}
    got = [(h["event_time"], h["event_id"]) for h in seen]
    assert len(got) == 23 and len(set(got)) == 23
    assert got == sorted(got, reverse=True)
    assert {h["event_id"] for h in seen} == {e["event_id"] for e in events[:23]}


def test_cursor_keeps_the_first_pages_window_while_time_moves_on(backend, client, sink, clock):
    events = [event(text="window", at=NOW_MS - 23 * HOUR_MS - n * MIN) for n in range(4)]
    index_kinesis_batch(records(events), client=client, sink=sink, clock=clock, config=backend.indexer_config())
    first = search_events(client, "app-a", {"size": "2"}, NOW_MS, backend.search_settings)
    later = NOW_MS + 2 * HOUR_MS  # the default window would no longer hold these events
    second = search_events(client, "app-a", {"size": "2", "cursor": first["next_cursor"]}, later,
                           backend.search_settings)
    assert len(first["hits"]) == len(second["hits"]) == 2
    assert {h["event_id"] for h in first["hits"] + second["hits"]} == {e["event_id"] for e in events}


def test_cursor_from_another_query_is_rejected(backend, client, sink, clock):
    events = [event(text="cursor") for _ in range(3)]
    index_kinesis_batch(records(events), client=client, sink=sink, clock=clock, config=backend.indexer_config())
    first = search_events(client, "app-a", {"size": "1"}, NOW_MS, backend.search_settings)
    with pytest.raises(SearchParameterError, match="different query"):
        search_events(client, "app-a", {"size": "1", "q": "cursor", "cursor": first["next_cursor"]}, NOW_MS,
                      backend.search_settings)
    with pytest.raises(SearchParameterError, match="different query"):
        search_events(client, "app-b", {"size": "1", "cursor": first["next_cursor"]}, NOW_MS,
                      backend.search_settings)

