"""Search benchmarks (loopback targets only; every loop is bounded).

(a) ``index``: indexing throughput of ``index_kinesis_batch`` into an
    OpenSearch node. Realistic events (``eventpipe.generate``) are validated
    and packed exactly as the ingest API does (``codec.pack``), wrapped as
    Lambda Kinesis records and fed in Lambda-sized batches. Reports events/s
    end to end and the CPU-only part (decode + document building), then the
    store size per event (force-merged) and the mapping's field count. Uses
    its own index prefix and deletes it afterwards.

        .venv/bin/python bench/search.py index --url http://127.0.0.1:9201 [--events 200000]

(b) ``freshness``: time from POST /v1/events until GET /v1/search?q=<unique token>
    finds the event, through a running API (the local stack once search is wired).

        .venv/bin/python bench/search.py freshness --api http://127.0.0.1:8000 --key demo-key [--samples 20]

(c) ``smoke``: (a) at 2,000 events into an in-memory osmem-server it starts and stops (CI).
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import statistics
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chalicelib.stream import codec  # noqa: E402
from chalicelib.ingest.validation import ms_to_iso, validate_event  # noqa: E402
from eventpipe.generate import generate_events  # noqa: E402
from chalicelib.search import (IndexerConfig, MemoryBadRowsSink, TemplateSettings, client_for_url,  # noqa: E402
                               ensure_template, index_kinesis_batch)
from chalicelib.search.indexer import prepare_batch  # noqa: E402

def require_loopback(url: str) -> str:
    host = urllib.parse.urlsplit(url).hostname or ""
    if not (host in ("localhost", "::1") or re.fullmatch(r"127\.\d{1,3}\.\d{1,3}\.\d{1,3}", host)):
        raise SystemExit(f"refusing {url}: the benchmarks only target loopback addresses")
    return url


def lambda_batches(events: int, per_request: int, batch_records: int, now_ms: int,
                   apps: int = 4) -> Iterator[list[dict]]:
    """Lambda ``Records`` lists: one ingest request (<= per_request events) packs into one record."""
    raw = generate_events(events, seed=7, start_ms=now_ms - 6 * 3_600_000, duration_ms=6 * 3_600_000)
    lines: list[bytes] = []
    records: list[dict] = []
    seq = 10 ** 20
    for n, event in enumerate(raw):
        lines.append(validate_event(event, f"app-{n % apps}", now_ms).line)
        if len(lines) == per_request or n == events - 1:
            for packed in codec.pack(lines):
                seq += 1
                records.append({"kinesis": {"data": base64.b64encode(packed.data).decode(),
                                            "sequenceNumber": str(seq), "partitionKey": str(n),
                                            "approximateArrivalTimestamp": now_ms / 1000},
                                "eventID": f"shardId-000000000000:{seq}", "eventSourceARN": "arn:bench"})
            lines = []
            if len(records) >= batch_records:
                yield records
                records = []
    if records:
        yield records


def _count_fields(properties: dict) -> int:
    """Fields a mapping defines (objects, leaves and multi-field subfields)."""
    return sum(1 + _count_fields(spec.get("properties", {})) + _count_fields(spec.get("fields", {}))
               for spec in properties.values())


def bench_index(args: argparse.Namespace) -> None:
    url = require_loopback(args.url)
    client = client_for_url(url, timeout_s=60)
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    now_ms = int(time.time() * 1000)
    batches = list(lambda_batches(args.events, args.per_request, args.batch_records, now_ms))
    n_records = sum(len(b) for b in batches)
    data_mb = sum(len(r["kinesis"]["data"]) * 3 / 4 for b in batches for r in b) / 1e6
    print(f"{args.events} events in {n_records} records ({data_mb:.1f} MB packed), "
          f"{len(batches)} Lambda batches of <= {args.batch_records} records; prefix {prefix}")

    config = IndexerConfig(prefix=prefix, retention_days=7, max_bulk_bytes=args.bulk_bytes)
    started = time.perf_counter()
    prepared = sum(len(prepare_batch(b, now_ms, config).items) for b in batches)
    cpu_s = time.perf_counter() - started
    print(f"decode + build documents only: {prepared / cpu_s:,.0f} events/s")

    ensure_template(client, TemplateSettings(prefix=prefix, shards=1, replicas=0, refresh_interval=args.refresh))
    sink = MemoryBadRowsSink()
    try:
        started = time.perf_counter()
        indexed = failed = 0
        for batch in batches:
            result = index_kinesis_batch(batch, client=client, sink=sink, clock=lambda: now_ms, config=config)
            indexed += result.indexed
            failed += result.failed_sequence_number is not None
        elapsed = time.perf_counter() - started
        client.indices.refresh(index=f"{prefix}-*")
        stored = client.count(index=f"{prefix}-*")["count"]
        print(f"indexed {indexed} events in {elapsed:.1f} s: {indexed / elapsed:,.0f} events/s "
              f"(bulk <= {args.bulk_bytes / 1e6:.1f} MB, refresh_interval {args.refresh}); "
              f"stored {stored}, bad rows {len(sink.objects)}, failed batches {failed}")
        client.indices.forcemerge(index=f"{prefix}-*", max_num_segments=1, flush=True, request_timeout=600)
        client.indices.refresh(index=f"{prefix}-*")
        time.sleep(2)  # files of merged-away segments are deleted once no reader holds them
        store = client.indices.stats(index=f"{prefix}-*", metric="store")["_all"]["primaries"]["store"]
        fields = max(_count_fields(m["mappings"].get("properties", {}))
                     for m in client.indices.get_mapping(index=f"{prefix}-*").values())
        print(f"store after force-merge: {store['size_in_bytes'] / 1e6:.1f} MB "
              f"({store['size_in_bytes'] / stored:,.0f} bytes/event); mapping fields: {fields}")
    finally:
        client.indices.delete(index=f"{prefix}-*", ignore=[404])
        client.indices.delete_index_template(name=f"{prefix}-daily", ignore=[404])


def _http(method: str, url: str, key: str, body: bytes | None = None, timeout_s: float = 10.0) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, method=method,
                                     headers={"x-api-key": key, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def measure_freshness(api: str, key: str, samples: int = 20, timeout_s: float = 30.0,
                      poll_s: float = 0.1) -> dict:
    """POST one event with a unique token, poll search until it is found; per-sample seconds."""
    api = require_loopback(api).rstrip("/")
    latencies: list[float] = []
    misses = 0
    for _ in range(min(samples, 1000)):
        token = f"fresh{uuid.uuid4().hex}"
        event = {"event_type": "chat_message", "event_time": ms_to_iso(int(time.time() * 1000)),
                 "attributes": {"text": f"freshness probe {token}"}}
        started = time.monotonic()
        status, body = _http("POST", f"{api}/v1/events", key, json.dumps({"events": [event]}).encode())
        if status != 200 or body.get("accepted") != 1:
            raise SystemExit(f"POST /v1/events answered {status}: {body}")
        query = urllib.parse.urlencode({"q": token, "size": "1"})
        found = False
        for _ in range(int(timeout_s / poll_s) + 1):
            status, body = _http("GET", f"{api}/v1/search?{query}", key)
            if status == 200 and body.get("total", 0) >= 1:
                found = True
                break
            if time.monotonic() - started > timeout_s:
                break
            time.sleep(poll_s)
        if found:
            latencies.append(time.monotonic() - started)
        else:
            misses += 1
    report = {"samples": len(latencies), "misses": misses}
    if latencies:
        ordered = sorted(latencies)
        report.update(p50_s=round(statistics.median(ordered), 3),
                      p95_s=round(ordered[max(0, int(round(0.95 * len(ordered))) - 1)], 3),
                      max_s=round(ordered[-1], 3))
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    index = sub.add_parser("index", help="indexing throughput into an OpenSearch node")
    index.add_argument("--url", default="http://127.0.0.1:9201")
    index.add_argument("--events", type=int, default=200_000)
    index.add_argument("--per-request", type=int, default=500, help="events per ingest request (= per record)")
    index.add_argument("--batch-records", type=int, default=20, help="records per Lambda invocation")
    index.add_argument("--bulk-bytes", type=int, default=5 * 1024 * 1024)
    index.add_argument("--refresh", default="1s", help="refresh_interval of the bench indices")
    fresh = sub.add_parser("freshness", help="POST-to-searchable latency through the API")
    fresh.add_argument("--api", default="http://127.0.0.1:8000")
    fresh.add_argument("--key", required=True)
    fresh.add_argument("--samples", type=int, default=20)
    fresh.add_argument("--timeout-s", type=float, default=30.0)
    sub.add_parser("smoke", help="CI: (a) with 2,000 events into a fresh in-memory osmem-server, stopped after")
    args = parser.parse_args(argv)
    if args.mode == "smoke":
        from osmem_server import OsmemServer
        server = OsmemServer.start(japanese=False)
        try:
            bench_index(argparse.Namespace(url=server.url, events=2000, per_request=100, batch_records=5,
                                           bulk_bytes=5 * 1024 * 1024, refresh="1s"))
        finally:
            server.close()
    elif args.mode == "index":
        bench_index(args)
    else:
        print(json.dumps(measure_freshness(args.api, args.key, args.samples, args.timeout_s)))


if __name__ == "__main__":
    main()
