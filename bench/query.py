"""Query benchmark on the local stack.

Posts a day of generated events through the API, waits until the pipeline has
archived, aggregated and finalized them, then measures

(a) p50/p95 latency of ``GET /v1/metrics/event_counts`` over 24 hours of
    1-minute windows (target p95 <= 300 ms), and
(b) ``eventpipe query`` (Athena SQL translated to DuckDB over the Parquet lake
    on moto) for a day of raw events: in-process and as the CLI command.

    .venv/bin/python bench/query.py [--events 200000] [--requests 40] [--smoke]

(c) ``--tenant-scaling``: the same app's query with 1 and with 1,000 other apps' data in
    the lake, finalized and open (bench/tenant_scaling.py; no local stack needed):

    .venv/bin/python bench/query.py --tenant-scaling [--others 1000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chalicelib.runtime.clients import Clients  # noqa: E402
from chalicelib.ingest.validation import ms_to_iso  # noqa: E402
from eventpipe.generate import generate_events, write_ndjson  # noqa: E402
from chalicelib.lake import layout  # noqa: E402
from chalicelib.lake.s3io import list_keys  # noqa: E402
from chalicelib.processing import load_metrics  # noqa: E402
from eventpipe.local.stack import Stack, StackConfig, free_port  # noqa: E402
from eventpipe.sender import send_file  # noqa: E402

DAY_MS = 86_400_000


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def wait_finalized(clients: Clients, bucket: str, timeout_s: float = 600) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        metric = load_metrics()["event_counts"]
        partial = any(True for _ in list_keys(clients.s3, bucket, layout.rollup_prefix(metric, "partial")))
        final = any(True for _ in list_keys(clients.s3, bucket, layout.rollup_prefix(metric, "final")))
        if final and not partial:
            return time.monotonic() - started
        time.sleep(2)
    raise TimeoutError("the pipeline did not finalize in time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--tenant-scaling", action="store_true", help="only case (c)")
    parser.add_argument("--others", type=int, default=1000, help="(c): other apps")
    parser.add_argument("--smoke", action="store_true",
                        help="CI: (a) and (b) with 2,000 events in 2 hours (fewer hours to finalize), 3 requests")
    args = parser.parse_args()
    if args.smoke:
        args.events, args.requests = 2000, 3
    if args.tenant_scaling:
        from bench import tenant_scaling
        tenant_scaling.main(others=args.others, repeat=min(args.requests, 20))
        return

    day_start = (int(time.time() * 1000) // 3_600_000 - 25) * 3_600_000
    config = StackConfig(moto_port=free_port(), http_port=free_port(), search_port=free_port(),
                         project_dir=str(ROOT), quiet=True,
                         # A grace period as deployed would make the bench wait 15 min for the cleanup; 30 s
                         # keeps what it changes for readers: finals checked less than grace/2 ago are trusted.
                         extra_env={"EVENTPIPE_SCHEDULE_SECONDS": "5", "EVENTPIPE_FINALIZE_GRACE_S": "30",
                                    "EVENTPIPE_FINALIZE_CLOSE_DELAY_S": "0"})
    with tempfile.TemporaryDirectory() as tmp, Stack(config) as stack:
        path = os.path.join(tmp, "day.ndjson")
        span_ms = 2 * 3_600_000 if args.smoke else DAY_MS
        write_ndjson(path, generate_events(args.events, seed=11, start_ms=day_start, duration_ms=span_ms))
        summary = send_file(path, stack.api_url, "demo-key", 1000, use_gzip=True, concurrency=4, progress=False)
        print(f"loaded: {summary.describe()}")
        clients = Clients(stack.settings)
        print(f"pipeline finalized the day {wait_finalized(clients, stack.settings.bucket):.0f} s after the load")

        session = requests.Session()
        params = {"from": ms_to_iso(day_start), "to": ms_to_iso(day_start + DAY_MS), "limit": 10000}
        timings, rows = [], 0
        for _ in range(args.requests):
            started = time.perf_counter()
            response = session.get(f"{stack.api_url}/v1/metrics/event_counts", params=params,
                                   headers={"x-api-key": "demo-key"}, timeout=60)
            timings.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.text
            rows = len(response.json()["rows"])
        print(f"(a) GET /v1/metrics/event_counts, 24 h of 1-minute windows ({rows} rows), {args.requests} requests: "
              f"p50 {statistics.median(timings):.0f} ms, p95 {percentile(timings, 0.95):.0f} ms (target p95 300 ms); "
              f"first request (no file cached in the API process) {timings[0]:.0f} ms")

        from eventpipe.query.local_engine import LocalAthena, s3_filesystem
        sql = (f"SELECT event_type, count(*) AS events, count(DISTINCT user_id) AS users FROM events "
               f"WHERE app_id = 'demo' AND dt IN ('{ms_to_iso(day_start)[:10]}', "
               f"'{ms_to_iso(day_start + DAY_MS)[:10]}') GROUP BY event_type ORDER BY events DESC")
        settings = stack.settings
        in_process = []
        for _ in range(5):
            started = time.perf_counter()
            engine = LocalAthena(clients.glue, settings.glue_database,
                                 s3_filesystem(settings.aws_endpoint_url, settings.region), s3=clients.s3)
            result = engine.query(sql)
            in_process.append((time.perf_counter() - started) * 1000)
        print(f"(b) Athena SQL on DuckDB over a day of raw events ({sum(result['events'].to_pylist())} events): "
              f"in-process p50 {statistics.median(in_process):.0f} ms (connect + catalog + query)")
        cli = ROOT / ".venv" / "bin" / "eventpipe"
        if cli.exists():
            env = {**os.environ, **stack.env}
            started = time.perf_counter()
            done = subprocess.run([str(cli), "query", sql, "--format", "csv"], env=env, capture_output=True,
                                  text=True, timeout=300)
            elapsed = time.perf_counter() - started
            status = "ok" if done.returncode == 0 else f"failed: {done.stderr.strip()[-300:]}"
            print(f"    eventpipe query (CLI, including Python start-up): {elapsed * 1000:.0f} ms ({status})")


if __name__ == "__main__":
    main()
