"""Rate-limit benchmark: what the per-app limiter adds to a request.

(a) the pure decision (``chalicelib/apps/ratelimit.decide``) per call;
(b) one admission through the DynamoDB buckets (an app of 10,000 requests/s: 40 items) on a local moto server (loopback HTTP: a floor
    for the round trip, not DynamoDB's in-region latency), admitted and refused, with the
    number of DynamoDB writes each made;
(c) concurrency: 400 admissions from 1-16 threads on the real clock against 200 requests/s with a
    10 s burst (the rule admits all 400): refusals, admissions/s, DynamoDB writes per admission;
(d) an app of 10,000 requests/s (split over 40 items) offered 10,000 requests/s of virtual time
    (a stepped clock; moto cannot serve that rate): writes per admission and the most writes one
    item took in one virtual second (DynamoDB's limit: 1,000 per partition key).

(e) refuse before the work: API time of a refused 4.5 MB POST /v1/events (1,000 events) through the
    Chalice app on moto, the request bucket of its app empty: refused on the state last seen, before
    the body is decoded (today), and refused after decoding and validating it (the order before:
    the check switched off).

    .venv/bin/python bench/ratelimit.py [--calls 2000] [--virtual 4000] [--bodies 20] [--smoke]
"""

from __future__ import annotations

import argparse
import collections
import logging
import random
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chalicelib.apps.ratelimit import BucketState, Limits, decide  # noqa: E402
from chalicelib.apps.ratelimit import shard_count  # noqa: E402
from chalicelib.apps.ratelimit_store import DynamoBuckets  # noqa: E402


def bench_decide(calls: int) -> None:
    limits, state, now = Limits(1e6, 1e4, 10), BucketState(), time.time_ns()
    started = time.perf_counter()
    for i in range(calls * 50):
        decide(limits, state, 1, 100, now + i)
    per_call = (time.perf_counter() - started) / (calls * 50)
    print(f"(a) decide(): {per_call * 1e6:.2f} µs per call")


