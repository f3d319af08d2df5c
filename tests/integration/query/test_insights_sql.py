"""The funnel and retention SQL (chalicelib/reads/insight_sql.py; sql/queries/funnel.sql, retention.sql)
against a pandas truth (tests/factories/insights.py), on DuckDB and unmodified on Trino.

Own lake: a moto server whose raw Iceberg table holds two apps with known journeys, duplicates
(some with shifted event times) and late events. The named queries run through ``eventpipe query``'s
service (DuckDB: the local engine; Trino: the real node, skipped without TRINO_URL); the API's own
text (where filters, breakdown) is run on both too, and every answer equals the truth exactly.
"""

from __future__ import annotations

import os
import pytest

from chalicelib.reads import insight_sql
from chalicelib.runtime.clients import Clients
from chalicelib.runtime.settings import Settings
from eventpipe.local.bootstrap import bootstrap
from eventpipe.query.named import SQL_ROOT
from eventpipe.query.service import QueryService
from tests.factories import insights as data
from tests.factories.lake import raw_table_of
from tests.conftest import fresh_moto_server

TRINO_URL = os.environ.get("TRINO_URL")
RANGE = {"from": data.FROM.isoformat(), "to": data.TO.isoformat()}
FROM_MS, TO_MS = data._ms(data.FROM), data._ms(data.TO)
WITHIN_S = 3600


@pytest.fixture(scope="module")
def insights_lake():
    """(QueryService, the raw rows as a DataFrame) over a moto server holding the generated raw table."""
    with fresh_moto_server() as url:
        clients = Clients(Settings(aws_endpoint_url=url))
        bootstrap(clients)
        frame = data.generate()
        data.write_raw_table(raw_table_of(clients), frame)
        yield QueryService(clients), frame


def funnel_rows_as_truth(rows, steps: int) -> dict:
    """Query rows -> {breakdown value or "*": [(users, median_ms)]} (absent steps: 0 users)."""
    out = {}
    for r in rows:
        key = "*" if r["by_value"] == 0 else r["breakdown"]
        table = out.setdefault(key, [(0, None)] * steps)
        table[r["step"] - 1] = (r["users"], r["median_ms"])
    return out


def retention_rows_as_truth(rows, periods: int) -> list:
    cohorts = {}
    for r in rows:
        cohorts.setdefault(str(r["period_start"]), [0] * periods)[r["period_number"]] = r["users"]
    return sorted(cohorts.items())


def test_the_named_query_files_are_the_generators_text():
    """sql/queries/funnel.sql and retention.sql are what chalicelib/reads/insight_sql.py generates (one definition)."""
    for name, text in insight_sql.named_query_files().items():
        assert (SQL_ROOT / "queries" / f"{name}.sql").read_text() == text, name


def run_named(service, engine, name, app, **params):
    result = service.run(file=name, params={"app_id": app, **RANGE, **params}, engine=engine)
    return result.sql, result.table.to_pylist()


def check_funnel(service, engine, frame):
    steps = {f"step{k}": s for k, s in enumerate(data.STEPS, 1)}
    for app in data.APPS:
        sql, rows = run_named(service, engine, "funnel", app, within_seconds=WITHIN_S, **steps)
        truth = data.funnel_truth(frame, app, data.STEPS, WITHIN_S * 1000, FROM_MS, TO_MS)
        assert funnel_rows_as_truth(rows, 4) == truth, app
        assert app == "other" or 0 < truth["*"][3][0] < truth["*"][0][0]  # conversions and drop-offs
    return sql


def check_retention(service, engine, frame):
    for period, periods in (("day", 10), ("week", 3)):
        for app in data.APPS:
            _, rows = run_named(service, engine, "retention", app, start_event="view", return_event="cart",
                                period=period, periods=periods)
            truth = data.retention_truth(frame, app, "view", "cart", period, periods, FROM_MS, TO_MS)
            assert retention_rows_as_truth(rows, periods) == truth, (app, period)
            assert app == "other" or any(sum(returned[1:]) for _, returned in truth)


API_WHERES = [{}, {"attributes.plan": "pro"}, {}]
API_STEPS = ["view", "cart", "buy"]


