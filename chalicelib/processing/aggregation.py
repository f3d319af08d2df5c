"""Events table -> partial aggregates per metric (keyBy -> window -> aggregate).

The aggregator model ``initialize / add / merge / result`` maps onto whole
numpy/pyarrow operations over a batch, never a Python loop per event:

* **initialize**: the identity state, implicit in the scatter targets
  (``bincount`` starts at 0, min/max at +/-inf, HLL registers at 0).
* **add**: every event gets a group id at once (dictionary codes of
  app_id, pane and keys combined in one int64, factorized by Arrow's hash
  table); then each state column the metric's measures need (the registry,
  :mod:`.measures`) is filled for all groups at once: ``np.bincount`` adds
  counts, sums and value counts, ``np.minimum.at`` / ``np.maximum.at``
  update min/max, the HLL keeps the maximum rank per (group, register)
  (``hll.reduce_registers``), the quantile sketch counts values per
  (group, bucket) (``ddsketch.reduce``).
* **merge**: :func:`partials.merge_partials` -- sums, min of mins, max of
  maxes, register-wise max, bucket-wise sums -- used for hopping windows (a
  window merges its ``size/slide`` panes) and by the caller across batches
  and shards.
* **result**: :func:`partials.finalize`.

Per batch, encodings shared by several metrics (app_id and key codes,
user_id hashes, parsed attributes, ...) are computed once and cached.

Lateness: a window is closed when ``window_end <= watermark_ms``; events
counted into a closed window are still aggregated (partials are merged at
read time, so a late update is cheap) and counted in ``late_count``.
Events older than ``settings.max_lateness`` should be removed first with
:func:`lateness.split_too_late` and sent to bad rows by the caller.
"""

from __future__ import annotations

import json
from typing import Mapping, Sequence

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import geohash, hll
from .decode import PARSED_ATTRIBUTES
from .errors import EventsTableError
from .measures import metric_states
from .metric_config import Field, GeohashExpr, MetricDef, MetricSet, attribute_types
from .partials import codes_of, combine_codes, merge_partials, partials_schema
from .windows import pane_index


