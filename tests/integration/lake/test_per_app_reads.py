"""One app's read touches only that app's final files, by name, and still sees each window once."""

from __future__ import annotations

import pytest
from moto import mock_aws

from chalicelib.lake import layout
from chalicelib.lake.finalizer import Finalizer
from chalicelib.lake.rollups import FileCache, read_windows_status
from tests.factories.lake import T0, Clock, canonical_lines, lambda_batches
from tests.integration.lake.test_lake_processing import HOUR, Lake, ObservedS3

APPS = ("demo", "other-1", "other-2")


@pytest.fixture
def lake():
    with mock_aws():
        yield Lake()


def load_apps(lake, count=200):
    lines = [line for i, app in enumerate(APPS) for line in canonical_lines(count, seed=60 + i, app_id=app)]
    for batch in lambda_batches(lines, seed=70):
        lake.deliver(batch)
    return lines


class Requests:
    """Every S3 call of a client: (operation, params)."""

    def __init__(self, s3):
        self.calls = []
        s3.meta.events.register("before-call.s3", self._record)

    def _record(self, model, params, **_):
        self.calls.append((model.name, params.get("url_path", "")))


def counts(lake, app_id, cache=None):
    rows = read_windows_status(lake.s3, lake.bucket, lake.metrics["event_counts"], T0 - HOUR, T0 + 2 * HOUR, app_id,
                               cache=cache or FileCache()).rows
    return {(r["app_id"], r["window_start"], r["event_type"]): r["count"] for r in rows.to_pylist()}


def test_one_apps_read_gets_its_final_files_by_name_and_lists_no_finals(lake):
    load_apps(lake)
    lake.clock.now_ms = T0 + 3 * HOUR
    lake.finalizer.run()
    lake.clock.now_ms += 16 * 60_000
    lake.finalizer.run()  # partials cleaned: only finals remain
    finals = [k for k in lake.keys(layout.ROLLUPS_PREFIX) if "stage=final" in k and k.endswith(".parquet")]
    assert {layout.final_app(k) for k in finals} == set(APPS)
    seen = Requests(lake.s3)
    got = counts(lake, "demo")
    assert got and {app for app, _, _ in got} == {"demo"}
    gets = [path for op, path in seen.calls if op == "GetObject"]
    assert gets and all("app-demo.parquet" in path for path in gets)
    assert all("stage%3Dfinal" not in path and "stage=final" not in path
               for op, path in seen.calls if op == "ListObjectsV2")
    assert sum(got.values()) == 200


def test_a_warm_read_revalidates_its_final_files_without_downloading_them(lake):
    load_apps(lake, count=50)
    lake.clock.now_ms = T0 + 3 * HOUR
    lake.finalizer.run()
    cache = FileCache()
    first = counts(lake, "demo", cache)
    seen = Requests(lake.s3)
    assert counts(lake, "demo", cache) == first
    assert [op for op, _ in seen.calls if op == "GetObject"]  # conditional GETs, answered 304 from the cache


def test_one_apps_readers_during_compaction_see_every_window_exactly_once(lake):
    load_apps(lake)
    expected = counts(lake, "other-1")
    assert sum(expected.values()) == 200
    observed = ObservedS3(lake.s3, lambda: counts(lake, "other-1"))
    lake.clock.now_ms = T0 + 3 * HOUR
    lake.committer.run()
    Finalizer(observed, lake.bucket, lake.state, lake.metrics, lake.clock, raw=lake.raw).run()
    lake.clock.now_ms += 16 * 60_000
    Finalizer(observed, lake.bucket, lake.state, lake.metrics, lake.clock, raw=lake.raw).run()
    assert len(observed.seen) >= 3 * len(APPS)  # each app's final file, manifests, deletes
    assert all(seen == expected for seen in observed.seen)


