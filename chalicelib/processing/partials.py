"""Partial aggregates: their schema, merge, finalize and Parquet encoding.

A partials table holds one row per ``(app_id, window_start, window_end,
<key columns>...)`` with *mergeable state* (the ``initialize / add / merge /
result`` aggregator model, vectorized):

============== ================================ =====================================
state column   merge (any order, any grouping)  result (:func:`finalize`)
============== ================================ =====================================
event_count    sum                              ``count``
late_count     sum                              ``late_count``
<f>__sum       sum (0.0 when no value)          ``sum`` (null if n = 0), ``avg`` = sum / n
<f>__n         sum (number of non-null values)  used by sum/avg
<f>__min       min (null when no value)         ``min``
<f>__max       max (null when no value)         ``max``
<f>__hll       register-wise max (``hll``)      ``distinct`` = rounded HLL estimate
============== ================================ =====================================

``<f>`` is the field with dots replaced by ``_`` (``attributes_value``).
Times are int64 epoch ms.  The metric definition travels in the schema
metadata (key ``eventpipe.partials``), which Parquet preserves, so
:func:`merge_partials` and :func:`finalize` need only the tables.

Float sums are merged in whatever order batches arrive, so they can differ
from a one-pass sum in the last bits (exact for values such as integers or
multiples of 1/4 whose sums fit in 53 bits).
"""

from __future__ import annotations

import io
import json
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import hll
from .errors import PartialsError
from .metric_config import INTEGER_COLUMNS, Field, GeohashExpr, MetricDef

METADATA_KEY = b"eventpipe.partials"
FORMAT_VERSION = 1
GROUP_COLUMNS = ("app_id", "window_start", "window_end")
_STATE_TYPES = {"sum": pa.float64(), "n": pa.int64(), "min": pa.float64(), "max": pa.float64()}


def state_column(field: Field, state: str) -> str:
    """Name of a state column, e.g. ``attributes_value__sum`` or ``user_id__hll``."""
    return f"{field.column_prefix}__{state}"


def _key_type(expr: Field | GeohashExpr) -> pa.DataType:
    if isinstance(expr, Field) and expr.path in INTEGER_COLUMNS:
        return pa.int64()
    return pa.string()


def describe(metric: MetricDef) -> dict[str, Any]:
    """The JSON-able description stored in the partials' schema metadata."""
    measures = []
    for m in metric.measures:
        entry: dict[str, Any] = {"name": m.name, "func": m.func}
        if m.field is not None:
            entry["state"] = m.field.column_prefix
        measures.append(entry)
    return {
        "format": FORMAT_VERSION,
        "metric": metric.name,
        "keys": [k.name for k in metric.keys],
        "window": {"size_ms": metric.window.size_ms, "slide_ms": metric.window.slide_ms},
        "numeric": {f.column_prefix: list(states) for f, states in metric.numeric_states.items()},
        "distinct": [f.column_prefix for f in metric.distinct_fields],
        "measures": measures,
        "hll": {"p": hll.P, "version": hll.VERSION},
    }


def partials_schema(metric: MetricDef) -> pa.Schema:
    """The exact Arrow schema (with metadata) of a metric's partials table."""
    fields = [pa.field("app_id", pa.string()), pa.field("window_start", pa.int64(), nullable=False),
              pa.field("window_end", pa.int64(), nullable=False)]
    fields += [pa.field(k.name, _key_type(k.expr)) for k in metric.keys]
    fields += [pa.field("event_count", pa.int64(), nullable=False),
               pa.field("late_count", pa.int64(), nullable=False)]
    for f, states in metric.numeric_states.items():
        fields += [pa.field(state_column(f, s), _STATE_TYPES[s], nullable=s in ("min", "max")) for s in states]
    fields += [pa.field(state_column(f, "hll"), pa.binary(), nullable=False) for f in metric.distinct_fields]
    return pa.schema(fields, metadata={METADATA_KEY: json.dumps(describe(metric)).encode()})


