"""Every shipped view and named query executed unmodified on Trino, the engine behind Athena v3.

The lake is the one of the DuckDB suite (conftest.py: written by the real handlers on moto); its
Glue tables are registered in Trino from their definitions (eventpipe/query/trino_engine.py) over
a mirror of the S3 objects. Each result is checked against the plain-Python truth (checks.py) and
against DuckDB's answer to the same bound SQL: equal, row for row.

Needs a Trino node: scripts/test.sh starts one (scripts/trino-node.sh) and exports TRINO_URL when a
Java 24+ is installed; without TRINO_URL this module is skipped.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone

import pyarrow as pa
import pytest

from chalicelib.lake.glue import ensure_bad_rows_table
from eventpipe.query.local_engine import LocalAthena, s3_filesystem
from eventpipe.query.service import QueryRefused, QueryService, view_files
from eventpipe.query.trino_client import TrinoClient, TrinoError
from eventpipe.query.trino_engine import TrinoAthena, glue_tables, quote, trino_type
from chalicelib.lake.badrows import S3BadRowsSink
from chalicelib.stream.badrows import invalid_line, rejected_event, undecodable_record
from chalicelib.stream.records import RecordRef
from tests.integration.query import checks
from tests.integration.query.checks import APPS, KEYS, QUERIES, VIEWS
from tests.integration.query.dialect_probes import KNOWN_DIFFERENCES, PROBES

TRINO_URL = os.environ.get("TRINO_URL")
pytestmark = pytest.mark.skipif(not TRINO_URL, reason="TRINO_URL is not set: scripts/test.sh starts a Trino "
                                                      "node (scripts/trino-node.sh) when Java 24+ is installed")
#: The lake's days. Queries filtered on them read a few hundred projected partitions; the named
#: queries' declared defaults (2024-01-01 to 2100-01-01) project every hourly partition since
#: 2024-01-01 (~51,000 per rollup table, a few seconds per scan on Trino): the suite runs one of
#: them that way, to keep its time short.
DATA_DAYS = {"from": "2025-12-24T00:00:00Z", "to": "2026-01-02T00:00:00Z"}


def comparable(value):
    """A result value as both engines must agree on it (UTC instants naive, floats to 9 digits)."""
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).replace(tzinfo=None) if value.tzinfo else value
    if isinstance(value, float):
        return round(value, 9)
    if isinstance(value, list):
        return [comparable(v) for v in value]
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items()}
    return value


def rows_of(table) -> list[dict]:
    return [comparable(row) for row in table.to_pylist()]


@pytest.fixture(scope="module")
def trino(lake, tmp_path_factory):
    """A QueryService whose Trino engine holds the lake's catalog (views created)."""
    clients, _, _ = lake
    service = QueryService(clients, trino_url=TRINO_URL, trino_root=tmp_path_factory.mktemp("trino-lake"),
                           trino_catalog=f"eventpipe_test_{os.getpid()}")
    engine = service.trino_engine()
    yield service, engine
    engine.drop()


def duckdb_rows(lake, sql: str) -> list[dict]:
    return rows_of(lake[2].local_engine().query(sql))


# ------------------------------------------------------------------ the catalog
def test_every_glue_table_is_registered_with_its_columns_partitions_and_projection(lake, trino):
    clients, _, _ = lake
    _, engine = trino
    definitions = glue_tables(clients.glue, clients.settings.glue_database)
    from chalicelib.processing import load_metrics
    assert sorted(engine.tables) == sorted(t["Name"] for t in definitions)
    # events, bad_rows, sessions, persons, one rollup per metric
    assert len(definitions) == 4 + len(load_metrics().metrics)
    [iceberg] = [t for t in definitions if t["Parameters"].get("table_type") == "ICEBERG"]
    assert iceberg["Name"] == "events"
    for table in definitions:
        if table is iceberg:
            continue
        described = engine.query(f"DESCRIBE {quote(table['Name'])}").to_pylist()
        columns = table["StorageDescriptor"]["Columns"] + table["PartitionKeys"]
        assert [(c["Column"], c["Type"], c["Extra"]) for c in described] == [
            (c["Name"], trino_type(c["Type"]).replace('"', ""), "partition key" if c in table["PartitionKeys"] else "")
            for c in columns], table["Name"]
        # Trino keeps every Glue table and SerDe parameter (projection.* included) as table properties.
        stored = engine.query(f'SELECT * FROM {quote(table["Name"] + "$properties")}').to_pylist()[0]
        expected = {**table["Parameters"], **table["StorageDescriptor"]["SerdeInfo"].get("Parameters", {})}
        for key, value in expected.items():
            value = value.replace("s3://", "local:///lake/")
            assert stored.get(key.lower(), "").lower() == value.lower(), (table["Name"], key)


