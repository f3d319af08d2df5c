"""GET /dashboard (and its files) and GET /v1/pipeline through chalice.test.Client on moto."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timezone

import pytest
from botocore.stub import Stubber

from chalicelib.http.dashboard import ASSETS, FETCHED, STATIC_DIR, DashboardAssets
from chalicelib.reads.pipeline_status import PipelineService
from chalicelib.reads.stream_lag import CheckpointLag, CloudWatchLag
from chalicelib.stream.badrows import BadRow, INVALID_EVENT, TOO_LATE
from chalicelib.stream.records import RecordRef
from chalicelib.lake import layout
from chalicelib.lake.badrows import S3BadRowsSink
from eventpipe.local.runner import CheckpointStore
from eventpipe.ops import failures

CONSUMERS = ("archive_events", "aggregate_events")


def now_ms() -> int:
    return int(time.time() * 1000)


@pytest.fixture
def pipeline(container):
    """The local (checkpoint) source, whatever the settings say: moto in-process has no endpoint URL."""
    s = container.settings
    lag = CheckpointLag(container.clients.kinesis, container.clients.dynamodb, s.state_table, s.stream_name, now_ms)
    service = PipelineService(container.clients.s3, s.bucket, container.metrics_service, lag, CONSUMERS,
                              container.apps.is_operator, now_ms)
    container.__dict__["pipeline"] = service
    return service


def get(client, path, key="demo-key"):
    response = client.http.get(path, headers={"x-api-key": key} if key else {})
    return response.status_code, json.loads(response.body)


def put_records(container, n: int) -> list[dict]:
    kinesis, name = container.clients.kinesis, container.settings.stream_name
    shard = kinesis.list_shards(StreamName=name)["Shards"][0]
    return [kinesis.put_record(StreamName=name, Data=b"x", PartitionKey="p",
                               ExplicitHashKey=shard["HashKeyRange"]["StartingHashKey"]) for _ in range(n)]


def test_the_page_and_every_file_it_references_are_served_with_their_content_type(client):
    """Every listed file is named by the page (or, for FETCHED ones, by one of its scripts) and served."""
    page = client.http.get("/dashboard")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "connect-src 'self'" in page.headers["Content-Security-Policy"]
    referenced = re.findall(r'(?:src|href)="dashboard/([^"]+)"', page.body.decode())
    assert set(referenced) == set(ASSETS) - {"index.html"} - FETCHED
    scripts = "".join((STATIC_DIR / ASSETS[name][0]).read_text() for name in referenced if name.endswith(".js")
                      and not ASSETS[name][0].startswith("vendor/"))
    fetched = set(re.findall(r'"dashboard/([^"]+)"', scripts))
    assert fetched == FETCHED
    for name in [*referenced, *fetched]:
        response = client.http.get(f"/dashboard/{name}")
        assert response.status_code == 200, name
        assert response.headers["Content-Type"] == ASSETS[name][1]
        assert response.body  # a text body: API Gateway passes it through (not base64)


@pytest.mark.parametrize("name", ["app.py", "..%2F..%2Fapp.py", "vendor", "uplot.LICENSE"])
def test_only_the_listed_files_are_served(client, name):
    assert client.http.get(f"/dashboard/{name}").status_code == 404


def test_a_missing_built_file_says_how_to_build_it(tmp_path):
    with pytest.raises(Exception) as caught:
        DashboardAssets(tmp_path).asset("uplot.js")
    assert caught.value.status == 503 and "build-dashboard.sh" in caught.value.message


def test_the_pipeline_needs_a_key(client, pipeline):
    assert get(client, "/v1/pipeline", key=None)[0] == 401
    assert get(client, "/v1/pipeline", key="wrong")[0] == 401


def test_an_operator_sees_records_behind_each_checkpoint_and_their_age(client, container, pipeline):
    records = put_records(container, 5)
    shard = records[0]["ShardId"]
    arn = container.clients.kinesis.describe_stream_summary(
        StreamName=container.settings.stream_name)["StreamDescriptionSummary"]["StreamARN"]
    checkpoints = CheckpointStore(container.clients.dynamodb, container.settings.state_table, arn)
    checkpoints.put("archive_events", shard, records[1]["SequenceNumber"], delivered=2)
    checkpoints.count("archive_events", shard, "retries", 3)
    status, body = get(client, "/v1/pipeline")
    assert status == 200 and body["operator"] is True
    rows = {(r["consumer"], r["shard_id"]): r for r in body["stream"]["consumers"]}
    assert (rows[("archive_events", shard)]["behind"], rows[("aggregate_events", shard)]["behind"]) == (3, 5)
    assert rows[("archive_events", shard)]["delivered"] == 2 and rows[("archive_events", shard)]["retries"] == 3
    assert rows[("archive_events", shard)]["oldest_unprocessed_age_ms"] >= 0
    assert body["stream"]["caught_up"] is False
    checkpoints.put("archive_events", shard, records[-1]["SequenceNumber"], delivered=3)
    checkpoints.put("aggregate_events", shard, records[-1]["SequenceNumber"], delivered=5)
    body = get(client, "/v1/pipeline")[1]
    assert all(r["behind"] == 0 and r["oldest_unprocessed_age_ms"] == 0 for r in body["stream"]["consumers"])
    assert body["stream"]["caught_up"] is True


def _bad_row(reason: str, app_id: str | None, sequence: str) -> BadRow:
    ref = RecordRef(sequence, "shardId-000000000000", "pk", "arn:aws:kinesis:us-east-1:1:stream/s", now_ms())
    if app_id is None:
        return BadRow(INVALID_EVENT, "not JSON", ref, line=0, raw_line="{oops")
    return BadRow(reason, "old", ref, line=0, event={"app_id": app_id, "event_id": sequence})


def test_an_app_key_sees_only_its_own_bad_rows_and_no_stream_figures(client, container, pipeline):
    sink = S3BadRowsSink(container.clients.s3, container.settings.bucket, "aggregate")
    sink.write([_bad_row(TOO_LATE, "demo", "1"), _bad_row(TOO_LATE, "rival", "2"), _bad_row(TOO_LATE, "rival", "3"),
                _bad_row(INVALID_EVENT, None, "4")])
    rival_key = container.apps.create_key("rival")
    status, body = get(client, "/v1/pipeline", key=rival_key)
    assert status == 200 and body["operator"] is False and body["stream"] is None
    assert body["app"]["bad_rows"]["aggregate"] == {TOO_LATE: 2}
    assert body["app"]["rejected"] == 2 and body["app"]["late_events"] == 2
    operator = get(client, "/v1/pipeline")[1]
    assert operator["app"]["bad_rows"]["aggregate"] == {TOO_LATE: 1}
    assert operator["stream"]["bad_rows"]["aggregate"] == {TOO_LATE: 3, INVALID_EVENT: 1}
    assert operator["stream"]["bad_rows_unattributed"] == 1


def test_another_apps_bad_rows_neither_truncate_nor_cost_an_apps_pipeline_figures(client, container, pipeline):
    """An app's bad-row counts are read from its own prefix only: 520 of alpha's bad requests (more than the
    500 objects one call reads) leave beta's counts whole and its call's S3 requests unchanged."""
    from chalicelib.lake.progress import MAX_OBJECTS
    sink = S3BadRowsSink(container.clients.s3, container.settings.bucket, "ingest")
    sink.write([_bad_row(INVALID_EVENT, "beta", f"b{i}") for i in range(3)])
    beta_key, alpha_key = container.apps.create_key("beta"), container.apps.create_key("alpha")
    s3_calls: list[tuple[str, str]] = []

    def count(model, params, **_):
        s3_calls.append((model.name, params.get("Key") or params.get("Prefix") or ""))

    container.clients.s3.meta.events.register("before-parameter-build.s3.*", count)
    get(client, "/v1/pipeline", key=beta_key)  # warm: the metrics reads cache what they checked
    s3_calls.clear()
    before = get(client, "/v1/pipeline", key=beta_key)[1]["app"]
    baseline, s3_calls[:] = list(s3_calls), []
    sink.write([_bad_row(INVALID_EVENT, "alpha", f"a{i}") for i in range(MAX_OBJECTS + 20)])
    s3_calls.clear()
    after = get(client, "/v1/pipeline", key=beta_key)[1]["app"]
    assert after["bad_rows"]["ingest"] == before["bad_rows"]["ingest"] == {INVALID_EVENT: 3}
    assert after["bad_rows_truncated"] is False and after["rejected"] == 3
    assert len(s3_calls) == len(baseline), "alpha's objects cost beta's call S3 requests"
    assert not [key for _, key in s3_calls if "alpha" in key]
    alpha = get(client, "/v1/pipeline", key=alpha_key)[1]["app"]  # alpha's own figures: bounded, and say so
    assert alpha["bad_rows_truncated"] is True and alpha["rejected"] == MAX_OBJECTS


def test_on_failure_records_are_counted_per_consumer_and_shard(client, container, pipeline):
    arn = "arn:aws:kinesis:us-east-1:123456789012:stream/eventpipe-events"
    records = [{"kinesis": {"sequenceNumber": str(i), "data": "eA==", "partitionKey": "p",
                            "approximateArrivalTimestamp": 1.0}, "eventSourceARN": arn} for i in (7, 8, 9)]
    key, body = failures.build(records, mapping_uuid=failures.local_mapping_uuid(arn, "aggregate_events"),
                               shard_id="shardId-000000000001", stream_arn=arn,
                               function_arn="arn:aws:lambda:us-east-1:0:function:aggregate_events",
                               condition="RetryAttemptsExhausted", invoke_count=1, error="boom",
                               now=datetime.now(timezone.utc))
    container.clients.s3.put_object(Bucket=container.settings.bucket, Key=key, Body=body)
    stream = get(client, "/v1/pipeline")[1]["stream"]
    rows = {(r["consumer"], r["shard_id"]): r["dead_lettered"] for r in stream["consumers"]}
    assert stream["dead_letters"] == {"batches": 1, "records": 3, "truncated": False}
    assert rows[("aggregate_events", "shardId-000000000001")] == 0  # the checkpoint source counts its own


def test_finalization_reports_the_finalizer_manifests_of_the_current_definition_only(client, container, pipeline):
    """compacted_until and last_finalized_at both come from the current definition's final files (an app's
    file, or the head of its slices): None together until the finalizer compacted an hour; a final file
    left by an older definition counts for nothing, nor does a file that is not an app's final."""
    s3, bucket = container.clients.s3, container.settings.bucket
    metric = next(m for m in container.metrics.metrics if m.name == "event_counts")
    s3.put_object(Bucket=bucket, Key=f"rollups/{metric.name}/def=0ld/stage=final/dt=2026-12-06/hour=23/app-someone.parquet",
                  Body=b"")
    s3.put_object(Bucket=bucket, Key=layout.rollup_prefix(metric, "final", "2026-12-07", "11") + "_manifest.json",
                  Body=b"{}")
    before = {f["metric"]: f for f in get(client, "/v1/pipeline")[1]["finalization"]}
    assert (before["event_counts"]["compacted_until"], before["event_counts"]["last_finalized_at"]) == (None, None)
    s3.put_object(Bucket=bucket, Key=layout.final_key(metric, "2026-12-07", "09", "someone"), Body=b"")
    s3.put_object(Bucket=bucket, Key=layout.final_key(metric, "2026-12-07", "08", "someone"), Body=b"")
    status, body = get(client, "/v1/pipeline")
    rows = {f["metric"]: f for f in body["finalization"]}
    assert status == 200 and rows["event_counts"]["compacted_until"] == "2026-12-07T10:00:00.000Z"
    written = datetime.fromisoformat(rows["event_counts"]["last_finalized_at"].replace("Z", "+00:00")).timestamp()
    assert abs(written - time.time()) < 300
    assert all((f["compacted_until"], f["last_finalized_at"]) == (None, None) for name, f in rows.items()
               if name != "event_counts")
    assert body["lateness"] == {"allowed_s": container.metrics.settings.allowed_lateness_ms / 1000,
                                "max_s": container.metrics.settings.max_lateness_ms / 1000}


