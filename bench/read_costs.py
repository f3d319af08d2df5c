"""Expensive reads of one tenant against another's reads, on the local stack (API over HTTP).

Two apps with the default limits (200 requests/s, bursts of 10 s). Beta reads
``GET /v1/metrics/event_counts`` over 24 h, one request after another: alone, then while alpha
sends 16 ``GET /v1/pipeline`` over 7 days from 8 threads (2 rounds of 8 distinct ranges, as the
issue's probe). Prints beta's p50/p95 in both phases and alpha's answers by status.

    .venv/bin/python bench/read_costs.py [--beta-requests 30] [--rounds 2]
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chalicelib.apps.keys import AppStore  # noqa: E402
from chalicelib.runtime.clients import Clients  # noqa: E402
from chalicelib.stream.instants import ms_to_iso  # noqa: E402
from eventpipe.local.stack import Stack, StackConfig, free_port  # noqa: E402

DAY_MS = 86_400_000


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def beta_reads(url: str, key: str, count: int) -> list[float]:
    session, now = requests.Session(), int(time.time() * 1000)
    params = {"from": ms_to_iso(now - DAY_MS), "to": ms_to_iso(now)}
    timings = []
    for _ in range(count):
        started = time.perf_counter()
        response = session.get(f"{url}/v1/metrics/event_counts", params=params, headers={"x-api-key": key},
                               timeout=120)
        timings.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.text
    return timings


def alpha_flood(url: str, key: str, rounds: int, stop: threading.Event) -> collections.Counter:
    statuses: collections.Counter = collections.Counter()
    now = int(time.time() * 1000)

    def one(i: int) -> None:
        session = requests.Session()
        for r in range(rounds):
            if stop.is_set():
                return
            end = now - (i * rounds + r) * 60_000  # distinct ranges: nothing to share
            response = session.get(f"{url}/v1/pipeline", params={"from": ms_to_iso(end - 7 * DAY_MS),
                                                                  "to": ms_to_iso(end)},
                                   headers={"x-api-key": key}, timeout=300)
            statuses[response.status_code] += 1

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(8)))
    return statuses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--beta-requests", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    config = StackConfig(moto_port=free_port(), http_port=free_port(), search_port=free_port(),
                         project_dir=str(ROOT), quiet=True, with_runner=False)
    with Stack(config) as stack:
        apps = AppStore(Clients(stack.settings).dynamodb, stack.settings.apps_table)
        alpha, beta = apps.create_key("alpha"), apps.create_key("beta")
        alone = beta_reads(stack.api_url, beta, args.beta_requests)
        print(f"beta alone: GET /v1/metrics/event_counts 24 h p50 {statistics.median(alone):.0f} ms, "
              f"p95 {percentile(alone, 0.95):.0f} ms ({args.beta_requests} requests)")
        stop, result = threading.Event(), {}
        flood = threading.Thread(target=lambda: result.update(
            statuses=alpha_flood(stack.api_url, alpha, args.rounds, stop)))
        started = time.perf_counter()
        flood.start()
        time.sleep(0.5)
        during = beta_reads(stack.api_url, beta, args.beta_requests)
        flood.join()
        print(f"beta during alpha's {8 * args.rounds} GET /v1/pipeline over 7 days (8 threads): p50 "
              f"{statistics.median(during):.0f} ms, p95 {percentile(during, 0.95):.0f} ms; alpha's answers "
              f"{dict(result['statuses'])} in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
