"""Tenant scaling: one app's metrics query with 1 and with 1,000 other apps' data in the lake.

Run through ``bench/query.py --tenant-scaling`` (or directly). On a moto server it builds

* a finalized day of ``event_counts`` and ``active_users_5m`` (final rows as the finalizer
  writes them: one file per app and hour, ``layout.final_key`` / ``final_rows.encode_final``), and
* two open hours of partials, written by the real aggregation consumer in Lambda-sized batches,

for the target app alone in one bucket and with 1,000 other apps in a second one, and times
``read_windows_status(..., app_id=target)`` (what ``GET /v1/metrics/<name>`` runs): cold (a
new file cache per query, as a fresh Lambda container) and warm (one cache, as a warm one),
counting the S3 requests and the bytes of GetObject bodies of each query with botocore hooks.
Queries of the two buckets alternate, so both see the same load of the (shared) machine.

The p95 ratio is also printed without the time spent in ListObjectsV2 (the open hours' reads list
their day's partials): moto answers a listing by sorting every key of the bucket, so there a
listing of a bucket holding 1,001 apps' finalized day (48,000 final files) takes several times as
long as one of the target's bucket, whatever the prefix; S3 serves a prefix from its key index.
"""

from __future__ import annotations

import base64
import os
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import pyarrow.compute as pc
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chalicelib.ingest.validation import validate_event  # noqa: E402
from chalicelib.lake import layout  # noqa: E402
from chalicelib.lake.badrows import S3BadRowsSink  # noqa: E402
from chalicelib.lake.consumers import AggregationService  # noqa: E402
from chalicelib.lake.final_rows import encode_final, split_by_app  # noqa: E402
from chalicelib.lake.rollups import FileCache, read_windows_status  # noqa: E402
from chalicelib.lake.state import StateStore  # noqa: E402
from chalicelib.processing import MetricSet, load_metrics, merge_partials  # noqa: E402
from chalicelib.processing.batch import process_batch  # noqa: E402
from chalicelib.runtime.clients import Clients  # noqa: E402
from chalicelib.runtime.settings import Settings  # noqa: E402
from chalicelib.stream import codec  # noqa: E402
from eventpipe.generate import generate_events  # noqa: E402
from eventpipe.local.bootstrap import bootstrap  # noqa: E402
from eventpipe.local.stack import free_port  # noqa: E402

HOUR_MS = 3_600_000
DAY = 1_767_225_600_000  # 2026-01-01T00:00:00Z: the finalized day
OPEN = DAY + 24 * HOUR_MS  # 2026-01-02T00:00Z + 2 h: the open (partials only) range
TARGET = "target"
OTHERS = 1000
NAMES = ("event_counts", "active_users_5m")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def event_lines(app_id: str, count: int, seed: int, start_ms: int, duration_ms: int) -> list[bytes]:
    return [validate_event(raw, app_id, received_at=start_ms + duration_ms).line
            for raw in generate_events(count, seed, start_ms, duration_ms, users=200)]


def records_of(lines: list[bytes], shard: str, first_seq: int, per_record: int = 50) -> list[dict]:
    out = []
    for i in range(0, len(lines), per_record):
        seq = str(first_seq + len(out))
        for packed in codec.pack(lines[i:i + per_record]):
            out.append({"kinesis": {"partitionKey": "pk", "sequenceNumber": seq, "approximateArrivalTimestamp": 0.0,
                                    "data": base64.b64encode(packed.data).decode(), "kinesisSchemaVersion": "1.0"},
                        "eventSource": "aws:kinesis", "eventID": f"{shard}:{seq}", "eventName": "aws:kinesis:record",
                        "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/eventpipe-events"})
    return out


class DirectPuts:
    """The S3 client, with put_object going straight into the moto server's in-process store.

    Only to build the data quickly (tens of thousands of small PUTs); every read is HTTP."""

    def __init__(self, client) -> None:  # noqa: ANN001
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.s3.models import s3_backends
        self._client, self._backend = client, s3_backends[DEFAULT_ACCOUNT_ID]["global"]

    def put_object(self, Bucket: str, Key: str, Body: bytes, **_) -> dict:  # noqa: N803 - boto3's names
        return {"ETag": self._backend.put_object(Bucket, Key, bytes(Body)).etag}

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(self._client, name)


