"""The pipeline configuration (``chalicelib/pipeline.toml``): consumers and stage infrastructure.

One file, read by app.py (decorator arguments), the local runner and the deployment
template generator, so the local stack and a deployment use the same event source
mapping settings. Pure: no environment reads; the caller names the stage.

Example::

    config = load_pipeline_config("dev")
    config.consumer("index_events").batching_window_s   # 1
    config.stream.mode                                  # "PROVISIONED"
"""

from __future__ import annotations

import tomllib
from dataclasses import MISSING, dataclass, fields
from importlib import resources
from typing import Any, Mapping

STARTING_POSITIONS = ("TRIM_HORIZON", "LATEST")
STREAM_MODES = ("ON_DEMAND", "PROVISIONED")


class PipelineConfigError(ValueError):
    """The configuration is missing a stage, has an unknown key, or a value out of range."""


@dataclass(frozen=True)
class ConsumerConfig:
    """One Kinesis consumer's event source mapping (the same locally and on AWS)."""

    name: str
    batch_size: int
    batching_window_s: int
    starting_position: str
    parallelization_factor: int
    maximum_retry_attempts: int
    maximum_record_age_s: int
    bisect_on_error: bool

    def check(self) -> None:
        """Raise :class:`PipelineConfigError` when a value is outside what Lambda accepts."""
        _in_range(self.name, "batch_size", self.batch_size, 1, 10_000)
        _in_range(self.name, "batching_window_s", self.batching_window_s, 0, 300)
        _in_range(self.name, "parallelization_factor", self.parallelization_factor, 1, 10)
        _in_range(self.name, "maximum_retry_attempts", self.maximum_retry_attempts, -1, 10_000)
        if self.maximum_record_age_s != -1:
            _in_range(self.name, "maximum_record_age_s", self.maximum_record_age_s, 60, 604_800)
        if self.starting_position not in STARTING_POSITIONS:
            raise PipelineConfigError(f"{self.name}: starting_position must be one of {STARTING_POSITIONS}")


