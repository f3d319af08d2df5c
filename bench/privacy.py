"""What one privacy deletion costs (issue 22): the deletion job on an app of N events (default 1 million).

The real job (chalicelib/lake/privacy_job.py) runs on an in-process moto (S3, Glue, DynamoDB): an app
with ``--events`` events over ``--hours`` closed hours in the raw Iceberg table (compacted: one file
per hour, as maintenance leaves it), a second app beside it, and one user to delete whose events are
in every hour (the worst case: every file of the app is rewritten). One ``delete`` regulation, one job
run (commit of nothing staged, row delete, expiry and orphan sweep, staged/bad-rows/dead-letter scans,
the re-finalization of every affected hour for every metric). Search is left out (no server in
process): one ``_delete_by_query`` per app and 1,000 users.

Prints the requests by class (S3 PUT-class, GET/HEAD, LIST, DELETE; DynamoDB; Glue), the bytes of
data files rewritten, and the time of each part.

    .venv/bin/python bench/privacy.py                 # 1,000,000 events over 24 hours
    .venv/bin/python bench/privacy.py --smoke         # CI: 20,000 events over 2 hours
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_DEFAULT_REGION": "us-east-1"}.items():
    os.environ.setdefault(name, value)

from moto import mock_aws  # noqa: E402

from chalicelib.lake import layout  # noqa: E402
from chalicelib.lake.raw_table import to_table_rows  # noqa: E402
from chalicelib.runtime.container import Container  # noqa: E402
from chalicelib.runtime.settings import Settings  # noqa: E402
from eventpipe.local.bootstrap import bootstrap  # noqa: E402

HOUR = layout.HOUR_MS
PUT = {"PutObject", "CopyObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload"}
GET = {"GetObject", "HeadObject"}
LIST = {"ListObjectsV2", "ListObjects", "ListObjectVersions"}
DELETE = {"DeleteObject", "DeleteObjects"}


class Requests:
    def __init__(self, *clients) -> None:
        self.counts: Counter = Counter()
        for client in clients:
            client.meta.events.register("before-call", self._count)

    def _count(self, model, **_):
        service = model.service_model.service_name
        if service != "s3":
            self.counts[service] += 1
            return
        kind = next((k for k, ops in (("s3 put", PUT), ("s3 get", GET), ("s3 list", LIST), ("s3 delete", DELETE))
                     if model.name in ops), "s3 other")
        self.counts[kind] += 1

    def take(self) -> Counter:
        out, self.counts = self.counts, Counter()
        return out


def rows(app: str, events: int, hours: int, first_hour_ms: int, target: str, per_hour: int) -> pa.Table:
    """``events`` rows of ``app`` spread over the hours, ``per_hour`` of them in each hour the target user's."""
    import numpy as np
    i = np.arange(events, dtype=np.int64)
    hour = i * hours // events
    at = first_hour_ms + hour * HOUR + (i % 1024) * 3000
    users = np.char.add("u", (i % 8192).astype(str)).astype(object)
    stride = max(1, events // (hours * per_hour))
    users[i % stride == 0] = target
    return to_table_rows(pa.table({
        "event_id": pa.array(np.char.add(app + "-", i.astype(str))), "event_type": pa.array(["level_up"] * events),
        "event_time": pa.array(at), "received_at": pa.array(at), "app_id": pa.array([app] * events),
        "user_id": pa.array(users, pa.string()), "client_event_time": pa.nulls(events, pa.int64()),
        "attributes": pa.array(['{"character_class":"mage","value":1}'] * events)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--hours", type=int, default=24)
    parser.add_argument("--target-per-hour", type=int, default=10, help="the deleted user's events per hour")
    parser.add_argument("--smoke", action="store_true", help="a tiny run (CI): 20,000 events over 2 hours")
    args = parser.parse_args()
    if args.smoke:
        args.events, args.hours = 20_000, 2
    first_hour = (int(time.time() * 1000) // HOUR - args.hours - 2) * HOUR
    with mock_aws():
        container = Container(Settings())
        bootstrap(container.clients, shards=1)
        c = container.clients
        table = container.raw_table.table()
        started = time.perf_counter()
        for app, n in (("big", args.events), ("other", max(1000, args.events // 100))):
            table.append(rows(app, n, args.hours, first_hour, "gone", args.target_per_hour))
        maintenance = container.raw_table_job._maintenance
        maintenance.compact_many(maintenance.due())  # one file per (app, hour), as maintenance leaves it
        setup_s = time.perf_counter() - started
        data = {f["file_path"]: f["file_size_in_bytes"] for f in container.raw_table.data_files()}
        target = sum(1 for f in container.raw_table.data_files() if f["partition"]["app_id"] == "big")
        container.regulation_store.create("big", "delete", ["gone"], {"app_id": "big", "key_id": "-", "role": "bench"})

        seen = Requests(c.s3, c.glue, c.dynamodb)
        timings: dict[str, float] = {}
        last = [time.perf_counter()]

        def checkpoint(step: str) -> None:
            now = time.perf_counter()
            timings[step] = now - last[0]
            last[0] = now

        started = time.perf_counter()
        summary = container.deletion_job(checkpoint=checkpoint).run()
        total_s = time.perf_counter() - started
        timings["refinalize + finish"] = time.perf_counter() - last[0]
        counts = seen.take()
        reg = container.regulation_store.list("big")[0]
        after = {f["file_path"]: f["file_size_in_bytes"] for f in container.raw_table.data_files()}
        rewritten_in = sum(size for path, size in data.items() if path not in after)
        rewritten_out = sum(size for path, size in after.items() if path not in data)

    print(f"deletion job, app of {args.events:,} events over {args.hours} closed hours ({target} data files), "
          f"one user with {args.target_per_hour} events in each hour; setup {setup_s:.1f} s")
    print(f"  status {reg.status}; results {reg.results}; job summary {summary}")
    print(f"  time: {total_s:.1f} s total; " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    print("  requests: " + ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items())))
    print(f"  data files rewritten: {rewritten_in / 1e6:.1f} MB read and replaced by {rewritten_out / 1e6:.1f} MB "
          f"(the app's other files untouched)")


if __name__ == "__main__":
    main()
