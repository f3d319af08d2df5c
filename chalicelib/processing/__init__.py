"""Pure, vectorized windowed keyed aggregation (keyBy -> window -> aggregate).

No AWS clients, environment variables or clocks here: callers pass every
input (records, watermark, reference time) and get tables/bytes back.

Typical use in a Kinesis-triggered Lambda::

    metrics = load_metrics()                                   # once per container
    batch = decode_records(event["Records"], attribute_types=metrics.attribute_types)
    kept, too_late = split_too_late(batch.events, metrics.settings.max_lateness_ms)
    partials = aggregate(kept, metrics, watermark_ms=watermark(max_seen, allowed_lateness))  # name -> pa.Table

or all of it at once, as the consumer does: ``process_batch(records, metrics, max_event_time_before=...)``.

Later, ``finalize(merge_partials([...]))`` gives the final measures.

Layer: pure domain, below ``http/``, above ``stream/``.
"""

from typing import TYPE_CHECKING

from .errors import (DurationError, EventsTableError, InvalidArgumentError, MetricConfigError, PartialsError,
                     ProcessingError, SketchError)
from .metric_config import MetricDef, MetricSet, LatenessSettings, load_metrics, parse_metrics, parse_metrics_yaml
from .partials import decode_parquet, encode_parquet, finalize, merge_partials, partials_schema
from .lateness import NO_WATERMARK, max_event_time_seen, split_too_late, watermark
from .windows import WindowSpec, assign_windows, parse_duration, window_starts

#: Loaded on first use (PEP 562): they need duckdb, which a reader of rollups (the API) never loads.
_LAZY = {"aggregate": ".aggregation", "aggregate_metric": ".aggregation", "BadRecord": ".decode",
         "DecodedBatch": ".decode", "decode_records": ".decode", "BatchResult": ".batch",
         "process_batch": ".batch"}

if TYPE_CHECKING:
    from .aggregation import aggregate, aggregate_metric
    from .decode import BadRecord, DecodedBatch, decode_records
    from .batch import BatchResult, process_batch


def __getattr__(name: str):
    if name in _LAZY:
        import importlib
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BadRecord", "BatchResult", "DecodedBatch", "DurationError", "EventsTableError", "InvalidArgumentError",
    "MetricConfigError",
    "MetricDef", "MetricSet", "PartialsError", "ProcessingError", "LatenessSettings", "SketchError", "WindowSpec",
    "aggregate", "aggregate_metric", "assign_windows", "decode_parquet", "decode_records", "encode_parquet",
    "finalize", "load_metrics", "merge_partials", "parse_duration", "parse_metrics", "parse_metrics_yaml",
    "partials_schema", "process_batch", "split_too_late", "watermark", "window_starts", "NO_WATERMARK",
    "max_event_time_seen",
]