def test_the_raw_events_are_the_iceberg_table_read_from_glue_and_s3(lake, trino):
    """``events`` (Iceberg in Glue) is redirected to the Iceberg catalog, which reads Glue and S3 (moto)
    itself: its columns are the Iceberg schema's, partitioned by identity on app_id, dt, hour."""
    clients, _, _ = lake
    _, engine = trino
    described = {r["Column"]: r["Type"] for r in engine.query("DESCRIBE events").to_pylist()}
    from chalicelib.lake.raw_table import arrow_table_schema
    expected = {f.name: "timestamp(6) with time zone" if f.type == pa.timestamp("us", tz="UTC") else "varchar"
                for f in arrow_table_schema()}
    assert described == expected
    created = engine.query("SHOW CREATE TABLE events").to_pylist()[0]["Create Table"]
    assert created.startswith(f"CREATE TABLE {engine.catalog}_iceberg.{clients.settings.glue_database}.events")
    assert "partitioning = ARRAY['app_id','dt','hour']" in created
    assert f"location = 's3://{clients.settings.bucket}/tables/events'" in created
    files = engine.query('SELECT file_path FROM "events$files"').column("file_path").to_pylist()
    assert files and all(f.startswith(f"s3://{clients.settings.bucket}/tables/events/data/") for f in files)


def test_trino_reading_the_glue_catalog_itself_makes_the_same_tables(lake, trino):
    """Trino's own Glue metastore over moto (what Athena reads) gives the translated DDL back, and
    redirects the Iceberg ``events`` to the Iceberg connector, as Athena reads both from one database."""
    clients, data, _ = lake
    _, engine = trino
    endpoint = clients.settings.aws_endpoint_url
    glue = f"glue_{os.getpid()}"
    aws = {"hive.metastore": "glue", "hive.metastore.glue.region": clients.settings.region,
           "hive.metastore.glue.endpoint-url": endpoint, "hive.metastore.glue.aws-access-key": "testing",
           "hive.metastore.glue.aws-secret-key": "testing", "fs.native-s3.enabled": "true", "s3.endpoint": endpoint,
           "s3.region": clients.settings.region, "s3.path-style-access": "true", "s3.aws-access-key": "testing",
           "s3.aws-secret-key": "testing"}
    aws["hive.iceberg-catalog-name"] = engine.iceberg_catalog
    engine.execute(f"CREATE CATALOG {glue} USING hive WITH ("
                   + ", ".join(f'"{k}" = \'{v}\'' for k, v in aws.items()) + ")")
    try:
        for name in engine.tables:
            if name == "events":
                continue  # Iceberg: the same table (the Glue catalog's) either way, see the read below
            ours = engine.query(f"SHOW CREATE TABLE {quote(name)}").to_pylist()[0]["Create Table"]
            theirs = engine.query(f"SHOW CREATE TABLE {glue}.eventpipe.{quote(name)}").to_pylist()[0]["Create Table"]
            assert ours.replace(engine.catalog + ".", "").replace("local:///lake/", "s3://") == \
                theirs.replace(glue + ".", ""), name
        # One hour of one app of the Iceberg table, through the Glue Hive catalog's redirection.
        sql = ("SELECT event_id, event_type, event_time, received_at, user_id FROM {}events "
               "WHERE app_id = 'alpha' AND dt = '2026-01-01' AND hour = '12' ORDER BY event_id, received_at")
        direct = rows_of(engine.query(sql.format(f"{glue}.eventpipe.")))
        assert direct == rows_of(engine.query(sql.format(""))) and len(direct) > 100
    finally:
        engine.execute(f"DROP CATALOG {glue}")


