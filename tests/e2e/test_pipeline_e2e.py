"""100,000 generated events through the real local stack, checked against DuckDB over the NDJSON."""

from __future__ import annotations

import time

import duckdb
import pytest
import requests

from chalicelib.runtime.clients import Clients
from chalicelib.ingest.validation import ms_to_iso
from eventpipe.generate import generate_events, write_ndjson
from chalicelib.lake import layout
from chalicelib.lake.s3io import list_keys, read_many
from eventpipe.local.stack import Stack, StackConfig, free_port
from chalicelib.lake.sql_sketch import strip_register_columns
from chalicelib.processing import finalize, load_metrics, merge_partials
from eventpipe.sender import send_file
from tests.conftest import ROOT
from tests.factories.lake import raw_table_of

EVENTS = 100_000


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    config = StackConfig(moto_port=free_port(), http_port=free_port(), search_port=free_port(),
                         project_dir=str(ROOT), quiet=True,
                         extra_env={"EVENTPIPE_SCHEDULE_SECONDS": "3", "EVENTPIPE_FINALIZE_GRACE_S": "0",
                                    "EVENTPIPE_FINALIZE_CLOSE_DELAY_S": "0"})
    path = tmp_path_factory.mktemp("data") / "events.ndjson"
    start_ms = (int(time.time()) // 3600 - 3) * 3_600_000  # windows long closed, still within retention
    write_ndjson(str(path), generate_events(EVENTS, seed=2026, start_ms=start_ms, duration_ms=3_600_000))
    with Stack(config) as stack:
        summary = send_file(str(path), stack.api_url, "demo-key", batch_size=1000, use_gzip=True, concurrency=4,
                            progress=False)
        assert (summary.accepted, summary.rejected, summary.failed_requests) == (EVENTS, 0, 0)
        yield stack, path, Clients(stack.settings)


def final_rows(clients, bucket, metric, timeout_s=240.0):
    """Wait until the metric's partitions are finalized and compacted, then read the final files."""
    deadline = time.monotonic() + timeout_s
    while True:
        partial = list(list_keys(clients.s3, bucket, layout.rollup_prefix(metric, "partial")))
        final = [o["Key"] for o in list_keys(clients.s3, bucket, layout.rollup_prefix(metric, "final"))
                 if o["Key"].endswith(".parquet")]
        if final and not partial:
            tables = [strip_register_columns(t, metric) for t in read_many(clients.s3, bucket, final)]
            rows = finalize(merge_partials(tables)).to_pylist()
            if sum(r["count"] for r in rows if "count" in r) or metric.name == "active_users_5m":
                return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"{metric.name}: {len(partial)} partial / {len(final)} final files after "
                                 f"{timeout_s:.0f}s")
        time.sleep(2)


def duckdb_truth(path, sql):
    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    con.execute(f"CREATE VIEW ev AS SELECT * FROM read_ndjson('{path}', columns={{event_id: 'VARCHAR', "
                "event_type: 'VARCHAR', event_time: 'TIMESTAMPTZ', user_id: 'VARCHAR', attributes: 'JSON'})")
    return con.execute(sql).fetchall()


def test_raw_table_holds_every_event(pipeline):
    """The archive stages each batch; the local commit_events schedule (every 10 s) commits them."""
    from pyiceberg.expressions import AlwaysTrue

    stack, _, clients = pipeline
    raw = raw_table_of(clients)
    deadline = time.monotonic() + 120
    while True:
        rows = raw.scan(AlwaysTrue(), ("event_id",)).num_rows
        if rows >= EVENTS or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert rows == EVENTS


def test_finalized_event_counts_equal_duckdb_over_the_ndjson(pipeline):
    stack, path, clients = pipeline
    metric = load_metrics()["event_counts"]
    got = {(r["window_start"], r["event_type"]): (r["count"], r["users"])
           for r in final_rows(clients, stack.settings.bucket, metric)}
    truth = duckdb_truth(path, """
        SELECT epoch_ms(date_trunc('minute', event_time)), event_type, count(*), count(DISTINCT user_id)
        FROM ev GROUP BY ALL""")
    assert {k: v[0] for k, v in got.items()} == {(w, t): c for w, t, c, _ in truth}
    assert sum(v[0] for v in got.values()) == EVENTS
    for window, event_type, _, users in truth:
        assert abs(got[(window, event_type)][1] - users) <= 3 + 0.065 * users


