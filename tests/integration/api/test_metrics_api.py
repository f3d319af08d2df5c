"""GET /v1/metrics through chalice.test.Client on moto: partials before, compacted files after."""

from __future__ import annotations

import json

import numpy as np
import orjson
import pytest

from chalicelib.ingest.validation import ms_to_iso
from chalicelib.lake.finalizer import Finalizer
from tests.factories.lake import (T0, Clock, canonical_lines, lambda_batches, match_lines, truth_class_activity,
                                  truth_event_counts, truth_match_duration)

HOUR = 3_600_000
RANGE = {"from": ms_to_iso(T0 - HOUR), "to": ms_to_iso(T0 + 2 * HOUR)}


@pytest.fixture
def lake(container):
    """Two apps' events processed by the real services into moto S3."""
    Clock(T0 + 30 * 60_000)
    demo = canonical_lines(1500, seed=21)
    other = canonical_lines(700, seed=22, app_id="rival-game")
    archive, aggregation = container.archive, container.aggregation
    for batch in lambda_batches(demo + other + demo[:50], seed=23):  # 50 duplicates
        archive.handle(batch)
        aggregation.handle(batch)
    container.raw_table_job.run()  # the commit_events schedule
    finalizer = Finalizer(container.clients.s3, container.settings.bucket, container.state, container.metrics,
                          Clock(T0 + 3 * HOUR), raw=container.raw_table)
    rival_key = container.apps.create_key("rival-game")
    return {"demo": demo, "other": other, "finalizer": finalizer, "rival_key": rival_key}


def get(client, path, key="demo-key", **params):
    query = "&".join(f"{k}={v}" for k, v in params.items())
    response = client.http.get(f"{path}?{query}" if query else path, headers={"x-api-key": key})
    return response.status_code, json.loads(response.body)


def event_counts(doc):
    return {(r["window_start"], r["event_type"]): (r["count"], r["users"]) for r in doc["rows"]}


def expected_event_counts(lines, app_id="demo"):
    return {(ms_to_iso(w), t): v for (a, w, t), v in truth_event_counts(lines).items() if a == app_id}


def assert_event_counts(doc, truth):
    got = event_counts(doc)
    assert {k: v[0] for k, v in got.items()} == {k: v[0] for k, v in truth.items()}
    for key, (_, users) in truth.items():
        assert abs(got[key][1] - users) <= 1 + 0.07 * users


def test_event_counts_are_exact_before_and_after_finalization(client, lake):
    status, before = get(client, "/v1/metrics/event_counts", **RANGE, limit=10000)
    assert status == 200 and before["window"] == {"size_s": 60, "slide_s": 60}
    # Partials double count the 50 re-sent events until finalization dedupes them.
    assert sum(r["count"] for r in before["rows"]) == 1550
    lake["finalizer"].run()
    status, after = get(client, "/v1/metrics/event_counts", **RANGE, limit=10000)
    assert_event_counts(after, expected_event_counts(lake["demo"]))
    assert after["finalized_until"] >= RANGE["to"][:19]


def test_before_finalization_partials_equal_the_ground_truth_without_duplicates(client, container):
    lines = canonical_lines(900, seed=24)
    Clock(T0 + 30 * 60_000)
    aggregation = container.aggregation
    for batch in lambda_batches(lines, seed=25):
        aggregation.handle(batch)
    status, doc = get(client, "/v1/metrics/event_counts", **RANGE, limit=10000)
    assert status == 200
    assert_event_counts(doc, expected_event_counts(lines))
    assert doc["finalized_until"] == ms_to_iso(min(orjson.loads(line)["event_time"] // 60_000 * 60_000
                                                   for line in lines))


def test_class_activity_matches_the_ground_truth_after_finalization(client, lake):
    lake["finalizer"].run()
    status, doc = get(client, "/v1/metrics/class_activity", **RANGE, limit=10000)
    assert status == 200
    got = {(r["window_start"], r["character_class"]): r for r in doc["rows"]}
    truth = {(ms_to_iso(w), c): v for (a, w, c), v in truth_class_activity(lake["demo"]).items() if a == "demo"}
    assert got.keys() == truth.keys()
    for key, (count, total, low, high, n) in truth.items():
        row = got[key]
        assert row["count"] == count
        assert row["value_sum"] == (pytest.approx(total) if n else None)  # SQL: no values -> null
        assert (row["value_min"], row["value_max"]) == (low, high)
        assert row["value_avg"] == (pytest.approx(total / n) if n else None)