# ------------------------------------------------------------------ views
def assert_view(lake, engine, view: str, where: str) -> None:
    _, data, _ = lake
    sql = f"SELECT * FROM {view} WHERE app_id IN ('alpha', 'beta'){where}"
    rows = rows_of(engine.query(sql))
    for app in APPS:
        checks.VIEW_CHECKS[view]([r for r in rows if r["app_id"] == app], data, app)
    key = lambda row: (row["app_id"], row["window_start"], repr(sorted(row.items())))  # noqa: E731
    assert sorted(rows, key=key) == sorted(duckdb_rows(lake, sql), key=key)


def test_a_first_select_star_from_a_view_answers_the_events(lake, trino):
    """No dt filter: Trino projects every hourly partition since 2024-01-01 (~51,000, twice)."""
    assert_view(lake, trino[1], "event_counts", "")


@pytest.mark.parametrize("view", VIEWS)
def test_view_answers_the_events_on_trino_and_equals_duckdb(lake, trino, view):
    assert_view(lake, trino[1], view, f" AND dt BETWEEN '{DATA_DAYS['from'][:10]}' AND '{DATA_DAYS['to'][:10]}'")


def test_views_give_the_python_readers_exact_distinct_counts_on_trino(lake, trino):
    clients, data, _ = lake
    views = ("event_counts", "active_users_5m")
    sql = "SELECT * FROM {} WHERE app_id = 'gamma' AND dt = '2026-01-01'"
    rows = {v: rows_of(trino[1].query(sql.format(v))) for v in views}
    checks.gamma_exact_distinct(rows, {v: checks.gamma_python_rows(clients, v) for v in views}, data)
    for view in views:
        key = lambda row: repr(sorted(row.items()))  # noqa: E731
        assert sorted(rows[view], key=key) == sorted(duckdb_rows(lake, sql.format(view)), key=key)


def test_views_keep_athena_column_types(trino):
    _, engine = trino
    described = {r["Column"]: r["Type"] for r in engine.query("DESCRIBE class_activity").to_pylist()}
    assert described["window_start"] == described["window_end"] == "timestamp(3)"
    assert {described[c] for c in ("count", "users", "late_count", "value_n")} == {"bigint"}
    assert described["users_registers"] == "array(integer)" and described["value_avg"] == "double"


def test_rollup_stages_overlap_on_trino(lake, trino):
    _, engine = trino
    for app in APPS:
        stages = engine.query(f"SELECT stage, sum(event_count) AS n FROM event_counts_rollup WHERE app_id = '{app}' "
                              f"AND dt = '2026-01-01' GROUP BY stage").to_pylist()
        view = engine.query(f"SELECT \"count\" FROM event_counts WHERE app_id = '{app}' AND dt = '2026-01-01'")
        checks.stages_overlap(stages, view.to_pylist())


@pytest.mark.parametrize("view", VIEWS)
def test_a_dt_filter_on_a_view_reaches_the_rollup_partitions(trino, view):
    """The views keep dt in the window's PARTITION BY so that Trino prunes the partitions on it."""
    import orjson
    _, engine = trino
    plan = engine.query(f"EXPLAIN (TYPE IO, FORMAT JSON) SELECT * FROM {view} "
                        f"WHERE app_id = 'alpha' AND dt = '2026-01-01'").column(0).to_pylist()[0]
    [scanned] = orjson.loads(plan)["inputTableColumnInfos"]
    assert scanned["table"]["schemaTable"]["table"] == f"{view}_rollup"
    constraints = {c["columnName"]: c["domain"]["ranges"] for c in scanned["constraint"]["columnConstraints"]}
    assert [(r["low"]["value"], r["high"]["value"]) for r in constraints["dt"]] == [("2026-01-01", "2026-01-01")]


# ------------------------------------------------------------------ named queries
@pytest.mark.parametrize("app", APPS)
@pytest.mark.parametrize("name", QUERIES)
def test_named_query_answers_the_events_on_trino_and_equals_duckdb(lake, trino, name, app):
    _, data, _ = lake
    service, _ = trino
    runs = []

    def run(query, app_id, **params):
        result = service.run(file=query, params={"app_id": app_id, **DATA_DAYS, **params}, engine="trino")
        assert result.engine == "trino"
        runs.append((result.sql, rows_of(result.table)))
        return result.table.to_pylist()

    checks.QUERY_CHECKS[name](run, data, app)
    assert runs
    for sql, rows in runs:  # the very text Trino ran, on DuckDB
        assert rows == duckdb_rows(lake, sql), sql


