"""Ingest benchmark.

(a) validation + packing throughput of the ingest service on one core, for
    1,000-event batches (target >= 50,000 events/s);
(b) the local end-to-end POST-to-Kinesis rate through the real stack (moto
    server + HTTP API), with Kinesis records and PUT payload units per 1,000
    events.

    .venv/bin/python bench/ingest.py [--events 200000] [--e2e-events 50000]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from eventpipe.generate import generate_events, write_ndjson  # noqa: E402
from chalicelib.ingest.service import IngestService  # noqa: E402

PAYLOAD_UNIT = 25 * 1024  # Kinesis PUT payload unit


def bench_service(events: int, batch: int) -> None:
    try:
        os.sched_setaffinity(0, {0})
    except (AttributeError, OSError):
        pass
    start_ms = int(time.time() * 1000) - 3_600_000
    raw = list(generate_events(events, seed=42, start_ms=start_ms))
    bodies = [orjson.dumps({"events": raw[i:i + batch]}) for i in range(0, len(raw), batch)]
    service = IngestService(sink=None, clock_ms=lambda: start_ms + 3_600_000)
    best = 0.0
    records = units = 0
    for _ in range(3):
        started = time.perf_counter()
        records = units = 0
        for body in bodies:
            prepared = service.prepare("demo", body, "application/json", None)
            records += len(prepared.records)
            units += sum(math.ceil(len(r.data) / PAYLOAD_UNIT) for r in prepared.records)
        best = max(best, events / (time.perf_counter() - started))
    print(f"(a) validate + pack, one core, {batch}-event batches: {best:,.0f} events/s (target 50,000)")
    print(f"    Kinesis records per 1,000 events: {records * 1000 / events:.2f}; "
          f"PUT payload units per 1,000 events: {units * 1000 / events:.2f} "
          f"(unpacked: 1,000 records / 1,000 units)")


def bench_e2e(events: int, batch: int, concurrency: int) -> None:
    from eventpipe.local.stack import Stack, StackConfig, free_port
    from eventpipe.sender import send_file

    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "events.ndjson")
        write_ndjson(path, generate_events(events, seed=7, start_ms=int(time.time() * 1000) - 3_600_000))
        config = StackConfig(moto_port=free_port(), http_port=free_port(), search_port=free_port(),
                             project_dir=str(root), quiet=True)
        with Stack(config) as stack:
            summary = send_file(path, stack.api_url, "demo-key", batch, use_gzip=True, concurrency=concurrency,
                                progress=False)
            from chalicelib.runtime.clients import Clients
            clients = Clients(stack.settings)
            name = stack.settings.stream_name
            records = units = 0
            for shard in clients.kinesis.list_shards(StreamName=name)["Shards"]:
                iterator = clients.kinesis.get_shard_iterator(StreamName=name, ShardId=shard["ShardId"],
                                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
                while iterator:
                    page = clients.kinesis.get_records(ShardIterator=iterator, Limit=10000)
                    records += len(page["Records"])
                    units += sum(math.ceil(len(r["Data"]) / PAYLOAD_UNIT) for r in page["Records"])
                    if not page["Records"]:
                        break
                    iterator = page.get("NextShardIterator")
    print(f"(b) local end-to-end POST -> Kinesis (gzip, {batch}-event requests, {concurrency} clients): "
          f"{summary.describe()}")
    print(f"    Kinesis records per 1,000 events: {records * 1000 / summary.accepted:.2f}; "
          f"PUT payload units per 1,000 events: {units * 1000 / summary.accepted:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--e2e-events", type=int, default=50_000)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    bench_service(args.events, args.batch)
    if args.e2e_events:
        bench_e2e(args.e2e_events, args.batch, args.concurrency)


if __name__ == "__main__":
    main()