def moto_dynamodb():
    """A moto server with an empty apps table: (client, server)."""
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    client = boto3.client("dynamodb", endpoint_url=f"http://{host}:{port}", region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    client.create_table(TableName="apps", BillingMode="PAY_PER_REQUEST",
                        AttributeDefinitions=[{"AttributeName": "key_hash", "AttributeType": "S"}],
                        KeySchema=[{"AttributeName": "key_hash", "KeyType": "HASH"}])
    return client, server


def bench_dynamodb(client, calls: int) -> None:
    buckets = DynamoBuckets(client, "apps", lambda: time.time_ns() // 1_000_000)
    for name, limits in (("admitted", Limits(1e9, 1e4, 10)), ("refused", Limits(1, 1, 1))):
        buckets.take(name, limits, 1, 100)  # the first call: a full bucket; the refused app is now in debt
        writes, samples = buckets.writes, []
        for _ in range(calls):
            started = time.perf_counter()
            buckets.take(name, limits, 1, 100)
            samples.append(time.perf_counter() - started)
        samples.sort()
        print(f"(b) {name}: median {statistics.median(samples) * 1e3:.2f} ms, "
              f"p99 {samples[int(len(samples) * 0.99)] * 1e3:.2f} ms per admission, "
              f"{(buckets.writes - writes) / calls:.2f} DynamoDB write(s) each (moto server, loopback)")


def bench_concurrency(client, total: int = 400) -> None:
    limits = Limits(events_per_second=1e6, requests_per_second=200, burst_seconds=10)
    for threads in (1, 4, 8, 16):
        buckets = DynamoBuckets(client, "apps", lambda: time.time_ns() // 1_000_000)
        app_id, outcomes = f"threads-{threads}", []

        def run() -> None:
            for _ in range(total // threads):
                outcomes.append(buckets.take(app_id, limits, 1, 1).admitted)

        started = time.perf_counter()
        workers = [threading.Thread(target=run) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        elapsed = time.perf_counter() - started
        admitted = sum(outcomes)
        print(f"(c) {threads:2d} thread(s): {len(outcomes) - admitted} of {len(outcomes)} refused at "
              f"{len(outcomes) / elapsed:.0f} requests/s (limit 200/s, burst 2,000), "
              f"{buckets.writes / max(admitted, 1):.2f} DynamoDB writes per admission")


def bench_split(client, requests: int) -> None:
    limits = Limits(events_per_second=1e9, requests_per_second=10_000, burst_seconds=1)
    step_us, now_us = 100, [1_767_268_800_000_000]  # 10,000 requests per virtual second
    buckets = DynamoBuckets(client, "apps", lambda: now_us[0] // 1000, rng=random.Random(1))
    per_item: collections.Counter = collections.Counter()
    real = client.update_item

    def counting(**request):
        per_item[request["Key"]["key_hash"]["S"]] += 1
        return real(**request)

    buckets._client = type("Counting", (), {"update_item": staticmethod(counting)})()
    admitted = 0
    for _ in range(requests):
        admitted += buckets.take("big", limits, 1, 1).admitted
        now_us[0] += step_us
    seconds = requests * step_us / 1e6
    print(f"(d) 10,000 requests/s over {shard_count(limits)} items: {admitted} of {requests} admitted, "
          f"{buckets.writes / max(admitted, 1):.2f} writes per admission, {len(per_item)} items written, "
          f"the busiest took {max(per_item.values()) / seconds:.0f} writes/s (mean "
          f"{sum(per_item.values()) / len(per_item) / seconds:.0f}/s; DynamoDB allows 1,000 per partition key)")


def bench_refused_body(endpoint: str, repeat: int) -> None:
    import json
    import os

    from chalice.test import Client

    os.environ.update({"EVENTPIPE_AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing"})
    import app as app_module
    from chalicelib.runtime.container import Container
    from chalicelib.runtime.settings import Settings
    from eventpipe.local.bootstrap import bootstrap

    container = Container(Settings.from_env())
    bootstrap(container.clients, shards=1)
    key = container.apps.create_key("flood")
    container.apps.set_limits("flood", {"requests_per_second": 0.001, "burst_seconds": 1000})  # one request
    app_module.container = container
    body = json.dumps({"events": [{"event_type": "level_up", "event_time": "2026-01-01T00:00:00Z",
                                   "event_id": f"e-{i}", "attributes": {"pad": "x" * 4400}}
                                  for i in range(1000)]})
    headers = {"x-api-key": key, "Content-Type": "application/json"}
    with Client(app_module.app) as client:
        assert client.http.post("/v1/events", headers=headers, body=body).status_code == 200
        real_check = container.limiter.check
        for name, check in (("before decoding (check on the state last seen)", real_check),
                            ("after decoding (check switched off: the order before)", lambda app_id: None)):
            container.limiter.check = check
            samples = []
            for _ in range(repeat):
                started = time.perf_counter()
                status = client.http.post("/v1/events", headers=headers, body=body).status_code
                samples.append(time.perf_counter() - started)
                assert status == 429, status
            samples.sort()
            print(f"(e) refused {len(body) / 1e6:.1f} MB body, {name}: p50 {statistics.median(samples) * 1e3:.1f} ms, "
                  f"max {samples[-1] * 1e3:.1f} ms ({repeat} requests)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--virtual", type=int, default=4000, help="requests of (d), at 10,000 per virtual second")
    parser.add_argument("--bodies", type=int, default=20, help="refused bodies of (e) per case")
    parser.add_argument("--concurrent", type=int, default=400, help="admissions of (c) per thread count")
    parser.add_argument("--smoke", action="store_true", help="CI: every part, a few calls each")
    args = parser.parse_args()
    if args.smoke:
        args.calls, args.virtual, args.bodies, args.concurrent = 30, 200, 2, 32
    bench_decide(args.calls)
    client, server = moto_dynamodb()
    try:
        bench_dynamodb(client, args.calls)
        bench_concurrency(client, args.concurrent)
        bench_split(client, args.virtual)
        bench_refused_body(client.meta.endpoint_url, args.bodies)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
