"""Persons and sessions written at finalization, read through the API and the ``sessions`` named query.

The lake is written by the real services on a moto server: archive and aggregation consumers, the
committer, then the ``finalize_windows`` handler of app.py (which finalizes the hours and updates
persons and sessions of each). The truth is computed independently with pandas
(tests/factories/people.py). The data has duplicate copies (one with its time shifted by an
hour), a session across an hour boundary, users with the same id in two apps, and a late event
that joins two sessions into one.
"""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest
from chalice.test import Client

import app as app_module
from chalicelib.lake.s3io import list_keys
from chalicelib.runtime.container import Container
from chalicelib.stream.instants import ms_to_iso
from eventpipe.local.bootstrap import bootstrap
from eventpipe.query.service import QueryService
from tests.factories.people import (APPS, HOUR, MINUTE, deliver, generate, own_settings, persons_truth, session_metrics_truth,
                                      sessions_truth)
from tests.factories.lake import T0
from tests.conftest import fresh_moto_server

KEYS = {"demo": "demo-key", "rival-game": "rival-key"}
#: demo keeps the default gap; rival-game has its own (the apps table).
GAPS = {"demo": 30 * MINUTE, "rival-game": 50 * MINUTE}
RANGE = (T0 - HOUR, T0 + 8 * HOUR)

@pytest.fixture(scope="module")
def server():
    with fresh_moto_server() as url:
        yield url


@pytest.fixture(scope="module")
def stack(server):
    """The container of the app on the moto server, the data, and the stages delivered."""
    container = Container(own_settings(server, "insights-test"))
    bootstrap(container.clients, shards=2)
    container.apps.create_key("rival-game", KEYS["rival-game"])
    container.apps.set_session_gap("rival-game", GAPS["rival-game"] / MINUTE)  # `eventpipe apps session-gap`
    original, app_module.container = app_module.container, container
    data = generate()
    try:
        yield container, data
    finally:
        app_module.container = original


def get(path, key, **params):
    query = "&".join(f"{k}={v}" for k, v in params.items())
    with Client(app_module.app) as client:
        response = client.http.get(f"{path}?{query}" if query else path, headers={"x-api-key": key})
    return response.status_code, json.loads(response.body)


def stored_sessions(container, app):
    table = container.people._sessions.read(app, *RANGE)
    return sorted((r["user_id"], int(r["session_start"].timestamp() * 1000), int(r["session_end"].timestamp() * 1000),
                   r["events"], r["entry_event_type"], r["exit_event_type"]) for r in table.to_pylist())


def truth_rows(truth, app):
    s = truth[truth["app_id"] == app]
    return sorted(zip(s["user_id"], s["start"].astype(int), s["end"].astype(int), s["events"].astype(int),
                      s["entry"], s["exit"]))


def check_everything(container, copies):
    """Sessions (rows and metrics) and persons equal the pandas truth through the API and DuckDB."""
    truth = pd.concat([sessions_truth([c for c in copies if c["app_id"] == app], GAPS[app]) for app in APPS])
    people = persons_truth(copies)
    service = QueryService(container.clients)
    for app in APPS:
        assert stored_sessions(container, app) == truth_rows(truth, app)
        expected = session_metrics_truth(truth, app, *RANGE)
        status, body = get("/v1/sessions", KEYS[app], **{"from": ms_to_iso(RANGE[0]), "to": ms_to_iso(RANGE[1])})
        assert status == 200, body
        assert {k: body[k] for k in expected} == expected
        result = service.run(file="sessions", params={"app_id": app, "from": ms_to_iso(RANGE[0]),
                                                      "to": ms_to_iso(RANGE[1])})
        (row,) = result.table.to_pylist()
        assert {k: row[k] for k in expected} == expected
        for (person_app, user), want in people.items():
            if person_app != app:
                continue
            for asked in [user, *want["aliases"]]:
                status, body = get(f"/v1/persons/{asked}", KEYS[app])
                assert status == 200, (asked, body)
                assert body == {"user_id": user, "aliases": want["aliases"], "traits": want["traits"],
                                "first_seen": ms_to_iso(want["first_seen"]),
                                "last_seen": ms_to_iso(want["last_seen"])}
    return truth, people


