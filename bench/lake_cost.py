"""What the raw lake costs in S3/Glue requests per million events: the Iceberg table vs the archive before it.

Time-compressed, in two steps (both printed):

1. **Requests per operation, measured**: the real code runs on an in-process moto (S3, Glue,
   DynamoDB) and a botocore hook counts every request by class (PUT-class: PUT/POST/COPY/LIST
   as S3 bills them... here PUT, COPY, DELETE excluded; GET/HEAD; LIST; Glue calls):
   * the archive consumer on one Kinesis batch (new: one staged file per batch; before: one
     file per (app, hour) in the batch, the old writer reproduced here byte for byte);
   * one committer run over staged files touching P (app, hour) partitions, for two values of
     P (the cost is linear in P: a data file per partition plus the commit's metadata);
   * compaction commits of 1 and of N (app, hour) partitions (a fixed and a per-partition part),
     snapshot expiry;
   * one aggregation batch (partials: the same before and after).
2. **Operations per hour, from pipeline.toml**: per scenario (apps, shards, events/s), the
   batches each consumer makes (the batching window, records per batch and Lambda's 6 MB
   payload bound, 100-event requests of ~300 B events packed one request per record), the
   committer's runs (``commit_events`` every ``schedule_s``), the (app, hour) partitions each
   commit touches (apps skewed 1/rank: an app is in a commit when it sends at least one event in
   the period), one compaction per (app, hour) that had events, and the finalizer's run.

Prints, per scenario and layout: S3 PUT-class, GET-class, LIST and Glue requests per million
events, objects created per day under the raw prefixes, the average raw file after compaction,
and $/month at list prices (us-east-1: PUT/COPY/POST/LIST $0.005 per 1,000, GET $0.0004 per
1,000, Glue catalog requests $1 per million after the free million, S3 Standard $0.023/GB-month).

    .venv/bin/python bench/lake_cost.py            # the four scenarios
    .venv/bin/python bench/lake_cost.py --smoke    # a quick run (CI): same code, smaller samples
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
from moto import mock_aws  # noqa: E402

from chalicelib.lake import layout  # noqa: E402
from chalicelib.lake.badrows import S3BadRowsSink  # noqa: E402
from chalicelib.lake.consumers import AggregationService, ArchiveService  # noqa: E402
from chalicelib.lake.legacy_archive import RAW_SCHEMA  # noqa: E402
from chalicelib.lake.raw_commit import StagedCommitter  # noqa: E402
from chalicelib.lake.raw_maintenance import MAX_PARTITIONS_PER_COMMIT, MaintenanceReport, RawMaintenance  # noqa: E402
from chalicelib.lake.state import StateStore  # noqa: E402
from chalicelib.processing import decode_records, encode_parquet, load_metrics  # noqa: E402
from chalicelib.runtime.clients import Clients  # noqa: E402
from chalicelib.runtime.pipeline_config import load_pipeline_config  # noqa: E402
from chalicelib.runtime.settings import Settings  # noqa: E402
from chalicelib.stream import codec  # noqa: E402
from eventpipe.local.bootstrap import bootstrap  # noqa: E402
from tests.conftest import kinesis_record  # noqa: E402
from tests.factories.lake import T0, Clock, raw_table_of  # noqa: E402

SCENARIOS = [(1, 1, 100), (100, 4, 1_000), (1_000, 10, 10_000), (10_000, 50, 100_000)]
EVENTS_PER_REQUEST = 100
EVENT_BYTES = 300
PAYLOAD_LIMIT = 6 * 1024 * 1024
PRICE = {"put": 0.005 / 1000, "get": 0.0004 / 1000, "list": 0.005 / 1000, "glue": 1.0 / 1_000_000}
PUT_OPS = {"PutObject", "CopyObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload"}
GET_OPS = {"GetObject", "HeadObject"}
LIST_OPS = {"ListObjectsV2", "ListObjects"}


class Requests:
    def __init__(self, *clients) -> None:
        self.counts: Counter = Counter()
        for client in clients:
            client.meta.events.register("before-call", self._count)

    def _count(self, model, **_):
        service = model.service_model.service_name
        if service == "glue":
            self.counts["glue"] += 1
        elif model.name in PUT_OPS:
            self.counts["put"] += 1
        elif model.name in GET_OPS:
            self.counts["get"] += 1
        elif model.name in LIST_OPS:
            self.counts["list"] += 1

    def take(self) -> Counter:
        out, self.counts = self.counts, Counter()
        return out


def event_line(app: str, i: int, at: int) -> bytes:
    return orjson.dumps({"event_id": f"{app}-{i}", "event_type": "level_up", "event_time": at, "received_at": at,
                         "app_id": app, "user_id": f"u{i % 50}", "client_event_time": None,
                         "attributes": '{"character_class":"mage","value":1}'})


def batch_of(apps: list[str], per_app: int, shard: str, first_seq: int, at: int) -> list[dict]:
    lines = [event_line(app, first_seq * 1000 + i, at + i) for app in apps for i in range(per_app)]
    return [kinesis_record(rec.data, shard, first_seq + n) for n, rec in enumerate(codec.pack(lines))]


def old_archive_puts(batch: list[dict]) -> int:
    """The archive before the table: one Parquet file per (app, hour) of the batch (the files are built
    as the old writer did, to count and size them)."""
    events = decode_records(batch).events
    hour_ms = pc.multiply(pc.divide(events["event_time"], layout.HOUR_MS), layout.HOUR_MS)
    parts = {(a, h) for a, h in zip(events["app_id"].to_pylist(), hour_ms.to_pylist())}
    for app_id, start in parts:
        chunk = events.filter(pc.and_(pc.equal(events["app_id"], app_id), pc.equal(hour_ms, start)))
        encode_parquet(pa.table([chunk[f.name].cast(pa.int64()).cast(f.type) if pa.types.is_timestamp(f.type)
                                 else chunk[f.name] for f in RAW_SCHEMA], schema=RAW_SCHEMA))
    return len(parts)


def measure(smoke: bool) -> dict:
    """Requests per operation of the real code on moto."""
    out: dict = {}
    with mock_aws():
        clients = Clients(Settings())
        bootstrap(clients, shards=1)
        s = clients.settings
        s3 = clients.s3
        state = StateStore(clients.dynamodb, s.state_table)
        raw = raw_table_of(clients)
        seen = Requests(s3, clients.glue)
        archive = ArchiveService(s3, s.bucket, state, S3BadRowsSink(s3, s.bucket, "archive"))
        metrics = load_metrics()
        aggregation = AggregationService(s3, s.bucket, state, metrics, S3BadRowsSink(s3, s.bucket, "aggregate"))
        committer = StagedCommitter(s3, s.bucket, raw, state)

        apps = [f"app-{i:03d}" for i in range(20 if smoke else 60)]
        batch = batch_of(apps, 2, "shardId-000000000000", 100, T0 + 60_000)
        seen.take()
        archive.handle(batch)
        out["archive_batch"] = seen.take()
        out["old_archive_per_partition"] = Counter(put=1)
        aggregation.handle(batch)
        agg = seen.take()
        out["aggregate_batch"] = agg
        committer.run()  # the first batch, not measured

        # Commits touching P1 and P2 partitions: the per-partition and the fixed part.
        fits = []
        for n, count in enumerate((len(apps) // 4, len(apps))):
            archive.handle(batch_of(apps[:count], 1, "shardId-000000000000", 1000 * (n + 2), T0 + 120_000))
            seen.take()
            committer.run()
            fits.append((count + 0, seen.take()))
        (p1, c1), (p2, c2) = fits
        per_partition = {k: max(0.0, (c2[k] - c1[k]) / (p2 - p1)) for k in ("put", "get", "list", "glue")}
        fixed = {k: max(0.0, c1[k] - per_partition[k] * p1) for k in ("put", "get", "list", "glue")}
        out["commit_fixed"], out["commit_per_partition"] = fixed, per_partition

        keeper = RawMaintenance(s3, s.bucket, raw, Clock(T0 + 5 * layout.HOUR_MS), settle_ms=0)
        due = keeper.due()
        report = MaintenanceReport()
        seen.take()
        keeper.compact_many(due[:1], report)
        one = seen.take()
        many = due[1:]
        keeper.compact_many(many, report)
        more = seen.take()
        per = {k: max(0.0, (more[k] - one[k]) / (len(many) - 1)) for k in ("put", "get", "list", "glue")}
        out["compaction_per_partition"] = per
        out["compaction_fixed"] = {k: max(0.0, one[k] - per[k]) for k in ("put", "get", "list", "glue")}
        import time
        keeper = RawMaintenance(s3, s.bucket, raw, Clock(int(time.time() * 1000) + 7 * layout.HOUR_MS), settle_ms=0)
        keeper.expire(report)
        out["expiry"] = seen.take()
    return out


def distinct_apps(apps: int, draws: float) -> float:
    """Expected distinct apps among ``draws`` requests when app of rank r sends a 1/(r*H) share."""
    harmonic = sum(1 / r for r in range(1, apps + 1))
    return sum(1 - (1 - 1 / (r * harmonic)) ** draws for r in range(1, apps + 1))


def operations(apps: int, shards: int, rate: float) -> dict:
    """Batches, commits and partitions per hour for one scenario, from pipeline.toml (stage prod).

    A request is one Kinesis record of one app (100 events); a consumer's batch closes at its
    batching window, its record count or Lambda's 6 MB payload, whichever comes first."""
    config = load_pipeline_config("prod")
    requests_per_s = rate / EVENTS_PER_REQUEST
    per_shard = requests_per_s / shards
    max_records_by_bytes = PAYLOAD_LIMIT / (EVENTS_PER_REQUEST * EVENT_BYTES)

    def batch(window_s: float, batch_size: int) -> tuple[float, float]:
        """(batches per hour over every shard, records per batch)."""
        records = max(1.0, min(per_shard * max(window_s, 1), batch_size, max_records_by_bytes))
        return shards * per_shard * 3600 / records, records

    arch, aggr = config.consumer("archive_events"), config.consumer("aggregate_events")
    archive_batches, _ = batch(arch.batching_window_s, arch.batch_size)
    aggregate_batches, _ = batch(aggr.batching_window_s, aggr.batch_size)
    old_batches, old_records = batch(5, 1000)  # the archive consumer's settings before the table
    commit_s = config.function("commit_events").schedule_s or 300
    return {"archive_batches": archive_batches, "aggregate_batches": aggregate_batches,
            "commits": 3600 / commit_s, "partitions_per_commit": distinct_apps(apps, requests_per_s * commit_s),
            "partitions_per_hour": distinct_apps(apps, requests_per_s * 3600), "events_per_hour": rate * 3600,
            "old_batches": old_batches, "old_files_per_batch": distinct_apps(apps, old_records)}


