"""Writes a unit's final files and its bookkeeping (the layout of the finals; S3 only).

Order, so that every reader and every re-run stays exact:

1. the unit's final files: ``app-<app>.parquet`` (one PUT, atomic) when the (app, hour) is one
   unit; else slice files ``app-<app>/slice-<k>-of-<n>-<fp>.parquet`` (named by the inputs'
   fingerprint, so a slice of one computation never overwrites a slice another head names);
2. the slice manifest ``rollups/_units/dt=/hour=/app-<app>/slice-<k>-of-<n>-<fp>.json``
   (which partials it covered, the ETags of what it wrote, when);
3. once every slice of the fingerprint has its manifest (whichever unit or planner run sees that
   first; idempotent), the heads: ``app-<app>.parquet`` without rows naming the n slice files in
   its metadata (one PUT per metric: the switch is atomic per (metric, app, hour)), then the done
   marker ``done-<fp>-<finalized_at>.json``. The planner treats the (app, hour) as finalized from
   these inputs only when the done marker exists, and deletes partials only when every app in
   them has one older than the grace period.

A unit killed anywhere in between leaves the previous head (or the new complete one) in place:
readers see whole finals of one computation per (metric, app, hour), never half of two. The done
marker records the ETags of the files it switched to, so a unit that read an older snapshot and
wrote last is detected (:meth:`FinalWriter.verified`) and the (app, hour) runs again.
"""

from __future__ import annotations

import orjson
import pyarrow as pa

from chalicelib.lake import layout, units
from chalicelib.lake.final_rows import DEFINITION_KEY, encode_final
from chalicelib.lake.s3io import get_bytes, head, list_keys
from chalicelib.lake.units import Unit
from chalicelib.processing import MetricSet, encode_parquet, partials_schema
from chalicelib.lake.sql_sketch import register_columns


class FinalWriter:
    def __init__(self, s3, bucket: str, metrics: MetricSet) -> None:
        self._s3, self._bucket, self._metrics = s3, bucket, metrics

    def _put(self, key: str, body: bytes, **extra) -> str:
        return self._s3.put_object(Bucket=self._bucket, Key=key, Body=body, **extra).get("ETag", "")

    def write_unit(self, unit: Unit, fingerprint: str, rows: dict[str, pa.Table], covers: dict[str, dict[str, str]],
                   finalized_at: int) -> dict:
        """Steps 1-3 for one unit; returns its manifest (with ``done``: whether the hour switched)."""
        finals: dict[str, dict[str, str]] = {}
        for metric in self._metrics.metrics:
            table = rows[metric.name]
            if unit.slices == 1:
                if table.num_rows == 0:
                    continue  # no rows and no tombstone: the app has nothing in this metric's hour
                key = layout.final_key(metric, unit.dt, unit.hour, unit.app_id)
            else:
                key = layout.slice_key(metric, unit.dt, unit.hour, unit.app_id, unit.slice, unit.slices, fingerprint)
            finals[metric.name] = {key: self._put(key, encode_final(metric, table))}
        manifest = {"unit": unit.message(), "fp": fingerprint, "finalized_at": finalized_at, "covers": covers,
                    "finals": finals}
        self._put(units.slice_manifest_key(unit, fingerprint), orjson.dumps(manifest),
                  ContentType="application/json")
        manifest["done"] = self.complete(unit.app_id, unit.dt, unit.hour, fingerprint, unit.slices, finalized_at,
                                         manifest if unit.slices == 1 else None)
        return manifest

    def complete(self, app_id: str, dt: str, hour: str, fingerprint: str, slices: int, finalized_at: int,
                 only: dict | None = None) -> bool:
        """Switch the (app, hour) to the fingerprint's slices when all are written (idempotent)."""
        if only is None:
            manifests = self.slice_manifests(app_id, dt, hour, fingerprint, slices)
            if manifests is None:
                return False
        else:
            manifests = [only]
        heads = self._write_heads(app_id, dt, hour, fingerprint, slices) if slices > 1 else {}
        covers: dict[str, dict[str, str]] = {}
        for metric in self._metrics.metrics:  # a partial is covered when every slice covered it
            common = None
            for m in manifests:
                mine = set(m["covers"].get(metric.name, {}).items())
                common = mine if common is None else common & mine
            covers[metric.name] = dict(sorted(common or ()))
        finals = {m_name: keys for m in manifests for m_name, keys in m["finals"].items()} if slices == 1 else heads
        body = {"fp": fingerprint, "slices": slices, "finalized_at": finalized_at, "covers": covers,
                "finals": finals}
        self._put(units.done_key(dt, hour, app_id, fingerprint, finalized_at),
                  orjson.dumps(body), ContentType="application/json")
        return True

    def slice_manifests(self, app_id: str, dt: str, hour: str, fingerprint: str, slices: int) -> list[dict] | None:
        """Every slice manifest of the fingerprint, or None while one is missing."""
        present = {}
        for obj in list_keys(self._s3, self._bucket, units.app_prefix(dt, hour, app_id)):
            parsed = units.parse_unit_key(obj["Key"])
            if parsed and parsed[1] == "slice" and parsed[2]["fp"] == fingerprint and parsed[2]["n"] == slices:
                present[parsed[2]["k"]] = obj["Key"]
        if len(present) < slices:
            return None
        bodies = [get_bytes(self._s3, self._bucket, present[k]) for k in range(slices)]
        return None if any(b is None for b in bodies) else [orjson.loads(b) for b in bodies]

    def verified(self, done_key: str) -> bool:
        """Whether the app's final files (or heads) are still the ones written with this done marker.
        A unit that read an older snapshot and wrote after a newer unit leaves other ETags: the
        (app, hour) is then due again (the planner checks recent markers: see planner.py)."""
        body = get_bytes(self._s3, self._bucket, done_key)
        if body is None:
            return False
        for keys in orjson.loads(body).get("finals", {}).values():
            for key, etag in keys.items():
                found = head(self._s3, self._bucket, key)
                if found is None or found.get("ETag") != etag:
                    return False
        return True

    def _write_heads(self, app_id: str, dt: str, hour: str, fingerprint: str, slices: int) -> dict:
        names = orjson.dumps([layout.slice_name(k, slices, fingerprint) for k in range(slices)])
        heads = {}
        for metric in self._metrics.metrics:
            table = register_columns(partials_schema(metric).empty_table())
            table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                                   DEFINITION_KEY: metric.fingerprint.encode(),
                                                   layout.SLICES_KEY: names})
            key = layout.final_key(metric, dt, hour, app_id)
            heads[metric.name] = {key: self._put(key, encode_parquet(table))}
        return heads
