"""distinct(<field>): approximate distinct count with a HyperLogLog sketch (:mod:`..hll`)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from .. import hll
from ..metric_model import Field
from .base import GroupedValues, Measure, MeasureSpec, SketchState

#: Classic estimator with linear counting for small sets (sql/README.md).
HLL_ESTIMATE = """CAST(round(CASE WHEN {raw} <= 2.5e0 * 4096 AND {empty} > 0
                       THEN 4096 * ln(4096e0 / {empty})  -- linear counting for small sets
                       ELSE {raw} END) AS bigint)"""


class HllState(SketchState):
    """``<f>__hll``: binary HLL sketch (p = 12); merged register-wise by max.

    SQL reads the ``<f>__registers`` copy the lake writes beside it
    (``array<int>`` of ``register * 256 + rank``, chalicelib/lake/sql_sketch.py).
    """

    suffix, order, arrow_type, nullable = "hll", (1, 0), pa.binary(), False
    params = {"p": hll.P, "version": hll.VERSION}
    sql_value = ("hll_rank", "integer")
    sql_slot_merge = "max(hll_rank)"

    @classmethod
    def add(cls, values: GroupedValues, field: Field) -> pa.Array:
        g, reg, rank = values.registers(field)
        return hll.encode(*hll.reduce_registers(g, reg, rank, values.n_groups), values.n_groups)

    @classmethod
    def merge(cls, column, gid, n_groups):  # noqa: ANN001 - see State.merge
        return hll.merge(column, gid, n_groups)

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
                f"array_agg(slot * 256 + hll_rank ORDER BY slot) {where} AS {prefix}__hll_merged"]  # same order on every engine

    @classmethod
    def sql_estimated(cls, prefix: str) -> list[str]:
        # classic HyperLogLog, m = 4096: alpha * m^2 / (V + sum of 2^-rank over the non-empty registers)
        return [f"0.7213e0 / (1e0 + 1.079e0 / 4096) * 4096 * 4096 / ({prefix}__empty + {prefix}__inverse) "
                f"AS {prefix}__raw"]


class Distinct(Measure):
    """``distinct(<field>)``: HyperLogLog estimate, ~1.6 % standard error (see :mod:`..hll`)."""

    func, field, usage, states = "distinct", "text", "distinct(<field>)", (HllState,)
    result_type, quicksight_type = pa.int64(), "INTEGER"
    # A per-window distinct count does not add up across windows: show the peak.
    quicksight_aggregation = "MAX"

    @classmethod
    def result(cls, table, m):  # noqa: ANN001 - see Measure.result
        row, _, rank = hll.decode(table.column(HllState.column(m.state)))
        return pa.array(np.rint(hll.estimate(row, rank, table.num_rows)).astype(np.int64))

    @classmethod
    def sql_result(cls, m: MeasureSpec) -> str:
        return HLL_ESTIMATE.format(raw=f"{m.state}__raw", empty=f"{m.state}__empty")

    @classmethod
    def sql_exports(cls, m: MeasureSpec) -> list[tuple[str, str]]:
        """The merged registers, so a query can count distinct values over many windows."""
        return [(f"{m.state}__hll_merged", f"{m.name}_registers")]
