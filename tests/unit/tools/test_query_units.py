"""Pure parts of the query layer: binding, query headers, NDJSON reading, output formats."""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa
import pytest

from eventpipe.cli import build_parser
from chalicelib.lake.glue import bad_rows_table_input
from eventpipe.query.local_engine import (QueryError, TableDef, parse_ndjson, partition_matcher, translate,
                                           view_statement)
from eventpipe.query.service import (bind, bind_query, format_result, literal, parse_param, parse_query,
                                      placeholders)


def test_placeholders_skip_literals_identifiers_comments_and_double_colons():
    sql = """SELECT ':a', "x:b", a::int, :c -- :d
    /* :e */ FROM t WHERE x = :f AND y = 'it''s :g' AND z = :c"""
    assert placeholders(sql) == ["c", "f"]
    assert bind(sql, {"c": "1", "f": "'v'"}).endswith("AND z = 1")
    with pytest.raises(QueryError, match="unterminated string"):
        placeholders("SELECT 'oops")


def test_literals_are_typed_and_quoted():
    assert literal("it's") == "'it''s'"
    assert literal("5", "bigint") == "5"
    assert literal("2026-01-01T13:30:00+01:00", "timestamp") == "TIMESTAMP '2026-01-01 12:30:00.000'"
    assert literal("1767268800000", "timestamp") == "TIMESTAMP '2026-01-01 12:00:00.000'"
    assert literal("2026-01-01", "date") == "DATE '2026-01-01'"
    assert literal("0.5", "double") == "0.5e0"
    assert literal("TRUE", "boolean") == "TRUE"
    for value, kind in (("5 OR 1=1", "bigint"), ("nan", "double"), ("soon", "timestamp"), ("yes", "boolean"),
                        ("a\x00b", "string")):
        with pytest.raises(QueryError):
            literal(value, kind)


def test_query_header_and_defaults():
    query = parse_query("-- name: q\n-- description: first\n--   second\n-- param: app_id string\n"
                        "-- param: limit bigint default 3\nSELECT :app_id AS a LIMIT :limit\n")
    assert (query.name, query.description) == ("q", "first second")
    assert bind_query(query, {"app_id": "x"}).endswith("SELECT 'x' AS a LIMIT 3\n")
    with pytest.raises(QueryError, match="declared bigint"):
        bind_query(query, {"app_id": "x", "limit": "1"}, {"limit": "string"})
    assert parse_param("from:timestamp=2026-01-01T00:00:00Z") == ("from", "timestamp", "2026-01-01T00:00:00Z")
    assert parse_param("q=a=b") == ("q", None, "a=b")
    with pytest.raises(QueryError):
        parse_param("no-equals")


def test_integer_division_and_timestamps_translate_as_documented():
    # Trino's 7 / 2 is 3, DuckDB's is 3.5: the SQL uses floor(), which agrees on both for r >= 0.
    assert translate("SELECT 7 / 2") == "SELECT 7 / 2"
    assert "STRFTIME" in translate("SELECT date_format(TIMESTAMP '2026-01-01 00:00:00.000', '%Y-%m-%d')")
    assert view_statement("CREATE OR REPLACE VIEW v AS SELECT 1 AS x") == ("v", "SELECT 1 AS x")
    with pytest.raises(QueryError):
        view_statement("SELECT 1")


def test_ndjson_with_mapping_and_coercion():
    schema = pa.schema([("reason", pa.string()), ("line", pa.int64()),
                        ("event", pa.struct([("app_id", pa.string()), ("attributes", pa.string())])),
                        ("source_record", pa.struct([("sequence_number", pa.string())]))])
    data = (b'{"reason":"a","line":2,"source":{"sequence_number":"7"}}\n'
            b'{"reason":"b","event":{"app_id":"x","attributes":{"k":1}}}\n'
            b'not json\n')
    rows = parse_ndjson(data, schema, {"source_record": "source"}).to_pylist()
    assert rows == [{"reason": "a", "line": 2, "event": None, "source_record": {"sequence_number": "7"}},
                    {"reason": "b", "line": None, "event": {"app_id": "x", "attributes": '{"k":1}'},
                     "source_record": None},
                    {"reason": None, "line": None, "event": None, "source_record": None}]


