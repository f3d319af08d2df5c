"""POST /v1/insights/funnel and /retention through the app (chalice test client, moto), equal to a pandas truth.

The raw Iceberg table holds the generated journeys of tests/factories/insights.py (two apps with the
same user ids, duplicates with shifted event times, late events); the local engine (DuckDB in the API
process) answers at once. On Athena (moto) a query that is not done within the wait answers 202 with a
Location, which only the app that started it can poll.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import requests
from chalice.test import Client
from moto import mock_aws

import app as app_module
from chalicelib.runtime.container import Container
from chalicelib.runtime.settings import Settings
from eventpipe.local.bootstrap import bootstrap
from tests.factories import insights as data

RANGE = {"from": data.FROM.isoformat().replace("+00:00", "Z"), "to": data.TO.isoformat().replace("+00:00", "Z")}
FROM_MS, TO_MS = data._ms(data.FROM), data._ms(data.TO)
KEYS = {"shop": "shop-key", "other": "other-key"}


def make_container(monkeypatch, **settings) -> Container:
    fresh = Container(Settings(**settings))
    bootstrap(fresh.clients, shards=1)
    for app, key in KEYS.items():
        fresh.apps.create_key(app, key)
    monkeypatch.setattr(app_module, "container", fresh)
    return fresh


@pytest.fixture(scope="module")
def frame():
    return data.generate()


@pytest.fixture(scope="module")
def local_api(frame):
    """The app on the local engine (DuckDB in the API process), the raw table written once for the module."""
    with mock_aws(), pytest.MonkeyPatch.context() as patch:
        container = make_container(patch, insights_engine="duckdb")
        data.write_raw_table(container.raw_table, frame)
        with Client(app_module.app) as client:
            yield client


def post(client, path, body, key="shop-key"):
    response = client.http.post(path, body=json.dumps(body),
                                headers={"x-api-key": key, "content-type": "application/json"})
    return response.status_code, json.loads(response.body), response.headers


def expected_steps(table, steps):
    first = table[0][0]
    return [{"event_type": s, "users": users, "conversion": users / first if first else 0.0,
             "median_seconds_to_convert": None if median is None else median / 1000}
            for s, (users, median) in zip(steps, table)]


def test_funnel_through_the_api_equals_the_truth_for_each_app(local_api, frame):
    """Users per step (once each, at the most steps a start reaches), conversion and the lower median seconds."""
    body = {"steps": [{"event_type": s} for s in data.STEPS], "within": "1h", **RANGE}
    for app, key in KEYS.items():
        status, doc, _ = post(local_api, "/v1/insights/funnel", body, key)
        assert status == 200, doc
        truth = data.funnel_truth(frame, app, data.STEPS, 3_600_000, FROM_MS, TO_MS)
        assert doc == {"steps": expected_steps(truth["*"], data.STEPS)}, app
    assert 0 < doc["steps"][-1]["users"]


def test_funnel_with_where_and_breakdown(local_api, frame):
    """A where equality on a step, and a breakdown by the step-1 event's attribute (overall kept)."""
    steps = ["view", "cart", "buy"]
    wheres = [{}, {"attributes.plan": "pro"}, {}]
    body = {"steps": [{"event_type": s, **({"where": w} if w else {})} for s, w in zip(steps, wheres)],
            "within": "2h", "breakdown": "attributes.source", **RANGE}
    status, doc, _ = post(local_api, "/v1/insights/funnel", body)
    assert status == 200, doc
    truth = data.funnel_truth(frame, "shop", steps, 7_200_000, FROM_MS, TO_MS, wheres, "attributes.source")
    assert doc["steps"] == expected_steps(truth["*"], steps)
    assert doc["breakdown"] == [{"value": v, "steps": expected_steps(truth[v], steps)}
                                for v in sorted(k for k in truth if k != "*")]


@pytest.mark.parametrize("period,periods", [("day", 10), ("week", 3)])
def test_retention_through_the_api_equals_the_truth(local_api, frame, period, periods):
    """Cohorts by UTC day / ISO week of the first start event in [from, to); returns after `to` count."""
    body = {"start_event": "view", "return_event": "cart", "period": period, "periods": periods, **RANGE}
    for app, key in KEYS.items():
        status, doc, _ = post(local_api, "/v1/insights/retention", body, key)
        assert status == 200, doc
        truth = data.retention_truth(frame, app, "view", "cart", period, periods, FROM_MS, TO_MS)
        assert doc == {"cohorts": [{"period_start": f"{day}T00:00:00Z", "users": returned[0], "returned": returned}
                                   for day, returned in truth]}, (app, period)


def test_event_types_of_the_app(local_api, monkeypatch):
    """The Funnel tab's step choices: the app's own event types (shop has `ping`, other has not)."""
    monkeypatch.setattr("chalicelib.runtime.container.clock_ms", lambda: TO_MS)
    app_module.container.__dict__.pop("insights", None)
    monkeypatch.setattr(app_module.container, "__dict__", app_module.container.__dict__)
    shop = json.loads(local_api.http.get("/v1/insights/event-types", headers={"x-api-key": "shop-key"}).body)
    other = json.loads(local_api.http.get("/v1/insights/event-types", headers={"x-api-key": "other-key"}).body)
    assert shop == {"event_types": sorted(set(data.STEPS) | {"ping"})}
    assert other == {"event_types": sorted(data.STEPS)}


