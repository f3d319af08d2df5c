"""Backfill recomputes final windows from the raw archive (moto server): a new metric's history equals
what streaming + finalization writes, a changed definition is never mixed, reruns change nothing."""

from __future__ import annotations

import dataclasses
import io

import orjson
import pyarrow.parquet as pq
import pytest
import requests
from botocore.response import StreamingBody
from botocore.stub import Stubber
from moto.server import ThreadedMotoServer

import app as app_module
from chalicelib.lake import layout
from chalicelib.lake.badrows import S3BadRowsSink
from chalicelib.lake.consumers import AggregationService, ArchiveService
from chalicelib.lake.finalizer import DEFINITION_KEY, BackfillRequestError, Finalizer
from chalicelib.lake.s3io import list_keys
from chalicelib.lake.rollups import FileCache, read_windows_status
from chalicelib.lake.state import StateStore
from chalicelib.processing import MetricSet, WindowSpec, load_metrics
from chalicelib.runtime.container import Container
from chalicelib.runtime.settings import Settings
from eventpipe import cli
from eventpipe.local.bootstrap import bootstrap
from eventpipe.local.stack import free_port
from eventpipe.ops import backfill
from tests.factories.lake import T0, Clock, canonical_lines, lambda_batches, truth_event_counts

HOUR = 3_600_000
NEW = "active_users_5m"  # plays the metric newly added to metrics.yaml


@pytest.fixture
def lake(monkeypatch):
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    requests.post(f"http://{host}:{port}/moto-api/reset", timeout=10)  # moto's state is per process
    monkeypatch.setenv("EVENTPIPE_AWS_ENDPOINT_URL", f"http://{host}:{port}")
    container = Container(Settings.from_env())
    bootstrap(container.clients, shards=1)
    monkeypatch.setattr(app_module, "container", container)
    try:
        yield container
    finally:
        server.stop()


def only(metrics: MetricSet, *names: str, without: str | None = None) -> MetricSet:
    chosen = [m for m in metrics.metrics if (not names or m.name in names) and m.name != without]
    return MetricSet(tuple(chosen), metrics.settings)


def stream(container, metrics: MetricSet, lines, seed: int, archive: bool = True) -> None:
    s3, bucket = container.clients.s3, container.settings.bucket
    state = StateStore(container.clients.dynamodb, container.settings.state_table)
    aggregation = AggregationService(s3, bucket, state, metrics, S3BadRowsSink(s3, bucket, "aggregate"))
    archiver = ArchiveService(s3, bucket, state, S3BadRowsSink(s3, bucket, "archive"))
    for batch in lambda_batches(lines, seed=seed):
        if archive:
            assert archiver.handle(batch) == {"batchItemFailures": []}
        assert aggregation.handle(batch) == {"batchItemFailures": []}
    if archive:
        container.raw_table_job.run()  # the commit_events schedule: staged batches -> the raw table


def finalizer(container, metrics: MetricSet, clock: Clock | None = None) -> Finalizer:
    state = StateStore(container.clients.dynamodb, container.settings.state_table)
    return Finalizer(container.clients.s3, container.settings.bucket, state, metrics, clock or Clock(T0 + 3 * HOUR),
                     raw=container.raw_table)


def final_files(container, metric) -> dict[str, bytes]:
    s3, bucket = container.clients.s3, container.settings.bucket
    return {o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
            for o in list_keys(s3, bucket, layout.rollup_prefix(metric, "final"))}


def rows_of(files: dict[str, bytes], drop=("late_count",)) -> dict[str, list[dict]]:
    out = {}
    for key, body in files.items():
        if key.endswith(".parquet"):
            table = pq.read_table(io.BytesIO(body))
            out[key] = table.drop_columns([c for c in drop if c in table.column_names]).to_pylist()
    return out


