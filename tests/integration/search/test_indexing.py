"""Indexing into a live backend (osmem and, with OPENSEARCH_URL, a real node)."""

from __future__ import annotations

import orjson

from chalicelib.search import ensure_template, index_kinesis_batch
from chalicelib.search.naming import DAY_MS
from tests.factories.search import HOUR_MS, NOW_MS, assert_indexed_once, event, raw_record, records, stored


def test_ensure_template_writes_once_then_reports_it_current(backend):
    client = backend.client()
    assert ensure_template(client, backend.template) is True
    assert ensure_template(client, backend.template) is False
    stored_template = client.indices.get_index_template(name=backend.template.name)["index_templates"][0]
    assert stored_template["index_template"]["index_patterns"] == [f"{backend.prefix}-*"]


def test_new_daily_index_gets_the_template_mappings(backend, client, sink, clock):
    batch = records([event(text="gg wp", lat=37.5, lon=127.0, level=3, when="2024-01-01")])
    index_kinesis_batch(batch, client=client, sink=sink, clock=clock, config=backend.indexer_config())

    name = f"{backend.prefix}-2026.11.25"
    mapping = client.indices.get_mapping(index=name)[name]["mappings"]
    props = mapping["properties"]
    for field in ("event_id", "event_type", "app_id", "user_id"):
        assert props[field]["type"] == "keyword"
    for field in ("event_time", "received_at", "client_event_time"):
        assert props[field]["type"] == "date"
    assert props["location"]["type"] == "geo_point"
    assert props["attributes"] == {"type": "object", "enabled": False}, "attributes are stored, not mapped"
    attr = props["attr"]["properties"]
    assert attr["text"]["type"] == "text"
    assert attr["text"]["fields"]["keyword"]["type"] == "keyword"
    assert (attr["numbers"]["type"], attr["flags"]["type"], attr["pairs"]["type"]) == ("double", "boolean", "keyword")
    assert attr["numeric"]["type"] == "nested"
    assert not any(name in attr for name in ("level", "when", "lat")), "no field per attribute"
    assert mapping["dynamic"] == "strict"
    settings = client.indices.get_settings(index=name)[name]["settings"]["index"]
    assert (settings["number_of_shards"], settings["number_of_replicas"]) == ("1", "0")
    # the published slow logs are written only for indices that name thresholds
    assert settings["search"]["slowlog"]["threshold"]["query"]["warn"] == "2s"
    assert settings["indexing"]["slowlog"]["threshold"]["index"]["warn"] == "2s"


def test_documents_carry_attributes_as_an_object_and_location_from_lat_lon(backend, client, sink, clock):
    e = event(text="hello", lat=37.5, lon=127.0)
    index_kinesis_batch(records([e]), client=client, sink=sink, clock=clock, config=backend.indexer_config())
    [doc] = stored(client, backend.prefix)
    assert doc["attributes"] == {"text": "hello", "lat": 37.5, "lon": 127.0}
    assert doc["attr"]["pairs"] == ["text=hello", "lat=37.5", "lon=127.0"]
    assert doc["location"] == {"lat": 37.5, "lon": 127.0}
    assert doc["_id"] == f"{e['app_id']}:{e['event_id']}"


def test_same_batch_delivered_twice_stores_each_event_once(backend, client, sink, clock):
    events = [event(text=f"message {n}") for n in range(30)]
    batch = records(events[:10], events[10:20], events[20:])
    first = index_kinesis_batch(batch, client=client, sink=sink, clock=clock, config=backend.indexer_config())
    second = index_kinesis_batch(batch, client=client, sink=sink, clock=clock, config=backend.indexer_config())
    assert first.lambda_response() == second.lambda_response() == {"batchItemFailures": []}
    assert first.indexed == second.indexed == 30
    assert_indexed_once(client, backend.prefix, events)


def test_same_event_id_in_two_apps_is_two_documents(backend, client, sink, clock):
    a, b = event(app_id="app-a", event_id="dup-1"), event(app_id="app-b", event_id="dup-1")
    index_kinesis_batch(records([a, b]), client=client, sink=sink, clock=clock, config=backend.indexer_config())
    assert_indexed_once(client, backend.prefix, [a, b])


def test_events_go_to_the_utc_daily_index_of_their_event_time(backend, client, sink, clock):
    midnight = NOW_MS - 12 * HOUR_MS  # 2026-11-25T00:00:00Z
    late, early, older = event(at=midnight - 1), event(at=midnight), event(at=midnight - 3 * DAY_MS)
    index_kinesis_batch(records([late, early, older]), client=client, sink=sink, clock=clock,
                        config=backend.indexer_config())
    where = {d["event_id"]: d["_index"] for d in stored(client, backend.prefix)}
    assert where == {late["event_id"]: f"{backend.prefix}-2026.11.24",
                     early["event_id"]: f"{backend.prefix}-2026.11.25",
                     older["event_id"]: f"{backend.prefix}-2026.11.22"}


def test_events_older_than_retention_are_skipped_not_bad_rows(backend, client, sink, clock):
    keep, drop = event(at=NOW_MS - 7 * DAY_MS), event(at=NOW_MS - 7 * DAY_MS - 1)
    result = index_kinesis_batch(records([keep, drop]), client=client, sink=sink, clock=clock,
                                 config=backend.indexer_config(retention_days=7))
    assert (result.indexed, result.expired, result.bad_rows) == (1, 1, 0)
    assert [d["event_id"] for d in stored(client, backend.prefix)] == [keep["event_id"]]
    assert sink.objects == {}


def test_undecodable_record_goes_to_bad_rows_and_the_rest_is_indexed(backend, client, sink, clock):
    good = event()
    batch = records([good])
    bad = raw_record(b"not a packed record")
    result = index_kinesis_batch([bad] + batch, client=client, sink=sink, clock=clock,
                                 config=backend.indexer_config())
    assert result.lambda_response() == {"batchItemFailures": []}
    assert_indexed_once(client, backend.prefix, [good])
    [row] = sink.rows()
    assert row["reason"] == "undecodable_record"
    assert row["record_data_b64"] == bad["kinesis"]["data"]
    assert row["record"]["sequence_number"] == bad["kinesis"]["sequenceNumber"]


def test_malformed_event_line_goes_to_bad_rows_with_the_raw_line(backend, client, sink, clock):
    good = event()
    broken = {**event(), "event_time": "yesterday"}
    result = index_kinesis_batch(records([good, broken]), client=client, sink=sink, clock=clock,
                                 config=backend.indexer_config())
    assert (result.indexed, result.bad_rows) == (1, 1)
    [row] = sink.rows()
    assert row["reason"] == "invalid_event"
    assert orjson.loads(row["raw_line"]) == broken


def test_small_bulk_byte_limit_splits_requests_without_losing_events(backend, client, sink, clock):
    events = [event(text="x" * 200) for _ in range(40)]
    config = backend.indexer_config(max_bulk_bytes=2_000)
    result = index_kinesis_batch(records(events), client=client, sink=sink, clock=clock, config=config)
    assert result.indexed == 40
    assert_indexed_once(client, backend.prefix, events)