def api_funnel_sql(app: str) -> str:
    values = {"app_id": (app, "string"), "from": (FROM_MS, "timestamp"), "to": (TO_MS, "timestamp"),
              "within_seconds": (2 * WITHIN_S, "bigint"), "w2_0": ("pro", "string")}
    values.update({f"step{k}": (s, "string") for k, s in enumerate(API_STEPS, 1)})
    return insight_sql.bind(insight_sql.funnel_sql(API_WHERES, "attributes.source"), values)


def check_api_funnel_text(query, frame):
    truth = data.funnel_truth(frame, "shop", API_STEPS, 2 * WITHIN_S * 1000, FROM_MS, TO_MS,
                              API_WHERES, "attributes.source")
    assert set(truth) == {"*", "ads", "mail", "seo"}
    assert funnel_rows_as_truth(query(api_funnel_sql("shop")), 3) == truth


def test_funnel_named_query_on_duckdb_equals_the_truth(insights_lake):
    """Users per step and the lower median ms equal pandas' exactly; the other app's same users do not leak."""
    service, frame = insights_lake
    check_funnel(service, "duckdb", frame)


def test_retention_named_query_on_duckdb_equals_the_truth(insights_lake):
    """Cohorts by UTC day and ISO week, returns in each later period (after `to` too), equal pandas'."""
    service, frame = insights_lake
    check_retention(service, "duckdb", frame)


def test_the_api_funnel_text_with_where_and_breakdown_on_duckdb(insights_lake):
    """The API's SQL (a where equality on step 2, a breakdown by the start's attribute) equals the truth."""
    service, frame = insights_lake
    check_api_funnel_text(lambda sql: service.local_engine().query(sql).to_pylist(), frame)


def test_without_deduplication_the_answer_would_differ(insights_lake):
    """The data makes the duplicate rule matter: counting every copy changes the truth (so the tests can fail)."""
    _, frame = insights_lake
    every_copy = frame.assign(event_id=[f"{e}-{i}" for i, e in enumerate(frame["event_id"])])
    assert (data.funnel_truth(every_copy, "shop", data.STEPS, WITHIN_S * 1000, FROM_MS, TO_MS)
            != data.funnel_truth(frame, "shop", data.STEPS, WITHIN_S * 1000, FROM_MS, TO_MS))
    assert (data.retention_truth(every_copy, "shop", "view", "cart", "day", 10, FROM_MS, TO_MS)
            != data.retention_truth(frame, "shop", "view", "cart", "day", 10, FROM_MS, TO_MS))


# ------------------------------------------------------------------ Trino
trino_only = pytest.mark.skipif(not TRINO_URL, reason="TRINO_URL is not set: scripts/test.sh starts a Trino node")


@pytest.fixture(scope="module")
def trino_service(insights_lake, tmp_path_factory):
    service, _ = insights_lake
    root = tmp_path_factory.mktemp("trino-insights")
    # This lake has only raw events: Trino wants the external location of every other table to exist.
    glue, database = service.clients.glue, service.clients.settings.glue_database
    for table in glue.get_tables(DatabaseName=database)["TableList"]:
        location = table.get("StorageDescriptor", {}).get("Location", "")
        if location.startswith("s3://"):
            (root / "lake" / location.removeprefix("s3://")).mkdir(parents=True, exist_ok=True)
    trino = QueryService(service.clients, trino_url=TRINO_URL, trino_root=root,
                         trino_catalog=f"eventpipe_insights_{os.getpid()}")
    engine = trino.trino_engine()
    yield trino
    engine.drop()


@trino_only
def test_funnel_named_query_unmodified_on_trino_equals_the_truth_and_duckdb(insights_lake, trino_service):
    """The very text Trino (Athena's engine) ran answers the truth, and DuckDB answers the same rows."""
    service, frame = insights_lake
    sql = check_funnel(trino_service, "trino", frame)
    assert trino_service.trino_engine().query(sql).to_pylist() == service.local_engine().query(sql).to_pylist()


@trino_only
def test_retention_named_query_unmodified_on_trino_equals_the_truth(insights_lake, trino_service):
    _, frame = insights_lake
    check_retention(trino_service, "trino", frame)


@trino_only
def test_the_api_funnel_text_on_trino(insights_lake, trino_service):
    _, frame = insights_lake
    check_api_funnel_text(lambda sql: trino_service.trino_engine().query(sql).to_pylist(), frame)
