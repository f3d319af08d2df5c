"""Insights benchmark: a 30-day 4-step funnel and a 12-week retention over 10M events of one app,
on the local DuckDB path (the API's engine, chalicelib/reads/insight_engines.DuckDbEngine, running the
same bound SQL as POST /v1/insights/funnel and /retention), and the bytes Athena would scan.

    .venv/bin/python bench/insights.py [--events 10000000] [--runs 7] [--dir /tmp/eventpipe-bench-insights]
    .venv/bin/python bench/insights.py --smoke        # 20,000 events, 2 runs: checks that it works

Data: one app, 112 days (16 weeks) of events, 200,000 users (scaled down with --events), types view
40 %, cart 20 %, checkout 10 %, buy 5 %, others 25 %, 1 % duplicated (client retries), a small JSON
attributes object. Written once per size (kept in --dir) as zstd Parquet with the raw table's columns,
one file per UTC day, read as a pyarrow dataset (what the local engine gets from the Iceberg plan: the
app's files of the days read). Not measured: pyiceberg planning and the S3 reads from moto.

Goal: p95 <= 2 s per insight. Athena bytes: the compressed sizes of the column chunks the SQL reads
(every column it names) in the files of the days it reads, from the Parquet footers: Athena reads
exactly those column chunks of those partitions (it bills at least 10 MB per query), once per
reference of the deduplicated events (Trino inlines a WITH query at each reference: a funnel of N steps
reads them N times, N + 1 with a breakdown; retention twice).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chalicelib.lake.raw_table import arrow_table_schema  # noqa: E402
from chalicelib.reads import insight_sql  # noqa: E402
from chalicelib.reads.insight_engines import DuckDbEngine  # noqa: E402
from chalicelib.reads.insights import InsightsService  # noqa: E402

APP = "bench-app"
DAYS = 112
START = datetime(2026, 6, 1, tzinfo=timezone.utc)  # a Monday
TYPES = np.array(["view", "cart", "checkout", "buy", "login", "ping", "search"])
WEIGHTS = np.array([0.40, 0.20, 0.10, 0.05, 0.10, 0.10, 0.05])
#: The raw columns the insight SQL names (funnel: with attributes; retention: without).
FUNNEL_COLUMNS = ("app_id", "event_id", "user_id", "event_type", "event_time", "received_at", "attributes", "dt")
RETENTION_COLUMNS = ("app_id", "event_id", "user_id", "event_type", "event_time", "received_at", "dt")


def generate(directory: Path, events: int, seed: int = 23) -> Path:
    """One Parquet file per day under directory/<events>/; reused when complete."""
    out = directory / str(events)
    done = out / "_complete"
    if done.exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    users = max(50, min(200_000, events // 50))
    schema = arrow_table_schema()
    per_day = events // DAYS
    for day in range(DAYS):
        n = per_day + (events - per_day * DAYS if day == DAYS - 1 else 0)
        base = int((START + timedelta(days=day)).timestamp() * 1_000_000)
        times = base + np.sort(rng.integers(0, 86_400_000_000, n))
        user = rng.integers(0, users, n)
        kinds = TYPES[rng.choice(len(TYPES), n, p=WEIGHTS)]
        ids = np.char.add(f"d{day:03d}-", np.arange(n).astype(str))
        dup = rng.random(n) < 0.01
        received = times + 1_500_000
        rows = {
            "event_id": np.concatenate([ids, ids[dup]]),
            "event_type": np.concatenate([kinds, kinds[dup]]),
            "event_time": np.concatenate([times, times[dup]]),
            "received_at": np.concatenate([received, received[dup] + 60_000_000]),
            "app_id": np.full(n + int(dup.sum()), APP),
            "user_id": np.char.add("user-", np.concatenate([user, user[dup]]).astype(str)),
            "attributes": np.where(rng.random(n + int(dup.sum())) < 0.5, '{"plan":"pro"}', '{"plan":"free"}'),
        }
        ts = pa.timestamp("us", tz="UTC")
        columns = {}
        for field in schema:
            if field.name in ("dt", "hour"):
                continue
            value = rows.get(field.name)
            if value is None:
                columns[field.name] = pa.nulls(len(rows["event_id"]), field.type)
            elif pa.types.is_timestamp(field.type):
                columns[field.name] = pa.array(value.astype("int64"), pa.int64()).cast(ts)
            else:
                columns[field.name] = pa.array(value.astype(str))
        columns["dt"] = pa.array(np.full(len(rows["event_id"]), (START + timedelta(days=day)).strftime("%Y-%m-%d")))
        columns["hour"] = pa.array(np.full(len(rows["event_id"]), "00"))
        table = pa.table(columns).cast(schema)
        dt = (START + timedelta(days=day)).strftime("%Y-%m-%d")
        (out / f"dt={dt}").mkdir(exist_ok=True)
        pq.write_table(table, out / f"dt={dt}" / "part-0.parquet", compression="zstd")
    done.write_text("ok")
    return out


def source_for(directory: Path):
    """The local engine's source: the app's files of the dt range, as one lazy dataset."""
    def read(app_id: str, first_dt: str, last_dt: str):
        files = [str(p / "part-0.parquet") for p in sorted(directory.glob("dt=*"))
                 if first_dt <= p.name[3:] <= last_dt]
        return ds.dataset(files, schema=arrow_table_schema(), format="parquet")
    return read


def athena_bytes(directory: Path, first_dt: str, last_dt: str, columns: tuple[str, ...]) -> int:
    total = 0
    for part in sorted(directory.glob("dt=*")):
        if not first_dt <= part.name[3:] <= last_dt:
            continue
        meta = pq.ParquetFile(part / "part-0.parquet").metadata
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            for c in range(group.num_columns):
                chunk = group.column(c)
                if chunk.path_in_schema in columns:
                    total += chunk.total_compressed_size
    return total


def timed(call, runs: int) -> tuple[list[float], list[float], object]:
    """Wall seconds and CPU seconds (every thread of the process: what a busy machine does not inflate) per run."""
    times, cpu, answer = [], [], None
    for _ in range(runs):
        started, started_cpu = time.perf_counter(), time.process_time()
        answer = call()
        times.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    return times, cpu, answer


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(np.ceil(0.95 * len(ordered))) - 1)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dir", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "eventpipe-bench-insights"))
    parser.add_argument("--smoke", action="store_true", help="20,000 events, 2 runs: checks that the bench works")
    args = parser.parse_args(argv)
    if args.smoke:
        args.events, args.runs = 20_000, 2
    started = time.perf_counter()
    data = generate(Path(args.dir), args.events)
    print(f"data: {args.events:,} events of one app over {DAYS} days in {data} "
          f"({sum(f.stat().st_size for f in data.rglob('*.parquet')) / 1e6:.0f} MB; ready in "
          f"{time.perf_counter() - started:.0f} s)")
    service = InsightsService(DuckDbEngine(source_for(data), threads=args.threads))
    iso = lambda d: (START + timedelta(days=d)).isoformat().replace("+00:00", "Z")  # noqa: E731
    funnel = {"steps": [{"event_type": t} for t in ("view", "cart", "checkout", "buy")], "within": "1h",
              "from": iso(30), "to": iso(60)}
    retention = {"start_event": "login", "return_event": "view", "period": "week", "periods": 12,
                 "from": iso(0), "to": iso(28)}
    day = lambda d: (START + timedelta(days=d)).strftime("%Y-%m-%d")  # noqa: E731
    cases = [("funnel 30 days, 4 steps", lambda: service.funnel(APP, funnel), (day(30), day(60)), FUNNEL_COLUMNS,
              insight_sql.funnel_sql([{}] * 4)),
             ("retention 12 weeks (4 weeks of cohorts)", lambda: service.retention(APP, retention),
              (day(0), day(28 + 84)), RETENTION_COLUMNS, insight_sql.retention_sql())]
    failed = False
    for name, call, (first, last), columns, sql in cases:
        times, cpu, answer = timed(call, args.runs)
        scans = sql.count("FROM deduped") + sql.count("JOIN deduped")
        columns = tuple(c for c in columns if c in sql)  # (a funnel without where or breakdown reads no attributes)
        scanned = athena_bytes(data, first, last, columns) * scans
        summary = (answer["steps"] if "steps" in answer else
                   [(c["period_start"][:10], c["users"], c["returned"][:4]) for c in answer["cohorts"][:2]])
        print(f"{name}: p50 {statistics.median(times):.2f} s, p95 {p95(times):.2f} s over {args.runs} runs "
              f"(goal p95 <= 2 s), CPU p50 {statistics.median(cpu):.2f} s ({args.threads} threads); Athena would scan {scanned / 1e6:.1f} MB (days {first}..{last}, "
              f"{len(columns)} columns, read {scans} times); answer: {str(summary)[:160]}")
        failed |= not answer.get("steps", answer.get("cohorts"))
    load = os.getloadavg()
    print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} cores "
          f"(a shared machine: times include waiting for the CPU)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
