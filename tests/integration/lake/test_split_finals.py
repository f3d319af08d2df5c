"""A split (app, hour) is read by name: the app's head final names its slices, and every reader
(one app's metrics API read, the all-apps read) applies "final rows if any, else partials" per
(app, window) over the union of the slices."""

from __future__ import annotations

from chalicelib.lake import layout
from chalicelib.lake.finalizer import Finalizer
from chalicelib.lake.rollups import FileCache, read_windows_status
from tests.factories.lake import T0, canonical_lines, lambda_batches, truth_event_counts
from tests.integration.lake.test_lake_processing import HOUR, assert_counts_match, lake  # noqa: F401 (fixture)


def test_a_split_app_hour_reads_the_same_as_unsplit_through_its_head(lake):
    """Rule: with the hour split into slices (rows_per_unit 100), one app's read by name and the
    all-apps read give the exact counts, and the final file of the app is a head naming n slices."""
    lines = canonical_lines(400, seed=61, duration_ms=50 * 60_000)
    for batch in lambda_batches(lines, seed=62):
        lake.deliver(batch)
    lake.committer.run()
    lake.clock.now_ms = T0 + 3 * HOUR
    finalizer = Finalizer(lake.s3, lake.bucket, lake.state, lake.metrics, lake.clock, grace_ms=0, raw=lake.raw,
                          rows_per_unit=100)
    assert {r.action for r in finalizer.run()} == {"finalized"}
    metric = lake.metrics["event_counts"]
    dt, hour = layout.dt_hour(T0)
    head = lake.s3.get_object(Bucket=lake.bucket, Key=layout.final_key(metric, dt, hour, "demo"))["Body"].read()
    import io

    import orjson
    import pyarrow.parquet as pq
    names = orjson.loads(pq.read_schema(io.BytesIO(head)).metadata[layout.SLICES_KEY])
    from chalicelib.lake.units import sizing, slices_for
    assert len(names) == slices_for(400, 100, sizing(lake.metrics, dt, hour)) > 1
    finalizer.run()  # the grace period (0) is over: the covered partials go; only finals answer now
    assert not lake.keys(layout.rollup_prefix(metric, "partial"))
    truth = truth_event_counts(lines)
    for app_id in ("demo", None):
        rows = read_windows_status(lake.s3, lake.bucket, metric, T0 - HOUR, T0 + 2 * HOUR, app_id,
                                   cache=FileCache()).rows
        got = {(r["app_id"], r["window_start"], r["event_type"]): (r["count"], r["users"]) for r in rows.to_pylist()}
        assert_counts_match(got, truth, exact_users=True)
