"""Partial aggregates: their schema, merge, finalize and Parquet encoding.

A partials table holds one row per ``(app_id, window_start, window_end,
<key columns>...)`` with *mergeable state* (the ``initialize / add / merge /
result`` aggregator model, vectorized).  Besides ``event_count`` and
``late_count`` (merged by summing), the state columns are those the
metric's measures need, as declared by the measure registry
(:mod:`.measures`):

================ ================================ =====================================
state column     merge (any order, any grouping)  result (:func:`finalize`)
================ ================================ =====================================
event_count      sum                              ``count``
late_count       sum                              ``late_count``
<f>__sum         sum (0.0 when no value)          ``sum`` (null if n = 0), ``avg`` = sum / n
<f>__n           sum (number of non-null values)  used by sum/avg
<f>__min         min (null when no value)         ``min``
<f>__max         max (null when no value)         ``max``
<f>__hll         union (``hll``: hash set, then   ``distinct``: exact count of the set, else
                 registers by max)                the rounded HLL estimate
<f>__exact       kept for a group of one row      ``distinct`` of a final row (exact)
<f>__ddsketch    bucket-wise sum (``ddsketch``)   ``percentile`` (within 1 %)
================ ================================ =====================================

``<f>`` is the field with dots replaced by ``_`` (``attributes_value``).
Times are int64 epoch ms.  The metric definition travels in the schema
metadata (key ``eventpipe.partials``), which Parquet preserves, so
:func:`merge_partials` and :func:`finalize` need only the tables.

Metadata format 2 lists the measures (with their arguments), the state
columns and the sketches' parameters; format 1 (before the registry: no
arguments, states as ``numeric`` / ``distinct``) is still read, and both
describe the same columns for the measures format 1 knew.

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

from .errors import PartialsError
from .measures import MEASURES, MeasureSpec, State, metric_states, spec_states, state_kind
from .metric_config import INTEGER_COLUMNS, Field, GeohashExpr, MetricDef

METADATA_KEY = b"eventpipe.partials"
FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
GROUP_COLUMNS = ("app_id", "window_start", "window_end")


def state_column(field: Field, state: str) -> str:
    """Name of a state column, e.g. ``attributes_value__sum`` or ``user_id__hll``."""
    return f"{field.column_prefix}__{state}"


def _key_type(expr: Field | GeohashExpr) -> pa.DataType:
    if isinstance(expr, Field) and expr.path in INTEGER_COLUMNS:
        return pa.int64()
    return pa.string()


def _state_list(specs: Sequence[MeasureSpec]) -> list[list[str]]:
    return [[prefix, state.suffix] for prefix, state in spec_states(specs)]


def describe(metric: MetricDef) -> dict[str, Any]:
    """The JSON-able description stored in the partials' schema metadata (format 2)."""
    specs = [MeasureSpec.of(m) for m in metric.measures]
    states = spec_states(specs)
    return {
        "format": FORMAT_VERSION,
        "metric": metric.name,
        "keys": [k.name for k in metric.keys],
        "window": {"size_ms": metric.window.size_ms, "slide_ms": metric.window.slide_ms},
        "measures": [s.to_json() for s in specs],
        "states": _state_list(specs),
        "params": {s.suffix: s.params for _, s in states if s.params is not None},
    }


def partials_schema(metric: MetricDef) -> pa.Schema:
    """The exact Arrow schema (with metadata) of a metric's partials table."""
    fields = [pa.field("app_id", pa.string()), pa.field("window_start", pa.int64(), nullable=False),
              pa.field("window_end", pa.int64(), nullable=False)]
    fields += [pa.field(k.name, _key_type(k.expr)) for k in metric.keys]
    fields += [pa.field("event_count", pa.int64(), nullable=False),
               pa.field("late_count", pa.int64(), nullable=False)]
    fields += [pa.field(state_column(f, s.suffix), s.arrow_type, nullable=s.nullable)
               for f, s in metric_states(metric.measures)]
    return pa.schema(fields, metadata={METADATA_KEY: json.dumps(describe(metric)).encode()})


def _from_format_1(desc: dict[str, Any]) -> dict[str, Any]:
    """A format-1 description in the format-2 shape (same columns)."""
    specs = [MeasureSpec.from_json(m) for m in desc["measures"]]
    listed = [[p, s] for p, states in desc.get("numeric", {}).items() for s in states]
    listed += [[p, "hll"] for p in desc.get("distinct", [])]
    if sorted(listed) != sorted(_required(_state_list(specs))):
        raise PartialsError(f"format-1 partials of {desc.get('metric')!r}: states {listed} do not match "
                            "their measures")
    uses_hll = any(s == "hll" for _, s in listed)
    return {"format": FORMAT_VERSION, "metric": desc["metric"], "keys": desc["keys"], "window": desc["window"],
            "measures": [s.to_json() for s in specs], "states": _state_list(specs),
            "params": {"hll": desc["hll"]} if uses_hll and "hll" in desc else {}}


def _required(states: list[list[str]]) -> list[list[str]]:
    """The states that every table has (optional kinds came later: older tables lack them)."""
    return [s for s in states if not state_kind(s[1]).optional]


