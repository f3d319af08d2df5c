"""Benchmark: the finalizer on one hour of N events -- time by step and peak memory.

For each N (default 1M, 5M, 20M) the parent starts a moto server (S3 and
DynamoDB over HTTP, as the Lambda would talk to S3), bootstraps the lake and
writes one hour of raw archive for it the way the archive consumer does
(``events/app_id=/dt=/hour=/<shard>-<seq>.parquet``, the archive's schema,
zstd), one file per Lambda batch of ``--batch`` events (5,000) of one app, for
``--apps`` apps (100, sizes skewed 1/rank) with ``--users`` users each on
average; 1 % of the events are sent twice (client retries, the finalizer's
dedupe removes them). It writes matching partials (every shipped metric,
one file per ``--partial-events`` events, as aggregation Lambdas do, with the
shard metadata) and the archive progress, so that the partition is due.

Then ``Finalizer.run`` runs in a child process (a fresh interpreter, so its
peak RSS is its own: ``VmHWM`` from /proc/self/status), timed by step:
read raw (list + GET + Parquet), dedupe, aggregate per metric (the exact
one-pass aggregation with exact distinct counts), partials (HEAD, read for
tombstones and late counts) and write (final files + manifests).

Usage::

    .venv/bin/python bench/finalize.py                       # 1M, 5M, 20M
    .venv/bin/python bench/finalize.py --events 1000000 --apps 10
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402

T0 = 1_767_268_800_000  # 2026-01-01T12:00:00Z
HOUR = 3_600_000
SHARD = "shardId-000000000000"
for _name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):  # moto's stand-in credentials, never real ones
    os.environ.setdefault(_name, "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
TYPES = np.array(["session_start", "level_up", "purchase", "match_end", "gps_ping", "chat_message"])
TYPE_WEIGHTS = np.array([8, 10, 6, 12, 50, 14], float) / 100
CLASSES = np.array(["warrior", "mage", "archer", "rogue", "priest"])
CITIES = np.array([(37.5665, 126.9780), (35.1796, 129.0756), (37.4563, 126.7052), (35.8714, 128.6014),
                   (33.4996, 126.5312)])


class FileS3:
    """A local S3 stand-in (``--s3 files``): objects as files under a directory, the calls the lake
    code makes (put/get/head/list/delete). For sizes where moto server's per-request cost and
    in-memory objects would dominate the run."""

    def __init__(self, root: str) -> None:
        self.root = Path(root)

    def _path(self, bucket: str, key: str) -> Path:
        return self.root / bucket / key

    def put_object(self, Bucket, Key, Body, Metadata=None, ContentType=None):  # noqa: ANN001, N803, ANN201
        path = self._path(Bucket, Key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(Body)
        path.with_name(path.name + ".meta").write_text(json.dumps(Metadata or {}))
        return {}

    def head_object(self, Bucket, Key):  # noqa: ANN001, N803, ANN201
        from botocore.exceptions import ClientError
        path = self._path(Bucket, Key)
        if not path.exists():
            raise ClientError({"Error": {"Code": "404"}}, "HeadObject")
        stat = path.stat()
        return {"Metadata": json.loads(path.with_name(path.name + ".meta").read_text()),
                "ETag": f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"'}

    def get_object(self, Bucket, Key):  # noqa: ANN001, N803, ANN201
        import io
        from botocore.exceptions import ClientError
        path = self._path(Bucket, Key)
        if not path.exists():
            raise ClientError({"Error": {"Code": "NoSuchKey"}}, "GetObject")
        return {"Body": io.BytesIO(path.read_bytes())}

    def delete_objects(self, Bucket, Delete):  # noqa: ANN001, N803, ANN201
        for obj in Delete["Objects"]:
            self._path(Bucket, obj["Key"]).unlink(missing_ok=True)
        return {}

    def get_paginator(self, name):  # noqa: ANN001, ANN201
        return self

    def paginate(self, Bucket, Prefix, Delimiter=None):  # noqa: ANN001, N803, ANN201
        base = self.root / Bucket
        top = base / Prefix.rsplit("/", 1)[0] if "/" in Prefix else base  # walk only below the prefix's folder
        found = sorted(str(p.relative_to(base)) for p in top.rglob("*") if p.is_file() and not p.name.endswith(".meta")
                       and str(p.relative_to(base)).startswith(Prefix)) if top.exists() else []
        if Delimiter:
            prefixes = sorted({Prefix + k[len(Prefix):].split(Delimiter, 1)[0] + Delimiter for k in found
                               if Delimiter in k[len(Prefix):]})
            yield {"CommonPrefixes": [{"Prefix": p} for p in prefixes]}
            return
        yield {"Contents": [{"Key": k, "ETag": self.head_object(Bucket, k)["ETag"]} for k in found]}


class FileState:
    """The archive progress the finalizer checks, for ``--s3 files`` (every record archived)."""

    def archived_through(self, shard_id: str) -> int:
        return 10**30


def _strings(*parts) -> pa.Array:  # noqa: ANN002 - arrays or scalars
    return pc.binary_join_element_wise(*[pa.array(p) if isinstance(p, np.ndarray) else p for p in parts], "")


def events_of_app(rng: np.random.Generator, app: int, n: int, users: int, first_id: int) -> pa.Table:
    """n events of one app over the hour, in the raw archive's schema (app_id is in the path)."""
    from chalicelib.lake.raw_archive import RAW_SCHEMA
    time_ms = np.sort(T0 + rng.integers(0, HOUR, n))
    user = rng.integers(0, max(users, 1), n)
    kind = TYPES[rng.choice(len(TYPES), n, p=TYPE_WEIGHTS)]
    klass = CLASSES[user % len(CLASSES)]
    city = CITIES[user % len(CITIES)]
    lat = np.round(city[:, 0] + rng.uniform(-0.05, 0.05, n), 6).astype(str)
    lon = np.round(city[:, 1] + rng.uniform(-0.05, 0.05, n), 6).astype(str)
    value = rng.integers(0, 3000, n).astype(str)
    with_class = _strings('{"character_class":"', klass, '","value":', value, "}")
    gps = _strings('{"lat":', lat, ',"lon":', lon, ',"speed_kmh":12.5}')
    attributes = pc.if_else(pa.array(kind == "gps_ping"), gps, with_class)
    ids = _strings(f"a{app}-", (np.arange(n) + first_id).astype(str))
    columns = {"event_id": ids, "event_type": pa.array(kind), "event_time": pa.array(time_ms),
               "received_at": pa.array(time_ms + rng.integers(50, 3000, n)),
               "user_id": _strings(f"app{app}-user-", user.astype(str)), "client_event_time": pa.nulls(n, pa.int64()),
               "attributes": attributes}
    return pa.table([columns[f.name].cast(pa.int64()).cast(f.type) if pa.types.is_timestamp(f.type)
                     else columns[f.name].cast(f.type) for f in RAW_SCHEMA], schema=RAW_SCHEMA)


