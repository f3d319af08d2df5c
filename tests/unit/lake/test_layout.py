"""Rollup keys: one tree per definition, one final file per app found by name."""

from __future__ import annotations

import dataclasses

from chalicelib.lake import layout
from chalicelib.processing import WindowSpec, load_metrics


def test_final_keys_are_per_app_inside_the_hour_partition_of_the_definitions_tree():
    metric = load_metrics()["event_counts"]
    key = layout.final_key(metric, "2026-01-01", "12", "demo")
    assert key == f"rollups/event_counts/def={metric.fingerprint}/stage=final/dt=2026-01-01/hour=12/app-demo.parquet"
    assert layout.final_app(key) == "demo"
    assert layout.final_app(key.rsplit("/", 1)[0] + "/_manifest.json") is None
    assert layout.parse_partition(key)["hour"] == "12"


def test_a_changed_definition_writes_another_tree():
    metric = load_metrics()["event_counts"]
    changed = dataclasses.replace(metric, window=WindowSpec(300_000, 300_000))
    assert layout.metric_prefix(changed) != layout.metric_prefix(metric)
    assert layout.partial_key(changed, "2026-01-01", "12", "shardId-0", "5").startswith(layout.metric_prefix(changed))
