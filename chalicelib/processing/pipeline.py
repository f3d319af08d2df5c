"""One call from Lambda records to Parquet-ready partials (pure composition).

Composes :func:`decode.decode_records`, :func:`aggregate.split_too_old`,
:func:`aggregate.aggregate` and :func:`partials.encode_parquet`.  The caller
supplies the watermark and reference time (it owns the clock and any state)
and writes the results wherever it wants.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import duckdb
import pyarrow as pa

from .aggregate import aggregate, split_too_old
from .decode import BadRecord, decode_records
from .metric_config import MetricSet
from .partials import encode_parquet


@dataclass(frozen=True)
class BatchResult:
    """Everything one Lambda batch produces.

    Attributes:
        partials: metric name -> partials table.
        parquet: metric name -> the partials encoded as Parquet bytes
            (empty when ``encode=False``).
        bad: undecodable records and lines failing the schema.
        too_old: events older than ``max_lateness`` (send to bad rows).
        sequence_numbers: every record's sequence number, in batch order.
        event_count: number of valid events aggregated.
    """

    partials: dict[str, pa.Table]
    parquet: dict[str, bytes]
    bad: tuple[BadRecord, ...]
    too_old: pa.Table
    sequence_numbers: tuple[str, ...]
    event_count: int


def process_batch(records: Sequence[Mapping[str, Any]], metrics: MetricSet, *, watermark_ms: int,
                  reference_ms: int, con: duckdb.DuckDBPyConnection | None = None,
                  encode: bool = True) -> BatchResult:
    """Decode, drop too-old events, aggregate every metric, encode Parquet.

    Args:
        records: ``event["Records"]`` of a Kinesis-triggered Lambda.
        metrics: the metric set (``load_metrics()``).
        watermark_ms: windows ending at or before it are closed (late_count);
            e.g. ``windows.watermark(max_event_time_seen, allowed_lateness)``.
        reference_ms: "now" for max_lateness, e.g. the newest
            ``approximateArrivalTimestamp`` of the batch in ms.
        con: DuckDB connection (caller sets ``threads``); private if None.
        encode: also encode each partials table to Parquet bytes.

    Returns:
        A :class:`BatchResult`.
    """
    own = con is None
    con = duckdb.connect() if own else con
    try:
        decoded = decode_records(records, attribute_types=metrics.attribute_types, con=con)
        kept, too_old = split_too_old(decoded.events, reference_ms=reference_ms,
                                      max_lateness_ms=metrics.settings.max_lateness_ms)
        partials = aggregate(kept, metrics, watermark_ms=watermark_ms, con=con)
    finally:
        if own:
            con.close()
    parquet = {name: encode_parquet(t) for name, t in partials.items()} if encode else {}
    return BatchResult(partials, parquet, decoded.bad, too_old, decoded.sequence_numbers, kept.num_rows)