class Lake:
    def __init__(self, clients: Clients, metrics: MetricSet) -> None:
        self.s3, self.bucket, self.metrics = clients.s3, clients.settings.bucket, metrics
        self.writer = DirectPuts(self.s3)
        self.state = StateStore(clients.dynamodb, clients.settings.state_table)
        self.final_rows: dict[tuple[str, str, str], list] = {}
        self.requests, self.bytes, self.listing_ms = 0, 0, 0.0
        self._lock, self._local = threading.Lock(), threading.local()
        self.s3.meta.events.register("before-send.s3", self._count)
        self.s3.meta.events.register("after-call.s3.GetObject", self._got)
        self.s3.meta.events.register("before-call.s3.ListObjectsV2", self._list_started)
        self.s3.meta.events.register("after-call.s3.ListObjectsV2", self._list_done)

    def _count(self, **_) -> None:
        with self._lock:
            self.requests += 1

    def _got(self, parsed, **_) -> None:  # noqa: ANN001
        with self._lock:
            self.bytes += parsed.get("ContentLength", 0) or 0

    def _list_started(self, **_) -> None:
        self._local.started = time.perf_counter()

    def _list_done(self, **_) -> None:
        with self._lock:
            self.listing_ms += (time.perf_counter() - self._local.started) * 1000

    def add_finals(self, lines: list[bytes]) -> None:
        """Final rows of these events, merged into each (metric, hour)'s final file(s)."""
        result = process_batch(records_of(lines, "shardId-000000000000", 1), self.metrics, max_event_time_before=None)
        for name, table in result.partials.items():
            hour = pc.multiply(pc.divide(table["window_start"], HOUR_MS), HOUR_MS)
            for start in pc.unique(hour).to_pylist():
                self.final_rows.setdefault((name, *layout.dt_hour(start)), []).append(
                    table.filter(pc.equal(hour, start)))
        jobs = [(name, dt, hour, merge_partials(tables)) for (name, dt, hour), tables in self.final_rows.items()]
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda job: self._write_final(*job), jobs))

    def _write_final(self, name: str, dt: str, hour: str, rows) -> None:  # noqa: ANN001
        """The finalizer's output: one file per app (layout.final_key, final_rows.encode_final)."""
        metric = self.metrics[name]
        for app_id, app_rows in split_by_app(rows):
            self.writer.put_object(Bucket=self.bucket, Key=layout.final_key(metric, dt, hour, app_id),
                                   Body=encode_final(metric, app_rows))

    def add_partials(self, lines: list[bytes], shard: str, batch_records: int = 100) -> int:
        service = AggregationService(self.writer, self.bucket, self.state, self.metrics,
                                     S3BadRowsSink(self.writer, self.bucket, "aggregate"))
        records = records_of(lines, shard, 1000)
        for i in range(0, len(records), batch_records):
            service.handle(records[i:i + batch_records])
        return (len(records) + batch_records - 1) // batch_records



def measure(alone: Lake, crowded: Lake, name: str, start: int, end: int, repeat: int) -> dict:
    """Alternating queries of the two lakes, so both see the same machine load."""
    out = {}
    for mode in ("cold", "warm"):
        shared = {id(alone): FileCache(), id(crowded): FileCache()}
        timings: dict[int, list[float]] = {id(alone): [], id(crowded): []}
        unlisted: dict[int, list[float]] = {id(alone): [], id(crowded): []}
        counts: dict[int, list[int]] = {id(alone): [], id(crowded): []}
        sizes: dict[int, list[int]] = {id(alone): [], id(crowded): []}
        rows = {}
        for _ in range(repeat):
            for lake in (alone, crowded):
                cache = FileCache() if mode == "cold" else shared[id(lake)]
                before, got, listed = lake.requests, lake.bytes, lake.listing_ms
                started = time.perf_counter()
                answer = read_windows_status(lake.s3, lake.bucket, lake.metrics[name], start, end, TARGET,
                                             cache=cache).rows
                timings[id(lake)].append((time.perf_counter() - started) * 1000)
                unlisted[id(lake)].append(timings[id(lake)][-1] - (lake.listing_ms - listed))
                counts[id(lake)].append(lake.requests - before)
                sizes[id(lake)].append(lake.bytes - got)
                rows[id(lake)] = answer.num_rows
        assert rows[id(alone)] == rows[id(crowded)], f"{name}: the target's answer changed"
        out[mode] = [(statistics.median(timings[k]), percentile(timings[k], 0.95), statistics.median(counts[k]),
                      rows[k], percentile(unlisted[k], 0.95), statistics.median(sizes[k]))
                     for k in (id(alone), id(crowded))]
    return out


