"""distinct(<field>): distinct count, exact up to 4,096 values, then HyperLogLog (:mod:`..hll`).

Two state columns per field:

* ``<f>__hll`` -- the sketch: the exact set of the values' 64-bit hashes up to
  ``hll.EXACT_MAX`` values, HyperLogLog registers above; merged by union.
* ``<f>__exact`` -- the exact distinct count of a *final* row, which the
  finalizer computes from the deduplicated raw archive (:func:`exact_sets`);
  null in partials.  It is the count of one row: a merge of several rows
  has none (distinct counts do not add up), so a window answered by its
  final row is exact at any cardinality, and merges across windows fall
  back to the sketch.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator, Mapping

import numpy as np
import pyarrow as pa

from .. import hll
from ..errors import SketchError
from ..metric_model import Field
from .base import GroupedValues, Measure, MeasureSpec, ScalarState, SketchState

#: Classic estimator with linear counting for small sets (sql/README.md).
HLL_ESTIMATE = """CAST(round(CASE WHEN {raw} <= 2.5e0 * 4096 AND {empty} > 0
                       THEN 4096 * ln(4096e0 / {empty})  -- linear counting for small sets
                       ELSE {raw} END) AS bigint)"""

_EXACT_LIMIT: ContextVar[int | None] = ContextVar("distinct_exact_limit", default=hll.EXACT_MAX)


@contextmanager
def exact_sets() -> Iterator[None]:
    """Within this block (of this thread), sketches stay exact sets at any cardinality.

    The finalizer aggregates a partition's events this way, takes the exact
    counts, then brings the sketches back to canonical form (``hll.canonical``).
    """
    token = _EXACT_LIMIT.set(None)
    try:
        yield
    finally:
        _EXACT_LIMIT.reset(token)


class HllState(SketchState):
    """``<f>__hll``: binary sketch (exact hashes, then HLL p = 12); merged by union.

    SQL reads the copies the lake writes beside it (chalicelib/lake/sql_sketch.py):
    ``<f>__registers`` (``array<int>`` of ``register * 256 + rank``, every sketch)
    and ``<f>__hashes`` (:class:`HashSetSql`).
    """

    suffix, order, arrow_type, nullable = "hll", (1, 0), pa.binary(), False
    params = {"p": hll.P, "version": hll.VERSION}
    readable_params = tuple({"p": hll.P, "version": v} for v in hll.READABLE_VERSIONS)
    sql_value = ("hll_rank", "integer")
    sql_slot_merge = "max(hll_rank)"

    @classmethod
    def add(cls, values: GroupedValues, field: Field) -> pa.Array:
        g, codes, sorted_hashes = values.hash_codes(field)
        return hll.build_coded(g, codes, sorted_hashes, values.n_groups, _EXACT_LIMIT.get())

    @classmethod
    def merge(cls, column, gid, n_groups):  # noqa: ANN001 - see State.merge
        return hll.merge(column, gid, n_groups, _EXACT_LIMIT.get())

    @classmethod
    def sql_source(cls, prefix: str) -> str:
        return f"{prefix}__registers"

    @classmethod
    def sql_array(cls, column: pa.Array | pa.ChunkedArray) -> pa.Array:
        row, reg, rank = hll.decode(column)
        row = np.asarray(row, np.int64)
        counts = np.bincount(row, minlength=len(column))
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
        order = np.argsort(row, kind="stable")
        values = (np.asarray(reg, np.int32) * 256 + np.asarray(rank, np.int32))[order]
        return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, pa.int32()))

    @classmethod
    def sql_unnest(cls, element: str) -> tuple[str, str]:
        return f"CAST(floor({element} / 256) AS integer)", f"CAST({element} % 256 AS integer)"

    @classmethod
    def sql_merged(cls, index: int, prefix: str) -> list[str]:
        where = f"FILTER (WHERE sketch = {index})"
        return [f"4096 - count(slot) {where} AS {prefix}__empty",
                f"coalesce(sum(power(2e0, -hll_rank)) {where}, 0e0) AS {prefix}__inverse",
                # CASE: engines evaluate the argument on every row, and hash rows' slots would overflow
                f"array_agg(CASE WHEN sketch = {index} THEN CAST(slot * 256 + hll_rank AS integer) END "
                f"ORDER BY slot) {where} AS {prefix}__hll_merged"]  # same order on every engine

    @classmethod
    def sql_estimated(cls, prefix: str) -> list[str]:
        # classic HyperLogLog, m = 4096: alpha * m^2 / (V + sum of 2^-rank over the non-empty registers)
        return [f"0.7213e0 / (1e0 + 1.079e0 / 4096) * 4096 * 4096 / ({prefix}__empty + {prefix}__inverse) "
                f"AS {prefix}__raw"]


class HashSetSql(SketchState):
    """The SQL form of exact sketches: ``<f>__hashes``, ``array<bigint>`` of the hashes, null
    for a register sketch (and in files written before the exact form).

    Not a state column of its own: the lake derives it from ``<f>__hll``.  The
    view unnests it with a null element standing for an inexact part, so
    ``count(slot)`` is the size of the union of the hash sets and
    ``max(hash_inexact)`` says whether some part was a register sketch.
    """

    suffix, order, arrow_type, nullable = "hashes", (1, 2), pa.list_(pa.int64()), True
    sql_value = ("hash_inexact", "integer")
    sql_slot_merge = "max(hash_inexact)"

    @classmethod
    def sql_source(cls, prefix: str) -> str:
        return f"{prefix}__hashes"

    @classmethod
    def sql_unnest_source(cls, prefix: str) -> str:
        return f"coalesce({prefix}__hashes, ARRAY[CAST(NULL AS bigint)])"

    @classmethod
    def sql_array(cls, column: pa.Array | pa.ChunkedArray) -> pa.Array:
        return hll.sql_hashes(column)

    @classmethod
    def sql_unnest(cls, element: str) -> tuple[str, str]:
        return element, f"CASE WHEN {element} IS NULL THEN 1 ELSE 0 END"

    @classmethod
    def sql_merged(cls, index: int, prefix: str) -> list[str]:
        where = f"FILTER (WHERE sketch = {index})"
        return [f"count(slot) {where} AS {prefix}__union",
                f"coalesce(max(hash_inexact) {where}, 0) AS {prefix}__inexact"]


HllState.sql_derived = (HashSetSql,)


class ExactCountState(ScalarState):
    """``<f>__exact``: the exact distinct count of a final row, null elsewhere (module doc).

    Merged: a group of one row keeps it, a group of several rows has none.
    Optional: files written before it existed read as null.
    """

    suffix, order, arrow_type, nullable = "exact", (1, 1), pa.int64(), True
    optional = True
    sql_merge, sql_identity = "max", "CAST(NULL AS bigint)"
    sql_row_merge = "CASE WHEN count(*) = 1 THEN max({column}) END"

    @classmethod
    def add(cls, values: GroupedValues, field: Field) -> pa.Array:
        return pa.nulls(values.n_groups, pa.int64())

    @classmethod
    def merge(cls, column, gid, n_groups):  # noqa: ANN001 - see State.merge
        column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        gid = np.asarray(gid, np.int64)
        rows = np.bincount(gid, minlength=n_groups)
        value = np.zeros(n_groups, np.int64)
        known = np.zeros(n_groups, bool)
        valid = column.is_valid().to_numpy(zero_copy_only=False)
        single = valid & (rows[gid] == 1)
        value[gid[single]] = column.fill_null(0).to_numpy()[single]
        known[gid[single]] = True
        return pa.array(value, pa.int64(), mask=~known)


def exact_counts(sketches: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The counts of sketches built under :func:`exact_sets` (every one an exact set)."""
    counts, exact = hll.cardinality(sketches)
    if not exact.all():
        raise SketchError("exact_counts needs exact sketches (build them under exact_sets())")
    return pa.array(counts.astype(np.int64))