def read_description(table: pa.Table | pa.Schema) -> dict[str, Any]:
    """The metric description of a partials table.

    Raises:
        PartialsError: the table has no (or an unknown) description.
    """
    schema = table.schema if isinstance(table, pa.Table) else table
    raw = (schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise PartialsError("not a partials table: schema metadata 'eventpipe.partials' is missing")
    desc = json.loads(raw)
    if desc.get("format") != FORMAT_VERSION:
        raise PartialsError(f"unsupported partials format {desc.get('format')!r}")
    return desc


# ------------------------------------------------------------ factorizing
def codes_of(values: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, pa.Array]:
    """Dense integer codes of any array, in sorted value order; null last.

    Returns:
        ``(codes, dictionary)``: int64 codes in ``0..len(dictionary)``; the
        dictionary is sorted (byte order for strings), so comparing codes
        compares values, and code ``len(dictionary)`` stands for null.
    """
    encoded = pc.dictionary_encode(values)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks() if encoded.num_chunks != 1 else encoded.chunk(0)
    dictionary = encoded.dictionary
    size = len(dictionary)
    codes = pc.fill_null(encoded.indices, size).to_numpy().astype(np.int64, copy=False)
    order = pc.array_sort_indices(dictionary).to_numpy()
    if size and not np.array_equal(order, np.arange(size)):
        rank = np.empty(size + 1, dtype=np.int64)
        rank[order] = np.arange(size)
        rank[size] = size
        codes = rank[codes]
        dictionary = dictionary.take(pa.array(order))
    return codes, dictionary


def _sorted_factorize(composite: np.ndarray) -> tuple[np.ndarray, int]:
    """Dense codes of int64 values numbered in increasing value order."""
    encoded = pc.dictionary_encode(pa.array(composite))
    uniques = encoded.dictionary.to_numpy()
    rank = np.empty(len(uniques), dtype=np.int64)
    rank[np.argsort(uniques)] = np.arange(len(uniques))
    return rank[encoded.indices.to_numpy()], len(uniques)


def combine_codes(parts: Sequence[tuple[np.ndarray, int]]) -> tuple[np.ndarray, int, np.ndarray]:
    """Group ids for rows described by several code arrays.

    The codes are combined into one int64 (mixed radix) and factorized with
    Arrow's hash table; when the radix would overflow, the partial
    composite is first re-numbered densely (order-preserving).

    Args:
        parts: ``(codes, cardinality)`` pairs, codes in ``0..cardinality-1``.

    Returns:
        ``(gid, n_groups, first_row)``: int64 group of each row (groups
        numbered in ascending lexicographic order of the parts' codes), the
        number of groups and the first row of each group.
    """
    n = len(parts[0][0]) if parts else 0
    composite = np.zeros(n, dtype=np.int64)
    radix = 1
    for codes, card in parts:
        card = max(int(card), 1)
        if radix * card >= 2**62:
            composite, radix = _sorted_factorize(composite)
        composite = composite * card + codes
        radix *= card
    gid, n_groups = _sorted_factorize(composite)
    first = np.full(n_groups, n, dtype=np.int64)
    np.minimum.at(first, gid, np.arange(n, dtype=np.int64))
    return gid, n_groups, first


def group_rows(columns: Sequence[pa.Array | pa.ChunkedArray]) -> tuple[np.ndarray, int, np.ndarray]:
    """Group ids of rows by several columns, groups in sorted key order.

    Returns:
        ``(gid, n_groups, first_row)``: group of each row, group count and
        the first row of each group (to take the key values from).  Groups
        are numbered in ascending order of the columns (nulls last).
    """
    parts = []
    for col in columns:
        codes, dictionary = codes_of(col)
        parts.append((codes, len(dictionary) + 1))
    return combine_codes(parts)


# ---------------------------------------------------------------- merging
def reduce_states(table: pa.Table, gid: np.ndarray, n_groups: int, desc: dict[str, Any]) -> dict[str, pa.Array]:
    """Merge the state columns of rows with the same group id."""
    out: dict[str, pa.Array] = {}
    for name in ("event_count", "late_count"):
        counts = np.bincount(gid, weights=table.column(name).to_numpy(), minlength=n_groups)
        out[name] = pa.array(np.rint(counts).astype(np.int64))
    for prefix, states in desc["numeric"].items():
        for state in states:
            col = table.column(f"{prefix}__{state}")
            if state in ("sum", "n"):
                merged = np.bincount(gid, weights=pc.fill_null(col, 0).to_numpy(), minlength=n_groups)
                out[f"{prefix}__{state}"] = pa.array(merged if state == "sum" else np.rint(merged).astype(np.int64))
            else:
                fill = np.inf if state == "min" else -np.inf
                values = pc.fill_null(col, fill).to_numpy()
                merged = np.full(n_groups, fill)
                (np.minimum if state == "min" else np.maximum).at(merged, gid, values)
                out[f"{prefix}__{state}"] = pa.array(merged, mask=merged == fill)
    for prefix in desc["distinct"]:
        out[f"{prefix}__hll"] = hll.merge(table.column(f"{prefix}__hll"), gid, n_groups)
    return out


def merge_partials(tables: Sequence[pa.Table]) -> pa.Table:
    """Merge partials of one metric (any batches, shards and order).

    Args:
        tables: partials tables of the same metric (same schema metadata).

    Returns:
        One row per group with merged state, in canonical order: app_id,
        window_start, window_end, keys, ascending, nulls last.

    Raises:
        PartialsError: no tables, or tables of different metrics/formats.
    """
    if not tables:
        raise PartialsError("merge_partials needs at least one table")
    desc = read_description(tables[0])
    for t in tables[1:]:
        if read_description(t) != desc:
            raise PartialsError(f"cannot merge partials of {desc['metric']!r} with "
                                f"{read_description(t)['metric']!r} (different definitions)")
    schema = tables[0].schema
    table = pa.concat_tables([t.cast(schema) if t.schema != schema else t for t in tables])
    key_names = [*GROUP_COLUMNS, *desc["keys"]]
    gid, n_groups, first = group_rows([table.column(c) for c in key_names])
    first_idx = pa.array(first)
    columns = {c: table.column(c).take(first_idx) for c in key_names}
    columns.update(reduce_states(table, gid, n_groups, desc))
    return pa.table([columns[f.name] for f in schema], schema=schema)


# ------------------------------------------------------------- finalizing
def finalize(table: pa.Table) -> pa.Table:
    """Final measures of (merged) partials.

    Returns:
        ``app_id, window_start, window_end, <keys>, <measures in config
        order>, late_count``: count int64, sum/min/max/avg float64 (null
        when the group has no value), distinct int64 (HLL estimate).
    """
    desc = read_description(table)
    cols: dict[str, pa.Array | pa.ChunkedArray] = {c: table.column(c) for c in (*GROUP_COLUMNS, *desc["keys"])}
    for m in desc["measures"]:
        func, prefix = m["func"], m.get("state")
        if func == "count":
            cols[m["name"]] = table.column("event_count")
        elif func in ("min", "max"):
            cols[m["name"]] = table.column(f"{prefix}__{func}")
        elif func in ("sum", "avg"):
            total = table.column(f"{prefix}__sum").to_numpy()
            n = table.column(f"{prefix}__n").to_numpy()
            with np.errstate(invalid="ignore", divide="ignore"):
                value = total if func == "sum" else total / n
            cols[m["name"]] = pa.array(value, mask=n == 0)
        else:  # distinct
            row, _, rank = hll.decode(table.column(f"{prefix}__hll"))
            est = hll.estimate(row, rank, table.num_rows)
            cols[m["name"]] = pa.array(np.rint(est).astype(np.int64))
    cols["late_count"] = table.column("late_count")
    return pa.table(cols)


def encode_parquet(table: pa.Table, compression: str = "zstd") -> bytes:
    """Serialize a (partials) table to Parquet bytes, schema metadata kept.

    Args:
        table: the table.
        compression: ``"zstd"`` (default) or ``"snappy"``.

    Returns:
        The Parquet file as bytes, for the caller to write to S3.
    """
    sink = io.BytesIO()
    pq.write_table(table, sink, compression=compression, use_dictionary=True,
                   write_statistics=True, store_schema=True)
    return sink.getvalue()


def decode_parquet(data: bytes) -> pa.Table:
    """Inverse of :func:`encode_parquet` (metadata included)."""
    return pq.read_table(pa.BufferReader(data))