def read_description(table: pa.Table | pa.Schema) -> dict[str, Any]:
    """The metric description of a partials table, in the format-2 shape.

    Raises:
        PartialsError: the table has no (or an unknown) description, or
            names a measure or state kind this code does not know.
    """
    schema = table.schema if isinstance(table, pa.Table) else table
    raw = (schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise PartialsError("not a partials table: schema metadata 'eventpipe.partials' is missing")
    desc = json.loads(raw)
    if desc.get("format") not in READABLE_FORMATS:
        raise PartialsError(f"unsupported partials format {desc.get('format')!r}")
    unknown = sorted({m["func"] for m in desc["measures"]} - set(MEASURES))
    if unknown:
        raise PartialsError(f"partials of {desc.get('metric')!r} use unknown measure(s) {unknown}")
    desc = _from_format_1(desc) if desc["format"] == 1 else desc
    states_of(desc)  # every state kind is known
    for suffix, params in desc["params"].items():
        if suffix not in {s for _, s in desc["states"]} or not state_kind(suffix).reads_params(params):
            raise PartialsError(f"partials of {desc['metric']!r}: {suffix} sketches with parameters {params} "
                                "cannot be read by this version")
    expected = _state_list(measure_specs(desc))
    if _required(desc["states"]) != _required(expected):
        raise PartialsError(f"partials of {desc['metric']!r}: states {desc['states']} do not match their measures")
    # In the current shape: optional states the writer did not know read as nulls (see complete),
    # sketches of older readable formats merge with current ones.
    return {**desc, "states": expected,
            "params": {s.suffix: s.params for _, s in spec_states(measure_specs(desc)) if s.params is not None}}


def complete(table: pa.Table) -> pa.Table:
    """The table with the columns of optional states it lacks (nulls) and its description in the
    current shape, so that tables written before a state kind existed merge with newer ones."""
    desc = read_description(table)
    names = [*GROUP_COLUMNS, *desc["keys"], "event_count", "late_count", *[s.column(p) for p, s in states_of(desc)]]
    if names == table.column_names and json.loads(table.schema.metadata[METADATA_KEY]) == desc:
        return table
    for prefix, state in states_of(desc):
        if state.column(prefix) not in table.column_names:
            table = table.append_column(pa.field(state.column(prefix), state.arrow_type, nullable=True),
                                        pa.nulls(table.num_rows, state.arrow_type))
    table = table.select(names)
    return table.replace_schema_metadata({**(table.schema.metadata or {}), METADATA_KEY: json.dumps(desc).encode()})


def measure_specs(desc: dict[str, Any]) -> list[MeasureSpec]:
    """The measures of a description (see :func:`read_description`)."""
    return [MeasureSpec.from_json(m) for m in desc["measures"]]


def states_of(desc: dict[str, Any]) -> list[tuple[str, type[State]]]:
    """``(prefix, state kind)`` of a description's state columns, in schema order."""
    try:
        return [(prefix, state_kind(suffix)) for prefix, suffix in desc["states"]]
    except KeyError as exc:
        raise PartialsError(f"partials of {desc.get('metric')!r} use unknown state {exc}") from None


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
    """Merge the state columns of rows with the same group id (each state kind's *merge*)."""
    out: dict[str, pa.Array] = {}
    for name in ("event_count", "late_count"):
        counts = np.bincount(gid, weights=table.column(name).to_numpy(), minlength=n_groups)
        out[name] = pa.array(np.rint(counts).astype(np.int64))
    for prefix, state in states_of(desc):
        column = state.column(prefix)
        out[column] = state.merge(table.column(column), gid, n_groups)
    return out


def _comparable(desc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in desc.items() if k != "format"}


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
    tables = [complete(t) for t in tables]
    desc = read_description(tables[0])
    for t in tables[1:]:
        if _comparable(read_description(t)) != _comparable(desc):
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
    """Final measures of (merged) partials (each measure kind's *result*).

    Returns:
        ``app_id, window_start, window_end, <keys>, <measures in config
        order>, late_count``: count int64, sum/min/max/avg/percentile float64
        (null when the group has no value), distinct int64 (HLL estimate).
    """
    table = complete(table)
    desc = read_description(table)
    cols: dict[str, pa.Array | pa.ChunkedArray] = {c: table.column(c) for c in (*GROUP_COLUMNS, *desc["keys"])}
    for m in measure_specs(desc):
        cols[m.name] = MEASURES[m.func].result(table, m)
    cols["late_count"] = table.column("late_count")
    return pa.table(cols)


def estimated_measures(table: pa.Table) -> pa.Array:
    """Per row of (merged) partials: the names of the measures whose :func:`finalize` value is an
    estimate there (``list<string>``, empty when every measure is exact), e.g. ``["users"]`` for a
    distinct count above 4,096 values that no final row answers, or a percentile."""
    table = complete(table)
    specs = measure_specs(read_description(table))
    flags = np.zeros((table.num_rows, len(specs)), bool)
    for i, m in enumerate(specs):
        flags[:, i] = MEASURES[m.func].estimated(table, m)
    offsets = np.zeros(table.num_rows + 1, np.int32)
    np.cumsum(flags.sum(axis=1), out=offsets[1:])
    names = pa.array([m.name for m in specs], pa.string()).take(pa.array(np.nonzero(flags)[1]))
    return pa.ListArray.from_arrays(pa.array(offsets), names)


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
