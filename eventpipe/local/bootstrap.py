"""Creates every resource the pipeline needs, idempotently (local stack on moto)."""

from __future__ import annotations

import time
from typing import Callable

from botocore.exceptions import ClientError

from chalicelib.apps.keys import AppStore, hash_key
from chalicelib.runtime.clients import Clients
from chalicelib.runtime.pipeline_config import load_pipeline_config


def _exists_error(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in {
        "ResourceInUseException", "BucketAlreadyOwnedByYou", "BucketAlreadyExists",
        "AlreadyExistsException", "EntityAlreadyExists"}


def _create(call: Callable[[], object]) -> bool:
    """Run a create call; False when the resource already existed."""
    try:
        call()
        return True
    except ClientError as exc:
        if _exists_error(exc):
            return False
        raise


def ensure_stream(kinesis, name: str, shards: int, timeout_s: float = 30) -> None:
    _create(lambda: kinesis.create_stream(StreamName=name, ShardCount=shards))
    deadline = time.monotonic() + timeout_s
    while kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"] != "ACTIVE":
        if time.monotonic() > deadline:
            raise TimeoutError(f"stream {name} did not become ACTIVE")
        time.sleep(0.2)


def ensure_table(dynamodb, name: str, hash_key_name: str) -> None:
    _create(lambda: dynamodb.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": hash_key_name, "AttributeType": "S"}],
        KeySchema=[{"AttributeName": hash_key_name, "KeyType": "HASH"}]))


def ensure_bucket(s3, name: str, region: str) -> None:
    kwargs = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    _create(lambda: s3.create_bucket(Bucket=name, **kwargs))


def ensure_queue(sqs, name: str, visibility_timeout_s: int, max_receive_count: int) -> str:
    """The queue and its dead-letter queue ``<name>-dlq`` (redrive after ``max_receive_count``
    receives, as the deployed queue); returns the queue's URL."""
    import json

    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq",
                               Attributes={"MessageRetentionPeriod": str(14 * 86400)})["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    attributes = {"VisibilityTimeout": str(visibility_timeout_s), "RedrivePolicy": json.dumps(
        {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)})}
    url = sqs.create_queue(QueueName=name)["QueueUrl"]  # idempotent; attributes set (again) below
    sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
    return url


def ensure_glue_database(glue, name: str) -> None:
    _create(lambda: glue.create_database(DatabaseInput={
        "Name": name, "Description": "eventpipe: raw events and metric rollups (Parquet on S3)"}))


def ensure_catalog(clients: Clients) -> None:
    """Glue tables: the raw events (Iceberg), the bad rows and every metric (partition projection)."""
    from chalicelib.lake.glue import catalog_table_inputs, ensure_table
    from chalicelib.lake.iceberg_io import BotoGlueCatalog
    from chalicelib.lake.raw_table import RawTable

    s = clients.settings
    _drop_hive_events_table(clients.glue, s.glue_database)
    RawTable(BotoGlueCatalog(clients.glue, clients.s3), s.glue_database, s.bucket).create()
    for table_input in catalog_table_inputs(s.bucket):
        ensure_table(clients.glue, s.glue_database, table_input)


def _drop_hive_events_table(glue, database: str) -> None:
    """A saved local lake from before the Iceberg table has a Hive ``events`` table: drop the
    definition (its files stay under events/ for `eventpipe lake migrate`)."""
    try:
        table = glue.get_table(DatabaseName=database, Name="events")["Table"]
    except ClientError:
        return
    if table.get("Parameters", {}).get("table_type", "").upper() != "ICEBERG":
        glue.delete_table(DatabaseName=database, Name="events")


#: The demo app's rate limits: generous, so the benchmarks (bench/ingest.py pushes ~80k events/s in
#: 1,000-event requests) and the suites posting with the demo key never meet them.
DEMO_LIMITS = {"events_per_second": 1_000_000.0, "requests_per_second": 10_000.0, "burst_seconds": 10.0}


def ensure_demo_app(clients: Clients, app_id: str, api_key: str) -> None:
    """The local demo app and its well-known key; it is an operator (sees the stream-wide figures)."""
    store = AppStore(clients.dynamodb, clients.settings.apps_table)
    existing = clients.dynamodb.get_item(TableName=clients.settings.apps_table,
                                         Key={"key_hash": {"S": hash_key(api_key)}}).get("Item")
    if existing is None or "operator" not in existing:
        store.create_key(app_id, api_key, operator=True)
    if not store.own_limits(app_id):  # limits set by hand (`eventpipe apps limits demo ...`) are kept
        store.set_limits(app_id, DEMO_LIMITS)


def bootstrap(clients: Clients, shards: int = 2, demo_app: str = "demo", demo_key: str = "demo-key") -> list[str]:
    """Create the stream, tables, bucket, Glue database and demo app; returns a report."""
    s = clients.settings
    ensure_stream(clients.kinesis, s.stream_name, shards)
    ensure_table(clients.dynamodb, s.apps_table, "key_hash")
    ensure_table(clients.dynamodb, s.state_table, "pk")
    ensure_bucket(clients.s3, s.bucket, s.region)
    ensure_glue_database(clients.glue, s.glue_database)
    ensure_catalog(clients)
    worker = load_pipeline_config(s.stage).function("finalize_worker")
    ensure_queue(clients.sqs, s.finalize_queue, worker.visibility_timeout_s or 30, worker.max_receive_count or 3)
    ensure_demo_app(clients, demo_app, demo_key)
    limits = f"{DEMO_LIMITS['events_per_second']:,.0f} events/s, {DEMO_LIMITS['requests_per_second']:,.0f} requests/s"
    return [f"kinesis stream {s.stream_name} ({shards} shards)", f"dynamodb tables {s.apps_table}, {s.state_table}",
            f"s3 bucket {s.bucket}", f"glue database {s.glue_database}",
            f"sqs queue {s.finalize_queue} (dead letters: {s.finalize_queue}-dlq)",
            f"app {demo_app!r} with key {demo_key!r} (rate limits: {limits})"]