def write_lake(s3, bucket: str, state, n_events: int, apps: int, users: int, batch: int, partial_events: int,  # noqa: ANN001
               seed: int, partial_sample: float) -> dict:
    """Raw archive files and partials of one hour; returns what was written."""
    from chalicelib.lake import layout
    from chalicelib.lake.sql_sketch import register_columns
    from chalicelib.lake.finalizer import raw_to_events
    from chalicelib.processing import aggregate, encode_parquet, load_metrics
    metrics = load_metrics()
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, apps + 1)
    sizes = np.floor(n_events * weights / weights.sum()).astype(int)
    sizes[0] += n_events - sizes.sum()
    seq, raw_files, raw_bytes, partial_files = 0, 0, 0, 0
    pending: list[pa.Table] = []
    pending_rows = 0

    def flush_partials() -> None:
        nonlocal pending, pending_rows, partial_files, seq
        if not pending:
            return
        events = raw_to_events(pa.concat_tables(pending))
        if partial_sample < 1:  # partials of a sample: as many files, less setup time (their windows are kept)
            events = events.take(pa.array(np.flatnonzero(rng.random(events.num_rows) < partial_sample)))
        seq += 1
        for name, table in aggregate(events, metrics, watermark_ms=T0).items():
            if table.num_rows:
                s3.put_object(Bucket=bucket, Key=layout.partial_key(name, "2026-01-01", "12", SHARD, str(seq)),
                              Body=encode_parquet(register_columns(table)),
                              Metadata={"shard-id": SHARD, "last-sequence": str(seq)})
                partial_files += 1
        pending, pending_rows = [], 0

    for app, size in enumerate(sizes):
        app_users = max(1, int(users * apps * weights[app] / weights.sum()))
        table = events_of_app(rng, app, int(size), app_users, 0)
        retried = table.take(pa.array(rng.choice(table.num_rows, table.num_rows // 100, replace=False)))
        table = pa.concat_tables([table, retried])  # client retries: the same event_ids again
        for start in range(0, table.num_rows, batch):
            part = table.slice(start, batch)
            seq += 1
            body = encode_parquet(part)
            s3.put_object(Bucket=bucket, Key=layout.raw_key(f"app-{app:03d}", "2026-01-01", "12", SHARD, str(seq)),
                          Body=body)
            raw_files, raw_bytes = raw_files + 1, raw_bytes + len(body)
            pending.append(part.add_column(4, "app_id", pa.array([f"app-{app:03d}"] * part.num_rows)))
            pending_rows += part.num_rows
            if pending_rows >= partial_events:
                flush_partials()
    flush_partials()
    if state is not None:
        state.raise_archived_through(SHARD, str(seq + 1))
    return {"raw_files": raw_files, "raw_mb": round(raw_bytes / 2**20, 1), "partial_files": partial_files,
            "rows": int(sizes.sum() + sum(s // 100 for s in sizes))}


def child(endpoint: str) -> None:
    """Finalize the hour, timed by step; prints one JSON line."""
    import chalicelib.lake.finalizer as fin
    from chalicelib.lake.state import StateStore
    from chalicelib.processing import load_metrics
    from chalicelib.runtime.clients import Clients
    from chalicelib.runtime.settings import Settings
    if endpoint.startswith("files:"):
        s3, bucket, state = FileS3(endpoint[len("files:"):]), "eventpipe-lake", FileState()
    else:
        clients = Clients(Settings(aws_endpoint_url=endpoint))
        s3, bucket = clients.s3, clients.settings.bucket
        state = StateStore(clients.dynamodb, clients.settings.state_table)
    steps: dict[str, float] = {}
    cpu: dict[str, float] = {}

    def timed(name, fn):  # noqa: ANN001, ANN202
        def wrapper(*args, **kwargs):  # noqa: ANN202
            start, start_cpu = time.perf_counter(), time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                steps[name] = steps.get(name, 0.0) + time.perf_counter() - start
                cpu[name] = cpu.get(name, 0.0) + time.process_time() - start_cpu
        return wrapper

    fin.read_raw_events = timed("read_raw", fin.read_raw_events)
    fin.dedupe_events = timed("dedupe", fin.dedupe_events)
    fin.read_many = timed("read_partials", fin.read_many)
    original_exact = fin.exact_distinct

    def exact(events, metric):  # noqa: ANN001, ANN202
        return timed(f"aggregate:{metric.name}", original_exact)(events, metric)

    fin.exact_distinct = exact

    class TimedS3:
        def __init__(self, s3) -> None:  # noqa: ANN001
            self._s3 = s3

        def __getattr__(self, name):  # noqa: ANN001, ANN204
            attr = getattr(self._s3, name)
            label = {"put_object": "write", "head_object": "head_partials"}.get(name)
            return timed(label, attr) if label else attr

    finalizer = fin.Finalizer(TimedS3(s3), bucket, state, load_metrics(), lambda: T0 + 30 * HOUR)
    start, start_cpu = time.perf_counter(), time.process_time()
    reports = finalizer.run()
    total, total_cpu = time.perf_counter() - start, time.process_time() - start_cpu
    status = Path("/proc/self/status").read_text()
    hwm_kb = int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1])
    print(json.dumps({"total_s": round(total, 2), "cpu_s": round(total_cpu, 2), "peak_rss_mb": round(hwm_kb / 1024),
                      "steps_s": {k: round(v, 2) for k, v in steps.items()},
                      "steps_cpu_s": {k: round(v, 2) for k, v in cpu.items()},
                      "finalized": sum(r.action == "finalized" for r in reports),
                      "final_rows": sum(r.rows for r in reports)}))


def _finalize_in_child(endpoint: str, written: dict, n: int) -> dict:
    parent_cpu = time.process_time()  # this process is idle but for the moto server's threads
    out = subprocess.run([sys.executable, __file__, "--child", endpoint], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    written["server_cpu_s"] = round(time.process_time() - parent_cpu, 2)
    if out.returncode != 0:
        return {"events": n, **written, "error": out.stderr[-2000:]}
    return {"events": n, **written, **json.loads(out.stdout.strip().splitlines()[-1])}


def run_files(n: int, args: argparse.Namespace) -> dict:
    import shutil
    import tempfile
    root = tempfile.mkdtemp(prefix="bench-finalize-")
    try:
        start = time.perf_counter()
        written = write_lake(FileS3(root), "eventpipe-lake", None, n, args.apps, args.users, args.batch,
                             args.partial_events, args.seed, args.partial_sample)
        written["setup_s"] = round(time.perf_counter() - start, 1)
        return {"s3": "files", **_finalize_in_child(f"files:{root}", written, n)}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run_one(n: int, args: argparse.Namespace) -> dict:
    import logging

    from moto.server import ThreadedMotoServer

    from chalicelib.runtime.clients import Clients
    from chalicelib.runtime.settings import Settings
    from eventpipe.local.bootstrap import bootstrap
    from eventpipe.local.stack import free_port
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        clients = Clients(Settings(aws_endpoint_url=endpoint))
        bootstrap(clients)
        start = time.perf_counter()
        from chalicelib.lake.state import StateStore
        written = write_lake(clients.s3, clients.settings.bucket, StateStore(clients.dynamodb, clients.settings.state_table),
                             n, args.apps, args.users, args.batch, args.partial_events, args.seed, args.partial_sample)
        written["setup_s"] = round(time.perf_counter() - start, 1)
        return {"s3": "moto", **_finalize_in_child(endpoint, written, n)}
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, nargs="+", default=[1_000_000, 5_000_000, 20_000_000])
    parser.add_argument("--apps", type=int, default=100)
    parser.add_argument("--users", type=int, default=2_000, help="users per app on average")
    parser.add_argument("--batch", type=int, default=5_000, help="events per raw archive file")
    parser.add_argument("--partial-events", type=int, default=100_000, help="events per partial file")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--s3", choices=("moto", "files"), default="moto",
                        help="moto server, or a local stand-in (objects as files) where moto is the bottleneck")
    parser.add_argument("--partial-sample", type=float, default=1.0,
                        help="aggregate the partials from this fraction of the events (setup time)")
    parser.add_argument("--child", metavar="ENDPOINT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    for n in args.events:
        print(json.dumps((run_files if args.s3 == "files" else run_one)(n, args)), flush=True)


if __name__ == "__main__":
    main()