def test_a_named_query_with_its_declared_defaults(lake, trino):
    """2024-01-01 to 2100-01-01: every hourly partition of active_users_5m_rollup since 2024 (twice).

    late_events (four views, ~200,000 projected partitions) takes 15-90 s this way on this
    machine, which is why the suite runs the others over the lake's days.
    """
    _, data, _ = lake
    service, _ = trino
    result = service.run(file="active_users", params={"app_id": "alpha"}, engine="trino")
    assert "TIMESTAMP '2024-01-01 00:00:00.000'" in result.sql
    checks.active_users(lambda *_, **__: result.table.to_pylist(), data, "alpha")
    assert rows_of(result.table) == duckdb_rows(lake, result.sql)


def test_a_key_runs_only_named_queries_on_trino(lake, trino):
    service, _ = trino
    result = service.run(file="bad_rows_by_reason", api_key=KEYS["beta"], params=DATA_DAYS, engine="trino")
    assert result.app_id == "beta" and {r["bad_rows"] for r in result.table.to_pylist()} == {3}
    with pytest.raises(QueryRefused, match="only the named queries"):
        service.run("SELECT DISTINCT app_id FROM events WHERE app_id = 'alpha'", api_key=KEYS["beta"], engine="trino")


def test_trino_errors_are_query_errors(trino):
    _, engine = trino
    with pytest.raises(TrinoError, match="SYNTAX_ERROR|mismatched input"):
        engine.query("SELEC 1")
    with pytest.raises(TrinoError, match="no_such_column|cannot be resolved"):
        engine.query("SELECT no_such_column FROM events")


# ------------------------------------------------------------------ JSON bad rows (one schema for every consumer)
def test_bad_rows_read_the_same_on_both_engines(lake, tmp_path):
    """The JSON bad rows (nested record and event structs, consumer partition) read alike on Trino and DuckDB."""
    clients, _, _ = lake
    bucket, database = "eventpipe-search-lake", "eventpipe_search"
    clients.s3.create_bucket(Bucket=bucket)
    clients.glue.create_database(DatabaseInput={"Name": database})
    ensure_bad_rows_table(clients.glue, database, bucket)
    ref = RecordRef("4200", "shardId-000000000000", "pk-1", "arn:aws:kinesis:us-east-1:123456789012:stream/s",
                    arrival_ms=1_767_268_800_000)
    event = {"event_id": "e-1", "event_type": "level_up", "event_time": 1_767_268_800_500, "app_id": "alpha",
             "user_id": "u-1", "received_at": 1_767_268_801_000, "attributes": "{}"}
    S3BadRowsSink(clients.s3, bucket, "search").write([
        rejected_event(ref, 3, event, "mapper_parsing_exception"),
        invalid_line(ref, 4, b"{not json", "not JSON"),
        undecodable_record(ref, b"\x00\x01", "unknown record format")])
    sql = ("SELECT consumer, dt, reason, detail, record, event.app_id AS app, raw_line, record_data_b64 "
           "FROM bad_rows WHERE dt BETWEEN '2026-01-01' AND '2026-01-02' ORDER BY reason")
    engine = TrinoAthena(TrinoClient(TRINO_URL), clients.glue, clients.s3, database, tmp_path, f"search_{os.getpid()}")
    try:
        rows = rows_of(engine.query(sql))
    finally:
        engine.drop()
    filesystem = s3_filesystem(clients.settings.aws_endpoint_url, clients.settings.region)
    assert rows == rows_of(LocalAthena(clients.glue, database, filesystem).query(sql))  # no views here
    assert [(r["consumer"], r["reason"], r["record"]["line"], r["record"]["sequence_number"], r["app"])
            for r in rows] == [("search", "invalid_event", 4, "4200", None),
                               ("search", "rejected_by_index", 3, "4200", "alpha"),
                               ("search", "undecodable_record", None, "4200", None)]


