"""Every shipped SQL file (views and named queries) executed on DuckDB over a real lake on moto.

The lake is made by the real services (archive, aggregation, finalizer) from generated events of
two apps (see tests/factories/query_lake.py); each result is compared with a computation in plain Python over the
same events: counts and sums exactly, distinct users within 3 + 6.5 % of the truth (checks.py,
shared with the Trino suite test_trino.py; the lake fixture is in conftest.py).
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from eventpipe.query.local_engine import QueryError
from eventpipe.query.service import SQL_ROOT, QueryRefused, QueryService, list_queries, view_files
from tests.integration.query import checks
from tests.integration.query.checks import APPS, KEYS


def rounded(rows: list[dict]) -> list[dict]:
    """Float sums depend on the order DuckDB's threads add them in: compare them to 9 digits."""
    return [{k: round(v, 9) if isinstance(v, float) else v for k, v in row.items()} for row in rows]


def run(service, name, app, **params):
    return service.run(file=name, params={"app_id": app, **params}).table.to_pylist()


# ------------------------------------------------------------------ views
def view_rows(service, view, app):
    return service.run(f"SELECT * FROM {view} WHERE app_id = '{app}'").table.to_pylist()


@pytest.mark.parametrize("app", APPS)
def test_event_counts_view_applies_the_consistency_rule(lake, app):
    _, data, service = lake
    rows = view_rows(service, "event_counts", app)
    checks.event_counts_view(rows, data, app)
    stages = service.run(f"SELECT stage, sum(event_count) AS n FROM event_counts_rollup WHERE app_id = '{app}' "
                         f"GROUP BY stage").table.to_pylist()
    checks.stages_overlap(stages, rows)


@pytest.mark.parametrize("app", APPS)
def test_class_activity_view(lake, app):
    _, data, service = lake
    table = service.run(f"SELECT * FROM class_activity WHERE app_id = '{app}'").table
    assert {f.name: str(f.type) for f in table.schema if f.name in ("count", "users", "value_n", "late_count")} \
        == dict.fromkeys(("count", "value_n", "users", "late_count"), "int64")  # bigint, as on Athena
    checks.class_activity_view(table.to_pylist(), data, app)


@pytest.mark.parametrize("app", APPS)
def test_region_activity_view(lake, app):
    _, data, service = lake
    checks.region_activity_view(view_rows(service, "region_activity", app), data, app)


@pytest.mark.parametrize("app", APPS)
def test_active_users_5m_view(lake, app):
    _, data, service = lake
    checks.active_users_5m_view(view_rows(service, "active_users_5m", app), data, app)


# ------------------------------------------------------------------ named queries
def test_every_shipped_sql_file_is_tested_here():
    assert {q.name for q in list_queries()} == set(checks.QUERIES) | set(checks.INSIGHT_QUERIES)
    assert set(checks.QUERIES) == set(checks.QUERY_CHECKS)
    assert {p.stem for p in view_files()} == set(checks.VIEWS) == set(checks.VIEW_CHECKS)
    for query in list_queries():
        assert query.description and any(p.name == "app_id" for p in query.params), query.name


@pytest.mark.parametrize("app", APPS)
def test_events_per_minute(lake, app):
    _, data, service = lake
    checks.events_per_minute(lambda *a, **k: run(service, *a, **k), data, app)


@pytest.mark.parametrize("app", APPS)
def test_daily_active_users_from_raw_deduplicated(lake, app):
    _, data, service = lake
    checks.daily_active_users(lambda *a, **k: run(service, *a, **k), data, app)


@pytest.mark.parametrize("app", APPS)
def test_top_users_from_raw_deduplicated(lake, app):
    _, data, service = lake
    checks.top_users(lambda *a, **k: run(service, *a, **k), data, app)


@pytest.mark.parametrize("app", APPS)
def test_class_activity_query_merges_users_across_windows(lake, app):
    _, data, service = lake
    checks.class_activity(lambda *a, **k: run(service, *a, **k), data, app)


