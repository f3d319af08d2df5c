"""One Lambda Kinesis batch -> partials, pure: the composition the consumer, the tests and the benchmark run.

decode (``decode.decode_records``) -> maximum lateness (``lateness.split_too_late``)
-> keyBy + window + aggregate every metric (``aggregate.aggregate``) against the
watermark as it stood before the batch -> the batch's contribution to the next
watermark. The caller owns the state (the shard's max event time) and the I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import duckdb
import pyarrow as pa

from .aggregation import aggregate
from .decode import BadRecord, decode_records
from .lateness import max_event_time_seen, split_too_late, watermark
from .metric_config import MetricSet


@dataclass(frozen=True)
class BatchResult:
    """Everything one Lambda batch produces.

    Attributes:
        partials: metric name -> partials table.
        bad: undecodable records and lines failing the schema.
        too_late: events older than ``max_lateness`` (send to bad rows).
        sequence_numbers: every record's sequence number, in batch order.
        event_count: number of valid events aggregated.
        max_event_time: the batch's newest event time for the watermark (capped at arrival), or None.
    """

    partials: dict[str, pa.Table]
    bad: tuple[BadRecord, ...]
    too_late: pa.Table
    sequence_numbers: tuple[str, ...]
    event_count: int
    max_event_time: int | None


def process_batch(records: Sequence[Mapping[str, Any]], metrics: MetricSet, *, max_event_time_before: int | None,
                  con: duckdb.DuckDBPyConnection | None = None) -> BatchResult:
    """Decode, set aside too-late events, aggregate every metric.

    Args:
        records: ``event["Records"]`` of a Kinesis-triggered Lambda.
        metrics: the metric set (``load_metrics()``).
        max_event_time_before: the shard's newest event time before this batch (None: no history);
            the watermark is derived from it, so results do not depend on the order inside the batch.
        con: DuckDB connection (the caller sets ``threads``); a private one if None.
    """
    settings = metrics.settings
    own = con is None
    con = duckdb.connect() if own else con
    try:
        decoded = decode_records(records, attribute_types=metrics.attribute_types, con=con)
        kept, too_late = split_too_late(decoded.events, settings.max_lateness_ms)
        partials = aggregate(kept, metrics, watermark_ms=watermark(max_event_time_before,
                                                                   settings.allowed_lateness_ms), con=con)
    finally:
        if own:
            con.close()
    return BatchResult(partials, decoded.bad, too_late, decoded.sequence_numbers, kept.num_rows,
                       max_event_time_seen(kept))