@dataclass(frozen=True)
class FunctionConfig:
    name: str
    reserved_concurrency: int | None = None
    #: How often a scheduled function runs on this stage (seconds); a deployed rule rounds up to minutes.
    schedule_s: int | None = None
    #: An SQS-triggered function: messages per invocation (1..10), how long a received message stays
    #: invisible (s), receives before it moves to the dead-letter queue; memory (MB) and timeout (s).
    batch_size: int | None = None
    visibility_timeout_s: int | None = None
    max_receive_count: int | None = None
    memory_mb: int | None = None
    timeout_s: int | None = None

    @property
    def schedule_minutes(self) -> int | None:
        return None if self.schedule_s is None else max(1, -(-self.schedule_s // 60))


@dataclass(frozen=True)
class DeployConfig:
    app_name: str
    runtime: str
    architecture: str


@dataclass(frozen=True)
class ApiConfig:
    """The HTTP API's deployment: API Gateway stage throttling and Lambda SnapStart."""

    #: Steady requests per second the stage admits across all callers (API Gateway answers 429 above).
    throttling_rate_limit: int
    #: Requests the stage admits at once above the steady rate.
    throttling_burst_limit: int
    #: Lambda SnapStart on the API function (python3.12+): API Gateway invokes a published alias.
    snapstart: bool


@dataclass(frozen=True)
class StreamConfig:
    mode: str
    shards: int
    retention_hours: int


@dataclass(frozen=True)
class LifecycleConfig:
    raw_events_days: int
    raw_events_infrequent_access_days: int
    bad_rows_days: int
    dead_letter_days: int
    query_results_days: int
    log_retention_days: int
    #: Keep the bucket and tables (and protect the tables) when the stack is deleted.
    retain_data: bool


@dataclass(frozen=True)
class SearchConfig:
    engine_version: str
    instance_type: str
    instance_count: int
    volume_gb: int
    zone_awareness: bool
    retention_days: int

    @property
    def replicas(self) -> int:
        """Index replicas the domain can hold (0 on a single node, else 1)."""
        return 1 if self.instance_count > 1 else 0


@dataclass(frozen=True)
class AlarmConfig:
    email: str
    iterator_age_ms: int
    function_errors: int
    function_throttles: int
    api_5xx: int
    api_latency_p99_ms: int
    search_jvm_pressure_pct: int


@dataclass(frozen=True)
class PipelineConfig:
    """Everything one stage needs; ``consumers`` keeps the file's order."""

    stage: str
    deploy: DeployConfig
    api: ApiConfig
    consumers: tuple[ConsumerConfig, ...]
    functions: tuple[FunctionConfig, ...]
    stream: StreamConfig
    lifecycle: LifecycleConfig
    search: SearchConfig
    alarms: AlarmConfig

    def consumer(self, name: str) -> ConsumerConfig:
        for consumer in self.consumers:
            if consumer.name == name:
                return consumer
        raise PipelineConfigError(f"no consumer {name!r} in the pipeline configuration "
                                  f"(known: {', '.join(c.name for c in self.consumers)})")

    def function(self, name: str) -> FunctionConfig:
        """A function's settings (defaults for a function the file does not list)."""
        return next((f for f in self.functions if f.name == name), FunctionConfig(name))


def _in_range(owner: str, key: str, value: int, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise PipelineConfigError(f"{owner}: {key} must be an integer in [{low}, {high}], got {value!r}")


def _build(cls, where: str, values: Mapping[str, Any], **fixed: Any):
    """A dataclass from a table, refusing unknown and missing keys and wrong types."""
    known = {f.name: f for f in fields(cls) if f.name not in fixed}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise PipelineConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
    missing = sorted(name for name, f in known.items() if name not in values and f.default is MISSING)
    if missing:
        raise PipelineConfigError(f"{where}: missing key(s) {', '.join(missing)}")
    for name, value in values.items():
        expected = known[name].type
        if expected in ("int", "int | None") and (isinstance(value, bool) or not isinstance(value, int)):
            raise PipelineConfigError(f"{where}: {name} must be an integer, got {value!r}")
        if expected == "bool" and not isinstance(value, bool):
            raise PipelineConfigError(f"{where}: {name} must be true or false, got {value!r}")
        if expected == "str" and not isinstance(value, str):
            raise PipelineConfigError(f"{where}: {name} must be a string, got {value!r}")
    return cls(**fixed, **values)


def _table(data: Mapping[str, Any], key: str, where: str) -> dict:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise PipelineConfigError(f"{where}.{key} must be a table")
    return value


def parse_pipeline_config(text: str, stage: str) -> PipelineConfig:
    """Parse the TOML text and resolve it for ``stage``."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PipelineConfigError(f"pipeline configuration is not valid TOML: {exc}") from exc
    unknown = sorted(set(data) - {"deploy", "api", "consumers", "functions", "stream", "lifecycle", "search", "alarms",
                                  "stages"})
    if unknown:
        raise PipelineConfigError(f"unknown section(s) {', '.join(unknown)}")
    stages = _table(data, "stages", "")
    if stage not in stages:
        raise PipelineConfigError(f"unknown stage {stage!r} (known: {', '.join(stages)})")
    overrides = _table(stages, stage, "stages")
    bad = sorted(set(overrides) - {"api", "consumers", "functions", "stream", "lifecycle", "search", "alarms"})
    if bad:
        raise PipelineConfigError(f"stages.{stage}: unknown section(s) {', '.join(bad)}")

    base_consumers = _table(data, "consumers", "")
    stage_consumers = _table(overrides, "consumers", f"stages.{stage}")
    strays = sorted(set(stage_consumers) - set(base_consumers))
    if strays:
        raise PipelineConfigError(f"stages.{stage}.consumers: {', '.join(strays)} not declared under [consumers]")
    consumers = []
    for name, own in base_consumers.items():
        if name == "defaults":
            continue
        values = {**base_consumers.get("defaults", {}), **own, **stage_consumers.get("defaults", {}),
                  **stage_consumers.get(name, {})}
        consumer = _build(ConsumerConfig, f"consumers.{name}", values, name=name)
        consumer.check()
        consumers.append(consumer)

    functions_base = _table(data, "functions", "")
    functions_stage = _table(overrides, "functions", f"stages.{stage}")
    functions = tuple(_build(FunctionConfig, f"functions.{name}",
                             {**functions_base.get(name, {}), **functions_stage.get(name, {})}, name=name)
                      for name in dict.fromkeys([*functions_base, *functions_stage]))

    def section(cls, key: str):
        return _build(cls, key, {**_table(data, key, ""), **_table(overrides, key, f"stages.{stage}")})

    config = PipelineConfig(stage=stage, deploy=_build(DeployConfig, "deploy", _table(data, "deploy", "")),
                            api=section(ApiConfig, "api"),
                            consumers=tuple(consumers), functions=functions, stream=section(StreamConfig, "stream"),
                            lifecycle=section(LifecycleConfig, "lifecycle"), search=section(SearchConfig, "search"),
                            alarms=section(AlarmConfig, "alarms"))
    if config.stream.mode not in STREAM_MODES:
        raise PipelineConfigError(f"stream.mode must be one of {STREAM_MODES}, got {config.stream.mode!r}")
    _in_range("api", "throttling_rate_limit", config.api.throttling_rate_limit, 1, 10_000)
    _in_range("api", "throttling_burst_limit", config.api.throttling_burst_limit, 1, 5_000)
    _in_range("stream", "shards", config.stream.shards, 1, 10_000)
    _in_range("stream", "retention_hours", config.stream.retention_hours, 24, 8760)
    for function in functions:
        if function.reserved_concurrency is not None:
            _in_range(f"functions.{function.name}", "reserved_concurrency", function.reserved_concurrency, 0, 900)
        for key, low, high in (("batch_size", 1, 10), ("visibility_timeout_s", 0, 43_200), ("max_receive_count", 1, 1000),
                               ("memory_mb", 128, 10_240), ("timeout_s", 1, 900)):
            if getattr(function, key) is not None:
                _in_range(f"functions.{function.name}", key, getattr(function, key), low, high)
    return config


def load_pipeline_config(stage: str) -> PipelineConfig:
    """The packaged ``chalicelib/pipeline.toml`` resolved for ``stage`` (e.g. "local", "dev")."""
    text = resources.files("chalicelib").joinpath("pipeline.toml").read_text(encoding="utf-8")
    return parse_pipeline_config(text, stage)