# ------------------------------------------------------------------ the command line
def test_cli_query_engine_trino(lake, monkeypatch, capsys, tmp_path):
    import orjson

    from eventpipe import cli
    clients, data, _ = lake
    monkeypatch.setenv("EVENTPIPE_AWS_ENDPOINT_URL", clients.settings.aws_endpoint_url)
    monkeypatch.setenv("TRINO_URL", TRINO_URL)
    monkeypatch.setenv("EVENTPIPE_CACHE", str(tmp_path))
    monkeypatch.setenv("EVENTPIPE_TRINO_CATALOG", f"cli_{os.getpid()}")
    try:
        assert cli.main(["query", "--engine", "trino", "--file", "daily_active_users", "--param", "app_id=alpha",
                         "--format", "json"]) == 0
        rows = orjson.loads(capsys.readouterr().out)
        assert [r["event_date"] for r in rows] == ["2025-12-24", "2026-01-01"]
        assert (tmp_path / "trino-lake" / f"cli_{os.getpid()}" / "lake" / clients.settings.bucket).is_dir()
        assert cli.main(["query", "--aws", "--engine", "trino", "SELECT 1"]) == 2
        assert "not on trino" in capsys.readouterr().err
    finally:
        TrinoClient(TRINO_URL).execute(f"DROP CATALOG IF EXISTS cli_{os.getpid()}")
    monkeypatch.setenv("TRINO_URL", "http://127.0.0.1:9")
    assert cli.main(["query", "--engine", "trino", "SELECT 1"]) == 2
    assert "no Trino at http://127.0.0.1:9" in capsys.readouterr().err


def test_every_view_file_is_created(trino):
    _, engine = trino
    assert engine.views == [p.stem for p in view_files()] and len(engine.views) == len(VIEWS)


# ------------------------------------------------------------------ the dialects, expression by expression
def probe(engine, expression: str):
    try:
        return comparable(engine.query(f"SELECT {expression} AS v").to_pylist()[0]["v"])
    except Exception as exc:  # noqa: BLE001 - an error is an answer too
        return f"error: {type(exc).__name__}"


def test_expressions_answer_the_same_on_both_engines(lake, trino):
    duck = lake[2].local_engine()
    differ = [(e, probe(trino[1], e), probe(duck, e)) for e in PROBES if probe(trino[1], e) != probe(duck, e)]
    assert differ == []


def test_the_documented_differences_still_differ(lake, trino):
    duck = lake[2].local_engine()
    assert [e for e in KNOWN_DIFFERENCES if probe(trino[1], e) == probe(duck, e)] == []


# ------------------------------------------------------------------ HyperLogLog: the same formula on both
@pytest.mark.parametrize("n", [50, 3_000, 11_000, 40_000])
def test_hll_estimate_is_identical_on_both_engines_and_near_the_python_readers(lake, trino, n):
    """The views' estimator (classic + linear counting) on a p=12 sketch of n users, on both engines.

    Python readers use Ertl's estimator (chalicelib/processing/hll.py): within 2.5 % of it (the
    classic estimator's bias peaks near its switch from linear counting, 2.5 m = 10,240).
    """
    import numpy as np
    import pyarrow as pa

    from chalicelib.processing import hll
    from chalicelib.processing.measures.distinct import HLL_ESTIMATE
    hashes, valid = hll.hash_strings(pa.array([f"user-{i}" for i in range(n)]))
    register, rank = hll.registers(hashes[valid])
    group, register, rank = hll.reduce_registers(np.zeros(len(register), np.int64), register, rank, 1)
    ertl = float(hll.estimate(group, rank, 1)[0])
    values = ", ".join(str(int(g) * 256 + int(k)) for g, k in zip(register, rank))
    sql = f"""WITH registers AS (
    SELECT CAST(floor(r / 256) AS integer) AS hll_register, max(r % 256) AS hll_rank
    FROM UNNEST(ARRAY[{values}]) AS u (r)
    GROUP BY CAST(floor(r / 256) AS integer)),
sketch AS (
    SELECT 4096 - count(*) AS empty, 0.7213e0 / (1e0 + 1.079e0 / 4096) * 4096 * 4096
               / (4096 - count(*) + sum(power(2e0, -hll_rank))) AS raw
    FROM registers)
SELECT {HLL_ESTIMATE.format(raw="raw", empty="empty")} AS users FROM sketch"""
    on_trino = trino[1].query(sql).to_pylist()[0]["users"]
    assert on_trino == lake[2].local_engine().query(sql).to_pylist()[0]["users"]
    assert abs(on_trino - ertl) <= 1 + 0.025 * ertl, (on_trino, ertl)
    assert checks.close(on_trino, n)