def test_sessions_and_persons_equal_the_truth_before_and_after_a_late_event(stack):
    """Rule: the sessions and persons tables written at finalization equal an independent pandas
    computation over the deduplicated events (gap 30 min; traits: newest set, else oldest set_once;
    aliases merged under the canonical id) — through GET /v1/sessions, GET /v1/persons and the
    ``sessions`` named query on DuckDB; a late event within the gap of two sessions joins them."""
    container, data = stack
    report = deliver(container, data.lines(data.first), 100)
    assert any(p.split(": ")[1].startswith("finalized") for p in report["partitions"]), report
    truth, people = check_everything(container, data.first)
    rival = [c for c in data.first if c["app_id"] == "rival-game"]
    assert len(sessions_truth(rival, GAPS["demo"])) != len(sessions_truth(rival, GAPS["rival-game"]))  # the gap matters
    bridge = truth[(truth["app_id"] == "demo") & (truth["user_id"] == "bridge")]
    assert len(bridge) == 2  # two sessions until the late event comes
    crosser = truth[(truth["app_id"] == "demo") & (truth["user_id"] == "crosser")]
    assert len(crosser) == 1 and crosser["events"].item() == 2  # one session over 13:00
    assert people[("demo", "ann")]["aliases"] == ["anon-1"]
    assert people[("demo", "ann")]["traits"]["first_plan"] == "pro"  # set_once kept the first value
    assert people[("rival-game", "ann")]["traits"] == {"plan": "gold"}

    report = deliver(container, data.lines(data.late), 10_000)
    data.late_delivered = True
    assert any(p.split(": ")[1].startswith("finalized") for p in report["partitions"]), report
    truth, _ = check_everything(container, data.first + data.late)
    bridge = truth[(truth["app_id"] == "demo") & (truth["user_id"] == "bridge")]
    assert len(bridge) == 1 and bridge["events"].item() == 6


