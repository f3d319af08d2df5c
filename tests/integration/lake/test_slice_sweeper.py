"""Superseded slice files of a split (app, hour) are deleted (chalicelib/lake/slice_sweeper.py).

Rules: after a split hour is re-finalized from new inputs, the old fingerprint's slice files stay
while a reader may still hold the old head (the grace period), then the scheduled run deletes
them and their manifests, so every file under the hour's folder belongs to the current finals
(what Athena reads) and the counts stay exact; a backfill (what a deletion request runs) deletes
them at once; slices of a computation still writing are never touched.
"""

from __future__ import annotations

import orjson

from chalicelib.lake import layout, units
from chalicelib.lake.finalizer import Finalizer
from chalicelib.lake.rollups import FileCache, read_windows_status
from tests.factories.lake import T0, canonical_lines, lambda_batches, truth_event_counts
from tests.integration.lake.test_lake_processing import HOUR, assert_counts_match, lake  # noqa: F401 (fixture)

GRACE = 10 * 60_000


def finalizer(lake, grace_ms=GRACE):
    return Finalizer(lake.s3, lake.bucket, lake.state, lake.metrics, lake.clock, grace_ms=grace_ms, raw=lake.raw,
                     rows_per_unit=100)


def slice_files(lake, dt, hour):
    """metric -> the slice file names under the app's folder of the hour."""
    return {m.name: sorted(k.rsplit("/", 1)[1] for k in lake.keys(layout.final_key(m, dt, hour, "demo")[:-8] + "/"))
            for m in lake.metrics.metrics}


def named_by_head(lake, dt, hour):
    import io

    import orjson
    import pyarrow.parquet as pq
    metric = lake.metrics["event_counts"]
    head = lake.s3.get_object(Bucket=lake.bucket, Key=layout.final_key(metric, dt, hour, "demo"))["Body"].read()
    return sorted(orjson.loads(pq.read_schema(io.BytesIO(head)).metadata[layout.SLICES_KEY]))


def deliver(lake, lines, seed, first_sequence=100):
    for batch in lambda_batches(lines, seed=seed, first_sequence=first_sequence):
        lake.deliver(batch)
    lake.committer.run()


def assert_exact(lake, lines):
    metric = lake.metrics["event_counts"]
    rows = read_windows_status(lake.s3, lake.bucket, metric, T0 - HOUR, T0 + 2 * HOUR, "demo", cache=FileCache()).rows
    got = {(r["app_id"], r["window_start"], r["event_type"]): (r["count"], r["users"]) for r in rows.to_pylist()}
    assert_counts_match(got, truth_event_counts(lines), exact_users=True)


def test_the_scheduled_run_deletes_the_old_slices_after_the_grace_period(lake):
    lines = canonical_lines(400, seed=71, duration_ms=50 * 60_000)
    deliver(lake, lines, 72)
    dt, hour = layout.dt_hour(T0)
    lake.clock.now_ms = T0 + 3 * HOUR
    job = finalizer(lake)
    job.run()
    first = named_by_head(lake, dt, hour)
    assert len(first) > 1 and all(names == first for names in slice_files(lake, dt, hour).values())
    late = canonical_lines(60, seed=73, duration_ms=50 * 60_000)  # late events: new inputs, a new fingerprint
    deliver(lake, late, 74, first_sequence=10_000)
    lake.clock.now_ms += 60_000
    job.run()
    second = named_by_head(lake, dt, hour)
    assert set(second).isdisjoint(first)
    lake.clock.now_ms += 60_000
    job.run()  # within the grace period: a reader holding the old head can still read its slices
    assert all(names == sorted(first + second) for names in slice_files(lake, dt, hour).values())
    assert_exact(lake, lines + late)
    lake.clock.now_ms += GRACE
    job.run()
    assert all(names == second for names in slice_files(lake, dt, hour).values())
    manifests = [k for k in lake.keys(units.app_prefix(dt, hour, "demo")) if "/slice-" in k]
    assert manifests and all(second[0].rsplit("-", 1)[1][:-len(".parquet")] in k for k in manifests)
    assert_exact(lake, lines + late)


def test_a_backfill_deletes_the_old_slices_at_once_and_spares_a_computation_still_writing(lake):
    lines = canonical_lines(400, seed=81, duration_ms=50 * 60_000)
    deliver(lake, lines, 82)
    dt, hour = layout.dt_hour(T0)
    lake.clock.now_ms = T0 + 3 * HOUR
    finalizer(lake).run()
    first = named_by_head(lake, dt, hour)
    # a unit of another computation that has written one slice and its manifest just now
    metric_keys = {m.name: layout.slice_key(m, dt, hour, "demo", 0, 9, "feedfacefeedface") for m in lake.metrics.metrics}
    for key in metric_keys.values():
        lake.s3.put_object(Bucket=lake.bucket, Key=key, Body=b"x")
    writing = units.slice_manifest_key(units.Unit("demo", dt, hour, 0, 9), "feedfacefeedface")
    lake.s3.put_object(Bucket=lake.bucket, Key=writing, Body=orjson.dumps({"finalized_at": lake.clock.now_ms}))
    late = canonical_lines(60, seed=83, duration_ms=50 * 60_000)
    deliver(lake, late, 84, first_sequence=10_000)
    lake.clock.now_ms += 60_000
    job = finalizer(lake)
    job.backfill_partition(lake.metrics["event_counts"], dt, hour)
    second = named_by_head(lake, dt, hour)
    assert set(second).isdisjoint(first)
    for metric in lake.metrics.metrics:  # the old computation's slices are gone; the one still writing stays
        assert set(slice_files(lake, dt, hour)[metric.name]) == set(second) | {metric_keys[metric.name].rsplit("/", 1)[1]}
    assert writing in lake.keys(units.app_prefix(dt, hour, "demo"))
    assert_exact(lake, lines + late)
