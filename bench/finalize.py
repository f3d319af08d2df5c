"""Benchmark: finalization units -- peak memory and CPU per unit, planning at scale, simulated lag.

Three parts (all run by default; ``--smoke`` runs each at a tiny size, for CI):

1. **Units** (``--events N [N ...]``): one app's hour of N events (1 % re-sent: duplicates) is
   planned into units (``chalicelib.lake.units``: at most ``ROWS_PER_UNIT`` raw rows each) and
   every unit runs in a fresh child process (its peak RSS, ``VmHWM``, is its own), timed in
   CPU-seconds. ``--s3 files``: the hour is Parquet files in a temporary directory (sorted by
   event time, zstd, as compaction writes them) read the way the unit reads the raw table
   (pyarrow dataset scan pruned by the event-time range, plus the three id columns of the hour
   for the duplicate rule), then the real computation of every metric (``unit_rows``) and the
   encoding of the final files. ``--s3 moto``: the real path end to end on an in-process moto
   (archive -> committer -> Iceberg table -> ``FinalizeWorker.run_unit``); slow, for small N.
2. **Planning** (``--plan-apps 1000 --plan-events 36e6``): an hour of 36M events over 1,000 apps
   (sizes 1/rank, and the worst case of one app holding them all) planned into units; each
   unit's peak memory and time estimated from part 1's measured per-million figures
   (``--mb-per-million``/``--cpu-per-million`` override them) against Lambda's 10 GB / 900 s.
3. **Lag** (``--lag``): from an hour's close to its last final, simulated: the planner runs every
   5 minutes, units queue, ``reserved_concurrency`` workers of ``[functions.finalize_worker]``
   (chalicelib/pipeline.toml) take them, each unit costs a fixed overhead plus its rows.

Usage::

    .venv/bin/python bench/finalize.py --events 1e6 20e6 --s3 files
    .venv/bin/python bench/finalize.py --smoke                       # CI: tiny sizes, all parts
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402

T0 = 1_767_268_800_000  # 2026-01-01T12:00:00Z
HOUR = 3_600_000
APP = "bench"
for _name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):  # moto's stand-in credentials, never real ones
    os.environ.setdefault(_name, "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
TYPES = np.array(["session_start", "level_up", "purchase", "match_end", "gps_ping", "chat_message"])
TYPE_WEIGHTS = np.array([8, 10, 6, 12, 50, 14], float) / 100
CLASSES = np.array(["warrior", "mage", "archer", "rogue", "priest"])
FILE_ROWS = 1_000_000


def _sizing():
    """units.sizing for the bench hour under metrics.yaml: each slicing's read shares."""
    from chalicelib.lake import layout
    from chalicelib.lake.units import sizing
    from chalicelib.processing import load_metrics

    return sizing(load_metrics(), *layout.dt_hour(T0))


def _strings(*parts) -> pa.Array:  # noqa: ANN002 - arrays or scalars
    return pc.binary_join_element_wise(*[pa.array(p) if isinstance(p, np.ndarray) else p for p in parts], "")


def events(rng: np.random.Generator, n: int, users: int, first_id: int) -> pa.Table:
    """n events of one app over the hour (and the first minutes of the next), the raw table's rows."""
    from chalicelib.lake.raw_table import RAW_WITH_APP

    time_ms = np.sort(T0 + rng.integers(0, HOUR + 300_000, n))
    user = rng.integers(0, max(users, 1), n)
    kind = TYPES[rng.choice(len(TYPES), n, p=TYPE_WEIGHTS)]
    value = rng.integers(0, 3000, n).astype(str)
    attributes = _strings('{"character_class":"', CLASSES[user % len(CLASSES)], '","value":', value, "}")
    columns = {"event_id": _strings("e-", (np.arange(n) + first_id).astype(str)), "event_type": pa.array(kind),
               "event_time": pa.array(time_ms), "received_at": pa.array(time_ms + rng.integers(50, 3000, n)),
               "app_id": pa.array([APP] * n), "user_id": _strings("user-", user.astype(str)),
               "client_event_time": pa.nulls(n, pa.int64()), "attributes": attributes}
    return pa.table([columns[f.name].cast(pa.int64()).cast(f.type) if pa.types.is_timestamp(f.type)
                     else columns[f.name].cast(f.type) for f in RAW_WITH_APP], schema=RAW_WITH_APP)