def test_backfill_of_a_newly_added_metric_equals_streaming_and_finalization(lake):
    metrics = load_metrics()
    new = metrics[NEW]
    lines = canonical_lines(1500, seed=41, duration_ms=90 * 60_000)
    stream(lake, only(metrics, without=NEW), lines, seed=42)  # before the metric existed
    finalizer(lake, metrics).run()
    # A unit computes every metric of its (app, hour): hours that still had partials of the other
    # metrics got the new metric's finals too; the hour before (no partials at all) has none yet.
    before = [k for k in final_files(lake, new) if f"hour={layout.dt_hour(T0 - HOUR)[1]}/" in k]
    assert before == []

    partitions = backfill.plan(metrics, [NEW], T0 - HOUR, T0 + 2 * HOUR)
    summary = backfill.run(partitions, backfill.local_runner(finalizer(lake, metrics), metrics), progress=False)
    assert [o.action for o in summary.outcomes] == ["backfilled"] * 3
    backfilled = final_files(lake, new)

    # What streaming + finalization of the same events writes (the same keys, overwritten).
    stream(lake, only(metrics, NEW), lines, seed=42, archive=False)
    assert {r.action for r in finalizer(lake, metrics).run() if r.metric == NEW} == {"finalized"}
    streamed = final_files(lake, new)
    assert set(streamed) == set(backfilled)
    assert rows_of(backfilled) == rows_of(streamed)  # late_count is arrival history: not in the archive
    assert sum(o.events for o in summary.outcomes) == 1500 * new.window.size_ms // new.window.slide_ms


def test_backfill_twice_leaves_the_same_files(lake):
    metrics = load_metrics()
    stream(lake, metrics, canonical_lines(400, seed=43), seed=44)
    run = backfill.local_runner(finalizer(lake, metrics), metrics)
    backfill.run(backfill.plan(metrics, None, T0, T0 + HOUR), run, progress=False)
    first = {m.name: final_files(lake, m) for m in metrics.metrics}
    backfill.run(backfill.plan(metrics, None, T0, T0 + HOUR), run, progress=False)
    assert {m.name: final_files(lake, m) for m in metrics.metrics} == first
    [key] = [k for k in first["event_counts"] if k.endswith(".parquet")]
    meta = pq.read_schema(io.BytesIO(first["event_counts"][key])).metadata
    assert meta[DEFINITION_KEY] == metrics["event_counts"].fingerprint.encode()


def test_a_changed_definition_never_reads_the_old_definitions_windows(lake):
    metrics = load_metrics()
    lines = canonical_lines(600, seed=45)
    stream(lake, metrics, lines, seed=46)
    finalizer(lake, metrics).run()
    old = metrics["event_counts"]
    changed = dataclasses.replace(old, window=WindowSpec(5 * 60_000, 5 * 60_000))
    assert changed.fingerprint != old.fingerprint
    new_set = MetricSet(tuple(changed if m.name == old.name else m for m in metrics.metrics), metrics.settings)
    s3, bucket = lake.clients.s3, lake.settings.bucket

    def windows(metric):
        rows = read_windows_status(s3, bucket, metric, T0 - HOUR, T0 + 2 * HOUR, "demo", cache=FileCache()).rows
        return {(r["window_start"], r["event_type"]): r["count"] for r in rows.to_pylist()}

    assert windows(changed) == {}  # the old 1-minute finals are not answered under the new definition
    backfill.run(backfill.plan(new_set, [old.name], T0 - HOUR, T0 + 2 * HOUR),
                 backfill.local_runner(finalizer(lake, new_set), new_set), progress=False)
    got = windows(changed)
    assert {start % (5 * 60_000) for start, _ in got} == {0}
    expected: dict = {}
    for (_, start, kind), (count, _) in truth_event_counts(lines).items():
        key = (start - start % (5 * 60_000), kind)
        expected[key] = expected.get(key, 0) + count
    assert got == expected
    assert windows(old) == {(s, k): c for (_, s, k), (c, _) in truth_event_counts(lines).items()}  # old tree kept


def test_finalize_windows_handler_backfills_the_partition_of_its_event(lake):
    metrics = load_metrics()
    stream(lake, metrics, canonical_lines(200, seed=47), seed=48)
    event = backfill.invocation_event(backfill.Partition("event_counts", "2026-01-01", "12"))
    answer = app_module.finalize_windows(event, None)
    assert answer["backfill"]["action"] == "backfilled" and answer["backfill"]["events"] == 200
    assert final_files(lake, metrics["event_counts"])
    bad = backfill.invocation_event(backfill.Partition("no_such_metric", "2026-01-01", "12"))
    with pytest.raises(BackfillRequestError):
        app_module.finalize_windows(bad, None)


def test_cli_backfill_runs_in_process_on_the_local_stack_and_prints_a_summary(lake, capsys):
    stream(lake, load_metrics(), canonical_lines(300, seed=49), seed=50)
    code = cli.main(["backfill", "--metric", "event_counts", "--from", "2026-01-01T11:00:00Z",
                     "--to", "2026-01-01T14:00:00Z"])
    out = capsys.readouterr()
    assert code == 0
    assert "backfill event_counts: 3 of 3 partition(s) recomputed" in out.out and "300 event(s)" in out.out
    assert "partition" in out.err  # the progress bar


