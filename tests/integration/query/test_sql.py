"""Every shipped SQL file (views and named queries) executed on DuckDB over a real lake on moto.

The lake is made by the real services (archive, aggregation, finalizer) from generated events of
two apps (see lake_data.py); each result is compared with a computation in plain Python over the
same events: counts and sums exactly, distinct users within 3 + 6.5 % of the truth.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pytest
from moto.server import ThreadedMotoServer

from chalicelib.api.keys import AppStore
from chalicelib.processing import ddsketch
from chalicelib.runtime.clients import Clients
from chalicelib.runtime.settings import Settings
from eventpipe.local.bootstrap import bootstrap
from eventpipe.local.stack import free_port
from chalicelib.lake.glue import ensure_bad_rows_table
from eventpipe.query.local_engine import QueryError
from eventpipe.query.service import SQL_ROOT, QueryRefused, QueryService, list_queries, view_files
from tests.factories.lake import T0
from tests.factories.query_lake import HOUR, MINUTE, build_lake, raw_events, view_truth

APPS = ("alpha", "beta")
KEYS = {"alpha": "alpha-key", "beta": "beta-key"}


@pytest.fixture(scope="module")
def lake():
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server.start()
    try:
        clients = Clients(Settings(aws_endpoint_url=f"http://127.0.0.1:{port}"))
        bootstrap(clients)
        ensure_bad_rows_table(clients.glue, clients.settings.glue_database, clients.settings.bucket)
        store = AppStore(clients.dynamodb, clients.settings.apps_table)
        for app, key in KEYS.items():
            store.create_key(app, key)
        data = build_lake(clients)
        yield clients, data, QueryService(clients)
    finally:
        server.stop()


def ms(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return int(value.timestamp() * 1000)


def close(estimate: int, truth: int) -> bool:
    return abs(estimate - truth) <= 3 + 0.065 * truth


def within_one_percent(estimate: float, truth: float) -> bool:
    """The quantile sketch's guarantee (relative accuracy 0.01, plus float rounding)."""
    return abs(estimate - truth) <= 0.01 * abs(truth) * (1 + 1e-9)


def exact_quantile(values: list[float], percent: int) -> float:
    """The quantile the measure estimates: rank floor(q * (n - 1)) of the sorted values."""
    return float(np.quantile(np.asarray(values, dtype=np.float64), percent / 100, method="lower"))


def rounded(rows: list[dict]) -> list[dict]:
    """Float sums depend on the order DuckDB's threads add them in: compare them to 9 digits."""
    return [{k: round(v, 9) if isinstance(v, float) else v for k, v in row.items()} for row in rows]


def run(service, name, app, **params):
    return service.run(file=name, params={"app_id": app, **params}).table.to_pylist()


# ------------------------------------------------------------------ views
@pytest.mark.parametrize("app", APPS)
def test_event_counts_view_applies_the_consistency_rule(lake, app):
    _, data, service = lake
    rows = service.run(f"SELECT * FROM event_counts WHERE app_id = '{app}'").table.to_pylist()
    truth = view_truth(data, "event_counts", app)
    got = {(ms(r["window_start"]), r["event_type"]): r for r in rows}
    assert got.keys() == truth.keys()
    for key, t in truth.items():
        row = got[key]
        assert (row["count"], row["late_count"]) == (t.count, t.late), key
        assert close(row["users"], len(t.users)), (key, row["users"], len(t.users))
        assert ms(row["window_end"]) - ms(row["window_start"]) == MINUTE
        assert row["dt"] == "2026-01-01"
    # Retried events count twice in the partial hour only; a straggler after finalization is hidden
    # where its window has final rows (12:45) and shown where it has none (12:30).
    raw = raw_events(data, app)
    in_final_hour = sum(1 for e in raw if T0 <= e["event_time"] < T0 + HOUR and e["event_id"] != "straggler-1")
    assert sum(r["count"] for r in rows if ms(r["window_start"]) < T0 + HOUR) == in_final_hour
    # Both stages are in the table, overlapping: summing every row would count hour 12 twice.
    stages = service.run(f"SELECT stage, sum(event_count) AS n FROM event_counts_rollup WHERE app_id = '{app}' "
                         f"GROUP BY stage").table.to_pylist()
    by_stage = {r["stage"]: r["n"] for r in stages}
    assert set(by_stage) == {"final", "partial"} and sum(by_stage.values()) > sum(r["count"] for r in rows)
    if app == "alpha":
        assert got[(T0 + 30 * MINUTE, "level_up")]["count"] == 1
        assert got[(T0 + 45 * MINUTE, "level_up")]["count"] == sum(
            1 for e in raw if e["event_type"] == "level_up" and T0 + 45 * MINUTE <= e["event_time"] < T0 + 46 * MINUTE
            and e["event_id"] != "straggler-1")


