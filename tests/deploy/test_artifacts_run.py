"""Every handler runs from its unpacked artifacts, in an interpreter that sees nothing else.

One flow on moto server + osmem-server, each step a fresh ``python3.12 -I -S -B``
whose ``sys.path`` is ``var/task`` (code zip), ``opt/python`` (the function's layers),
the pinned boto3 (Lambda's /var/runtime) and the standard library: the API posts
events (plain JSON and gzip), the three Kinesis consumers get the very records moto
stored, both schedules run, and the API then answers metrics and search.
"""

from __future__ import annotations

import base64
import dataclasses
import time
import zipfile
from dataclasses import dataclass

import orjson
import pytest

from chalicelib.runtime.clients import Clients
from chalicelib.runtime.settings import Settings
from eventpipe.generate import generate_events
from chalicelib.lake import layout
from chalicelib.processing import load_metrics
from chalicelib.lake.s3io import list_keys, read_many
from eventpipe.local.bootstrap import bootstrap
from chalicelib.search.client import client_for_url
from eventpipe.deploy import lambda_events as events
from eventpipe.deploy.sandbox import FunctionError, FunctionRun, Sandbox, chalice_environment, local_services
from tests.factories.lake import raw_table_of
from tests.deploy.artifact_fixtures import runnable_artifacts, target_artifacts  # noqa: F401 - fixtures

pytestmark = pytest.mark.artifacts

PER_BATCH = 200
SDK_EVENTS = 2  # one Segment and one PostHog message
HEAVY = {"pyarrow", "numpy", "duckdb", "pandas"}
KEY = {"x-api-key": "demo-key"}


@dataclass
class Flow:
    sandbox: Sandbox
    clients: Clients
    settings: Settings
    search_url: str
    runs: dict[str, FunctionRun]
    first_ms: int
    last_ms: int


