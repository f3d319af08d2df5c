"""Benchmark: Lambda batch -> decode -> aggregate the shipped metrics -> Parquet, on one core.

Builds Lambda-shaped Kinesis batches the way the ingest API packs them (one
request of N events -> ``codec.pack`` -> base64 records), then measures,
pinned to CPU 0 (``os.sched_setaffinity(0, {0})``):

* ours: ``decode_records`` (base64 + zstd + parse + validate + attributes)
  + ``split_too_late`` + ``aggregate`` (the shipped metrics, or those of
  ``--metrics``) + ``encode_parquet`` of every partials table;
* DuckDB (``threads=1``) doing the same aggregations over the same
  events written as plain NDJSON: ``read_ndjson`` + ``json_transform`` of the
  attributes into a temp table, then one GROUP BY per metric (geohash by bit
  interleaving in SQL, hopping windows by a 5-way cross join,
  ``approx_count_distinct`` for users, ``approx_quantile`` for the match
  duration percentiles).  DuckDB reads uncompressed NDJSON from a file and
  keeps no mergeable state, so it is a demanding baseline.

Usage::

    .venv/bin/python bench/aggregate.py                       # 10,000 records x 100 events
    .venv/bin/python bench/aggregate.py --requests 2000 --events-per-request 50 --repeat 5
    .venv/bin/python bench/aggregate.py --metrics event_counts,class_activity   # some metrics only
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import duckdb  # noqa: E402
import numpy as np  # noqa: E402
import orjson  # noqa: E402
import pyarrow as pa  # noqa: E402

from chalicelib.stream import codec  # noqa: E402
from chalicelib.processing import (MetricSet, aggregate, decode_records, encode_parquet,  # noqa: E402
                                   load_metrics, split_too_late)

T0 = 1_764_072_000_000  # 2025-11-25T12:00:00Z
EVENT_TYPES = ["session_start", "session_end", "level_up", "purchase", "match_start", "match_end",
               "item_pickup", "gps_ping", "ad_view", "chat"]
WEIGHTS = np.array([3, 3, 8, 2, 8, 8, 18, 40, 5, 5], dtype=float) / 100
CLASSES = ["mage", "warrior", "rogue", "priest", "hunter", "paladin", "druid", "warlock"]
CITIES = [(52.52, 13.405), (48.857, 2.352), (40.713, -74.006), (35.68, 139.69), (-33.87, 151.21),
          (51.507, -0.128), (37.775, -122.419), (-23.55, -46.633)]
ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/events"


def build_requests(args: argparse.Namespace) -> list[list[bytes]]:
    """Requests of canonical NDJSON event lines: one app, one player each."""
    rng = np.random.default_rng(args.seed)
    n_req, per = args.requests, args.events_per_request
    n = n_req * per
    app_weights = 1.0 / np.arange(1, args.apps + 1)
    req_app = rng.choice(args.apps, n_req, p=app_weights / app_weights.sum())
    req_user = rng.integers(0, args.users, n_req)
    req_time = T0 + rng.integers(0, args.minutes * 60_000, n_req)
    user_class = rng.integers(0, len(CLASSES), args.users)
    user_city = rng.integers(0, len(CITIES), args.users)
    user_home = rng.normal(0, 0.08, (args.users, 2))
    types = rng.choice(len(EVENT_TYPES), n, p=WEIGHTS)
    offsets = np.sort(rng.integers(0, 60_000, (n_req, per)), axis=1)[:, ::-1].reshape(-1)
    delays = rng.integers(20, 2_000, n)
    levels = rng.integers(1, 60, n)
    values = np.round(rng.gamma(2.0, 10.0, n) * 4) / 4
    jitter = rng.normal(0, 0.004, (n, 2))
    ids = rng.integers(0, 2**63, (n, 2))
    requests = []
    i = 0
    for r in range(n_req):
        app = f"app-{req_app[r]:04d}"
        user = int(req_user[r])
        uid = f"player-{user:08d}"
        cls = CLASSES[user_class[user]]
        lat0 = CITIES[user_city[user]][0] + user_home[user, 0]
        lon0 = CITIES[user_city[user]][1] + user_home[user, 1]
        lines = []
        for _ in range(per):
            etype = EVENT_TYPES[types[i]]
            t = int(req_time[r] - offsets[i])
            if etype == "gps_ping":
                attrs = {"lat": round(float(lat0 + jitter[i, 0]), 5), "lon": round(float(lon0 + jitter[i, 1]), 5),
                         "accuracy_m": 8.0}
            elif etype in ("session_start", "session_end", "chat"):
                attrs = {}
            else:
                attrs = {"character_class": cls, "level": int(levels[i]), "value": float(values[i])}
            a, b = ids[i]
            lines.append(orjson.dumps({
                "event_id": f"{a:016x}{b:016x}",
                "event_type": etype, "event_time": t, "received_at": int(req_time[r] + delays[i]),
                "app_id": app, "user_id": uid, "client_event_time": t - 150 if i % 4 else None,
                "attributes": orjson.dumps(attrs).decode()}))
            i += 1
        requests.append(lines)
    return requests


def build_records(requests: list[list[bytes]]) -> list[dict]:
    """Lambda ``event["Records"]``: each request packed as the ingest packs it."""
    records = []
    seq = 49_590_338_271_490_256_608_559_692_538_361_571_095_921_575_989_136_588_898
    for r, lines in enumerate(requests):
        for packed in codec.pack(lines):
            seq += 1
            records.append({
                "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": f"req-{r}",
                            "sequenceNumber": str(seq), "data": base64.b64encode(packed.data).decode(),
                            "approximateArrivalTimestamp": (T0 + 600_000) / 1000.0},
                "eventSource": "aws:kinesis", "eventVersion": "1.0",
                "eventID": f"shardId-000000000000:{seq}", "eventName": "aws:kinesis:record",
                "awsRegion": "us-east-1", "eventSourceARN": ARN})
    return records


def run_ours(records: list[dict], metrics, con) -> dict[str, float]:  # noqa: ANN001
    t0 = time.perf_counter()
    batch = decode_records(records, attribute_types=metrics.attribute_types, con=con)
    t1 = time.perf_counter()
    kept, _too_late = split_too_late(batch.events, metrics.settings.max_lateness_ms)
    partials = aggregate(kept, metrics, watermark_ms=T0 + 5 * 60_000)
    t2 = time.perf_counter()
    blobs = {name: encode_parquet(t) for name, t in partials.items()}
    t3 = time.perf_counter()
    assert not batch.bad, batch.bad[:3]
    return {"decode": t1 - t0, "aggregate": t2 - t1, "parquet": t3 - t2, "total": t3 - t0,
            "events": kept.num_rows, "groups": sum(t.num_rows for t in partials.values()),
            "parquet_bytes": sum(len(b) for b in blobs.values())}


GEOHASH5_SQL = """
  WITH cells AS (
    SELECT app_id, ws, user_id,
      least(floor((a.lat + 90) / 180 * 4096), 4095)::UBIGINT AS y,
      least(floor((a.lon + 180) / 360 * 8192), 8191)::UBIGINT AS x
    FROM ev WHERE event_type = 'gps_ping' AND a.lat BETWEEN -90 AND 90 AND a.lon BETWEEN -180 AND 180),
  spread AS (
    SELECT app_id, ws, user_id,
      ((((((x | (x << 8)) & 16711935) | (((x | (x << 8)) & 16711935) << 4)) & 252645135)
        | (((((x | (x << 8)) & 16711935) | (((x | (x << 8)) & 16711935) << 4)) & 252645135) << 2)) & 858993459) AS x2,
      ((((((y | (y << 8)) & 16711935) | (((y | (y << 8)) & 16711935) << 4)) & 252645135)
        | (((((y | (y << 8)) & 16711935) | (((y | (y << 8)) & 16711935) << 4)) & 252645135) << 2)) & 858993459) AS y2
    FROM cells),
  coded AS (
    SELECT app_id, ws, user_id,
      ((x2 | (x2 << 1)) & 1431655765) | ((((y2 | (y2 << 1)) & 1431655765)) << 1) AS code
    FROM spread),
  agg AS (
    SELECT app_id, ws, code, count(*) AS cnt, approx_count_distinct(user_id) AS users
    FROM coded GROUP BY ALL)
  SELECT app_id, ws, ws + 60000 AS we,
    list_aggregate([substr('0123456789bcdefghjkmnpqrstuvwxyz', ((code >> s) & 31)::INT + 1, 1)
                    FOR s IN [20, 15, 10, 5, 0]], 'string_agg', '') AS geohash5, cnt, users
  FROM agg
