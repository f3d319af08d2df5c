"""Ingest benchmark.

(a) validation + packing throughput of the ingest service on one core, for
    1,000-event batches (target >= 50,000 events/s); beside it the Segment path
    (``POST /v1/batch``: the same events as analytics-python's track messages,
    100 per batch as that client sends them, mapped and then validated and
    packed by the same code) and the native path at that batch size;
(s) the suppression check (privacy regulations) per request, on validated 1,000- and 100-event
    requests: an app with no suppressed user (the cached empty list) and one with 5,000;
(b) the local end-to-end POST-to-Kinesis rate through the real stack (moto
    server + HTTP API), with Kinesis records and PUT payload units per 1,000
    events.

    .venv/bin/python bench/ingest.py [--events 200000] [--e2e-events 50000] [--smoke]
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

from chalicelib.stream.instants import ms_to_iso  # noqa: E402
from eventpipe.generate import generate_events, write_ndjson  # noqa: E402
from chalicelib.ingest.sdk import SdkIngestService  # noqa: E402
from chalicelib.ingest.segment import SEGMENT  # noqa: E402
from chalicelib.ingest.service import IngestService  # noqa: E402
from chalicelib.stream.badrows import MemoryBadRowsSink  # noqa: E402

PAYLOAD_UNIT = 25 * 1024  # Kinesis PUT payload unit


def _one_core() -> None:
    try:
        os.sched_setaffinity(0, {0})
    except (AttributeError, OSError):
        pass


def _best_rates(events: int, runs: dict, passes: int = 3) -> dict[str, tuple[float, int, int, int]]:
    """Best of ``passes`` for each path, the paths interleaved (a shared machine slows them alike).

    Returns: path -> (events/s, accepted events, records, PUT payload units of the last pass).
    """
    best: dict[str, tuple[float, int, int, int]] = {}
    for _ in range(passes):
        for name, run in runs.items():
            started = time.perf_counter()
            accepted = records = units = 0
            for prepared in run():
                accepted += len(prepared.accepted)
                records += len(prepared.records)
                units += sum(math.ceil(len(r.data) / PAYLOAD_UNIT) for r in prepared.records)
            rate = events / (time.perf_counter() - started)
            if rate > best.get(name, (0.0,))[0]:
                best[name] = (rate, accepted, records, units)
    return best


def segment_track(event: dict) -> dict:
    """A generated event as analytics-python sends a track call (name in prose, its library context)."""
    return {"type": "track", "event": event["event_type"].replace("_", " ").title(), "userId": event["user_id"],
            "messageId": event["event_id"], "timestamp": event["event_time"], "properties": event["attributes"],
            "context": {"library": {"name": "analytics-python", "version": "2.4.0"}}, "integrations": {}}


def bench_service(events: int, batch: int, segment_batch: int) -> None:
    _one_core()
    start_ms = int(time.time() * 1000) - 3_600_000
    raw = list(generate_events(events, seed=42, start_ms=start_ms))
    clock = lambda: start_ms + 3_600_000  # noqa: E731
    service = IngestService(sink=None, clock_ms=clock)

    def native(size: int):
        bodies = [orjson.dumps({"events": raw[i:i + size]}) for i in range(0, len(raw), size)]
        return lambda: (service.prepare("demo", body, "application/json", None) for body in bodies)

    sdk = SdkIngestService(sink=None, bad_rows=MemoryBadRowsSink("ingest"), clock_ms=clock)
    sent_at = ms_to_iso(start_ms + 3_600_000)
    bodies = [orjson.dumps({"batch": [segment_track(e) for e in raw[i:i + segment_batch]], "sentAt": sent_at})
              for i in range(0, len(raw), segment_batch)]
    rates = _best_rates(events, {
        "native": native(batch), "native_small": native(segment_batch),
        "segment": lambda: (sdk.prepare_body(SEGMENT, "demo", body, "application/json", None, "/v1/batch")
                            for body in bodies)})
    assert all(accepted == events for _, accepted, _, _ in rates.values()), "every generated event must be valid"
    best, _, records, units = rates["native"]
    print(f"(a) validate + pack, one core, {batch}-event batches: {best:,.0f} events/s (target 50,000)")
    print(f"    Kinesis records per 1,000 events: {records * 1000 / events:.2f}; "
          f"PUT payload units per 1,000 events: {units * 1000 / events:.2f} "
          f"(unpacked: 1,000 records / 1,000 units)")
    segment_rate, native_rate = rates["segment"][0], rates["native_small"][0]
    print(f"    Segment POST /v1/batch (map + validate + pack), {segment_batch}-message batches: "
          f"{segment_rate:,.0f} events/s; native at {segment_batch}-event batches: {native_rate:,.0f} events/s "
          f"({segment_rate / native_rate:.2f}x)")


def bench_suppression(events: int) -> None:
    """(s): microseconds per request of ``Suppression.keep`` (the list cached: one lookup per request
    when the app has no suppressed user, one SHA-256 per event when it has some)."""
    from chalicelib.ingest.suppression import Suppression
    from chalicelib.ingest.validation import validate_event
    from chalicelib.lake.regulations import user_hash

    start_ms = int(time.time() * 1000) - 3_600_000
    raw = list(generate_events(events, seed=7, start_ms=start_ms))
    accepted = list(enumerate(validate_event(e, "demo", start_ms + 3_600_000) for e in raw))

    class Store:  # the list as the cache holds it (a miss costs one BatchGetItem per app and TTL)
        def __init__(self, hashes):
            self.hashes = hashes

        def suppressed_hashes(self, app_id):
            return self.hashes

        def count_suppressed(self, app_id, day, n):
            pass

    lists = {"none": frozenset(), "5000": frozenset(user_hash("demo", f"gone-{i}") for i in range(5000))}
    for size in (1000, 100):
        batches = [accepted[i:i + size] for i in range(0, len(accepted), size)]
        for name, hashes in lists.items():
            check = Suppression(Store(hashes), lambda: start_ms, ttl_s=3600)
            best = math.inf
            for _ in range(3):
                started = time.perf_counter()
                for b in batches:
                    check.keep("demo", b)
                best = min(best, (time.perf_counter() - started) / len(batches))
            print(f"(s) suppression check, {size}-event requests, {name} suppressed user(s): "
                  f"{best * 1e6:,.1f} us per request ({best * 1e6 / size:.2f} us per event)")


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
    parser.add_argument("--segment-batch", type=int, default=100, help="messages per Segment batch (the client's)")
    parser.add_argument("--e2e-events", type=int, default=50_000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--smoke", action="store_true", help="a tiny run (CI): 2,000 events, no end-to-end part")
    args = parser.parse_args()
    if args.smoke:
        args.events, args.e2e_events = 2000, 0
    bench_service(args.events, args.batch, args.segment_batch)
    bench_suppression(min(args.events, 100_000))
    if args.e2e_events:
        bench_e2e(args.e2e_events, args.batch, args.concurrency)


if __name__ == "__main__":
    main()