def _steps(sandbox: Sandbox, clients: Clients, settings: Settings, search_url: str) -> Flow:
    start_ms = (int(time.time()) // 3600 - 3) * 3_600_000  # closed windows, within every retention
    plain = list(generate_events(PER_BATCH, seed=1, start_ms=start_ms, duration_ms=1_800_000))
    ndjson = b"\n".join(orjson.dumps(e) for e in generate_events(PER_BATCH, seed=2, start_ms=start_ms + 1_800_000,
                                                                   duration_ms=1_800_000))
    runs = {"api": sandbox.run("api_handler", [
        events.api_event("GET", "/v1/health"),
        events.api_event("POST", "/v1/events", headers={**KEY, "Content-Type": "application/json"},
                         body=orjson.dumps({"events": plain})),
        events.api_event("POST", "/v1/events", headers={**KEY, "Content-Type": "application/x-ndjson",
                                                        "Content-Encoding": "gzip"},
                         body=events.gzip_body(ndjson), binary=True),
        # The SDK-compatible routes (one message each; keys in the protocols' own places).
        events.api_event("POST", "/v1/batch", headers={"Content-Type": "application/json",
                                                       "Authorization": "Basic " + base64.b64encode(b"demo-key:").decode()},
                         body=orjson.dumps({"batch": [{"type": "track", "event": "Order Completed",
                                                       "messageId": "sdk-seg-1", "userId": "u-sdk",
                                                       "timestamp": _iso(start_ms + 60_000)}]})),
        events.api_event("POST", "/batch", headers={"Content-Type": "application/json"},
                         body=orjson.dumps({"api_key": "demo-key", "batch": [
                             {"event": "$pageview", "distinct_id": "u-sdk", "uuid": "sdk-ph-1",
                              "timestamp": _iso(start_ms + 120_000)}]})),
    ])}
    batches = events.kinesis_events(clients.kinesis, settings.stream_name)
    for function in ("archive_events", "aggregate_events", "index_events"):
        runs[function] = sandbox.run(function, batches)
    client_for_url(search_url).indices.create(index=f"{settings.search_index_prefix}-2000.01.01")
    for function in ("search_retention", "commit_events", "finalize_windows"):
        runs[function] = sandbox.run(function, [events.scheduled_event(function)])
    # The planner queued the (app, hour) units; the worker computes them as its SQS mapping delivers them.
    units = events.sqs_events(clients.sqs, settings.finalize_queue_url, batch_size=1)
    runs["finalize_worker"] = sandbox.run("finalize_worker", units)
    window = {"from": [_iso(start_ms)], "to": [_iso(start_ms + 3_600_000)]}
    runs["api_read"] = sandbox.run("api_handler", [
        events.api_event("GET", "/v1/metrics", headers=KEY),
        events.api_event("GET", "/v1/metrics/event_counts", resource="/v1/metrics/{name}", headers=KEY,
                         query={**window, "limit": ["10000"]}),
        events.api_event("GET", "/v1/search", headers=KEY, query={**window, "size": ["5"]}),
        events.api_event("GET", "/v1/pipeline", headers=KEY),
        events.api_event("GET", "/dashboard"),
        events.api_event("GET", "/v1/openapi.json"),
        events.api_event("POST", "/v1/regulations", headers={**KEY, "Content-Type": "application/json"},
                         body=orjson.dumps({"type": "delete", "user_ids": ["u-nobody"]})),
        events.api_event("GET", "/v1/sessions", headers=KEY, query=window),
        events.api_event("GET", "/v1/persons/u-sdk", resource="/v1/persons/{user_id}", headers=KEY),
    ])
    runs["process_regulations"] = sandbox.run("process_regulations", [events.scheduled_event("process_regulations")])
    # Last (its events stay in the stream): the API as SnapStart runs it, restored in a fork of its init.
    runs["api_snapstart"] = sandbox.run("api_handler", [
        events.api_event("GET", "/v1/health"),
        events.api_event("POST", "/v1/events", headers={**KEY, "Content-Type": "application/json"},
                         body=orjson.dumps({"events": plain[:3]}))], snapstart=True)
    return Flow(sandbox, clients, settings, search_url, runs, start_ms, start_ms + 3_600_000)


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


@pytest.fixture(scope="module")
def flow(runnable_artifacts, tmp_path_factory):  # noqa: F811 - the imported fixture
    with local_services() as services:
        env = {**chalice_environment(), "EVENTPIPE_AWS_ENDPOINT_URL": services.moto_url,
               "OPENSEARCH_URL": services.search_url, "EVENTPIPE_SEARCH_REPLICAS": "0",
               "EVENTPIPE_FINALIZE_GRACE_S": "0", "EVENTPIPE_FINALIZE_CLOSE_DELAY_S": "0"}
        clients = Clients(Settings.from_env({**env, "AWS_REGION": "us-east-1"}))
        bootstrap(clients)  # (the finalize-units queue too: the planner sends to it, the worker takes from it)
        env["EVENTPIPE_FINALIZE_QUEUE_URL"] = clients.sqs.get_queue_url(
            QueueName=clients.settings.finalize_queue)["QueueUrl"]
        settings = Settings.from_env({**env, "AWS_REGION": "us-east-1"})
        clients = Clients(settings)
        sandbox = Sandbox.create(runnable_artifacts, tmp_path_factory.mktemp("sandbox"), env)
        yield _steps(sandbox, clients, settings, services.search_url)


def _body(response: dict) -> dict:
    body = response["body"]
    return orjson.loads(base64.b64decode(body) if response.get("isBase64Encoded") else body)


def test_api_answers_health_and_accepts_plain_and_gzip_posts(flow):
    health, plain, gzipped, *_ = flow.runs["api"].results()
    assert health["statusCode"] == 200, health
    assert _body(health)["status"] == "ok"
    for response in (plain, gzipped):
        assert response["statusCode"] == 200, response
        assert _body(response)["accepted"] == PER_BATCH and _body(response)["rejected"] == 0


def test_posting_events_loads_no_pyarrow_numpy_or_duckdb(flow):
    run = flow.runs["api"]
    run.results()
    assert not HEAVY & set(run.response["modules_after_init"])
    assert not HEAVY & set(run.response["invocations"][-1]["modules"])


def test_kinesis_consumers_archive_aggregate_and_index_the_posted_events(flow):
    for function in ("archive_events", "aggregate_events", "index_events"):
        assert all(r == {"batchItemFailures": []} for r in flow.runs[function].results()), function
    # The archive staged the batches; the commit_events artifact (its own layers, no DuckDB) committed them.
    (committed,) = flow.runs["commit_events"].results()
    assert committed["commit"]["rows"] == 2 * PER_BATCH + SDK_EVENTS, committed
    from pyiceberg.expressions import AlwaysTrue
    assert raw_table_of(flow.clients).scan(AlwaysTrue(), ("event_id",)).num_rows == 2 * PER_BATCH + SDK_EVENTS
    search = client_for_url(flow.search_url)
    search.indices.refresh(index=f"{flow.settings.search_index_prefix}-*")
    assert search.count(index=f"{flow.settings.search_index_prefix}-*")["count"] == 2 * PER_BATCH + SDK_EVENTS


def test_schedules_finalize_windows_and_delete_expired_indices(flow):
    (retention,) = flow.runs["search_retention"].results()
    assert f"{flow.settings.search_index_prefix}-2000.01.01" in retention["deleted"]
    (planned,) = flow.runs["finalize_windows"].results()
    assert any(line.startswith("event_counts") and ": queued" in line for line in planned["partitions"]), planned
    worked = flow.runs["finalize_worker"].results()
    assert worked and all(r == {"batchItemFailures": []} for r in worked), worked
    final = list(list_keys(flow.clients.s3, flow.settings.bucket, layout.rollup_prefix(load_metrics()["event_counts"], "final")))
    assert final


def test_privacy_regulations_sessions_and_persons_answer_from_the_artifacts(flow):
    """The routes and the daily deletion job of the privacy and insights features run from the zips."""
    *_, filed, sessions, person = flow.runs["api_read"].results()
    assert filed["statusCode"] == 202 and _body(filed)["status"] == "pending", filed
    assert sessions["statusCode"] == 200 and _body(sessions)["sessions"] >= 1, sessions
    assert person["statusCode"] == 200 and _body(person)["user_id"] == "u-sdk", person
    (job,) = flow.runs["process_regulations"].results()
    assert job.get("regulations") == 1 and job.get("done") == 1, job


def test_sdk_routes_pipeline_and_dashboard_answer_from_the_artifacts(flow):
    *_, segment, posthog = flow.runs["api"].results()
    assert segment["statusCode"] == 200 and _body(segment)["success"] is True, segment
    assert posthog["statusCode"] == 200 and _body(posthog)["status"] == 1, posthog
    *_, pipeline, page, _, _, _, _ = flow.runs["api_read"].results()
    assert pipeline["statusCode"] == 200 and "stream" in _body(pipeline), pipeline
    assert page["statusCode"] == 200 and "<html" in page["body"].lower()


def test_the_api_serves_its_openapi_document_from_the_artifacts(flow):
    *_, spec, _, _, _ = flow.runs["api_read"].results()
    assert spec["statusCode"] == 200 and _body(spec)["openapi"] == "3.1.0", spec
    assert "/v1/events" in _body(spec)["paths"]


def test_metrics_and_search_answer_from_the_artifacts(flow):
    listing, counts, found, *_ = flow.runs["api_read"].results()
    assert listing["statusCode"] == 200 and "event_counts" in str(_body(listing))
    assert counts["statusCode"] == 200, counts
    assert sum(row["count"] for row in _body(counts)["rows"]) == 2 * PER_BATCH + SDK_EVENTS
    assert found["statusCode"] == 200, found
    assert _body(found)["total"] == 2 * PER_BATCH + SDK_EVENTS and len(_body(found)["hits"]) == 5


def test_the_api_restored_from_a_snapstart_snapshot_answers(flow):
    """app.py registers one before-snapshot and one after-restore hook with the runtime's module; a
    restored environment (a fork of the initialized process) answers health and a POST with the
    clients it built after the restore."""
    run = flow.runs["api_snapstart"]
    health, post = run.results()
    assert run.response["hooks"] == {"before": 1, "after": 1}
    assert run.response["before_snapshot_ms"] > 0 and run.response["after_restore_ms"] > 0
    assert health["statusCode"] == 200 and _body(health)["status"] == "ok", health
    assert post["statusCode"] == 200 and _body(post)["accepted"] == 3, post


def test_sandbox_path_holds_only_the_lambda_directories_and_the_stdlib(flow):
    run = flow.runs["index_events"]
    task, opt = flow.sandbox.dirs("index_events")
    version = flow.sandbox.artifacts.python_version
    path, prefix = run.response["sys_path"], run.response["stdlib_prefix"]
    assert path[:4] == [str(task), f"{opt}/python/lib/python{version}/site-packages", f"{opt}/python",
                        str(flow.sandbox.runtime_dir)]
    assert path[4:] and all(p.startswith(prefix) and "site-packages" not in p for p in path[4:]), path
    assert not HEAVY & set(run.response["invocations"][-1]["modules"])  # index_events has no layers


def test_every_packaged_chalicelib_module_is_imported_by_some_handler(flow):
    with zipfile.ZipFile(flow.sandbox.artifacts.code.path) as archive:
        packaged = {n[:-3].replace("/", ".").removesuffix(".__init__") for n in archive.namelist()
                    if n.startswith("chalicelib/") and n.endswith(".py")}
    imported = set().union(*(run.response["own_modules"] for run in flow.runs.values()))
    assert packaged and packaged - imported == set()


def test_a_module_missing_from_the_artifacts_fails_the_run(runnable_artifacts, tmp_path):  # noqa: F811
    broken = tmp_path / "code.zip"
    with zipfile.ZipFile(runnable_artifacts.code.path) as source, zipfile.ZipFile(broken, "w") as target:
        for info in source.infolist():
            if not info.filename.startswith("opensearchpy/"):
                target.writestr(info, source.read(info))
    artifacts = dataclasses.replace(runnable_artifacts, code=dataclasses.replace(runnable_artifacts.code, path=broken))
    run = Sandbox.create(artifacts, tmp_path / "sandbox", {}).run("search_retention",
                                                                  [events.scheduled_event("search_retention")])
    with pytest.raises(FunctionError, match="No module named 'opensearchpy'"):
        run.results()