@pytest.mark.parametrize("app", APPS)
def test_region_heatmap(lake, app):
    _, data, service = lake
    checks.region_heatmap(lambda *a, **k: run(service, *a, **k), data, app)


@pytest.mark.parametrize("app", APPS)
def test_late_events(lake, app):
    _, data, service = lake
    checks.late_events(lambda *a, **k: run(service, *a, **k), data, app)


def test_bad_rows_by_reason_only_shows_the_apps_own_rows(lake):
    _, data, service = lake
    for app in APPS:
        checks.bad_rows_by_reason(lambda *a, **k: run(service, *a, **k), data, app)
    # The poison record belongs to no app: operators see it in the table itself.
    everything = service.run("SELECT consumer, reason, detail, record.line, record_data_b64 FROM bad_rows "
                             "WHERE event IS NULL").table
    assert sorted(everything["consumer"].to_pylist()) == ["aggregate", "archive"]
    assert set(everything["reason"].to_pylist()) == {"undecodable_record"}
    assert all("format" in detail for detail in everything["detail"].to_pylist())


@pytest.mark.parametrize("app", APPS)
def test_active_users(lake, app):
    _, data, service = lake
    checks.active_users(lambda *a, **k: run(service, *a, **k), data, app)


@pytest.mark.parametrize("app", APPS)
def test_sessions_query_over_the_sessions_table(lake, app):
    """The sessions named query: session metrics of the finalized hour, as plain Python counts them."""
    _, data, service = lake
    checks.sessions(lambda *a, **k: run(service, *a, **k), data, app)


# ------------------------------------------------------------------ keys and isolation
def test_a_key_queries_its_own_app_only(lake):
    _, data, service = lake
    for query in list_queries():
        required = checks.REQUIRED_PARAMS.get(query.name, {})
        as_beta = service.run(file=query.name, api_key=KEYS["beta"], params=required)
        assert as_beta.app_id == "beta" and "'alpha'" not in as_beta.sql
        assert rounded(as_beta.table.to_pylist()) == rounded(run(service, query.name, "beta", **required)), query.name
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
        engine.query(bind_query(query, {"app_id": "alpha", **checks.REQUIRED_PARAMS.get(query.name, {})}))
    assert engine.untyped == []  # every named query
    # Trino divides integers as integers; DuckDB would not without the types.
    row = engine.query("SELECT 7 / 2 AS i, 7e0 / 2 AS d, max(\"count\") / max(\"count\" + 1) AS ratio "
                       "FROM event_counts WHERE app_id = 'alpha'").to_pylist()[0]
    assert row == {"i": 3, "d": 3.5, "ratio": 0}


@pytest.mark.parametrize("app", APPS)
def test_match_duration_view_merges_the_sketches_as_python_does(lake, app):
    """The SQL merge of the rows the rule picks equals the one-pass sketch of their values, bucket for bucket."""
    import pyarrow as pa

    from chalicelib.processing import ddsketch
    from tests.factories.query_lake import view_truth
    _, data, service = lake
    table = service.run(f"SELECT * FROM match_duration WHERE app_id = '{app}'").table
    assert {f.name: str(f.type) for f in table.schema if f.name.startswith("duration_p")} == \
        dict.fromkeys(("duration_p50", "duration_p90", "duration_p99"), "double")
    truth = view_truth(data, "match_duration", app)
    for row in table.to_pylist():
        values = truth[(checks.ms(row["window_start"]), row["character_class"])].values
        one_pass = ddsketch.sketch_of(values)
        assert row["duration_sketch"] == ddsketch.to_lists(pa.array([one_pass], pa.binary())).to_pylist()[0]
        for percent in (50, 90, 99):
            python = ddsketch.quantile_of(one_pass, percent, 100)
            assert row[f"duration_p{percent}"] == pytest.approx(python, rel=1e-12)


def test_views_give_the_python_readers_exact_distinct_counts(lake):
    clients, data, service = lake
    views = ("event_counts", "active_users_5m")
    checks.gamma_exact_distinct({v: view_rows(service, v, "gamma") for v in views},
                                {v: checks.gamma_python_rows(clients, v) for v in views}, data)