def write_hour(root: str, n: int, users: int, seed: int) -> None:
    """The app's hour as Parquet files of FILE_ROWS rows (1 % of the events sent twice)."""
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    done = 0
    while done < n:
        size = min(FILE_ROWS, n - done)
        table = events(rng, size, users, done)
        dupes = table.take(pa.array(rng.choice(size, max(1, size // 100), replace=False)))
        dupes = dupes.set_column(3, "received_at", pc.add(dupes["received_at"].cast(pa.int64()), 60_000)
                                 .cast(dupes.schema.field("received_at").type))
        table = pa.concat_tables([table, dupes]).sort_by("event_time")
        pq.write_table(table, f"{root}/part-{done:012d}.parquet", compression="zstd", row_group_size=128 * 1024)
        done += size


def _peak_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _rss_mb() -> float:
    """The current RSS (the interpreter and its imports, before a unit's work)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def unit_from_files(root: str, k: int, n: int) -> dict:
    """One unit over the files: the pruned scan, the duplicate rule, every metric, the final files."""
    import pyarrow.dataset as ds

    from chalicelib.lake.final_rows import encode_final
    from chalicelib.lake import layout
    from chalicelib.lake.unit_rows import metric_rows, unit_events
    from chalicelib.lake.units import Unit
    from chalicelib.processing import load_metrics
    from chalicelib.processing.duplicates import kept_mask

    metrics = load_metrics()
    base = _rss_mb()
    cpu0, wall0 = _cpu_s(), time.monotonic()
    unit = Unit(APP, *layout.dt_hour(T0), k, n)
    start, end = unit.event_range(metrics)
    dataset = ds.dataset(root, format="parquet")
    t = dataset.schema.field("event_time").type
    rows = dataset.to_table(filter=(ds.field("event_time") >= pa.scalar(start, pa.int64()).cast(t))
                            & (ds.field("event_time") < pa.scalar(end, pa.int64()).cast(t)))
    cols = ["app_id", "event_id", "received_at"]
    ids = rows["event_id"].combine_chunks()
    hits = dataset.to_table(columns=cols, filter=ds.field("event_id").isin(ids))
    keys = pa.concat_tables([rows.select(cols), hits])
    rows = rows.filter(kept_mask(keys["app_id"], keys["event_id"], keys["received_at"]).slice(0, rows.num_rows))
    events_ = unit_events(rows, metrics)
    written = 0
    for metric in metrics.metrics:
        written += len(encode_final(metric, metric_rows(metric, events_, unit.window_range, [], [])))
    return {"unit": f"{k + 1}/{n}", "rows": rows.num_rows, "cpu_s": round(_cpu_s() - cpu0, 2),
            "wall_s": round(time.monotonic() - wall0, 2), "peak_mb": round(_peak_mb()), "base_mb": round(base),
            "final_bytes": written}


def unit_on_moto(n_events: int, users: int, seed: int, rows_per_unit: int) -> list[dict]:
    """The real path on an in-process moto: archive files -> committer -> table -> run_unit."""
    from moto import mock_aws

    with mock_aws():
        from chalicelib.lake import layout
        from chalicelib.lake.finalizer import Finalizer
        from chalicelib.lake.raw_commit import StagedCommitter
        from chalicelib.lake.raw_table import to_table_rows
        from chalicelib.lake.state import StateStore
        from chalicelib.lake.units import units_of
        from chalicelib.processing import load_metrics
        from chalicelib.runtime.clients import Clients
        from chalicelib.runtime.settings import Settings
        from eventpipe.local.bootstrap import bootstrap
        from tests.factories.lake import raw_table_of

        clients = Clients(Settings())
        bootstrap(clients)
        raw = raw_table_of(clients)
        state = StateStore(clients.dynamodb, clients.settings.state_table)
        raw.table().append(to_table_rows(events(np.random.default_rng(seed), n_events, users, 0)))
        del StagedCommitter
        finalizer = Finalizer(clients.s3, clients.settings.bucket, state, load_metrics(), lambda: T0 + 3 * HOUR,
                              raw=raw, rows_per_unit=rows_per_unit)
        out = []
        for unit in units_of(APP, *layout.dt_hour(T0), n_events, load_metrics(), rows_per_unit):
            os.sched_yield()
            cpu0, wall0 = _cpu_s(), time.monotonic()
            base = _rss_mb()
            report = finalizer.worker.run_unit(unit)
            out.append({"unit": f"{unit.slice + 1}/{unit.slices}", "rows": report.events,
                        "cpu_s": round(_cpu_s() - cpu0, 2), "wall_s": round(time.monotonic() - wall0, 2),
                        "peak_mb": round(_peak_mb()), "base_mb": round(base)})
        return out


def run_units(n: int, args: argparse.Namespace) -> dict:
    """Every unit of an N-event hour, each in a child; per-million figures."""
    from chalicelib.lake.units import slices_for

    slices = slices_for(n, args.rows_per_unit, _sizing())
    if args.s3 == "moto":
        results = json.loads(_child(["--child-moto", str(n)], args))
    else:
        with tempfile.TemporaryDirectory(prefix="bench-finalize-", dir=args.tmp) as root:
            started = time.monotonic()
            write_hour(root, n, args.users, args.seed)
            print(f"  wrote {n:,} events (+1 % re-sent) in {time.monotonic() - started:.0f} s", file=sys.stderr)
            ks = range(slices)
            if args.sample_units and slices > args.sample_units:  # first, last and evenly between
                ks = sorted({round(i * (slices - 1) / (args.sample_units - 1)) for i in range(args.sample_units)})
            results = [json.loads(_child(["--child-files", root, str(k), str(slices)], args)) for k in ks]
    cpu = sum(r["cpu_s"] for r in results) * slices / len(results)
    return {"events": n, "units": slices, "units_run": len(results), "max_peak_mb": max(r["peak_mb"] for r in results),
            "cpu_s": round(cpu, 1), "cpu_s_per_million": round(cpu / (n / 1e6), 2),
            "base_mb": max(r["base_mb"] for r in results),
            "peak_mb_per_million_in_unit": round(max((r["peak_mb"] - r["base_mb"]) / max(r["rows"], 1) * 1e6
                                                     for r in results)),
            "per_unit": results}


def _child(extra: list[str], args: argparse.Namespace) -> str:
    command = [sys.executable, __file__, *extra, "--users", str(args.users), "--seed", str(args.seed),
               "--rows-per-unit", str(args.rows_per_unit)]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]


# ---------------------------------------------------------------------------------- planning and lag
def app_sizes(apps: int, total: int) -> list[int]:
    """Events per app in an hour: 1/rank (a few large apps, a long tail)."""
    weights = 1 / np.arange(1, apps + 1)
    sizes = np.floor(weights / weights.sum() * total).astype(int)
    sizes[0] += total - sizes.sum()
    return [int(s) for s in sizes]


def plan(apps: int, total: int, rows_per_unit: int, mb_per_million: float, cpu_per_million: float,
         overhead_s: float, base_mb: float = 300.0) -> dict:
    from chalicelib.lake.units import slices_for

    out, shares = {}, _sizing()
    for name, sizes in (("1/rank", app_sizes(apps, total)), ("one app", [total])):
        # a slice reads its share of the hour plus the rest of its last windows (units.read_shares)
        units = [round(size * share) for size in sizes for share in shares(slices_for(size, rows_per_unit, shares))]
        biggest = max(units)
        out[name] = {"apps": len(sizes), "units": len(units), "max_rows_per_unit": biggest,
                     "est_peak_gb": round((base_mb + biggest / 1e6 * mb_per_million) / 1024, 2), "limit_gb": 10,
                     "est_unit_s": round(overhead_s + biggest / 1e6 * cpu_per_million, 1), "limit_s": 900}
    return out


def lag(apps: int, total: int, rows_per_unit: int, cpu_per_million: float, overhead_s: float, workers: int,
        planner_every_s: float = 300.0, seed: int = 1) -> dict:
    """Seconds from an hour's close to its last final: the planner's next run (0-5 min after the
    close), then ``workers`` at a time, the biggest units first as the planner sends them."""
    from chalicelib.lake.units import slices_for

    rng, shares = np.random.default_rng(seed), _sizing()
    durations = sorted((overhead_s + size * share / 1e6 * cpu_per_million for size in app_sizes(apps, total)
                        for share in shares(slices_for(size, rows_per_unit, shares))), reverse=True)
    lags = []
    for _ in range(20):  # the close falls anywhere between two planner runs
        start = float(rng.uniform(0, planner_every_s))
        free = [start] * workers
        heapq.heapify(free)
        end = start
        for d in durations:
            t = heapq.heappop(free) + d
            end = max(end, t)
            heapq.heappush(free, t)
        lags.append(end)
    return {"units": len(durations), "workers": workers, "lag_s_p50": round(float(np.median(lags)), 1),
            "lag_s_max": round(max(lags), 1), "work_s": round(sum(durations), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=float, nargs="+", default=[1e6])
    parser.add_argument("--users", type=int, default=50_000, help="users of the app")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--s3", choices=("files", "moto"), default="files")
    parser.add_argument("--tmp", default=None, help="where --s3 files writes the hour (default: the system's)")
    parser.add_argument("--rows-per-unit", type=int, default=None)
    parser.add_argument("--plan-apps", type=int, default=1000)
    parser.add_argument("--plan-events", type=float, default=36e6)
    parser.add_argument("--mb-per-million", type=float, default=None)
    parser.add_argument("--cpu-per-million", type=float, default=None)
    parser.add_argument("--overhead-s", type=float, default=3.0, help="per unit: Iceberg planning, GETs, PUTs")
    parser.add_argument("--sample-units", type=int, default=0, help="run only this many of the units (first, "
                        "last, evenly between); CPU is scaled to all")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (CI): every part once")
    parser.add_argument("--child-files", nargs=3, metavar=("DIR", "K", "N"), help=argparse.SUPPRESS)
    parser.add_argument("--child-moto", type=float, metavar="EVENTS", help=argparse.SUPPRESS)
    args = parser.parse_args()
    from chalicelib.lake.units import ROWS_PER_UNIT
    from chalicelib.runtime.pipeline_config import load_pipeline_config

    args.rows_per_unit = args.rows_per_unit or ROWS_PER_UNIT
    if args.child_files:
        print(json.dumps(unit_from_files(args.child_files[0], int(args.child_files[1]), int(args.child_files[2]))))
        return
    if args.child_moto:
        print(json.dumps(unit_on_moto(int(args.child_moto), args.users, args.seed, args.rows_per_unit)))
        return
    if args.smoke:
        args.events, args.users, args.plan_apps, args.plan_events = [20_000], 500, 20, 1e6
        args.rows_per_unit = 8_000  # the 20k-event hour splits into slices, as big apps do
    print(f"load average: {os.getloadavg()}", file=sys.stderr)
    measured = []
    for n in args.events:
        result = run_units(int(n), args)
        measured.append(result)
        print(json.dumps({k: v for k, v in result.items() if k != "per_unit"}))
        for unit in result["per_unit"]:
            print("   ", json.dumps(unit))
    # memory per million rows from the run with the biggest units (the nearest to the units planned: a small
    # unit's fixed costs, e.g. encoding its finals, weigh more per row); CPU from the worst run
    biggest = max(measured, key=lambda r: max(u["rows"] for u in r["per_unit"]))
    mb = args.mb_per_million or biggest["peak_mb_per_million_in_unit"]
    cpu = args.cpu_per_million or max(r["cpu_s_per_million"] for r in measured)
    total = int(args.plan_events)
    base = max(r["base_mb"] for r in measured)
    print(json.dumps({"plan": plan(args.plan_apps, total, args.rows_per_unit, mb, cpu, args.overhead_s, base),
                      "mb_per_million": mb, "cpu_s_per_million": cpu}))
    workers = load_pipeline_config("prod").function("finalize_worker").reserved_concurrency or 1
    print(json.dumps({"lag": lag(args.plan_apps, total, args.rows_per_unit, cpu, args.overhead_s, workers)}))
    print(f"load average: {os.getloadavg()}", file=sys.stderr)


if __name__ == "__main__":
    main()
