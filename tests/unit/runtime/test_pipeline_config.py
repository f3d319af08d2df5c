"""The pipeline configuration: precedence, stages, and refusal of unknown or out-of-range values."""

from __future__ import annotations

import pytest

from chalicelib.runtime.pipeline_config import PipelineConfigError, load_pipeline_config, parse_pipeline_config

BASE = """
[deploy]
app_name = "eventpipe"
runtime = "python3.12"
architecture = "x86_64"

[api]
throttling_rate_limit = 100
throttling_burst_limit = 200
snapstart = true

[consumers.defaults]
batch_size = 100
batching_window_s = 5
starting_position = "TRIM_HORIZON"
parallelization_factor = 1
maximum_retry_attempts = 3
maximum_record_age_s = 3600
bisect_on_error = true

[consumers.a]
[consumers.b]
batching_window_s = 1

[stream]
mode = "ON_DEMAND"
shards = 1
retention_hours = 24

[lifecycle]
raw_events_days = 30
raw_events_infrequent_access_days = 0
bad_rows_days = 14
dead_letter_days = 14
query_results_days = 7
log_retention_days = 14
retain_data = false

[search]
engine_version = "OpenSearch_2.19"
instance_type = "t3.small.search"
instance_count = 1
volume_gb = 10
zone_awareness = false
retention_days = 7

[alarms]
email = ""
iterator_age_ms = 1
function_errors = 1
function_throttles = 1
api_5xx = 1
api_latency_p99_ms = 1
search_jvm_pressure_pct = 85

[stages.local]
[stages.dev]
[stages.dev.consumers.defaults]
parallelization_factor = 2
[stages.dev.consumers.b]
batching_window_s = 2
[stages.dev.stream]
mode = "PROVISIONED"
shards = 2
"""


def test_later_levels_override_earlier_ones():
    dev = parse_pipeline_config(BASE, "dev")
    assert dev.consumer("a").batching_window_s == 5  # defaults
    assert dev.consumer("b").batching_window_s == 2  # stage consumer over consumer
    assert dev.consumer("a").parallelization_factor == 2  # stage defaults over defaults
    assert dev.stream.mode == "PROVISIONED" and dev.stream.shards == 2
    local = parse_pipeline_config(BASE, "local")
    assert local.consumer("b").batching_window_s == 1 and local.consumer("a").parallelization_factor == 1
    assert [c.name for c in local.consumers] == ["a", "b"]


def test_unknown_stage_is_refused():
    with pytest.raises(PipelineConfigError, match="unknown stage 'staging'"):
        parse_pipeline_config(BASE, "staging")


@pytest.mark.parametrize("extra, message", [
    ("[consumers.c]\nbatch_sise = 5\n", "unknown key"),
    ("[stages.dev.consumers.zzz]\nbatch_size = 5\n", "not declared under"),
    ("[stages.dev.search]\ninstance_typ = 'x'\n", "unknown key"),
    ("[surprise]\n", "unknown section"),
])
def test_unknown_keys_and_sections_are_refused(extra, message):
    with pytest.raises(PipelineConfigError, match=message):
        parse_pipeline_config(BASE + extra, "dev")


@pytest.mark.parametrize("key, value", [("batch_size", 0), ("batch_size", 10_001), ("batching_window_s", 301),
                                        ("parallelization_factor", 11), ("maximum_record_age_s", 30),
                                        ("maximum_retry_attempts", -2), ("starting_position", '"EARLIEST"'),
                                        ("bisect_on_error", '"yes"'), ("batch_size", "true")])
def test_values_lambda_would_refuse_are_refused(key, value):
    text = BASE.replace("[consumers.a]\n", f"[consumers.a]\n{key} = {value}\n")
    with pytest.raises(PipelineConfigError):
        parse_pipeline_config(text, "local")


def test_a_missing_key_is_refused():
    with pytest.raises(PipelineConfigError, match="missing key.*retain_data"):
        parse_pipeline_config(BASE.replace("retain_data = false\n", ""), "dev")


def test_shipped_file_resolves_for_every_stage():
    for stage in ("local", "dev", "prod"):
        config = load_pipeline_config(stage)
        assert [c.name for c in config.consumers] == ["archive_events", "aggregate_events", "index_events"]
        assert config.function("finalize_windows").reserved_concurrency == 1
        assert config.function("archive_events").reserved_concurrency is None
    assert load_pipeline_config("local").consumer("index_events") == load_pipeline_config("dev").consumer(
        "index_events")  # the local runner behaves as the dev deployment
