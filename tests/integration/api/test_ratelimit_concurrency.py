"""The DynamoDB buckets under concurrency and split over several items, on a real moto server.

Rules: an app under its limit is never refused, however many threads share its bucket; an app
whose request rate is above what one item can take is split over several items and still
admits exactly its burst.
"""

from __future__ import annotations

import logging
import random
import threading
import time

import boto3
import pytest
from moto.server import ThreadedMotoServer

from chalicelib.apps.ratelimit import ITEM_ADMISSIONS_PER_S, MAX_SHARDS, NS, Limits, shard_count
from chalicelib.apps.ratelimit_store import DynamoBuckets, bucket_key
from eventpipe.local.stack import free_port

T0_MS = 1_767_268_800_000


@pytest.fixture(scope="module")
def dynamodb():
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    client = boto3.client("dynamodb", endpoint_url=f"http://{host}:{port}", region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    yield client
    server.stop()


@pytest.fixture
def table(dynamodb) -> str:
    name = f"apps-{random.getrandbits(32):08x}"
    dynamodb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                          AttributeDefinitions=[{"AttributeName": "key_hash", "AttributeType": "S"}],
                          KeySchema=[{"AttributeName": "key_hash", "KeyType": "HASH"}])
    return name


def test_sixteen_threads_under_the_limit_are_never_refused(dynamodb, table):
    """400 requests from 16 threads at whatever rate moto allows (tens to a few hundred a second) against
    200 requests/s with a 10 s burst (2,000 requests): the rule admits every one, so any 429 is contention.
    The wall clock is real: the bucket hovers around ``tat ~ now``, where guesses go wrong."""
    buckets = DynamoBuckets(dynamodb, table, lambda: time.time_ns() // 1_000_000)
    limits = Limits(events_per_second=1e6, requests_per_second=200, burst_seconds=10)
    refused, admitted = [], []

    def client(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(25):
            decision = buckets.take("busy", limits, 1, 1)
            (admitted if decision.admitted else refused).append(decision)
            time.sleep(rng.uniform(0, 0.02))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(refused) == 0 and len(admitted) == 400
    assert buckets.writes <= 3 * len(admitted)  # an admission takes at most 3 conditional writes


def test_an_app_above_one_items_rate_is_split_and_admits_exactly_its_burst(dynamodb, table):
    """1,000 requests/s is 4 items of 250/s; with no time passing the app gets its burst (200) once."""
    now = [T0_MS]
    limits = Limits(events_per_second=1e6, requests_per_second=1000, burst_seconds=0.2)
    assert shard_count(limits) == 4
    buckets = DynamoBuckets(dynamodb, table, lambda: now[0], rng=random.Random(3))
    admitted = sum(buckets.take("big", limits, 1, 0).admitted for _ in range(260))
    assert admitted == 200
    writes = buckets.writes
    assert not buckets.take("big", limits, 1, 0).admitted and buckets.writes == writes  # refused from memory
    items = [dynamodb.get_item(TableName=table, Key=bucket_key("big", shard)).get("Item") for shard in range(5)]
    assert [item is not None for item in items] == [True, True, True, True, False]
    assert {item["key_hash"]["S"] for item in items[:4]} == {"bucket#big", "bucket#big#1", "bucket#big#2",
                                                             "bucket#big#3"}
    # each item holds a quarter: 50 requests of 4 ms each past T0
    assert {int(item["requests_tat"]["N"]) for item in items[:4]} == {T0_MS * (NS // 1000) + 50 * 4_000_000}
    now[0] += 100  # 0.1 s later: 100 requests' worth has come back, spread over the 4 items
    assert sum(buckets.take("big", limits, 1, 0).admitted for _ in range(150)) == 100


def test_a_second_process_sees_the_split_buckets_it_did_not_write(dynamodb, table):
    """Two API processes share the split buckets: together they admit the burst once."""
    now = [T0_MS]
    limits = Limits(events_per_second=1e6, requests_per_second=1000, burst_seconds=0.2)
    first = DynamoBuckets(dynamodb, table, lambda: now[0], rng=random.Random(1))
    second = DynamoBuckets(dynamodb, table, lambda: now[0], rng=random.Random(2))
    admitted = sum((first if i % 2 else second).take("shared", limits, 1, 0).admitted for i in range(400))
    assert admitted == 200


def test_ten_thousand_requests_per_second_stay_within_dynamodb_per_item_limits():
    """The split is planned so that no item takes more than 250 admissions/s (1,000 WCU/s per partition,
    at most 3 writes per admission)."""
    for rate in (1, 200, 250, 251, 10_000, 99_999):
        limits = Limits(events_per_second=1e6, requests_per_second=rate, burst_seconds=1)
        shards = shard_count(limits)
        assert limits.split(shards).requests_per_second <= ITEM_ADMISSIONS_PER_S
        assert 3 * ITEM_ADMISSIONS_PER_S <= 1000
        assert shards == 1 or limits.split(shards - 1).requests_per_second > ITEM_ADMISSIONS_PER_S
    assert shard_count(Limits(1e6, 10_000, 1)) == 40
    assert shard_count(Limits(1e6, 1e9, 1)) == MAX_SHARDS
