"""What a finalization unit reads: the raw table (pruned to its app and slice), the hour's partials
(only the app's rows are kept), and the previous finals and bookkeeping of its (app, hour)."""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from botocore.exceptions import ClientError

from chalicelib.lake import layout, units
from chalicelib.lake.raw_table import RawTable
from chalicelib.lake.rollups import with_slices
from chalicelib.lake.s3io import get_bytes, is_missing, list_keys, read_parquet
from chalicelib.lake.state import StateStore
from chalicelib.lake.units import Unit
from chalicelib.processing import MetricDef, MetricSet, decode_parquet


@dataclass
class Previous:
    """The newest completed finalization of an (app, hour): what it covered and its final rows."""

    covers: dict[str, dict[str, str]] = field(default_factory=dict)
    finals: dict[str, pa.Table] = field(default_factory=dict)


class ArchiveReader:
    def __init__(self, s3, bucket: str, metrics: MetricSet, raw: RawTable, state: StateStore) -> None:
        self._s3, self._bucket, self._metrics, self._raw, self._state = s3, bucket, metrics, raw, state

    # ------------------------------------------------------------------------------ the raw table
    def raw_files(self, app_id: str, dt: str, hour: str) -> list[tuple[str, int]]:
        """The (app, hour) partition's data files and record counts (table manifests only)."""
        return self._raw.partition_files([(dt, hour)]).get((app_id, dt, hour), [])

    def raw_events(self, unit: Unit) -> pa.Table:
        """The unit's deduplicated raw rows: its app, its slice's event-time range."""
        start, end = unit.event_range(self._metrics)
        return self._raw.read_app_deduped(unit.app_id, start, end)

    # ------------------------------------------------------------------------------ partials
    def partial_etags(self, metric: MetricDef, dt: str, hour: str) -> dict[str, str]:
        return {o["Key"]: o.get("ETag", "") for o in list_keys(self._s3, self._bucket,
                                                               layout.rollup_prefix(metric, "partial", dt, hour))}

    def partial_rows(self, keys: list[str], app_id: str) -> dict[str, pa.Table]:
        """key -> the app's rows of each partial file holding any (a file gone since the listing
        was cleaned: skipped)."""
        out = {}
        for key in keys:
            try:
                table = read_parquet(self._s3, self._bucket, key)
            except ClientError as exc:
                if is_missing(exc):
                    continue
                raise
            rows = table.filter(pc.equal(table["app_id"], app_id))
            if rows.num_rows:
                out[key] = rows
        return out

    def apps_of(self, key: str) -> list[str] | None:
        """The apps of one partial file (its app_id column only), None when it is gone."""
        body = get_bytes(self._s3, self._bucket, key)
        if body is None:
            return None
        import io

        import pyarrow.parquet as pq
        column = pq.read_table(io.BytesIO(body), columns=["app_id"])["app_id"]
        return sorted(set(column.to_pylist()))

    def seen(self, dt: str, hour: str) -> dict[str, dict]:
        """The planner's record of the hour's partials: key -> {etag, apps, at}."""
        body = get_bytes(self._s3, self._bucket, units.seen_key(dt, hour))
        return orjson.loads(body) if body else {}  # (and "~sent": app -> when its units were queued)

    def archived(self, partial_keys: list[str]) -> bool:
        """True when the raw table holds every record the partials came from (the committer's progress)."""
        progress: dict[str, int | None] = {}
        for key in partial_keys:
            try:
                meta = self._s3.head_object(Bucket=self._bucket, Key=key)["Metadata"]
            except ClientError as exc:
                if is_missing(exc):
                    continue  # cleaned since the listing
                raise
            shard = meta["shard-id"]
            if shard not in progress:
                progress[shard] = self._state.archived_through(shard)
            if progress[shard] is None or progress[shard] < int(meta["last-sequence"]):
                return False
        return True

    # ------------------------------------------------------------------------------ previous finals
    def previous(self, app_id: str, dt: str, hour: str) -> Previous:
        """The app's current final rows and what the newest done marker says they cover.

        Without a marker (never finalized, or its bookkeeping expired) the finals cover nothing; a
        single-unit final whose ETag is not the one the marker recorded was written by a later run
        that did not finish: it covers nothing either (late counts stay at-least-once)."""
        done = [(parsed[2]["at"], obj["Key"]) for obj in list_keys(self._s3, self._bucket,
                                                                   units.app_prefix(dt, hour, app_id))
                if (parsed := units.parse_unit_key(obj["Key"])) and parsed[1] == "done"]
        body = get_bytes(self._s3, self._bucket, max(done)[1]) if done else None
        marker = orjson.loads(body) if body else {}
        previous = Previous(covers=marker.get("covers", {}))
        for metric in self._metrics.metrics:
            found = self._final(metric, dt, hour, app_id)
            if found is None:
                continue
            etag, rows = found
            recorded = marker.get("finals", {}).get(metric.name)
            if recorded is not None and etag not in recorded.values():
                previous.covers[metric.name] = {}
            previous.finals[metric.name] = rows
        return previous

    def _final(self, metric: MetricDef, dt: str, hour: str, app_id: str) -> tuple[str, pa.Table] | None:
        key = layout.final_key(metric, dt, hour, app_id)
        try:
            response = self._s3.get_object(Bucket=self._bucket, Key=key)
        except ClientError as exc:
            if is_missing(exc):
                return None
            raise
        return response.get("ETag", ""), with_slices(self._s3, self._bucket, metric, key,
                                                     decode_parquet(response["Body"].read()))