def lambda_answer(body: dict) -> dict:
    data = orjson.dumps(body)
    return {"StatusCode": 200, "Payload": StreamingBody(io.BytesIO(data), len(data))}


def test_aws_backfill_invokes_finalize_windows_once_per_partition_and_retries_throttling():
    import boto3
    client = boto3.client("lambda", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    partitions = backfill.plan(load_metrics(), ["event_counts", NEW], T0, T0 + 2 * HOUR)
    assert [(p.metric, p.hour) for p in partitions] == [("event_counts", "12"), (NEW, "12"),
                                                         ("event_counts", "13"), (NEW, "13")]
    with Stubber(client) as stub:
        for i, p in enumerate(partitions):
            params = {"FunctionName": "eventpipe-dev-finalize_windows", "InvocationType": "RequestResponse",
                      "Payload": orjson.dumps(backfill.invocation_event(p))}
            if i == 1:
                stub.add_client_error("invoke", "TooManyRequestsException", http_status_code=429,
                                      expected_params=params)
            stub.add_response("invoke", lambda_answer({"backfill": {"action": "backfilled", "rows": 10,
                                                                    "events": 5}}), params)
        runner = backfill.aws_runner(client, "eventpipe-dev-finalize_windows", sleep=lambda _: None)
        summary = backfill.run(partitions, runner, progress=False)
        stub.assert_no_pending_responses()
    assert [o.action for o in summary.outcomes] == ["backfilled"] * 4
    assert "40 window row(s), 20 event(s)" in summary.describe()
    assert backfill.invocation_event(partitions[0])["detail"] == {
        "backfill": {"metric": "event_counts", "dt": "2026-01-01", "hour": "12"}}


def test_a_failed_partition_is_reported_and_the_others_go_on():
    partitions = [backfill.Partition("m", "2026-01-01", h) for h in ("00", "01")]

    def runner(p):
        if p.hour == "00":
            raise RuntimeError("boom")
        return backfill.Outcome(p, "backfilled", 3, 7)

    summary = backfill.run(partitions, runner, progress=False)
    assert "1 of 2 partition(s) recomputed" in summary.describe()
    assert "FAILED m 2026-01-01/00: failed: RuntimeError: boom" in summary.describe()


def test_backfill_plan_rejects_unknown_metrics_and_empty_ranges():
    with pytest.raises(backfill.BackfillError, match="unknown metric"):
        backfill.plan(load_metrics(), ["nope"], T0, T0 + HOUR)
    with pytest.raises(backfill.BackfillError, match="before"):
        backfill.plan(load_metrics(), None, T0, T0)


def test_backfill_of_a_finalized_hour_keeps_the_late_counts_its_partials_had(lake):
    from chalicelib.stream import codec
    from tests.conftest import kinesis_record
    metrics = load_metrics()
    stream(lake, metrics, canonical_lines(100, seed=51), seed=52)
    clock = Clock(T0 + 3 * HOUR)
    run = finalizer(lake, metrics, clock)
    run.run()
    late = orjson.loads(canonical_lines(1, seed=53, start_ms=T0 + 30_000, duration_ms=1000)[0])
    late = orjson.dumps({**late, "event_id": "late-one", "received_at": T0 + 3 * HOUR})
    stream_one = [kinesis_record(codec.pack([late])[0].data, "shardId-000000000001", 10_000)]
    state = StateStore(lake.clients.dynamodb, lake.settings.state_table)
    s3, bucket = lake.clients.s3, lake.settings.bucket
    ArchiveService(s3, bucket, state, S3BadRowsSink(s3, bucket, "archive")).handle(stream_one)
    AggregationService(s3, bucket, state, metrics, S3BadRowsSink(s3, bucket, "aggregate")).handle(stream_one)
    lake.raw_table_job.run()
    run.run()

    def late_total():
        rows = read_windows_status(s3, bucket, metrics["event_counts"], T0, T0 + HOUR, "demo", cache=FileCache()).rows
        return sum(rows["late_count"].to_pylist())

    assert late_total() == 1
    clock.now_ms += 16 * 60_000
    assert "cleaned" in {r.action for r in run.run()}  # the partials that had the late count are gone
    backfill.run(backfill.plan(metrics, ["event_counts"], T0, T0 + HOUR),
                 backfill.local_runner(run, metrics), progress=False)
    assert late_total() == 1