def test_bad_parameters_are_refused(client, pipeline):
    assert get(client, "/v1/pipeline?since=1")[0] == 400
    assert get(client, "/v1/pipeline?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z")[0] == 400


def test_only_apps_marked_operator_are_operators(container):
    container.apps.create_key("plain")
    container.apps.create_key("ops", operator=True)
    assert (container.apps.is_operator("plain"), container.apps.is_operator("ops")) == (False, True)
    assert container.apps.is_operator("demo") is True  # the local demo app


def test_on_aws_the_lag_comes_from_cloudwatch_iterator_age(container):
    import boto3

    cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
    clock = lambda: 1_800_000_000_000  # noqa: E731
    lag = CloudWatchLag(cloudwatch, container.clients.kinesis, container.settings.stream_name,
                        lambda name: f"eventpipe-dev-{name}", clock)
    stub = Stubber(cloudwatch)
    expected = {"MetricDataQueries": [
        {"Id": "incoming", "ReturnData": True, "MetricStat": {"Metric": {
            "Namespace": "AWS/Kinesis", "MetricName": "IncomingRecords",
            "Dimensions": [{"Name": "StreamName", "Value": container.settings.stream_name}]}, "Period": 60,
            "Stat": "Sum"}},
        *[q for i, name in enumerate(CONSUMERS) for q in (
            {"Id": f"age{i}", "ReturnData": True, "MetricStat": {"Metric": {
                "Namespace": "AWS/Lambda", "MetricName": "IteratorAge",
                "Dimensions": [{"Name": "FunctionName", "Value": f"eventpipe-dev-{name}"}]}, "Period": 60,
                "Stat": "Maximum"}},
            {"Id": f"errors{i}", "ReturnData": True, "MetricStat": {"Metric": {
                "Namespace": "AWS/Lambda", "MetricName": "Errors",
                "Dimensions": [{"Name": "FunctionName", "Value": f"eventpipe-dev-{name}"}]}, "Period": 60,
                "Stat": "Sum"}})]],
        "ScanBy": "TimestampDescending",
        "StartTime": datetime.fromtimestamp(1_800_000_000 - 600, timezone.utc),
        "EndTime": datetime.fromtimestamp(1_800_000_000, timezone.utc)}
    stub.add_response("get_metric_data", {"MetricDataResults": [
        {"Id": "incoming", "Values": [600.0, 120.0]}, {"Id": "age0", "Values": [4200.0, 90000.0]},
        {"Id": "errors0", "Values": [1.0, 2.0]}, {"Id": "age1", "Values": []}, {"Id": "errors1", "Values": []}]},
        expected)
    with stub:
        result = lag.read(CONSUMERS)
    stub.assert_no_pending_responses()
    assert result.source == "cloudwatch" and result.incoming_records_per_s == 10.0
    first, second = result.rows
    assert (first.consumer, first.iterator_age_ms, first.retries, first.behind) == ("archive_events", 4200, 3, None)
    assert (second.iterator_age_ms, second.retries) == (None, 0)
