"""percentile(<numeric field>, <p>): a quantile from a mergeable log-bucket sketch (:mod:`..ddsketch`).

One measure per quantile (``duration_p99: percentile(attributes.value, 99)``);
the measures of one field share its ``<f>__ddsketch`` state.  ``p`` is a
percentage from 0 to 100 with at most 4 decimals; the result is the estimate
of the value of rank ``floor(p / 100 * (n - 1))`` (0-based, sorted), within
1 % of it (``numpy.quantile(..., method="lower")``), null without values.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Mapping, Sequence

import numpy as np
import pyarrow as pa

from .. import ddsketch
from ..metric_model import Field
from .base import GroupedValues, Measure, MeasureSpec, SketchState

_NUMBER = re.compile(r"^[0-9]+(\.[0-9]+)?$")


def _double(value: float) -> str:
    """A Trino DOUBLE literal (a bare decimal literal would be a DECIMAL there)."""
    text = repr(float(value))
    return text if "e" in text else f"{text}e0"


class DDSketchState(SketchState):
    """``<f>__ddsketch``: binary quantile sketch, null when empty; merged by adding counts per slot.

    SQL reads the ``<f>__buckets`` copy the lake writes beside it
    (``array<bigint>`` of ``count * 8192 + slot``): after ``UNNEST`` the
    counts are summed per slot and a running sum over the slots
    (:attr:`sql_window`) finds each quantile.
    """

    suffix, order, arrow_type, nullable = "ddsketch", (2, 0), pa.binary(), True
    params = ddsketch.PARAMS
    sql_value = ("dds_count", "bigint")
    sql_slot_merge = "CAST(sum(dds_count) AS bigint)"
    sql_window = (
        "CAST(sum(dds_count) OVER (PARTITION BY {partition}\n"
        "                                   ORDER BY slot ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)\n"
        "                AS bigint) AS dds_through",
        "CAST(sum(dds_count) OVER (PARTITION BY {partition}) AS bigint) AS dds_total")

    @classmethod
    def add(cls, values: GroupedValues, field: Field) -> pa.Array:
        g, v = values.numbers(field)
        return ddsketch.encode(*ddsketch.reduce(g, ddsketch.slots(v)), values.n_groups)

    @classmethod
    def merge(cls, column, gid, n_groups):  # noqa: ANN001 - see State.merge
        return ddsketch.merge(column, gid, n_groups)

    @classmethod
    def sql_source(cls, prefix: str) -> str:
        return f"{prefix}__buckets"

    @classmethod
    def sql_array(cls, column: pa.Array | pa.ChunkedArray) -> pa.Array:
        return ddsketch.to_lists(column)

    @classmethod
    def sql_unnest(cls, element: str) -> tuple[str, str]:
        scale = 1 << ddsketch.SLOT_BITS
        return f"CAST({element} % {scale} AS integer)", f"CAST(floor({element} / {scale}) AS bigint)"

    @classmethod
    def sql_merged(cls, index: int, prefix: str) -> list[str]:
        scale = 1 << ddsketch.SLOT_BITS
        return [f"array_agg(dds_count * {scale} + slot ORDER BY slot) FILTER (WHERE sketch = {index}) "
                f"AS {cls.column(prefix)}_merged"]

    @classmethod
    def sql_exports(cls, prefix: str, measures: Sequence[MeasureSpec]) -> list[tuple[str, str]]:
        """The merged sketch (SQL form), named after its measures: ``duration_p50`` -> ``duration_sketch``."""
        taken = {m.name for m in measures}
        bases = {re.sub(r"_p[0-9_]+$", "", m.name) for m in measures if m.state == prefix and m.func == "percentile"}
        name = f"{bases.pop()}_sketch" if len(bases) == 1 else f"{prefix}_sketch"
        return [(f"{cls.column(prefix)}_merged", name if name not in taken else f"{prefix}_sketch")]


class Percentile(Measure):
    """``percentile(<numeric field>, <p>)``: p-th percentile within 1 % (see the module doc)."""

    func, usage, states = "percentile", "percentile(<numeric field>, <p from 0 to 100>)", (DDSketchState,)
    # Percentiles do not add up: a dashboard shows the highest of the rows it combines.
    quicksight_aggregation = "MAX"
    estimate = True  # within 1 % relative error

    @classmethod
    def parse_args(cls, args: Sequence[str]) -> tuple[str, ...]:
        if len(args) != 1 or not _NUMBER.match(args[0]):
            raise ValueError(f"expected {cls.usage}, e.g. percentile(attributes.value, 99)")
        try:
            p = Decimal(args[0])
        except InvalidOperation:  # pragma: no cover - the pattern admits only numbers
            raise ValueError(f"{args[0]!r} is not a number") from None
        if p > 100 or p.as_tuple().exponent < -4:
            raise ValueError(f"the percentage must be from 0 to 100 with at most 4 decimals, got {args[0]}")
        text = format(p.normalize(), "f")
        return (text,)

    @staticmethod
    def fraction(m: MeasureSpec) -> tuple[int, int]:
        """The quantile ``q = p / 100`` as ``(numerator, denominator)``."""
        return (Decimal(m.args[0]) / 100).as_integer_ratio()

    @classmethod
    def result(cls, table, m):  # noqa: ANN001 - see Measure.result
        values = ddsketch.quantiles(table.column(DDSketchState.column(m.state)), *cls.fraction(m))
        return pa.array(values, mask=np.isnan(values))

    @classmethod
    def sql_merged(cls, m: MeasureSpec, sketch_index: Mapping[tuple[str, str], int]) -> list[str]:
        """The slot of rank floor(num * (n - 1) / den): the first whose running count exceeds it."""
        num, den = cls.fraction(m)
        index = sketch_index[(m.state, DDSketchState.suffix)]
        return [f"min(slot) FILTER (WHERE sketch = {index} AND dds_through > floor(({num} * (dds_total - 1)) / {den})) "
                f"AS {m.name}__slot"]

    @classmethod
    def sql_result(cls, m: MeasureSpec) -> str:
        """The slot's estimate: 0, or +/- 2 * gamma^k / (gamma + 1) (ddsketch.SLOT_VALUES)."""
        slot, zero = f"{m.name}__slot", ddsketch.ZERO_SLOT
        gamma, plus_one = _double(ddsketch.GAMMA), _double(ddsketch.GAMMA + 1.0)
        up, down = zero - ddsketch.K_MIN + 1, zero + ddsketch.K_MIN - 1
        return (f"CASE WHEN {slot} = {zero} THEN 0e0\n"
                f"            WHEN {slot} > {zero} THEN 2e0 * power({gamma}, {slot} - {up}) / {plus_one}\n"
                f"            ELSE -2e0 * power({gamma}, {down} - {slot}) / {plus_one} END")