def assert_percentiles_within_one_percent(doc, truth):
    got = {(r["window_start"], r["character_class"]): r for r in doc["rows"]}
    truth = {(ms_to_iso(w), c): values for (a, w, c), values in truth.items() if a == "demo"}
    assert got.keys() == truth.keys()
    for key, values in truth.items():
        row = got[key]
        assert row["count"] == len(values)
        for percent in (50, 90, 99):
            exact = float(np.quantile(values, percent / 100, method="lower"))  # rank floor(q * (n - 1))
            assert abs(row[f"duration_p{percent}"] - exact) <= 0.01 * abs(exact) * (1 + 1e-9), (key, percent)


def test_match_duration_percentiles_are_within_one_percent_before_and_after_finalization(client, container):
    lines = match_lines(2500, seed=31)
    resent = lines + lines[:200]  # at least once: partials count these twice until finalization
    Clock(T0 + 30 * 60_000)
    archive, aggregation = container.archive, container.aggregation
    for batch in lambda_batches(resent, seed=32, max_batch_records=3):
        archive.handle(batch)
        aggregation.handle(batch)
    status, before = get(client, "/v1/metrics/match_duration", **RANGE, limit=10000)
    assert status == 200 and before["window"] == {"size_s": 300, "slide_s": 300}
    assert_percentiles_within_one_percent(before, truth_match_duration(resent, dedupe=False))
    container.raw_table_job.run()
    Finalizer(container.clients.s3, container.settings.bucket, container.state, container.metrics,
              Clock(T0 + 3 * HOUR), raw=container.raw_table).run()
    status, after = get(client, "/v1/metrics/match_duration", **RANGE, limit=10000)
    assert_percentiles_within_one_percent(after, truth_match_duration(lines))
    assert after["finalized_until"] >= RANGE["to"][:19]


def test_key_filters_select_rows(client, lake):
    status, doc = get(client, "/v1/metrics/event_counts", **RANGE, event_type="level_up,purchase", limit=10000)
    assert status == 200 and doc["rows"]
    assert {r["event_type"] for r in doc["rows"]} == {"level_up", "purchase"}


def test_another_apps_key_sees_only_its_own_rows(client, lake):
    lake["finalizer"].run()
    status, doc = get(client, "/v1/metrics/event_counts", key=lake["rival_key"], **RANGE, limit=10000)
    assert status == 200
    assert_event_counts(doc, expected_event_counts(lake["other"], "rival-game"))
    assert sum(r["count"] for r in doc["rows"]) == 700


def test_metric_list_describes_every_metric(client, container):
    status, doc = get(client, "/v1/metrics")
    assert status == 200
    names = [m["name"] for m in doc["metrics"]]
    assert names == ["event_counts", "class_activity", "region_activity", "active_users_5m", "match_duration"]
    hopping = doc["metrics"][3]
    assert hopping["window"] == {"size_s": 300, "slide_s": 60, "type": "hopping"}
    assert doc["metrics"][4]["measures"][3] == {"name": "duration_p99",
                                                "aggregate": "percentile(attributes.value, 99)"}


@pytest.mark.parametrize("path, params, status, message", [
    ("/v1/metrics/nope", {}, 404, "unknown metric 'nope'"),
    ("/v1/metrics/event_counts", {"from": "yesterday"}, 400, "not an ISO-8601"),
    ("/v1/metrics/event_counts", {"from": "2026-01-01T00:00:00"}, 400, "has no time zone"),
    ("/v1/metrics/event_counts", {"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, 400,
     "from must be before to"),
    ("/v1/metrics/event_counts", {"from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:00Z"}, 400,
     "the maximum is 168 h"),
    ("/v1/metrics/event_counts", {"limit": "0"}, 400, "limit must be an integer"),
    ("/v1/metrics/event_counts", {"colour": "red"}, 400, "unknown parameter(s) colour"),
])
def test_bad_parameters_get_a_clear_error(client, container, path, params, status, message):
    got_status, doc = get(client, path, **params)
    assert got_status == status and message in doc["error"]


def test_metrics_need_a_key(client, container):
    assert client.http.get("/v1/metrics/event_counts").status_code == 401


@pytest.mark.parametrize("query, message", [
    ("limit=%C2%B2", "limit must be an integer"),
    ("limit=" + "9" * 5000, "limit must be an integer"),
    ("from=0001-01-01T00:00:00%2B01:00&to=0001-01-01T01:00:00%2B01:00", "outside 1970..9998"),
    ("from=9999-12-31T23:00:00-01:00&to=9999-12-31T23:30:00-01:00", "outside 1970..9998"),
    ("from=1970-01-01T00:00:00Z&to=1970-01-08T01:00:00Z", "the maximum is 168 h"),
    ("event_type=a&event_type=b", "give event_type at most once"),
    ("from=2026-01-01T00:00:00+00:00", "send '+' as %2B"),
])
def test_edge_inputs_get_400_never_500(client, container, query, message):
    response = client.http.get(f"/v1/metrics/event_counts?{query}", headers={"x-api-key": "demo-key"})
    assert response.status_code == 400 and message in json.loads(response.body)["error"]