@pytest.mark.parametrize("app", APPS)
def test_class_activity_view(lake, app):
    _, data, service = lake
    table = service.run(f"SELECT * FROM class_activity WHERE app_id = '{app}'").table
    assert {f.name: str(f.type) for f in table.schema if f.name in ("count", "users", "value_n", "late_count")} \
        == dict.fromkeys(("count", "value_n", "users", "late_count"), "int64")  # bigint, as on Athena
    rows = table.to_pylist()
    truth = view_truth(data, "class_activity", app)
    got = {(ms(r["window_start"]), r["character_class"]): r for r in rows}
    assert got.keys() == truth.keys()
    for key, t in truth.items():
        row = got[key]
        assert (row["count"], row["late_count"], row["value_n"]) == (t.count, t.late, len(t.values)), key
        if t.values:
            assert row["value_sum"] == pytest.approx(sum(t.values))
            assert (row["value_min"], row["value_max"]) == (min(t.values), max(t.values))
            assert row["value_avg"] == pytest.approx(sum(t.values) / len(t.values))
        else:
            assert (row["value_sum"], row["value_min"], row["value_max"], row["value_avg"]) == (None,) * 4
        assert close(row["users"], len(t.users))


@pytest.mark.parametrize("app", APPS)
def test_region_activity_view(lake, app):
    _, data, service = lake
    rows = service.run(f"SELECT * FROM region_activity WHERE app_id = '{app}'").table.to_pylist()
    truth = view_truth(data, "region_activity", app)
    got = {(ms(r["window_start"]), r["geohash5"]): r for r in rows}
    assert got.keys() == truth.keys()
    for key, t in truth.items():
        assert (got[key]["count"], got[key]["late_count"]) == (t.count, t.late), key
        assert close(got[key]["users"], len(t.users))


@pytest.mark.parametrize("app", APPS)
def test_active_users_5m_view(lake, app):
    _, data, service = lake
    rows = service.run(f"SELECT * FROM active_users_5m WHERE app_id = '{app}'").table.to_pylist()
    truth = view_truth(data, "active_users_5m", app)
    got = {ms(r["window_start"]): r for r in rows}
    assert got.keys() == {start for start, _ in truth}
    for (start, _), t in truth.items():
        assert ms(got[start]["window_end"]) - start == 5 * MINUTE
        assert got[start]["late_count"] == t.late, start
        assert close(got[start]["users"], len(t.users)), (start, got[start]["users"], len(t.users))