"""


MATCH_DURATION_SQL = """
  SELECT app_id, (event_time // 300000) * 300000 AS ws, (event_time // 300000) * 300000 + 300000 AS we,
         a.character_class AS character_class, count(*) AS count,
         approx_quantile(a.value, [0.5, 0.9, 0.99]) AS durations
  FROM ev WHERE event_type = 'match_end' AND a.value IS NOT NULL GROUP BY ALL
"""


def run_duckdb(path: str, con, names) -> dict[str, float]:  # noqa: ANN001
    cols = ("{event_id: 'VARCHAR', event_type: 'VARCHAR', event_time: 'BIGINT', received_at: 'BIGINT', "
            "app_id: 'VARCHAR', user_id: 'VARCHAR', client_event_time: 'BIGINT', attributes: 'VARCHAR'}")
    struct = '{"character_class":"VARCHAR","value":"DOUBLE","lat":"DOUBLE","lon":"DOUBLE"}'
    t0 = time.perf_counter()
    con.execute(f"""CREATE OR REPLACE TEMP TABLE ev AS
        SELECT event_type, event_time, (event_time // 60000) * 60000 AS ws, app_id, user_id,
               json_transform(attributes, '{struct}') AS a
        FROM read_ndjson('{path}', columns={cols}, format='newline_delimited')""")
    t1 = time.perf_counter()
    queries = {
        "event_counts": """SELECT app_id, ws, ws + 60000 AS we, event_type, count(*) AS count,
                   approx_count_distinct(user_id) AS users FROM ev GROUP BY ALL""",
        "class_activity": """SELECT app_id, ws, ws + 60000 AS we, a.character_class AS character_class,
                   count(*) AS count, sum(a.value) AS value_sum, min(a.value) AS value_min,
                   max(a.value) AS value_max, avg(a.value) AS value_avg, approx_count_distinct(user_id) AS users
                   FROM ev WHERE a.character_class IS NOT NULL GROUP BY ALL""",
        "region_activity": GEOHASH5_SQL,
        "active_users_5m": """SELECT app_id, ws - k * 60000 AS window_start, ws - k * 60000 + 300000 AS window_end,
                   approx_count_distinct(user_id) AS users
                   FROM ev, range(5) t(k) GROUP BY ALL""",
        "match_duration": MATCH_DURATION_SQL,
    }
    out = [con.sql(queries[name]).to_arrow_table() for name in names if name in queries]
    t2 = time.perf_counter()
    return {"load": t1 - t0, "group_by": t2 - t1, "total": t2 - t0, "groups": sum(t.num_rows for t in out)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=10_000, help="ingest requests (~ Kinesis records)")
    parser.add_argument("--events-per-request", type=int, default=100)
    parser.add_argument("--apps", type=int, default=20)
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--minutes", type=int, default=10, help="event-time span of the batch")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-duckdb", action="store_true", help="skip the DuckDB comparison")
    parser.add_argument("--metrics", help="comma-separated metric names (default: every shipped metric)")
    args = parser.parse_args()

    os.sched_setaffinity(0, {0})
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    t = time.perf_counter()
    requests = build_requests(args)
    records = build_records(requests)
    n_events = args.requests * args.events_per_request
    print(f"built {len(records):,} Kinesis records / {n_events:,} events "
          f"({sum(len(r['kinesis']['data']) for r in records) / 1e6:.1f} MB base64) in {time.perf_counter() - t:.1f}s")
    metrics = load_metrics()
    if args.metrics:
        metrics = MetricSet(tuple(metrics[name] for name in args.metrics.split(",")), metrics.settings)
    con = duckdb.connect()
    con.execute("SET threads=1")
    with tempfile.NamedTemporaryFile(suffix=".ndjson", delete=False) as f:
        for lines in requests:
            f.write(b"\n".join(lines) + b"\n")
        path = f.name
    del requests
    ours, duck = [], []
    try:
        run_ours(records[: max(1, len(records) // 20)], metrics, con)  # warm-up
        for _ in range(args.repeat):
            ours.append(run_ours(records, metrics, con))
            if not args.no_duckdb:
                duck.append(run_duckdb(path, con, metrics.names))
    finally:
        os.unlink(path)
    _report(ours, duck, n_events, len(metrics.metrics))
    handler_rate = run_handler(records, metrics, n_events, args.repeat)
    print(f"handler: AggregationService.handle (decode + late split + aggregate + registers + Parquet, "
          f"S3/DynamoDB stubbed): {handler_rate:,.0f} events/s per core (best)")


class _NullS3:
    """Takes the handler's writes without I/O (the benchmark excludes S3)."""

    def __init__(self) -> None:
        self.bytes = 0

    def put_object(self, **kwargs) -> None:  # noqa: ANN003
        self.bytes += len(kwargs["Body"])


class _NullState:
    def max_event_time(self, consumer: str, shard_id: str) -> None:
        return None

    def raise_max_event_time(self, consumer: str, shard_id: str, event_time_ms: int) -> None:
        pass


def run_handler(records: list[dict], metrics, n_events: int, repeat: int) -> float:  # noqa: ANN001
    from chalicelib.lake.consumers import AggregationService
    from chalicelib.stream.badrows import MemoryBadRowsSink

    service = AggregationService(_NullS3(), "bench", _NullState(), metrics, MemoryBadRowsSink("aggregate"))
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        assert service.handle(records) == {"batchItemFailures": []}
        best = min(best, time.perf_counter() - started)
    return n_events / best


def _report(ours: list[dict], duck: list[dict], n_events: int, n_metrics: int) -> None:
    def row(label: str, values: list[float]) -> None:
        best, med = min(values), statistics.median(values)
        print(f"{label:<52} {best:>8.3f} {med:>8.3f} {n_events / best:>12,.0f} {n_events / med:>12,.0f}")

    print(f"\n{'stage (1 core, best / median of %d runs)' % len(ours):<52} {'best s':>8} {'median':>8} "
          f"{'ev/s best':>12} {'ev/s med':>12}")
    print("-" * 96)
    for key, label in (("decode", "ours: decode (b64+zstd+parse+validate+attrs)"),
                       ("aggregate", f"ours: split_too_late + aggregate {n_metrics} metrics"),
                       ("parquet", "ours: Parquet (zstd) of the partials"),
                       ("total", "OURS TOTAL")):
        row(label, [r[key] for r in ours])
    print(f"  events aggregated {ours[0]['events']:,}; partial rows {ours[0]['groups']:,}; "
          f"Parquet {ours[0]['parquet_bytes'] / 1e6:.1f} MB")
    if duck:
        row("duckdb threads=1: read_ndjson + json_transform", [r["load"] for r in duck])
        row(f"duckdb threads=1: {n_metrics} GROUP BY", [r["group_by"] for r in duck])
        row("DUCKDB TOTAL", [r["total"] for r in duck])
        best = min(r["total"] for r in duck) / min(r["total"] for r in ours)
        med = statistics.median(r["total"] for r in duck) / statistics.median(r["total"] for r in ours)
        print(f"  duckdb result rows {duck[0]['groups']:,}")
        print(f"\nratio ours/duckdb (events/s): best {best:.2f}, median {med:.2f}   (target >= 0.6)")
    rate = n_events / min(r["total"] for r in ours)
    print(f"ours: {rate:,.0f} events/s per core (best)   (target >= 400,000)")


if __name__ == "__main__":
    main()