def test_partition_values_come_from_the_location_template():
    table_input = bad_rows_table_input("lake")
    table = TableDef("bad_rows", "s3://lake/bad-rows/", pa.schema([("reason", pa.string())]),
                     pa.schema([("consumer", pa.string()), ("dt", pa.string())]),
                     location_template=table_input["Parameters"]["storage.location.template"])
    match = partition_matcher(table).match("lake/bad-rows/search/dt=2026-01-02/shardId-000000000000-7.ndjson")
    assert match.groupdict() == {"consumer": "search", "dt": "2026-01-02"}
    assert partition_matcher(table).match("lake/bad-rows/stray.ndjson") is None
    # Each app's files one folder below the partition (stream/badrows.py) belong to it, as on Athena.
    nested = partition_matcher(table).match("lake/bad-rows/ingest/dt=2026-01-02/app_id=alpha/segment-abc.ndjson")
    assert nested.groupdict() == {"consumer": "ingest", "dt": "2026-01-02"}


def test_formats():
    table = pa.table({"name": ["a", None], "n": [1, 22], "t": [datetime(2026, 1, 1), None]})
    assert format_result(table, "csv") == "name,n,t\na,1,2026-01-01 00:00:00\n,22,"
    text = format_result(table, "table").splitlines()
    assert text[0].split() == ["name", "n", "t"] and text[-1] == "(2 rows)" and "NULL" in text[3]
    assert '"n": 22' in format_result(table, "json")


def test_cli_parser_takes_aws_before_or_after_the_subcommand():
    parser = build_parser()
    assert parser.parse_args(["--aws", "query", "SELECT 1"]).aws is True
    assert parser.parse_args(["query", "--aws", "SELECT 1"]).aws is True
    args = parser.parse_args(["query", "--file", "top_users", "--param", "app_id=demo", "--param", "limit=3"])
    assert (args.aws, args.file, args.param, args.format) == (False, "top_users", ["app_id=demo", "limit=3"], "table")


def test_a_view_name_cannot_smuggle_sql():
    from unittest import mock

    from eventpipe.query.local_engine import LocalAthena, QueryError
    engine = LocalAthena.__new__(LocalAthena)  # no catalog needed to reach the name check
    engine.connection = mock.Mock()
    with pytest.raises(QueryError, match="view name"):
        engine.create_view('v" AS SELECT 1; CREATE TABLE pwn AS SELECT 42; CREATE VIEW "w', "SELECT 1")
    engine.connection.execute.assert_not_called()


@pytest.mark.parametrize("value, kind", [("9999999999999999999999999", "timestamp"),
                                         ("0001-01-01T00:00:00+01:00", "timestamp")])
def test_out_of_range_parameters_are_query_errors(value, kind):
    from eventpipe.query.local_engine import QueryError
    with pytest.raises(QueryError):
        literal(value, kind)


def test_unparseable_tokens_are_query_errors():
    from eventpipe.query.local_engine import QueryError, translate
    with pytest.raises(QueryError, match="cannot parse"):
        translate("SELECT x'zz'")


def test_the_committed_views_are_the_ones_generated_from_metrics_yaml():
    from pathlib import Path

    from chalicelib.processing import load_metrics
    from eventpipe.query.views import view_sql
    views = Path(__file__).resolve().parents[3] / "sql" / "views"
    metrics = load_metrics().metrics
    assert sorted(p.stem for p in views.glob("*.sql")) == sorted(m.name for m in metrics)
    for metric in metrics:
        assert (views / f"{metric.name}.sql").read_text() == view_sql(metric), \
            f"regenerate: .venv/bin/python -m eventpipe.query.views ({metric.name})"
