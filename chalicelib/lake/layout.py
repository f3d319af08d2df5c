"""Where things live in the lake bucket (pure functions, deterministic names).

::

    staging/events/<shard>/<first seq>-<last seq>.parquet   one archive batch, every app (until committed)
    staging/commits/<commit id>.json                       the committer's journal of one commit
    tables/events/{data,metadata}/...                      the raw events Iceberg table (lake/raw_table.py)
    events/app_id=<app>/dt=YYYY-MM-DD/hour=HH/<shard>-<first seq>.parquet     the raw archive before the
                                                                              Iceberg table (`eventpipe lake migrate`)
    rollups/<metric>/def=<fp>/stage=partial/dt=YYYY-MM-DD/hour=HH/<shard>-<first seq>.parquet
    rollups/<metric>/def=<fp>/stage=final/dt=YYYY-MM-DD/hour=HH/app-<app>.parquet   after finalization
    rollups/<metric>/def=<fp>/stage=final/dt=YYYY-MM-DD/hour=HH/app-<app>/slice-<k>-of-<n>-<input fp>.parquet
                                              the slices of a split (app, hour); app-<app>.parquet is then a
                                              head without rows naming them (lake/units.py, final_writer.py)
    rollups/_units/dt=YYYY-MM-DD/hour=HH/app-<app>/{slice-..,done-..}.json     finalization bookkeeping
    bad-rows/<consumer>/dt=YYYY-MM-DD/app_id=<app>/<shard>-<record seq>.ndjson  stream/badrows.py (per app, record)
    aws/lambda/<mapping uuid>/<shard>/YYYY/MM/DD/<time>-<uuid>                 Lambda's on-failure records

Batch outputs are named by shard and the first sequence number of the batch:
Lambda re-delivers a failed batch from that same record, so a re-processed
batch overwrites its earlier output even when the retried batch ends at a
different record (a name that also held the last sequence number would then
leave the first attempt's file behind as a duplicate). Partition hours are
UTC; windows are placed by ``window_start``.

``def=<fp>`` is the metric definition's fingerprint (``MetricDef.fingerprint``):
a changed definition writes and reads a fresh tree, so windows computed under
two definitions are never mixed; the old tree stays until deleted by hand.

Final files are one per (metric, definition, hour, app): a reader for one app
GETs its files by name (a 404 is "no final rows of that app in that hour")
and never lists or reads another app's finals. Partials stay one file per
batch and hour for every app: they live only until their hour is finalized
plus the grace period, so what a reader lists and reads of them is bounded by
the open hours' traffic, not by history (see chalicelib/lake/rollups.py).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only for the annotations
    from chalicelib.processing import MetricDef

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


STAGING_PREFIX = "staging/events/"
COMMITS_PREFIX = "staging/commits/"


def staged_key(shard_id: str, first_sequence: str, last_sequence: str) -> str:
    """One archive batch. The name holds both ends: a re-delivered batch that ends elsewhere is a
    second file (its rows are copies, removed by compaction), never an overwrite that could
    replace a file while the committer holds it."""
    return f"{STAGING_PREFIX}{shard_id}/{int(first_sequence):056d}-{int(last_sequence):056d}.parquet"


def staged_position(key: str) -> tuple[str, str]:
    """A staged key -> (shard, last sequence number)."""
    shard, name = key[len(STAGING_PREFIX):].split("/", 1)
    return shard, str(int(name.removesuffix(".parquet").split("-", 1)[1]))


def raw_key(app_id: str, dt: str, hour: str, shard_id: str, first_sequence: str) -> str:
    """A file of the Hive-layout raw archive (before the Iceberg table; read by the migration)."""
    return f"{EVENTS_PREFIX}app_id={app_id}/dt={dt}/hour={hour}/{batch_name(shard_id, first_sequence)}.parquet"


def metric_prefix(metric: MetricDef) -> str:
    """Every rollup file of the metric's current definition."""
    return f"{ROLLUPS_PREFIX}{metric.name}/def={metric.fingerprint}/"


def rollup_prefix(metric: MetricDef, stage: str, dt: str | None = None, hour: str | None = None) -> str:
    prefix = f"{metric_prefix(metric)}stage={stage}/"
    if dt is not None:
        prefix += f"dt={dt}/"
        if hour is not None:
            prefix += f"hour={hour}/"
    return prefix


def partial_key(metric: MetricDef, dt: str, hour: str, shard_id: str, first_sequence: str) -> str:
    return rollup_prefix(metric, "partial", dt, hour) + batch_name(shard_id, first_sequence) + ".parquet"


FINAL_STEM = "app-"


def final_key(metric: MetricDef, dt: str, hour: str, app_id: str) -> str:
    """The final rows of one app's windows starting in the hour (app ids are ``[a-z0-9][a-z0-9_-]*``)."""
    return rollup_prefix(metric, "final", dt, hour) + f"{FINAL_STEM}{app_id}.parquet"


#: Parquet metadata of a head final file: the names (under ``app-<app>/``) of the app's slice files.
SLICES_KEY = b"eventpipe.slices"


def slice_key(metric: MetricDef, dt: str, hour: str, app_id: str, k: int, n: int, fingerprint: str) -> str:
    """Slice k of n of one app's final rows of the hour (the head ``final_key`` names the current ones)."""
    return rollup_prefix(metric, "final", dt, hour) + f"{FINAL_STEM}{app_id}/{slice_name(k, n, fingerprint)}"


def slice_name(k: int, n: int, fingerprint: str) -> str:
    return f"slice-{k}-of-{n}-{fingerprint}.parquet"


def final_app(key: str) -> str | None:
    """The app of a final file's key; None for other files."""
    name = key.rsplit("/", 1)[-1]
    if not (name.startswith(FINAL_STEM) and name.endswith(".parquet")):
        return None
    return name[len(FINAL_STEM):-len(".parquet")]


def parse_partition(key: str) -> dict[str, str]:
    """``a=1/b=2/file`` -> {"a": "1", "b": "2"}."""
    return dict(part.split("=", 1) for part in key.split("/") if "=" in part)
