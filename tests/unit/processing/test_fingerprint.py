"""The definition fingerprint: what changes a metric's rows changes it, nothing else does."""

from __future__ import annotations

import dataclasses

from chalicelib.processing import LatenessSettings, MetricSet, WindowSpec, load_metrics
from chalicelib.processing.metric_model import Condition, Field, FilterDef


def test_fingerprint_is_stable_across_loads_and_ignores_the_description():
    a, b = load_metrics()["event_counts"], load_metrics()["event_counts"]
    assert a.fingerprint == b.fingerprint and len(a.fingerprint) == 12
    assert dataclasses.replace(a, description="other words").fingerprint == a.fingerprint


def test_fingerprint_changes_with_window_filter_measures_and_keys():
    metric = load_metrics()["class_activity"]
    changed = [
        dataclasses.replace(metric, window=WindowSpec(5 * 60_000, 5 * 60_000)),
        dataclasses.replace(metric, filter=FilterDef(("match_end",))),
        dataclasses.replace(metric, measures=metric.measures[:1]),
        dataclasses.replace(metric, keys=()),
    ]
    prints = {m.fingerprint for m in changed}
    assert metric.fingerprint not in prints and len(prints) == len(changed)


def test_fingerprint_tells_a_number_from_a_string_in_a_filter():
    metric = load_metrics()["event_counts"]
    as_int = dataclasses.replace(metric, filter=FilterDef(None, (Condition(Field("attributes.level"), "equals", 1),)))
    as_str = dataclasses.replace(metric, filter=FilterDef(None, (Condition(Field("attributes.level"), "equals", "1"),)))
    as_bool = dataclasses.replace(metric, filter=FilterDef(None, (Condition(Field("attributes.level"), "equals", True),)))
    assert len({as_int.fingerprint, as_str.fingerprint, as_bool.fingerprint}) == 3


def test_lateness_settings_of_the_set_are_part_of_each_metrics_fingerprint():
    metrics = load_metrics()
    stricter = MetricSet(metrics.metrics, LatenessSettings(max_lateness_ms=86_400_000))
    assert all(a.fingerprint != b.fingerprint for a, b in zip(metrics.metrics, stricter.metrics))
    assert stricter["event_counts"].lateness == stricter.settings
