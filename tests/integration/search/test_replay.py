"""`eventpipe replay`: the raw archive (moto server) re-fed to the indexer (osmem / a real node), exactly once."""

from __future__ import annotations

import io
import time

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests
from moto.server import ThreadedMotoServer

from chalicelib.lake import layout
from chalicelib.lake.raw_commit import StagedCommitter
from chalicelib.lake.raw_table import to_table_rows
from chalicelib.runtime.container import Container
from chalicelib.runtime.settings import Settings
from chalicelib.search.naming import index_for
from eventpipe import cli
from eventpipe.local.bootstrap import bootstrap
from eventpipe.local.stack import free_port
from eventpipe.ops.replay import replayer_for
from tests.conftest import kinesis_record
from tests.factories.lake import canonical_lines
from chalicelib.stream import codec

HOUR = 3_600_000
#: Two hours ago, whole hour: inside the search retention, windows closed.
START = (int(time.time() * 1000) // HOUR - 2) * HOUR


@pytest.fixture
def lake(backend, monkeypatch):
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    requests.post(f"http://{host}:{port}/moto-api/reset", timeout=10)  # moto's state is per process
    env = {"EVENTPIPE_AWS_ENDPOINT_URL": f"http://{host}:{port}", "OPENSEARCH_URL": backend.url,
           "EVENTPIPE_SEARCH_INDEX_PREFIX": backend.prefix, "EVENTPIPE_SEARCH_REPLICAS": "0"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    container = Container(Settings.from_env())
    bootstrap(container.clients, shards=1)
    try:
        yield container
    finally:
        server.stop()


def archive(container, lines: list[bytes]) -> None:
    """Through the archive consumer, 40 lines per record (what the stream path writes)."""
    records = [kinesis_record(codec.pack(lines[i:i + 40])[0].data) for i in range(0, len(lines), 40)]
    assert container.archive.handle(records) == {"batchItemFailures": []}
    # The committer of the commit_events schedule (no compaction: the copies stay, as in open hours).
    StagedCommitter(container.clients.s3, container.settings.bucket, container.raw_table, container.state).run()


def distinct(lines: list[bytes], app: str | None = None) -> set[tuple[str, str]]:
    events = [orjson.loads(line) for line in lines]
    return {(e["app_id"], e["event_id"]) for e in events if app is None or e["app_id"] == app}


def documents(container, prefix: str) -> dict[str, dict]:
    client = container.search_client
    client.indices.refresh(index=f"{prefix}-*")
    hits = client.search(index=f"{prefix}-*", body={"query": {"match_all": {}}, "size": 10_000})["hits"]["hits"]
    return {hit["_id"]: hit["_source"] for hit in hits}


def replay(container, **kwargs):
    return replayer_for(container).run(START - HOUR, START + 3 * HOUR, **kwargs)


@pytest.fixture
def archived(lake):
    demo = canonical_lines(300, seed=1, start_ms=START + 50 * 60_000, app_id="demo", duration_ms=20 * 60_000)
    other = canonical_lines(120, seed=2, start_ms=START, app_id="other", duration_ms=30 * 60_000)
    lines = demo + other + demo[:50]  # a re-delivered batch: its copies are archived twice
    archive(lake, lines)
    return lines


def test_replay_rebuilds_a_deleted_daily_index_exactly_once(lake, archived, backend):
    expected = distinct(archived)
    first = replay(lake)
    assert first.ok, first.describe()
    stream_docs = documents(lake, backend.prefix)
    indices = sorted({index_for(e["event_time"], backend.prefix) for e in map(orjson.loads, archived)})
    lake.search_client.indices.delete(index=",".join(indices))

    rebuilt = replay(lake)
    assert (rebuilt.rows, rebuilt.events, rebuilt.created, rebuilt.updated) == (len(archived), len(expected),
                                                                                len(expected), 0)
    docs = documents(lake, backend.prefix)
    assert set(docs) == {f"{app}:{event_id}" for app, event_id in expected}
    assert docs == stream_docs, "the same documents as before the index was deleted"

    again = replay(lake)
    assert (again.events, again.created, again.updated) == (len(expected), 0, len(expected))
    assert documents(lake, backend.prefix) == docs


def test_documents_are_the_ones_the_stream_path_indexes(lake, archived, backend):
    """The stream consumer and the replay build documents with the one mapping: same _ids, same sources."""
    records = [kinesis_record(codec.pack(archived[i:i + 40])[0].data) for i in range(0, len(archived), 40)]
    assert lake.indexing.handle(records) == {"batchItemFailures": []}
    from_stream = documents(lake, backend.prefix)
    summary = replay(lake)
    assert (summary.created, summary.updated) == (0, len(distinct(archived)))
    assert documents(lake, backend.prefix) == from_stream


def test_replay_of_one_app_indexes_only_that_app(lake, archived, backend):
    summary = replay(lake, apps=["other"])
    assert summary.created == len(distinct(archived, "other")) == summary.events
    assert {source["app_id"] for source in documents(lake, backend.prefix).values()} == {"other"}


def test_a_bad_row_in_the_archive_is_reported_and_kept_in_bad_rows(lake, archived, backend):
    dt, hour = layout.dt_hour(START)
    row = {"event_id": "broken-1", "event_type": "level_up", "event_time": START + 1000,
           "received_at": START + 2000, "app_id": "other", "user_id": None, "client_event_time": None,
           "attributes": "{not json"}
    lake.raw_table.table().append(to_table_rows(pa.Table.from_pylist([row])))  # e.g. written by hand
    s = lake.settings
    summary = replay(lake)
    assert summary.bad_rows == 1 and not summary.ok
    assert summary.created == len(distinct(archived))
    [key] = [o["Key"] for o in lake.clients.s3.list_objects_v2(Bucket=s.bucket, Prefix="bad-rows/search/")["Contents"]]
    bad = orjson.loads(lake.clients.s3.get_object(Bucket=s.bucket, Key=key)["Body"].read())
    assert bad["reason"] == "invalid_event" and "attributes" in bad["detail"] and "broken-1" in bad["raw_line"]


def test_an_unreadable_table_file_is_reported_and_the_rest_indexed(lake, archived, backend):
    [damaged] = [f["file_path"] for files in lake.raw_table.partitions().values() for f in files
                 if f["partition"]["app_id"] == "other"]
    bucket, key = damaged.removeprefix("s3://").split("/", 1)
    lake.clients.s3.put_object(Bucket=bucket, Key=key, Body=b"not parquet")  # a data file damaged in S3
    summary = replay(lake)
    assert not summary.ok and len(summary.unreadable) == 1 and "app_id=other" in summary.unreadable[0]
    assert summary.created == len(distinct(archived, "demo")), "the other app-hours are still indexed"


def test_the_replay_command_prints_created_then_updated_documents(lake, archived, capsys):
    argv = ["replay", "--from", layout_iso(START - HOUR), "--to", layout_iso(START + 3 * HOUR), "--no-progress"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert f"{len(distinct(archived))} document(s) created" in out
    assert cli.main([*argv, "--app", "demo"]) == 0
    assert f"{len(distinct(archived, 'demo'))} updated" in capsys.readouterr().out


def layout_iso(ms: int) -> str:
    from chalicelib.stream.instants import ms_to_iso
    return ms_to_iso(ms)


def test_on_aws_the_stage_stack_outputs_give_the_bucket_and_the_signed_search_domain(lake):
    from eventpipe.ops.replay import stage_environment
    import boto3
    from botocore.config import Config
    # moto's CreateStack can outlast the clients' 10 s read timeout on a busy machine; a retry would fail on
    # "already exists".
    cloudformation = boto3.client("cloudformation", endpoint_url=lake.settings.aws_endpoint_url, region_name="us-east-1",
                                  config=Config(read_timeout=120, retries={"max_attempts": 1}))
    cloudformation.create_stack(StackName="eventpipe-dev", TemplateBody=orjson.dumps({
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {"LakeBucketName": {"Value": "eventpipe-dev-lake-123"},
                    "SearchEndpoint": {"Value": "https://search-eventpipe-dev.us-east-1.es.amazonaws.com"},
                    "StateTableName": {"Value": "eventpipe-dev-state"}}}).decode())
    env = stage_environment(cloudformation, "eventpipe-dev")
    assert env == {"EVENTPIPE_BUCKET": "eventpipe-dev-lake-123", "EVENTPIPE_STATE_TABLE": "eventpipe-dev-state",
                   "OPENSEARCH_URL": "https://search-eventpipe-dev.us-east-1.es.amazonaws.com",
                   "EVENTPIPE_OPENSEARCH_SIGV4": "es"}
    settings = Settings.from_env(env)
    assert (settings.bucket, settings.opensearch_sigv4_service) == ("eventpipe-dev-lake-123", "es")


def test_progress_is_reported_as_it_goes_and_a_stop_ends_the_replay_between_calls(lake, archived, backend,
                                                                                   monkeypatch):
    """The local stack's background rebuild: ``report`` sees the counts grow hour by hour, and ``stop`` ends
    the replay before its next indexer call, the summary saying so (the next start replays it all again)."""
    from eventpipe.ops import replay as replay_module
    monkeypatch.setattr(replay_module, "EVENTS_PER_CALL", 100)
    seen: list[tuple[int, int, int]] = []
    full = replay(lake, report=lambda s: seen.append((s.events, s.hours_replayed, s.hours_to_replay)))
    assert not full.stopped and full.events == len(distinct(archived))
    assert full.hours_to_replay == 2 and seen[-1] == (full.events, 2, 2)
    assert [events for events, _, _ in seen] == sorted(events for events, _, _ in seen) and len(seen) >= 4
    assert seen[0][:2] == (100, 0)  # reported after the first call, before the first hour is done

    calls: list[int] = []
    stopped = replay(lake, report=lambda s: calls.append(s.events), stop=lambda: len(calls) >= 2)
    assert stopped.stopped and stopped.events == 200 and stopped.hours_replayed == 0
