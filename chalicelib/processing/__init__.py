"""Pure, vectorized windowed keyed aggregation (keyBy -> window -> aggregate).

No AWS clients, environment variables or clocks here: callers pass every
input (records, watermark, reference time) and get tables/bytes back.

Typical use in a Kinesis-triggered Lambda::

    metrics = load_metrics()                                   # once per container
    batch = decode_records(event["Records"], attribute_types=metrics.attribute_types)
    kept, too_old = split_too_old(batch.events, reference_ms=..., max_lateness_ms=metrics.settings.max_lateness_ms)
    partials = aggregate(kept, metrics, watermark_ms=...)      # name -> pa.Table
    blobs = {name: encode_parquet(t) for name, t in partials.items()}

Later, ``finalize(merge_partials([...]))`` gives the final measures.
"""

from .aggregate import aggregate, aggregate_metric, split_too_old
from .decode import BadRecord, DecodedBatch, decode_records
from .errors import (DurationError, EventsTableError, InvalidArgumentError, MetricConfigError, PartialsError,
                     ProcessingError, SketchError)
from .metric_config import MetricDef, MetricSet, Settings, load_metrics, parse_metrics, parse_metrics_yaml
from .partials import decode_parquet, encode_parquet, finalize, merge_partials, partials_schema
from .pipeline import BatchResult, process_batch
from .windows import WindowSpec, assign_windows, parse_duration, watermark, window_starts

__all__ = [
    "BadRecord", "BatchResult", "DecodedBatch", "DurationError", "EventsTableError", "InvalidArgumentError",
    "MetricConfigError",
    "MetricDef", "MetricSet", "PartialsError", "ProcessingError", "Settings", "SketchError", "WindowSpec",
    "aggregate", "aggregate_metric", "assign_windows", "decode_parquet", "decode_records", "encode_parquet",
    "finalize", "load_metrics", "merge_partials", "parse_duration", "parse_metrics", "parse_metrics_yaml",
    "partials_schema", "process_batch", "split_too_old", "watermark", "window_starts",
]
