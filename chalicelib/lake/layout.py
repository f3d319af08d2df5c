"""Where things live in the lake bucket (pure functions, deterministic names).

::

    events/app_id=<app>/dt=YYYY-MM-DD/hour=HH/<shard>-<first seq>.parquet     raw archive
    rollups/<metric>/stage=partial/dt=YYYY-MM-DD/hour=HH/<shard>-<first seq>.parquet
    rollups/<metric>/stage=final/dt=YYYY-MM-DD/hour=HH/final.parquet         after finalization
    bad-rows/<consumer>/dt=YYYY-MM-DD/<shard>-<record seq>.ndjson             stream/badrows.py (per record)
    aws/lambda/<mapping uuid>/<shard>/YYYY/MM/DD/<time>-<uuid>                 Lambda's on-failure records

Batch outputs are named by shard and the first sequence number of the batch:
Lambda re-delivers a failed batch from that same record, so a re-processed
batch overwrites its earlier output even when the retried batch ends at a
different record (a name that also held the last sequence number would then
leave the first attempt's file behind as a duplicate). Partition hours are
UTC; windows are placed by ``window_start``.
"""

from __future__ import annotations

from datetime import datetime, timezone

EVENTS_PREFIX = "events/"
ROLLUPS_PREFIX = "rollups/"
HOUR_MS = 3_600_000


def dt_hour(ms: int) -> tuple[str, str]:
    moment = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    return moment.strftime("%Y-%m-%d"), moment.strftime("%H")


def hour_start_ms(dt: str, hour: str) -> int:
    moment = datetime.strptime(f"{dt} {hour}", "%Y-%m-%d %H").replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


def batch_name(shard_id: str, first_sequence: str) -> str:
    # Zero-padded so names sort in sequence order (sequence numbers are decimal strings).
    return f"{shard_id}-{int(first_sequence):056d}"


def raw_key(app_id: str, dt: str, hour: str, shard_id: str, first_sequence: str) -> str:
    return f"{EVENTS_PREFIX}app_id={app_id}/dt={dt}/hour={hour}/{batch_name(shard_id, first_sequence)}.parquet"


def rollup_prefix(metric: str, stage: str, dt: str | None = None, hour: str | None = None) -> str:
    prefix = f"{ROLLUPS_PREFIX}{metric}/stage={stage}/"
    if dt is not None:
        prefix += f"dt={dt}/"
        if hour is not None:
            prefix += f"hour={hour}/"
    return prefix


def partial_key(metric: str, dt: str, hour: str, shard_id: str, first_sequence: str) -> str:
    return rollup_prefix(metric, "partial", dt, hour) + batch_name(shard_id, first_sequence) + ".parquet"


def final_key(metric: str, dt: str, hour: str) -> str:
    return rollup_prefix(metric, "final", dt, hour) + "final.parquet"


def parse_partition(key: str) -> dict[str, str]:
    """``a=1/b=2/file`` -> {"a": "1", "b": "2"}."""
    return dict(part.split("=", 1) for part in key.split("/") if "=" in part)