@pytest.mark.parametrize("app", APPS)
def test_match_duration_view_percentiles_are_within_one_percent_of_the_exact_quantiles(lake, app):
    _, data, service = lake
    table = service.run(f"SELECT * FROM match_duration WHERE app_id = '{app}'").table
    assert {f.name: str(f.type) for f in table.schema if f.name.startswith("duration_p")} == \
        dict.fromkeys(("duration_p50", "duration_p90", "duration_p99"), "double")
    rows = table.to_pylist()
    truth = view_truth(data, "match_duration", app)
    got = {(ms(r["window_start"]), r["character_class"]): r for r in rows}
    assert got.keys() == truth.keys() and len(truth) > 20
    assert {start // HOUR * HOUR for start, _ in truth} == {T0, T0 + HOUR}  # final and partial windows
    for key, t in truth.items():
        row = got[key]
        assert (row["count"], row["late_count"]) == (len(t.values), t.late), key
        assert ms(row["window_end"]) - ms(row["window_start"]) == 5 * MINUTE
        for percent in (50, 90, 99):
            exact = exact_quantile(t.values, percent)
            assert within_one_percent(row[f"duration_p{percent}"], exact), (key, percent, exact)


@pytest.mark.parametrize("app", APPS)
def test_match_duration_view_merges_the_sketches_as_python_does(lake, app):
    """The SQL merge of the rows the rule picks equals the one-pass sketch of their values, bucket for bucket."""
    _, data, service = lake
    rows = service.run(f"SELECT * FROM match_duration WHERE app_id = '{app}'").table.to_pylist()
    truth = view_truth(data, "match_duration", app)
    for row in rows:
        values = truth[(ms(row["window_start"]), row["character_class"])].values
        one_pass = ddsketch.sketch_of(values)
        assert row["duration_sketch"] == ddsketch.to_lists(pa.array([one_pass], pa.binary())).to_pylist()[0]
        for percent in (50, 90, 99):
            python = ddsketch.quantile_of(one_pass, percent, 100)
            assert row[f"duration_p{percent}"] == pytest.approx(python, rel=1e-12)


# ------------------------------------------------------------------ named queries
def test_every_shipped_sql_file_is_tested_here():
    tested_queries = {"events_per_minute", "daily_active_users", "top_users", "class_activity",
                      "region_heatmap", "late_events", "bad_rows_by_reason", "active_users", "match_durations"}
    assert {q.name for q in list_queries()} == tested_queries
    assert {p.stem for p in view_files()} == {"event_counts", "class_activity", "region_activity",
                                              "active_users_5m", "match_duration"}
    for query in list_queries():
        assert query.description and any(p.name == "app_id" for p in query.params), query.name


@pytest.mark.parametrize("app", APPS)
def test_events_per_minute(lake, app):
    _, data, service = lake
    truth = view_truth(data, "event_counts", app)
    rows = run(service, "events_per_minute", app)
    assert [(ms(r["minute"]), r["event_type"]) for r in rows] == sorted(truth)
    for row in rows:
        t = truth[(ms(row["minute"]), row["event_type"])]
        assert (row["count"], row["late_count"]) == (t.count, t.late)
        assert close(row["users"], len(t.users))
    # A time range: from included, to excluded.
    start, end = T0 + 50 * MINUTE, T0 + 65 * MINUTE
    ranged = run(service, "events_per_minute", app, **{"from": "2026-01-01T12:50:00Z", "to": "2026-01-01T13:05:00Z"})
    assert {(ms(r["minute"]), r["event_type"]) for r in ranged} == {k for k in truth if start <= k[0] < end}


@pytest.mark.parametrize("app", APPS)
def test_daily_active_users_from_raw_deduplicated(lake, app):
    _, data, service = lake
    days = defaultdict(list)
    for event in raw_events(data, app):
        days[datetime.fromtimestamp(event["event_time"] / 1000, timezone.utc).strftime("%Y-%m-%d")].append(event)
    expected = [{"event_date": day, "active_users": len({e["user_id"] for e in events}),
                 "event_count": len(events)} for day, events in sorted(days.items())]
    assert run(service, "daily_active_users", app) == expected
    assert [r["event_date"] for r in expected] == ["2025-12-24", "2026-01-01"]  # the too-old ones are archived


@pytest.mark.parametrize("app", APPS)
def test_top_users_from_raw_deduplicated(lake, app):
    _, data, service = lake
    per_user = defaultdict(list)
    for event in raw_events(data, app):
        per_user[event["user_id"]].append(event)
    ranking = sorted(per_user.items(), key=lambda item: (-len(item[1]), item[0]))[:7]
    rows = run(service, "top_users", app, limit="7")
    assert [(r["user_id"], r["event_count"]) for r in rows] == [(u, len(ev)) for u, ev in ranking]
    for row, (_, events) in zip(rows, ranking):
        assert row["event_types"] == len({e["event_type"] for e in events})
        assert ms(row["first_event_time"]) == min(e["event_time"] for e in events)
        assert ms(row["last_event_time"]) == max(e["event_time"] for e in events)
    assert len(run(service, "top_users", app)) == 20  # the declared default


@pytest.mark.parametrize("app", APPS)
def test_class_activity_query_merges_users_across_windows(lake, app):
    _, data, service = lake
    truth = view_truth(data, "class_activity", app)
    classes = defaultdict(lambda: {"count": 0, "users": set(), "values": [], "minutes": 0, "peak": 0})
    for (_, cls), t in truth.items():
        c = classes[cls]
        c["count"] += t.count
        c["users"] |= t.users
        c["values"] += t.values
        c["minutes"] += 1
        c["peak"] = max(c["peak"], len(t.users))
    rows = run(service, "class_activity", app)
    assert {r["character_class"] for r in rows} == set(classes)
    assert [r["event_count"] for r in rows] == sorted((c["count"] for c in classes.values()), reverse=True)
    for row in rows:
        c = classes[row["character_class"]]
        assert (row["event_count"], row["active_minutes"]) == (c["count"], c["minutes"])
        assert close(row["users"], len(c["users"])), (row, len(c["users"]))
        assert close(row["peak_minute_users"], c["peak"])
        assert row["value_sum"] == pytest.approx(sum(c["values"]))
        assert (row["value_min"], row["value_max"]) == (min(c["values"]), max(c["values"]))
        assert row["value_avg"] == pytest.approx(sum(c["values"]) / len(c["values"]))


@pytest.mark.parametrize("app", APPS)
def test_match_durations_query_merges_the_sketches_across_windows(lake, app):
    _, data, service = lake
    classes = defaultdict(lambda: {"values": [], "windows": 0, "slowest": []})
    for (_, cls), t in view_truth(data, "match_duration", app).items():
        classes[cls]["values"] += t.values
        classes[cls]["windows"] += 1
        classes[cls]["slowest"].append(exact_quantile(t.values, 99))
    rows = run(service, "match_durations", app)
    assert {r["character_class"] for r in rows} == set(classes)
    assert [r["matches"] for r in rows] == sorted((len(c["values"]) for c in classes.values()), reverse=True)
    for row in rows:
        c = classes[row["character_class"]]
        assert (row["matches"], row["windows"]) == (len(c["values"]), c["windows"])
        merged = ddsketch.sketch_of(c["values"])  # one pass over every window's values
        for percent in (50, 90, 99):
            assert within_one_percent(row[f"p{percent}"], exact_quantile(c["values"], percent))
            assert row[f"p{percent}"] == pytest.approx(ddsketch.quantile_of(merged, percent, 100), rel=1e-12)
        assert within_one_percent(row["slowest_window_p99"], max(c["slowest"]))
    ranged = run(service, "match_durations", app, **{"from": "2026-01-01T13:00:00Z", "to": "2026-01-01T13:10:00Z"})
    assert sum(r["windows"] for r in ranged) == sum(1 for start, _ in view_truth(data, "match_duration", app)
                                                     if T0 + HOUR <= start < T0 + HOUR + 10 * MINUTE)


@pytest.mark.parametrize("app", APPS)
def test_region_heatmap(lake, app):
    _, data, service = lake
    truth = view_truth(data, "region_activity", app)
    cells = defaultdict(lambda: {"pings": 0, "users": set(), "minutes": []})
    for (start, cell), t in truth.items():
        cells[cell]["pings"] += t.count
        cells[cell]["users"] |= t.users
        cells[cell]["minutes"].append(start)
    rows = run(service, "region_heatmap", app)
    assert {r["geohash5"]: r["pings"] for r in rows} == {k: v["pings"] for k, v in cells.items()}
    assert [r["pings"] for r in rows] == sorted((r["pings"] for r in rows), reverse=True)
    for row in rows:
        cell = cells[row["geohash5"]]
        assert close(row["users"], len(cell["users"]))
        assert (ms(row["first_minute"]), ms(row["last_minute"])) == (min(cell["minutes"]), max(cell["minutes"]))


def test_late_events(lake):
    _, data, service = lake
    expected = []
    for metric in ("active_users_5m", "class_activity", "event_counts", "region_activity"):
        windows = defaultdict(lambda: [0, 0])
        for (start, _), t in view_truth(data, metric, "alpha").items():
            windows[start][0] += t.late
            windows[start][1] += t.count
        expected += [(metric, start, late, None if metric == "active_users_5m" else count)
                     for start, (late, count) in sorted(windows.items()) if late]
    rows = run(service, "late_events", "alpha")
    assert [(r["metric"], ms(r["window_start"]), r["late_count"], r["event_count"]) for r in rows] == expected
    # late-1 (12:50, hour 12: carried into the final file), late-2 (13:02: 2 final + 3 partial 5m
    # windows), straggler-2 (12:30, a partial of a window without final rows); straggler-1 is hidden.
    assert Counter(r["metric"] for r in rows) == {"event_counts": 3, "class_activity": 2, "region_activity": 1,
                                                  "active_users_5m": 15}
    assert run(service, "late_events", "beta") == []


def test_bad_rows_by_reason_only_shows_the_apps_own_rows(lake):
    _, data, service = lake
    for app in APPS:
        rows = run(service, "bad_rows_by_reason", app)
        assert [(r["consumer"], r["bad_rows"], r["first_day"]) for r in rows] == [("aggregate", data.too_old[app],
                                                                                     "2026-01-01")]
        assert rows[0]["reason"] == "too_late"
    # The poison record belongs to no app: operators see it in the table itself.
    everything = service.run("SELECT consumer, reason, detail, record.line, record_data_b64 FROM bad_rows "
                             "WHERE event IS NULL").table
    assert sorted(everything["consumer"].to_pylist()) == ["aggregate", "archive"]
    assert set(everything["reason"].to_pylist()) == {"undecodable_record"}
    assert all("format" in detail for detail in everything["detail"].to_pylist())


@pytest.mark.parametrize("app", APPS)
def test_active_users(lake, app):
    _, data, service = lake
    truth = view_truth(data, "active_users_5m", app)
    rows = run(service, "active_users", app)
    assert [ms(r["minute"]) for r in rows] == sorted(start + 5 * MINUTE for start, _ in truth)
    for row in rows:
        assert close(row["users"], len(truth[(ms(row["window_start"]), None)].users))


# ------------------------------------------------------------------ keys and isolation
def test_a_key_queries_its_own_app_only(lake):
    _, data, service = lake
    for query in list_queries():
        as_beta = service.run(file=query.name, api_key=KEYS["beta"])
        assert as_beta.app_id == "beta" and "'alpha'" not in as_beta.sql
        assert rounded(as_beta.table.to_pylist()) == rounded(run(service, query.name, "beta")), query.name
    with pytest.raises(QueryRefused, match="cannot query app 'alpha'"):
        service.run(file="top_users", params={"app_id": "alpha"}, api_key=KEYS["beta"])
    with pytest.raises(QueryRefused, match="unknown API key"):
        service.run(file="top_users", api_key="nope")


def test_ad_hoc_sql_with_a_key_sees_nothing_of_other_apps(lake):
    _, data, service = lake
    queries = {
        "SELECT DISTINCT app_id FROM events": ["beta"],
        "SELECT DISTINCT app_id FROM eventpipe.event_counts_rollup": ["beta"],
        "SELECT DISTINCT app_id FROM class_activity": ["beta"],
        "SELECT DISTINCT event.app_id AS app FROM bad_rows": ["beta"],
        "SELECT DISTINCT app_id FROM events WHERE app_id = 'alpha'": [],
    }
    for sql, apps in queries.items():
        table = service.run(sql, api_key=KEYS["beta"]).table
        assert table.column(0).to_pylist() == apps, sql
    beta_events = len([e for e in data.events(data.archived) if e["app_id"] == "beta"])
    assert service.run("SELECT count(*) AS n FROM events", api_key=KEYS["beta"]).table["n"].to_pylist() == \
        [beta_events]
    for escape in ("SELECT * FROM read_parquet('/etc/passwd')", "SELECT * FROM __src_events WHERE app_id = 'alpha'"):
        result = None
        try:
            result = service.run(escape, api_key=KEYS["beta"]).table
        except QueryError:
            continue
        assert result.num_rows == 0, escape
    with pytest.raises(QueryError):
        service.run("SET enable_external_access=true", api_key=KEYS["beta"])
    with pytest.raises(QueryRefused, match="only the named queries"):
        service.run("SELECT * FROM events WHERE app_id = 'alpha'", api_key=KEYS["beta"], aws=True)


def test_parameters_are_bound_as_literals_never_as_sql(lake):
    _, _, service = lake
    hostile = "alpha' OR app_id <> 'x"
    assert service.run(file="top_users", params={"app_id": hostile}).table.num_rows == 0
    echoed = service.run("SELECT :v AS v, ':v' AS text -- :v\n", params={"v": hostile}).table.to_pylist()
    assert echoed == [{"v": hostile, "text": ":v"}]
    with pytest.raises(QueryError, match="limit"):
        service.run(file="top_users", params={"app_id": "alpha", "limit": "5; DROP TABLE events"})
    with pytest.raises(QueryError, match="timestamp"):
        service.run(file="top_users", params={"app_id": "alpha", "from": "yesterday"})
    with pytest.raises(QueryError, match="missing parameter :app_id"):
        service.run(file="top_users")
    with pytest.raises(QueryError, match="unknown parameter"):
        service.run(file="top_users", params={"app_id": "alpha", "app": "beta"})


def test_athena_path_gets_the_bound_sql_and_the_database(lake, monkeypatch):
    import awswrangler as wr
    import pandas as pd
    clients, _, _ = lake
    calls = []

    def fake_read_sql_query(sql, **kwargs):
        calls.append((sql, kwargs))
        return pd.DataFrame({"user_id": ["u"], "event_count": [1]})

    monkeypatch.setattr(wr.athena, "read_sql_query", fake_read_sql_query)
    result = QueryService(clients).run(file="top_users", api_key=KEYS["alpha"], aws=True)
    [(sql, kwargs)] = calls
    assert result.engine == "athena" and result.table.to_pylist() == [{"user_id": "u", "event_count": 1}]
    assert "app_id = 'alpha'" in sql and "LIMIT 20" in sql and ":app_id" not in sql.split("\n", 9)[-1]
    assert kwargs["database"] == "eventpipe" and kwargs["ctas_approach"] is False


def test_cli_query_prints_json_and_csv(lake, monkeypatch, capsys):
    from eventpipe import cli
    clients, data, _ = lake
    monkeypatch.setenv("EVENTPIPE_AWS_ENDPOINT_URL", clients.settings.aws_endpoint_url)
    assert cli.main(["query", "--file", str(SQL_ROOT / "queries" / "daily_active_users.sql"),
                     "--param", "app_id=alpha", "--format", "json"]) == 0
    rows = orjson.loads(capsys.readouterr().out)
    assert [r["event_date"] for r in rows] == ["2025-12-24", "2026-01-01"]
    assert cli.main(["query", "--file", "top_users", "--key", KEYS["beta"], "--param", "limit=3",
                     "--format", "csv"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "user_id,event_count,event_types,first_event_time,last_event_time" and len(out) == 4
    assert cli.main(["query", "SELECT :n AS n", "--param", "n:bigint=41"]) == 0
    assert "41" in capsys.readouterr().out
    assert cli.main(["query", "--file", "top_users", "--key", KEYS["beta"], "--param", "app_id=alpha"]) == 2
    assert "cannot query app" in capsys.readouterr().err


def test_sql_files_parse_as_athena_sql():
    import sqlglot
    for path in sorted(Path(SQL_ROOT).rglob("*.sql")):
        text = path.read_text()
        for name in ("app_id", "from", "to", "limit"):
            text = text.replace(f":{name}", "TIMESTAMP '2026-01-01 00:00:00.000'" if name in ("from", "to") else "1")
        assert len(sqlglot.parse(text, read="athena")) == 1, path


def test_shipped_sql_is_translated_with_types_so_integer_division_is_trinos(lake):
    from eventpipe.query.service import bind_query
    clients, _, _ = lake
    engine = QueryService(clients).local_engine()
    assert engine.untyped == []  # the views
    for query in list_queries():
        engine.query(bind_query(query, {"app_id": "alpha"}))
    assert engine.untyped == []  # every named query
    # Trino divides integers as integers; DuckDB would not without the types.
    row = engine.query("SELECT 7 / 2 AS i, 7e0 / 2 AS d, max(\"count\") / max(\"count\" + 1) AS ratio "
                       "FROM event_counts WHERE app_id = 'alpha'").to_pylist()[0]
    assert row == {"i": 3, "d": 3.5, "ratio": 0}