def report(label: str, result: dict) -> None:
    for mode in ("cold", "warm"):
        (p50a, p95a, ra, rows, xa, ba), (p50b, p95b, rb, _, xb, bb) = result[mode]
        print(f"  {label:31s} {mode}: 1 app p50 {p50a:6.1f} ms p95 {p95a:6.1f} ms {ra:3.0f} req {ba / 1024:6.0f} KiB | "
              f"+{OTHERS} apps p50 {p50b:6.1f} ms p95 {p95b:6.1f} ms {rb:3.0f} req {bb / 1024:6.0f} KiB | ratio p50 "
              f"{p50b / p50a:4.2f} p95 {p95b / p95a:4.2f}, p95 without ListObjectsV2 {xb / max(xa, 1e-9):4.2f} "
              f"({rows} rows)", flush=True)


def main(others: int = 1000, target_events: int = 20_000, other_events: int = 200, repeat: int = 20) -> None:
    from moto.server import ThreadedMotoServer
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        requests.post(f"http://127.0.0.1:{port}/moto-api/reset", timeout=10)
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            os.environ.setdefault(name, "testing")
        settings = Settings(aws_endpoint_url=f"http://127.0.0.1:{port}")
        clients = Clients(settings)
        bootstrap(clients, shards=1)
        clients.s3.create_bucket(Bucket="tenant-scaling-crowded")
        full = load_metrics()
        metrics = MetricSet(tuple(full[n] for n in NAMES), full.settings)
        alone = Lake(clients, metrics)
        crowded = Lake(Clients(Settings(aws_endpoint_url=settings.aws_endpoint_url, bucket="tenant-scaling-crowded")),
                       metrics)
        started = time.monotonic()
        day, open_ = event_lines(TARGET, target_events, 1, DAY, 24 * HOUR_MS), \
            event_lines(TARGET, target_events // 12, 2, OPEN, 2 * HOUR_MS)
        for lake in (alone, crowded):
            lake.add_finals(day)
            batches = lake.add_partials(open_, "shardId-000000000000")
        print(f"tenant scaling: target app {target_events} events/day finalized + {target_events // 12} in 2 open "
              f"hours ({batches} batches), built in {time.monotonic() - started:.0f} s", flush=True)
        started = time.monotonic()
        day_lines, open_lines = [], []
        for i in range(others):
            app_id = f"app-{i:04d}"
            day_lines += event_lines(app_id, other_events, 100 + i, DAY, 24 * HOUR_MS)
            open_lines += event_lines(app_id, max(1, other_events // 12), 5000 + i, OPEN, 2 * HOUR_MS)
        crowded.add_finals(day_lines)
        batches = crowded.add_partials(sorted(open_lines, key=lambda line: orjson.loads(line)["event_time"]),
                                       "shardId-000000000001")
        print(f"  + {others} other apps in a second bucket: {len(day_lines)} events finalized, {len(open_lines)} in "
              f"the open hours ({batches} batches mixing the apps), built in {time.monotonic() - started:.0f} s",
              flush=True)
        cases = [("event_counts, finalized day", "event_counts", DAY, DAY + 24 * HOUR_MS),
                 ("active_users_5m, finalized day", "active_users_5m", DAY, DAY + 24 * HOUR_MS),
                 ("event_counts, 2 open hours", "event_counts", OPEN, OPEN + 2 * HOUR_MS),
                 ("active_users_5m, 2 open hours", "active_users_5m", OPEN, OPEN + 2 * HOUR_MS)]
        global OTHERS
        OTHERS = others
        for label, name, start, end in cases:
            report(label, measure(alone, crowded, name, start, end, repeat))
    finally:
        server.stop()


if __name__ == "__main__":
    import argparse
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--others", type=int, default=1000, help="other apps in the crowded lake")
    parser.add_argument("--target-events", type=int, default=20_000, help="the target app's events of the day")
    parser.add_argument("--other-events", type=int, default=200, help="each other app's events of the day")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (CI): the same code paths")
    args = parser.parse_args()
    if args.smoke:
        args.others, args.target_events, args.other_events, args.repeat = 20, 600, 24, 2
    main(args.others, args.target_events, args.other_events, args.repeat)
