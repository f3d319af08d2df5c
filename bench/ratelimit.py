"""Rate-limit benchmark: what the per-app limiter adds to a request.

(a) the pure decision (``chalicelib/api/ratelimit.decide``) per call;
(b) one admission through the DynamoDB buckets on a local moto server (loopback HTTP: a floor
    for the round trip, not DynamoDB's in-region latency), admitted and refused, with the
    number of DynamoDB writes each made.

    .venv/bin/python bench/ratelimit.py [--calls 2000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chalicelib.api.ratelimit import BucketState, Limits, decide  # noqa: E402
from chalicelib.api.ratelimit_store import DynamoBuckets  # noqa: E402


def bench_decide(calls: int) -> None:
    limits, state, now = Limits(1e6, 1e4, 10), BucketState(), time.time_ns()
    started = time.perf_counter()
    for i in range(calls * 50):
        decide(limits, state, 1, 100, now + i)
    per_call = (time.perf_counter() - started) / (calls * 50)
    print(f"(a) decide(): {per_call * 1e6:.2f} µs per call")


def bench_dynamodb(calls: int) -> None:
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        client = boto3.client("dynamodb", endpoint_url=f"http://{host}:{port}", region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        client.create_table(TableName="apps", BillingMode="PAY_PER_REQUEST",
                            AttributeDefinitions=[{"AttributeName": "key_hash", "AttributeType": "S"}],
                            KeySchema=[{"AttributeName": "key_hash", "KeyType": "HASH"}])
        buckets = DynamoBuckets(client, "apps", lambda: time.time_ns() // 1_000_000)
        for name, limits in (("admitted", Limits(1e9, 1e9, 10)), ("refused", Limits(1, 1, 1))):
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
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    bench_decide(args.calls)
    bench_dynamodb(args.calls)


if __name__ == "__main__":
    main()