def test_tables_do_not_depend_on_the_order_hours_are_processed_in(stack):
    """Rule: every file of the persons and sessions tables is a function of the events only:
    recomputing every hour from scratch in reverse order, twice, writes the same bytes."""
    container, data = stack
    if not any(True for _ in list_keys(container.clients.s3, container.settings.bucket, "tables/sessions/")):
        deliver(container, data.lines(data.first + data.late), 20_000)
    s3, bucket = container.clients.s3, container.settings.bucket
    prefixes = ("tables/sessions/", "tables/persons/", "insights/")

    def files():
        return {o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
                for p in prefixes for o in list_keys(s3, bucket, p)}

    before = files()
    assert any(k.startswith("tables/persons/") for k in before) and any(k.startswith("tables/sessions/") for k in before)
    for key in before:
        s3.delete_object(Bucket=bucket, Key=key)
    hours = sorted({(c["event_time"] // HOUR) for c in data.first + data.late}, reverse=True)
    for _ in range(2):
        for hour in hours:
            dt, hh = ms_to_iso(hour * HOUR)[:10], ms_to_iso(hour * HOUR)[11:13]
            container.people_tables.update_hour(dt, hh)
    assert files() == before


def test_unknown_person_is_404_and_another_apps_person_is_not_visible(stack):
    """Rule: GET /v1/persons/{user_id} answers the key's app only: 404 for an id it never saw,
    even when another app has that id."""
    container, data = stack
    if not any(True for _ in list_keys(container.clients.s3, container.settings.bucket, "tables/persons/")):
        deliver(container, data.lines(data.first), 30_000)
    status, body = get("/v1/persons/nobody", KEYS["demo"])
    assert status == 404 and "error" in body
    status, body = get("/v1/persons/rival-game-u1", KEYS["demo"])
    assert status == 404
    status, body = get("/v1/persons/rival-game-u1", KEYS["rival-game"])
    assert status == 200 and body["user_id"] == "rival-game-u1"
    status, body = get("/v1/sessions", KEYS["demo"], **{"from": "yesterday"})
    assert status == 400 and "from" in body["error"]


def test_session_and_person_reads_take_their_cost_in_request_tokens(stack):
    """Rule: GET /v1/sessions takes 1 + one token per UTC day of its range, GET /v1/persons/{id} 5
    (chalicelib/http/read_costs.py), from the caller's app."""
    container, _ = stack
    taken = []

    class Recording:
        def admit(self, app_id, events, requests):
            taken.append((app_id, events, requests))

        def check(self, app_id):
            pass

    real = container.__dict__.get("limiter")
    container.__dict__["limiter"] = Recording()
    try:
        get("/v1/sessions", KEYS["demo"], **{"from": "2026-01-01T00:00:00Z", "to": "2026-01-31T00:00:00Z"})
        get("/v1/persons/ann", KEYS["rival-game"])
    finally:
        container.__dict__.pop("limiter")
        if real is not None:
            container.__dict__["limiter"] = real
    assert taken == [("demo", 0, 32), ("rival-game", 0, 5)]


@pytest.mark.skipif(not os.environ.get("TRINO_URL"), reason="TRINO_URL is not set: scripts/test.sh starts a Trino "
                                                            "node (scripts/trino-node.sh) when Java 24+ is installed")
def test_the_sessions_query_and_the_persons_table_read_the_same_on_trino(stack, tmp_path):
    """Rule: the sessions named query and the persons table, run unmodified on Trino (Athena's engine)
    over the same files, answer the pandas truth and exactly what DuckDB answers."""
    container, data = stack
    copies = data.first + data.late
    if not data.__dict__.get("late_delivered"):
        deliver(container, data.lines(copies), 40_000)
    truth = pd.concat([sessions_truth([c for c in copies if c["app_id"] == app], GAPS[app]) for app in APPS])
    people = persons_truth(copies)
    service = QueryService(container.clients, trino_url=os.environ["TRINO_URL"], trino_root=tmp_path,
                           trino_catalog=f"eventpipe_insights_{os.getpid()}")
    engine = service.trino_engine()
    try:
        for app in APPS:
            params = {"app_id": app, "from": ms_to_iso(RANGE[0]), "to": ms_to_iso(RANGE[1])}
            on_trino = service.run(file="sessions", params=params, engine="trino")
            assert on_trino.engine == "trino"
            (row,) = on_trino.table.to_pylist()
            expected = session_metrics_truth(truth, app, *RANGE)
            assert {k: row[k] for k in expected} == expected
            assert on_trino.table.to_pylist() == service.run(file="sessions", params=params).table.to_pylist()
            sql = (f"SELECT user_id, first_seen, last_seen, traits, aliases FROM persons WHERE app_id = '{app}' "
                   "ORDER BY user_id")
            for engine_name in ("trino", "duckdb"):
                rows = service.run(sql, engine=engine_name).table.to_pylist()
                got = {r["user_id"]: {"first_seen": _ms(r["first_seen"]), "last_seen": _ms(r["last_seen"]),
                                      "traits": json.loads(r["traits"]), "aliases": list(r["aliases"])} for r in rows}
                assert got == {user: want for (a, user), want in people.items() if a == app}, engine_name
    finally:
        engine.drop()


def _ms(moment) -> int:
    from datetime import timezone
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return round(moment.timestamp() * 1000)


def test_cli_sets_and_shows_an_apps_session_gap(stack, monkeypatch, capsys):
    """Rule: `eventpipe apps session-gap NAME [MINUTES]` stores the app's gap on its apps-table item (what
    the finalize job's sessions use), shows the default otherwise, and refuses a gap out of range."""
    from eventpipe import cli

    container, _ = stack
    s = container.settings
    for name, value in (("EVENTPIPE_AWS_ENDPOINT_URL", s.aws_endpoint_url), ("EVENTPIPE_APPS_TABLE", s.apps_table),
                        ("EVENTPIPE_STATE_TABLE", s.state_table), ("EVENTPIPE_BUCKET", s.bucket)):
        monkeypatch.setenv(name, value)
    assert cli.main(["apps", "session-gap", "demo"]) == 0
    assert capsys.readouterr().out.strip() == "demo\tsession gap 30 min (the default)"
    assert cli.main(["apps", "session-gap", "rival-game"]) == 0
    assert capsys.readouterr().out.strip() == "rival-game\tsession gap 50 min"
    assert cli.main(["apps", "session-gap", "rival-game", "2000"]) == 2
    assert cli.main(["apps", "session-gap", "nobody", "40"]) == 2
    assert container.apps.session_gap_minutes("rival-game") == 50.0
    assert container.apps.session_gap_minutes("demo") is None