class _Batch:
    """Column encodings of one events table, cached across metrics (internal)."""

    def __init__(self, events: pa.Table, attr_types: Mapping[str, str],
                 con: duckdb.DuckDBPyConnection | None) -> None:
        self.events = events
        self.n = events.num_rows
        self.attr_types = dict(attr_types)
        self.con = con
        self._own_con: duckdb.DuckDBPyConnection | None = None
        self._cache: dict[tuple, object] = {}

    def duck(self) -> duckdb.DuckDBPyConnection:
        """The caller's DuckDB connection, else a private one (closed by close())."""
        if self.con is not None:
            return self.con
        if self._own_con is None:
            self._own_con = duckdb.connect()
        return self._own_con

    def close(self) -> None:
        if self._own_con is not None:
            self._own_con.close()
            self._own_con = None

    def _cached(self, key: tuple, build):  # noqa: ANN001 - tiny internal helper
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    def column(self, name: str) -> pa.ChunkedArray:
        if name not in self.events.column_names:
            raise EventsTableError(f"events table has no column {name!r}")
        return self.events.column(name)

    def event_time(self) -> np.ndarray:
        return self._cached(("time",), lambda: self.column("event_time").to_numpy().astype(np.int64, copy=False))

    def attributes(self) -> pa.Array:
        """Struct of every needed attribute (from decode, else parsed here)."""
        return self._cached(("attrs",), self._parse_attributes)

    def _parse_attributes(self) -> pa.Array:
        if PARSED_ATTRIBUTES in self.events.column_names:
            parsed = self.events.column(PARSED_ATTRIBUTES).combine_chunks()
            have = {f.name: f.type for f in parsed.type}
            want = {a: (pa.float64() if t == "DOUBLE" else pa.string()) for a, t in self.attr_types.items()}
            if all(have.get(a) == t or (t == pa.float64() and have.get(a) == pa.string()) for a, t in want.items()):
                return parsed
        if not self.attr_types:
            return pa.nulls(self.n, pa.struct([]))
        con = self.duck()
        structure = json.dumps(self.attr_types, separators=(",", ":"))
        src = pa.table({"attributes": self.column("attributes")})  # noqa: F841 - scanned by DuckDB
        result = con.sql(f"SELECT try(json_transform(attributes, '{structure}')) AS a FROM src").to_arrow_table()
        return result.column("a").combine_chunks()

    def strings(self, field: Field) -> pa.Array:
        if field.attribute is None:
            return self.column(field.path)
        attrs = self.attributes()
        child = pc.struct_field(attrs, field.attribute)
        return child if child.type == pa.string() else pc.cast(child, pa.string())

    def numeric(self, field: Field) -> np.ndarray:
        """float64 values with NaN for null / non-numeric / non-finite."""
        return self._cached(("num", field.path), lambda: self._numeric(field))

    def _numeric(self, field: Field) -> np.ndarray:
        if field.attribute is None:
            arr = self.column(field.path)
        else:
            arr = pc.struct_field(self.attributes(), field.attribute)
            if arr.type == pa.string():  # used as text elsewhere: cast like TRY_CAST
                con = self.duck()
                src = pa.table({"v": arr})  # noqa: F841 - scanned by DuckDB
                arr = con.sql("SELECT TRY_CAST(v AS DOUBLE) AS v FROM src").to_arrow_table().column("v")
        values = np.asarray(pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
        return np.where(np.isfinite(values), values, np.nan)

    def codes(self, field: Field) -> tuple[np.ndarray, pa.Array]:
        """Dictionary codes of a string/int field; code len(dict) is null."""
        return self._cached(("codes", field.path), lambda: codes_of(self.strings(field)
                                                                      if field.attribute else self.column(field.path)))

    def present(self, field: Field) -> np.ndarray:
        if field.attribute and self.attr_types.get(field.attribute) == "DOUBLE":
            return ~np.isnan(self.numeric(field))
        codes, dictionary = self.codes(field)
        return codes != len(dictionary)

    def registers(self, field: Field) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(valid, register, rank) of each event's value of ``field``."""
        def build():
            hashes, valid = hll.hash_strings(self.strings(field))
            reg, rank = hll.registers(hashes)
            return valid, reg, rank
        return self._cached(("hll", field.path), build)

    def hash_codes(self, field: Field) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(valid, code, sorted hashes): each event's value of ``field`` as an index into the
        ascending EPH64 hashes of the distinct values (only those are hashed)."""
        def build():
            strings = self.strings(field)
            encoded = pc.dictionary_encode(strings.combine_chunks() if isinstance(strings, pa.ChunkedArray)
                                           else strings)
            hashes, _ = hll.hash_strings(encoded.dictionary)
            order = np.argsort(hashes, kind="stable")
            rank = np.empty(len(order), dtype=np.int64)
            rank[order] = np.arange(len(order))
            valid = encoded.indices.is_valid().to_numpy(zero_copy_only=False)
            codes = rank[encoded.indices.fill_null(0).to_numpy()] if len(order) else np.zeros(self.n, np.int64)
            return valid, codes, hashes[order]
        return self._cached(("hash_codes", field.path), build)


class _GroupedValues:
    """A metric's view of the batch for the state kinds' *add* (``measures.GroupedValues``).

    Values restricted to the metric's rows, paired with their group ids;
    cached per field, so states of one field share the work.
    """

    def __init__(self, batch: _Batch, rows: np.ndarray | None, gid: np.ndarray, n_groups: int) -> None:
        self._batch, self._rows, self._gid, self.n_groups = batch, rows, gid, n_groups
        self._cache: dict[tuple[str, str], tuple] = {}

    def _take(self, array: np.ndarray) -> np.ndarray:
        return array if self._rows is None else array[self._rows]

    def numbers(self, field: Field) -> tuple[np.ndarray, np.ndarray]:
        key = ("num", field.path)
        if key not in self._cache:
            values = self._take(self._batch.numeric(field))
            ok = ~np.isnan(values)
            self._cache[key] = (self._gid[ok], values[ok])
        return self._cache[key]

    def value_counts(self, field: Field) -> np.ndarray:
        key = ("n", field.path)
        if key not in self._cache:
            self._cache[key] = (np.bincount(self.numbers(field)[0], minlength=self.n_groups),)
        return self._cache[key][0]

    def registers(self, field: Field) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        valid, reg, rank = (self._take(a) for a in self._batch.registers(field))
        return self._gid[valid], reg[valid], rank[valid]

    def hash_codes(self, field: Field) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        valid, codes = (self._take(a) for a in self._batch.hash_codes(field)[:2])
        return self._gid[valid], codes[valid], self._batch.hash_codes(field)[2]


def _filter_rows(batch: _Batch, metric: MetricDef) -> np.ndarray | None:
    """Row numbers the metric aggregates (None = all)."""
    mask = None

    def both(m):  # noqa: ANN001
        return m if mask is None else mask & m

    flt = metric.filter
    if flt.event_types is not None:
        codes, dictionary = batch.codes(Field("event_type"))
        allowed = np.append(pc.is_in(dictionary, pa.array(flt.event_types)).to_numpy(zero_copy_only=False), False)
        mask = both(allowed[codes])
    for cond in flt.conditions:
        if cond.op == "has":
            mask = both(batch.present(cond.field))
        elif isinstance(cond.value, (int, float)) and not isinstance(cond.value, bool):
            mask = both(batch.numeric(cond.field) == float(cond.value))
        else:
            text = str(cond.value).lower() if isinstance(cond.value, bool) else cond.value
            codes, dictionary = batch.codes(cond.field)
            match = np.append(pc.equal(dictionary, pa.scalar(text)).to_numpy(zero_copy_only=False), False)
            mask = both(match[codes])
    return None if mask is None else np.flatnonzero(mask)


def _key_codes(batch: _Batch, key, rows: np.ndarray | None):  # noqa: ANN001
    """(codes of the rows, cardinality, values-of-code function) of one key."""
    expr = key.expr
    if isinstance(expr, GeohashExpr):
        lat, lon = batch.numeric(expr.lat), batch.numeric(expr.lon)
        if rows is not None:
            lat, lon = lat[rows], lon[rows]
        cells, valid = geohash.geohash_codes(lat, lon, expr.precision)
        codes, dictionary = codes_of(pa.array(cells, mask=~valid))
        uniq = dictionary.to_numpy()
        strings = geohash.codes_to_strings(uniq, None, expr.precision)
        return codes, len(dictionary) + 1, lambda c: pc.take(strings, pa.array(c, mask=c == len(uniq)))
    codes, dictionary = batch.codes(expr)
    if rows is not None:
        codes = codes[rows]
    return codes, len(dictionary) + 1, lambda c: pc.take(dictionary, pa.array(c, mask=c == len(dictionary)))


def _aggregate_panes(batch: _Batch, metric: MetricDef) -> pa.Table:
    """Partials per (app_id, pane, keys): windows of one slide (internal)."""
    rows = _filter_rows(batch, metric)
    spec = metric.window
    pane = pane_index(batch.event_time(), spec)
    app_codes, app_dict = batch.codes(Field("app_id"))
    if rows is not None:
        pane, app_codes = pane[rows], app_codes[rows]
    n = len(pane)
    pane_min = int(pane.min()) if n else 0
    pane_card = int(pane.max()) - pane_min + 1 if n else 1
    parts = [(app_codes, len(app_dict) + 1), (pane - pane_min, pane_card)]
    keys = [_key_codes(batch, k, rows) for k in metric.keys]
    parts += [(codes, card) for codes, card, _ in keys]
    gid, n_groups, first = combine_codes(parts)
    split = [codes[first] for codes, _ in parts]
    app_c = split[0]
    starts = (split[1] + pane_min) * spec.slide_ms
    columns: dict[str, pa.Array] = {
        "app_id": pc.take(app_dict, pa.array(app_c, mask=app_c == len(app_dict))),
        "window_start": pa.array(starts, pa.int64()),
        "window_end": pa.array(starts + spec.slide_ms, pa.int64()),
    }
    for key, (_, _, values_of), codes in zip(metric.keys, keys, split[2:]):
        columns[key.name] = values_of(codes)
    columns["event_count"] = pa.array(np.bincount(gid, minlength=n_groups).astype(np.int64))
    columns["late_count"] = pa.array(np.zeros(n_groups, dtype=np.int64))
    values = _GroupedValues(batch, rows, gid, n_groups)
    for field, state in metric_states(metric.measures):
        columns[state.column(field.column_prefix)] = state.add(values, field)
    schema = partials_schema(metric)
    return pa.table([columns[f.name] for f in schema], schema=schema)


def _expand_panes(panes: pa.Table, metric: MetricDef) -> pa.Table:
    """Copy each pane row into the size/slide hopping windows containing it."""
    per = metric.window.windows_per_event
    if per == 1:
        return panes
    rows = np.repeat(np.arange(panes.num_rows), per)
    shift = np.tile(np.arange(per, dtype=np.int64) * metric.window.slide_ms, panes.num_rows)
    expanded = panes.take(pa.array(rows))
    starts = expanded.column("window_start").to_numpy() - shift
    expanded = expanded.set_column(1, "window_start", pa.array(starts, pa.int64()))
    return expanded.set_column(2, "window_end", pa.array(starts + metric.window.size_ms, pa.int64()))


def aggregate_metric(events: pa.Table, metric: MetricDef, *, watermark_ms: int,
                     con: duckdb.DuckDBPyConnection | None = None, _batch: _Batch | None = None) -> pa.Table:
    """Partial aggregates of one metric over one events table.

    Args:
        events: events as returned by ``decode_records`` (a
            ``parsed_attributes`` column is used when present).
        metric: the metric definition.
        watermark_ms: windows with ``window_end <= watermark_ms`` are closed;
            their events are counted in ``late_count``.
        con: DuckDB connection, only used when attributes must be parsed here.

    Returns:
        The partials table (schema ``partials.partials_schema(metric)``), in
        canonical order (app_id, window_start, keys; ascending, nulls last).
    """
    if _batch is None:
        batch = _Batch(events, attribute_types([metric]), con)
        try:
            return aggregate_metric(events, metric, watermark_ms=watermark_ms, _batch=batch)
        finally:
            batch.close()
    table = _expand_panes(_aggregate_panes(_batch, metric), metric)
    if metric.window.windows_per_event > 1:
        table = merge_partials([table])
    late = table.column("window_end").to_numpy() <= watermark_ms
    if late.any():
        counts = table.column("event_count").to_numpy()
        table = table.set_column(table.schema.get_field_index("late_count"),
                                 table.schema.field("late_count"), pa.array(np.where(late, counts, 0)))
    return table


def aggregate(events: pa.Table, metrics: MetricSet | Sequence[MetricDef], *, watermark_ms: int,
              con: duckdb.DuckDBPyConnection | None = None) -> dict[str, pa.Table]:
    """Partial aggregates of every metric over one events table.

    Args:
        events: events as returned by ``decode_records``.
        metrics: a ``MetricSet`` or metric definitions.
        watermark_ms: see :func:`aggregate_metric`.
        con: see :func:`aggregate_metric`.

    Returns:
        Metric name -> partials table.
    """
    defs = tuple(metrics.metrics if isinstance(metrics, MetricSet) else metrics)
    batch = _Batch(events, attribute_types(defs), con)
    try:
        return {m.name: aggregate_metric(events, m, watermark_ms=watermark_ms, _batch=batch) for m in defs}
    finally:
        batch.close()


__all__ = ["aggregate", "aggregate_metric"]