def test_finalized_class_activity_sums_equal_duckdb_over_the_ndjson(pipeline):
    stack, path, clients = pipeline
    metric = load_metrics()["class_activity"]
    got = {(r["window_start"], r["character_class"]): r for r in final_rows(clients, stack.settings.bucket, metric)}
    truth = duckdb_truth(path, """
        SELECT epoch_ms(date_trunc('minute', event_time)), attributes->>'character_class', count(*),
               sum(CAST(attributes->>'value' AS DOUBLE)), min(CAST(attributes->>'value' AS DOUBLE)),
               max(CAST(attributes->>'value' AS DOUBLE))
        FROM ev WHERE attributes->>'character_class' IS NOT NULL GROUP BY ALL""")
    assert set(got) == {(w, c) for w, c, *_ in truth}
    for window, character_class, count, total, low, high in truth:
        row = got[(window, character_class)]
        assert row["count"] == count
        assert row["value_sum"] == pytest.approx(total, rel=1e-12, abs=1e-9)
        assert (row["value_min"], row["value_max"]) == (low, high)


def api_rows(stack, metric, start_ms, end_ms):
    response = requests.get(f"{stack.api_url}/v1/metrics/{metric}", headers={"x-api-key": "demo-key"}, timeout=30,
                            params={"from": ms_to_iso(start_ms), "to": ms_to_iso(end_ms), "limit": 10000})
    assert response.status_code == 200, response.text
    return response.json()


def test_metrics_api_after_finalization_equals_duckdb(pipeline):
    stack, path, clients = pipeline
    final_rows(clients, stack.settings.bucket, load_metrics()["event_counts"])  # wait for compaction
    start_ms = (int(time.time()) // 3600 - 3) * 3_600_000
    doc = api_rows(stack, "event_counts", start_ms, start_ms + 3_600_000)
    got = {(r["window_start"], r["event_type"]): r["count"] for r in doc["rows"]}
    truth = duckdb_truth(path, """
        SELECT strftime(date_trunc('minute', event_time), '%Y-%m-%dT%H:%M:%S.000Z'), event_type, count(*)
        FROM ev GROUP BY ALL""")
    assert got == {(w, t): c for w, t, c in truth}
    assert doc["finalized_until"] >= ms_to_iso(start_ms + 3_600_000)


def test_metrics_api_before_finalization_equals_the_posted_events(pipeline, tmp_path):
    """Recent events whose windows are still open are answered from partials, exactly."""
    stack, _, _ = pipeline
    now_ms = int(time.time() * 1000)
    path = tmp_path / "recent.ndjson"
    write_ndjson(str(path), generate_events(5000, seed=7, start_ms=now_ms - 120_000, duration_ms=110_000))
    summary = send_file(str(path), stack.api_url, "demo-key", batch_size=500, concurrency=2, progress=False)
    assert summary.accepted == 5000
    truth = duckdb_truth(path, """
        SELECT strftime(date_trunc('minute', event_time), '%Y-%m-%dT%H:%M:%S.000Z'),
               attributes->>'character_class', count(*), sum(CAST(attributes->>'value' AS DOUBLE))
        FROM ev WHERE attributes->>'character_class' IS NOT NULL GROUP BY ALL""")
    expected_total = sum(n for _, _, n, _ in truth)
    start, end = now_ms - 180_000, now_ms + 60_000
    deadline = time.monotonic() + 60
    while True:
        doc = api_rows(stack, "class_activity", start, end)
        if sum(r["count"] for r in doc["rows"]) >= expected_total or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    got = {(r["window_start"], r["character_class"]): (r["count"], r["value_sum"]) for r in doc["rows"]}
    assert {k: v[0] for k, v in got.items()} == {(w, c): n for w, c, n, _ in truth}
    for window, character_class, _, total in truth:
        assert got[(window, character_class)][1] == (pytest.approx(total) if total is not None else None)
    assert doc["finalized_until"] <= min(w for w, *_ in truth)