def test_every_app_with_partials_gets_a_final_file_so_none_reads_partials_about_to_go(lake):
    load_apps(lake, count=30)
    lake.clock.now_ms = T0 + 3 * HOUR
    lake.finalizer.run()
    for metric in lake.metrics.metrics:
        partial_apps = set()
        from chalicelib.lake.s3io import read_many
        for table in read_many(lake.s3, lake.bucket, lake.keys(layout.rollup_prefix(metric, "partial"))):
            partial_apps |= set(table["app_id"].to_pylist())
        finals = {layout.final_app(k) for k in lake.keys(layout.rollup_prefix(metric, "final")) if k.endswith("parquet")}
        assert partial_apps <= finals, metric.name


def finalized_and_cleaned(lake, count=50):
    lines = load_apps(lake, count=count)
    lake.clock.now_ms = T0 + 3 * HOUR
    lake.finalizer.run()
    lake.clock.now_ms += 16 * 60_000
    lake.finalizer.run()  # the grace period is over: the covered partials are deleted
    assert not [k for k in lake.keys(layout.ROLLUPS_PREFIX) if "stage=partial" in k]
    return lines


def trusted_counts(lake, cache, trust_s=60.0):
    rows = read_windows_status(lake.s3, lake.bucket, lake.metrics["event_counts"], T0 - HOUR, T0 + 2 * HOUR,
                               "demo", cache=cache, trust_s=trust_s).rows
    return {(r["app_id"], r["window_start"], r["event_type"]): r["count"] for r in rows.to_pylist()}


def test_a_warm_read_of_hours_without_partials_gets_no_final_file_within_the_trust_period(lake):
    finalized_and_cleaned(lake)
    cache_clock = Clock(1000.0)
    cache = FileCache(clock_s=cache_clock)
    first = trusted_counts(lake, cache)
    assert sum(first.values()) == 50
    seen = Requests(lake.s3)
    assert trusted_counts(lake, cache) == first
    assert [op for op, _ in seen.calls if op == "GetObject"] == []  # the 3 hours (2 finals, one 404) trusted
    assert [op for op, _ in seen.calls if op == "ListObjectsV2"]  # the partials are still listed
    cache_clock.now_ms += 60.0  # the trust period is over: checked again (conditional GETs)
    seen.calls.clear()
    assert trusted_counts(lake, cache) == first
    assert len([op for op, _ in seen.calls if op == "GetObject"]) == 3


def test_a_final_rewritten_from_late_partials_is_read_at_once_despite_the_trust_period(lake):
    finalized_and_cleaned(lake)
    cache = FileCache(clock_s=Clock(1000.0))  # the cache's clock stands still: everything stays "fresh"
    before = trusted_counts(lake, cache)
    late = canonical_lines(20, seed=99, start_ms=T0 + 16 * 60_000, app_id="demo", duration_ms=4 * 60_000)
    for batch in lambda_batches(late, seed=71, first_sequence=10_000):
        lake.deliver(batch)
    assert [k for k in lake.keys(layout.ROLLUPS_PREFIX) if "stage=partial" in k]  # the late events' partials
    final_windows = {window for _, window, _ in before}
    during = trusted_counts(lake, cache)  # a finalized window: its final rows still answer, alone
    assert {k: v for k, v in during.items() if k[1] in final_windows} == before
    reports = lake.finalizer.run()  # re-finalized from the raw archive, late events included
    assert any(r.action == "finalized" for r in reports)
    after = trusted_counts(lake, cache)
    assert sum(after.values()) == sum(before.values()) + 20  # listed partials: the final was checked again


def test_a_cached_404_is_trusted_only_while_its_hour_lists_no_partials(lake):
    finalized_and_cleaned(lake)
    cache = FileCache(clock_s=Clock(1000.0))
    name = f"{lake.bucket}/{layout.final_key(lake.metrics['event_counts'], '2026-01-01', '11', 'demo')}"
    trusted_counts(lake, cache)
    assert cache.trusted(name, name.split("/", 1)[1], 60.0) == (True, None)  # hour 11: no final for demo
    assert cache.trusted(name, name.split("/", 1)[1], 0.0) == (False, None)  # trust 0: always ask S3