def cost(m: dict, ops: dict) -> dict[str, dict[str, float]]:
    """Requests per hour for each layout (raw path + partials; the finalizer's reads are per layout)."""
    def add(total, counts, times):
        for k in ("put", "get", "list", "glue"):
            total[k] = total.get(k, 0.0) + float(counts.get(k, 0)) * times

    new: dict[str, float] = {}
    add(new, m["archive_batch"], ops["archive_batches"])
    add(new, m["commit_fixed"], ops["commits"])
    add(new, m["commit_per_partition"], ops["commits"] * ops["partitions_per_commit"])
    add(new, m["compaction_per_partition"], ops["partitions_per_hour"])
    add(new, m["compaction_fixed"], -(-ops["partitions_per_hour"] // MAX_PARTITIONS_PER_COMMIT))
    add(new, m["expiry"], ops["commits"])
    # Finalizer raw reads: one GET per compacted (app, hour) file (plus neighbours' ids: 2 more).
    add(new, {"get": 3}, ops["partitions_per_hour"])
    raw_only = dict(new)
    add(new, m["aggregate_batch"], ops["aggregate_batches"])

    old: dict[str, float] = {}
    add(old, {"put": 1}, ops["old_batches"] * ops["old_files_per_batch"])
    # The old finalizer GETs every raw file of the hour (and of the margins: ~1.5x).
    add(old, {"get": 1.5, "list": 0.002}, ops["old_batches"] * ops["old_files_per_batch"])
    old_raw = dict(old)
    add(old, m["aggregate_batch"], ops["aggregate_batches"])
    return {"iceberg": new, "before": old, "ice-raw": raw_only, "old-raw": old_raw}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="small samples (CI): the same code paths")
    args = parser.parse_args()
    m = measure(args.smoke)
    print("requests per operation (moto, real code):")
    for name in ("archive_batch", "aggregate_batch", "commit_fixed", "commit_per_partition", "compaction_fixed",
                 "compaction_per_partition", "expiry"):
        print(f"  {name:22s} {dict((k, round(float(v), 2)) for k, v in m[name].items())}")
    print()
    header = (f"{'apps':>6} {'shards':>6} {'ev/s':>7} {'layout':>8} {'PUT/M':>8} {'GET/M':>8} {'LIST/M':>7} "
              f"{'Glue/M':>7} {'obj/day':>10} {'file MB':>8} {'$/month':>9}")
    print(header)
    for apps, shards, rate in SCENARIOS:
        ops = operations(apps, shards, rate)
        per_m = ops["events_per_hour"] / 1e6
        for name, hourly in cost(m, ops).items():
            month = sum(hourly[k] * PRICE[k] for k in PRICE) * 24 * 30
            if name in ("iceberg", "ice-raw"):
                objects = (ops["archive_batches"] + ops["partitions_per_hour"]) * 24
                file_mb = ops["events_per_hour"] / ops["partitions_per_hour"] * 60 / 1e6  # ~60 B/event in zstd
            else:
                objects = ops["old_batches"] * ops["old_files_per_batch"] * 24
                file_mb = ops["events_per_hour"] / (ops["old_batches"] * ops["old_files_per_batch"]) * 60 / 1e6
            print(f"{apps:>6} {shards:>6} {rate:>7,.0f} {name:>8} {hourly['put'] / per_m:>8,.0f} "
                  f"{hourly['get'] / per_m:>8,.0f} {hourly['list'] / per_m:>7,.1f} {hourly['glue'] / per_m:>7,.1f} "
                  f"{objects:>10,.0f} {file_mb:>8.2f} {month:>9,.2f}")
    print("\nPUT/GET/LIST/Glue per million events; obj/day: objects created per day under the raw prefixes "
          "(staged + table data files after compaction, or the old archive's files); file MB: the average raw "
          "file after compaction (~60 B per event compressed); $/month: requests only, list prices. Partials "
          "(5 metrics, one file per metric and hour of each aggregation batch) are in both layouts; ice-raw and "
          "old-raw: the raw path alone (archive, committer, compaction, expiry, the finalizer's raw reads).")


if __name__ == "__main__":
    main()