@pytest.mark.parametrize("body,message", [
    ({"steps": [{"event_type": "view"}], **RANGE}, "2 to 8 steps"),
    ({"steps": [{"event_type": "view"}, {"event_type": "Bad Type"}], **RANGE}, "event type"),
    ({"steps": [{"event_type": "view"}, {"event_type": "cart", "where": {"plan' OR 1=1": "x"}}], **RANGE},
     "attribute path"),
    ({"steps": [{"event_type": "view"}, {"event_type": "cart"}], "breakdown": "attributes.x') --", **RANGE},
     "breakdown"),
    ({"steps": [{"event_type": "view"}, {"event_type": "view"}], **RANGE}, "same step"),
    ({"steps": [{"event_type": "view"}, {"event_type": "cart"}], "within": "forever", **RANGE}, "within"),
    ({"steps": [{"event_type": "view"}, {"event_type": "cart"}], "from": "2026-01-01T00:00:00Z",
      "to": "2026-12-01T00:00:00Z"}, "92 days"),
    ({"steps": [{"event_type": "view"}, {"event_type": "cart"}], "sql": "DROP TABLE", **RANGE}, "unknown field"),
])
def test_bad_funnels_are_400_with_a_message(local_api, body, message):
    status, doc, _ = post(local_api, "/v1/insights/funnel", body)
    assert status == 400 and message in doc["error"], doc


def test_bad_retention_is_400(local_api):
    for body in ({"start_event": "view", "return_event": "cart", "period": "month", **RANGE},
                 {"start_event": "view", "return_event": "cart", "periods": 0, **RANGE},
                 {"start_event": "view", "return_event": "cart", "from": "yesterday", "to": RANGE["to"]}):
        status, doc, _ = post(local_api, "/v1/insights/retention", body)
        assert status == 400 and doc["error"], body
    status, doc, _ = post(local_api, "/v1/insights/retention", {"start_event": "view"}, key="nope")
    assert status == 401


def moto_athena_results(rows: list[list[str]], columns: list[tuple[str, str]]) -> None:
    """Queue the rows moto's Athena answers next (moto runs no SQL: https://docs.getmoto.org, Athena)."""
    header = {"Data": [{"VarCharValue": name} for name, _ in columns]}
    body = [{"Data": [{"VarCharValue": v} if v is not None else {} for v in row]} for row in rows]
    requests.post("http://motoapi.amazonaws.com/moto-api/static/athena/query-results", json={
        "results": [{"rows": [header, *body],
                     "column_info": [{"Name": n, "Type": t, "CatalogName": "", "SchemaName": "", "TableName": "",
                                      "Label": n, "Precision": 0, "Scale": 0, "Nullable": "UNKNOWN",
                                      "CaseSensitive": False} for n, t in columns]}]}).raise_for_status()


def test_on_athena_a_slow_insight_answers_202_and_only_its_app_can_poll_it(monkeypatch):
    """202 + Location when not done within the wait; the poll answers the shaped result; another app gets 404."""
    with mock_aws():
        container = make_container(monkeypatch, insights_engine="athena", insights_wait_s=0.0)
        with Client(app_module.app) as client:
            body = {"steps": [{"event_type": "view"}, {"event_type": "buy"}], "within": "1h", **RANGE}
            status, doc, headers = post(client, "/v1/insights/funnel", body)
            assert status == 202 and doc["status"] == "running", doc
            location = headers["Location"]
            assert location == f"/v1/insights/queries/{doc['query_id']}" == doc["location"]
            executions = container.clients.client("athena").get_query_execution(QueryExecutionId=doc["query_id"])
            sql = executions["QueryExecution"]["Query"]
            assert "app_id = 'shop'" in sql and "'buy'" in sql  # the key's app, bound as a literal

            denied = client.http.get(location, headers={"x-api-key": "other-key"})
            assert denied.status_code == 404

            moto_athena_results([["0", None, "1", "10", "0"], ["0", None, "2", "4", "90500"]],
                                [("by_value", "integer"), ("breakdown", "varchar"), ("step", "integer"),
                                 ("users", "bigint"), ("median_ms", "bigint")])
            polled = client.http.get(location, headers={"x-api-key": "shop-key"})
            assert polled.status_code == 200, polled.body
            assert json.loads(polled.body) == {"steps": [
                {"event_type": "view", "users": 10, "conversion": 1.0, "median_seconds_to_convert": 0.0},
                {"event_type": "buy", "users": 4, "conversion": 0.4, "median_seconds_to_convert": 90.5}]}


def test_on_athena_a_quick_insight_answers_200(monkeypatch):
    """Within the wait, the route answers the result itself (retention: zeros filled in)."""
    with mock_aws():
        make_container(monkeypatch, insights_engine="athena", insights_wait_s=5.0)
        moto_athena_results([["2026-03-02", "0", "3"], ["2026-03-02", "2", "1"]],
                            [("period_start", "varchar"), ("period_number", "bigint"), ("users", "bigint")])
        with Client(app_module.app) as client:
            body = {"start_event": "view", "return_event": "cart", "periods": 3, **RANGE}
            status, doc, _ = post(client, "/v1/insights/retention", body)
            assert status == 200, doc
            assert doc == {"cohorts": [{"period_start": "2026-03-02T00:00:00Z", "users": 3, "returned": [3, 0, 1]}]}


def test_an_insight_takes_its_cost_in_request_tokens(local_api, monkeypatch):
    """The route admits insight_cost(body) tokens of the app's requests/s bucket (not one)."""
    from chalicelib.http.read_costs import insight_cost

    taken = []
    monkeypatch.setattr(app_module.container.limiter, "admit", lambda app, events, requests: taken.append(
        (app, events, requests)))
    body = {"steps": [{"event_type": "view"}, {"event_type": "buy"}], "within": "1h", **RANGE}
    status, _, _ = post(local_api, "/v1/insights/funnel", body)
    assert status == 200 and taken == [("shop", 0, insight_cost(body))] and insight_cost(body) == 20 + 5 * 16  # 14 days + the last day counted whole + within