class Distinct(Measure):
    """``distinct(<field>)``: exact up to 4,096 values and in final rows, else HyperLogLog
    (~1.6 % standard error, see :mod:`..hll`)."""

    func, field, usage, states = "distinct", "text", "distinct(<field>)", (HllState, ExactCountState)
    result_type, quicksight_type = pa.int64(), "INTEGER"
    # A per-window distinct count does not add up across windows: show the peak.
    quicksight_aggregation = "MAX"

    @staticmethod
    def _parts(table: pa.Table, m: MeasureSpec) -> tuple[np.ndarray, np.ndarray]:
        """``(value, exact)`` per row: a final row's exact count, else the sketch's (decoded only there)."""
        sketches = table.column(HllState.column(m.state))
        name = ExactCountState.column(m.state)
        if name not in table.column_names:
            counts, exact = hll.cardinality(sketches)
            return np.rint(counts).astype(np.int64), exact
        column = table.column(name)
        exact = column.is_valid().to_numpy(zero_copy_only=False).copy()
        value = np.array(column.fill_null(0).to_numpy(zero_copy_only=False), dtype=np.int64)
        rest = np.flatnonzero(~exact)
        if rest.size:
            counts, rest_exact = hll.cardinality(sketches.take(pa.array(rest)))
            value[rest], exact[rest] = np.rint(counts).astype(np.int64), rest_exact
        return value, exact

    @classmethod
    def result(cls, table, m):  # noqa: ANN001 - see Measure.result
        return pa.array(cls._parts(table, m)[0])

    @classmethod
    def estimated(cls, table: pa.Table, m: MeasureSpec) -> np.ndarray:
        return ~cls._parts(table, m)[1]

    @classmethod
    def sql_result(cls, m: MeasureSpec) -> str:
        p = m.state
        estimate = HLL_ESTIMATE.format(raw=f"{p}__raw", empty=f"{p}__empty")
        return (f"CASE WHEN {p}__exact IS NOT NULL THEN {p}__exact  -- a final row: exact\n"
                f"            WHEN {p}__inexact = 0 AND {p}__union <= {hll.EXACT_MAX} THEN {p}__union"
                f"  -- every part an exact set\n"
                f"            ELSE {estimate} END")

    @classmethod
    def sql_exports(cls, m: MeasureSpec) -> list[tuple[str, str]]:
        """The merged registers, so a query can count distinct values over many windows."""
        return [(f"{m.state}__hll_merged", f"{m.name}_registers")]

    @classmethod
    def sql_merged(cls, m: MeasureSpec, sketch_index: Mapping[tuple[str, str], int]) -> list[str]:
        return []
