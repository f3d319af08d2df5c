"""A request whose Kinesis records are only partly stored: the answer lists exactly the stored events.

The full-stack ledger cannot post requests of several records (over 1 MiB compressed) without
swamping the in-memory search server, so this check runs the API's ingest service and Kinesis
writer against moto server through the fault proxy: shard 1 is over its limit (every record
routed there fails, as Kinesis answers per record), shard 0 takes its records.
"""

from __future__ import annotations

import base64
import itertools
import random

import boto3
import orjson
import pytest
from moto.server import ThreadedMotoServer

from chalicelib.ingest.kinesis_writer import KinesisWriter
from chalicelib.ingest.service import IngestService
from chalicelib.stream.codec import decode_record
from chalicelib.stream.retry import Backoff
from eventpipe.local.bootstrap import ensure_stream
from eventpipe.local.faultproxy import FaultProxy, Rule, on_shard
from eventpipe.local.stack import free_port

HOT_SHARD = Rule("put_records_partial", service="kinesis", operation="PutRecords", record_probability=1.0,
                 shard_count=2, throttled_shard=1)


def key_on(shard: int) -> str:
    return next(k for k in (f"pk{i}" for i in itertools.count()) if on_shard(HOT_SHARD, k) == (shard == 1))


@pytest.fixture
def kinesis():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    proxy = FaultProxy(f"http://{host}:{port}").start()
    direct = boto3.client("kinesis", endpoint_url=f"http://{host}:{port}", region_name="us-east-1")
    ensure_stream(direct, "s", 2)
    try:
        yield direct, boto3.client("kinesis", endpoint_url=proxy.url, region_name="us-east-1"), proxy
    finally:
        proxy.stop()
        server.stop()


def stored_event_ids(kinesis, shard_id: str) -> list[str]:
    iterator = kinesis.get_shard_iterator(StreamName="s", ShardId=shard_id,
                                          ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    records = kinesis.get_records(ShardIterator=iterator, Limit=1000)["Records"]
    return [orjson.loads(line)["event_id"] for r in records for line in decode_record(r["Data"]).splitlines()]


def test_a_partly_stored_request_acknowledges_exactly_the_stored_events(kinesis):
    direct, proxied, proxy = kinesis
    proxy.add_rule(HOT_SHARD)
    keys = itertools.cycle([key_on(0), key_on(1)])  # records alternate between the shards
    writer = KinesisWriter(proxied, "s", Backoff(max_attempts=3, base_s=0.01, cap_s=0.02), sleep=lambda s: None,
                           new_partition_key=lambda: next(keys))
    service = IngestService(writer, clock_ms=lambda: 1_767_268_800_000)
    rng = random.Random(3)  # incompressible attributes: 120 events make 4 records of ~630 KB
    events = [{"event_id": f"e{i}", "event_type": "blob", "event_time": 1_767_268_700_000,
               "attributes": {"blob": base64.b64encode(rng.randbytes(21_000)).decode()}} for i in range(120)]
    result = service.ingest("app", orjson.dumps({"events": events}), "application/json", None)
    stored = stored_event_ids(direct, "shardId-000000000000")
    assert stored_event_ids(direct, "shardId-000000000001") == []
    assert 0 < len(result.event_ids) < len(events)
    assert result.event_ids == stored  # acknowledged = stored, in request order
    retry = [e["index"] for e in result.errors if e["error"].startswith("not stored, retry this event")]
    assert sorted(retry + [int(i[1:]) for i in result.event_ids]) == list(range(len(events)))
    assert proxy.stats["injected"] >= 3  # the first call and both retries each failed shard 1's records
