"""count, sum, min, max and avg, with their numeric states ``__sum``, ``__n``, ``__min``, ``__max``."""

from __future__ import annotations

from typing import ClassVar, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..metric_model import Field
from .base import GroupedValues, Measure, MeasureSpec, ScalarState

# ------------------------------------------------------------------ states


class SumState(ScalarState):
    """``<f>__sum``: sum of the values (0.0 when none); merged by summing."""

    suffix, order, arrow_type, nullable = "sum", (0, 0), pa.float64(), False
    sql_merge, sql_identity = "sum", "0e0"

    @classmethod
    def add(cls, values: GroupedValues, field: Field) -> pa.Array:
        g, v = values.numbers(field)
        return pa.array(np.bincount(g, weights=v, minlength=values.n_groups))

    @classmethod
    def merge(cls, column, gid, n_groups):  # noqa: ANN001 - see State.merge
        return pa.array(np.bincount(gid, weights=pc.fill_null(column, 0).to_numpy(), minlength=n_groups))


class CountState(ScalarState):
    """``<f>__n``: number of values; merged by summing."""

    suffix, order, arrow_type, nullable = "n", (0, 1), pa.int64(), False
    sql_merge, sql_identity = "sum", "0"

    @classmethod
    def add(cls, values: GroupedValues, field: Field) -> pa.Array:
        return pa.array(values.value_counts(field).astype(np.int64))

    @classmethod
    def merge(cls, column, gid, n_groups):  # noqa: ANN001
        merged = np.bincount(gid, weights=pc.fill_null(column, 0).to_numpy(), minlength=n_groups)
        return pa.array(np.rint(merged).astype(np.int64))

    @classmethod
    def sql_exports(cls, prefix: str, measures: Sequence[MeasureSpec]) -> list[tuple[str, str]]:
        """The value count, named after a sum/avg measure (``value_sum`` -> ``value_n``)."""
        for m in measures:
            if m.state == prefix and m.func in ("sum", "avg"):
                for suffix in ("_sum", "_avg"):
                    if m.name.endswith(suffix):
                        return [(cls.column(prefix), m.name[: -len(suffix)] + "_n")]
        return [(cls.column(prefix), f"{prefix}_n")]


class _Extreme(ScalarState):
    """min or max of the values, null when none."""

    arrow_type, nullable = pa.float64(), True
    sql_identity = "CAST(NULL AS double)"
    _fill: ClassVar[float]
    _ufunc: ClassVar[np.ufunc]

    @classmethod
    def add(cls, values: GroupedValues, field: Field) -> pa.Array:
        g, v = values.numbers(field)
        out = np.full(values.n_groups, cls._fill)
        cls._ufunc.at(out, g, v)
        return pa.array(out, mask=values.value_counts(field) == 0)

    @classmethod
    def merge(cls, column, gid, n_groups):  # noqa: ANN001
        merged = np.full(n_groups, cls._fill)
        cls._ufunc.at(merged, gid, pc.fill_null(column, cls._fill).to_numpy())
        return pa.array(merged, mask=merged == cls._fill)


class MinState(_Extreme):
    """``<f>__min``: minimum; merged by min."""

    suffix, order, sql_merge, _fill, _ufunc = "min", (0, 2), "min", np.inf, np.minimum


class MaxState(_Extreme):
    """``<f>__max``: maximum; merged by max."""

    suffix, order, sql_merge, _fill, _ufunc = "max", (0, 3), "max", -np.inf, np.maximum


# ---------------------------------------------------------------- measures


class Count(Measure):
    """``count``: number of events (the partials' ``event_count``)."""

    func, field, usage = "count", None, "count"
    result_type, quicksight_type = pa.int64(), "INTEGER"

    @classmethod
    def result(cls, table, m):  # noqa: ANN001 - see Measure.result
        return table.column("event_count")

    @classmethod
    def sql_result(cls, m: MeasureSpec) -> str:
        return "event_count"


class Sum(Measure):
    """``sum(<numeric field>)``: sum of the values, null when none."""

    func, usage, states = "sum", "sum(<numeric field>)", (SumState, CountState)

    @classmethod
    def result(cls, table, m):  # noqa: ANN001
        n = table.column(CountState.column(m.state)).to_numpy()
        return pa.array(table.column(SumState.column(m.state)).to_numpy(), mask=n == 0)

    @classmethod
    def sql_result(cls, m: MeasureSpec) -> str:
        return f"CASE WHEN {CountState.column(m.state)} > 0 THEN {SumState.column(m.state)} END"


class Min(Measure):
    """``min(<numeric field>)``: minimum, null when no value."""

    func, usage, states, quicksight_aggregation = "min", "min(<numeric field>)", (MinState,), "MIN"

    @classmethod
    def result(cls, table, m):  # noqa: ANN001
        return table.column(MinState.column(m.state))

    @classmethod
    def sql_result(cls, m: MeasureSpec) -> str:
        return MinState.column(m.state)


class Max(Measure):
    """``max(<numeric field>)``: maximum, null when no value."""

    func, usage, states, quicksight_aggregation = "max", "max(<numeric field>)", (MaxState,), "MAX"

    @classmethod
    def result(cls, table, m):  # noqa: ANN001
        return table.column(MaxState.column(m.state))

    @classmethod
    def sql_result(cls, m: MeasureSpec) -> str:
        return MaxState.column(m.state)


class Avg(Measure):
    """``avg(<numeric field>)``: sum / number of values (at read time), null when none."""

    func, usage, states, quicksight_aggregation = "avg", "avg(<numeric field>)", (SumState, CountState), "AVERAGE"

    @classmethod
    def result(cls, table, m):  # noqa: ANN001
        total = table.column(SumState.column(m.state)).to_numpy()
        n = table.column(CountState.column(m.state)).to_numpy()
        with np.errstate(invalid="ignore", divide="ignore"):
            return pa.array(total / n, mask=n == 0)

    @classmethod
    def sql_result(cls, m: MeasureSpec) -> str:
        return f"{SumState.column(m.state)} / nullif({CountState.column(m.state)}, 0)"
