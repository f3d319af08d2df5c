"""Building blocks of the measure registry: state kinds and measure kinds.

A *measure* is one aggregate of ``metrics.yaml`` (``sum(attributes.value)``).
It keeps what it knows in mergeable *state* columns of the partials, named
``<field>__<suffix>`` (``attributes_value__sum``) and shared by the measures
of one field that need them (``sum`` and ``avg`` both read ``__sum`` and
``__n``).  Each kind is one class:

* :class:`State` -- the vectorized aggregator model of one state column:
  *initialize* is the identity of :meth:`State.add`'s scatter (zeros,
  +/-inf, empty sketches), :meth:`State.add` folds a batch of values into
  one state per group, :meth:`State.merge` folds states of rows that share
  a group.  :class:`ScalarState` and :class:`SketchState` add the SQL the
  views merge them with.
* :class:`Measure` -- how ``metrics.yaml`` writes it, which states it needs,
  its *result* (:meth:`Measure.result`), its SQL in the views and its column
  in QuickSight.

Methods are classmethods: a kind has no per-instance data; the measure at
hand is a :class:`MeasureSpec` (the form the partials' metadata records).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Protocol, Sequence

import numpy as np
import pyarrow as pa

from ..metric_model import Field, MeasureDef


@dataclass(frozen=True)
class MeasureSpec:
    """A measure as the partials' metadata records it.

    Attributes:
        name: output column name.
        func: the measure kind (``sum``, ``percentile``, ...).
        state: the column prefix of its field (``attributes_value``), None for count.
        args: the kind's extra arguments, normalized text (``("99",)``).
    """

    name: str
    func: str
    state: str | None = None
    args: tuple[str, ...] = ()

    @classmethod
    def of(cls, measure: MeasureDef) -> "MeasureSpec":
        """The spec of a configured measure."""
        return cls(measure.name, measure.func, measure.field.column_prefix if measure.field else None,
                   tuple(measure.args))

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> "MeasureSpec":
        """Inverse of :meth:`to_json` (also reads format-1 entries, which have no args)."""
        return cls(entry["name"], entry["func"], entry.get("state"), tuple(entry.get("args", ())))

    def to_json(self) -> dict[str, Any]:
        """The JSON-able form stored in the partials' metadata."""
        out: dict[str, Any] = {"name": self.name, "func": self.func}
        if self.state is not None:
            out["state"] = self.state
        if self.args:
            out["args"] = list(self.args)
        return out


class GroupedValues(Protocol):
    """What :meth:`State.add` reads: one batch's values with their group ids.

    Provided by the aggregation (``aggregate._GroupedValues``), restricted to
    the rows the metric keeps; results are cached per field.
    """

    n_groups: int

    def numbers(self, field: Field) -> tuple[np.ndarray, np.ndarray]:
        """``(gid, value)`` of the rows where ``field`` is a finite number."""

    def value_counts(self, field: Field) -> np.ndarray:
        """Number of rows per group where ``field`` is a finite number."""

    def registers(self, field: Field) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(gid, register, rank)`` of the rows where ``field`` (text) is present."""

    def hash_codes(self, field: Field) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(gid, code, sorted_hashes)`` of the rows where ``field`` (text) is present: each row's
        value as an index into the ascending EPH64 hashes of the batch's distinct values."""


class State:
    """One kind of mergeable state column (subclass per kind, see the module doc).

    Attributes:
        suffix: column suffix and the kind's name in the partials' metadata.
        order: ``(group, position)``: schema order is by group, then by the
            field's first use, then by position (format-1 order).
        arrow_type: the column's Arrow type.
        nullable: whether the column may hold nulls.
        params: format parameters recorded in the metadata (sketches), or None.
        readable_params: every ``params`` this code reads (older formats included).
        optional: a kind added after partials format 2 (nullable, null = unknown):
            tables written before it lack the column and read as nulls.
    """

    suffix: ClassVar[str]
    order: ClassVar[tuple[int, int]]
    arrow_type: ClassVar[pa.DataType]
    nullable: ClassVar[bool]
    params: ClassVar[dict[str, Any] | None] = None
    readable_params: ClassVar[tuple[dict[str, Any], ...]] = ()
    optional: ClassVar[bool] = False

    @classmethod
    def reads_params(cls, params: dict[str, Any] | None) -> bool:
        """Whether sketches written with ``params`` can be read (and merged) by this code."""
        return params == cls.params or params in cls.readable_params

    @classmethod
    def column(cls, prefix: str) -> str:
        """The state column of a field, e.g. ``attributes_value__sum``."""
        return f"{prefix}__{cls.suffix}"

    @classmethod
    def add(cls, values: GroupedValues, field: Field) -> pa.Array:
        """The state of each of ``values.n_groups`` groups from one batch."""
        raise NotImplementedError

    @classmethod
    def merge(cls, column: pa.Array | pa.ChunkedArray, gid: np.ndarray, n_groups: int) -> pa.Array:
        """Merged state per group of the rows of ``column`` (``gid`` per row)."""
        raise NotImplementedError

    @classmethod
    def sql_exports(cls, prefix: str, measures: Sequence[MeasureSpec]) -> list[tuple[str, str]]:
        """Extra view columns ``(expression over the merged columns, name)`` for this state."""
        return []


class ScalarState(State):
    """A state merged by a plain SQL aggregate.

    Attributes:
        sql_merge: the aggregate that merges it (``sum``, ``min``, ``max``).
        sql_identity: its value in rows that carry no such state.
        sql_row_merge: the view's first merge, of the chosen rows of a group
            (``{column}`` stands for the column); default ``sql_merge(column)``.
    """

    sql_merge: ClassVar[str]
    sql_identity: ClassVar[str]
    sql_row_merge: ClassVar[str | None] = None

    @classmethod
    def sql_first_merge(cls, prefix: str) -> str:
        """The aggregate (with alias) merging the chosen rows of a group in the view."""
        column = cls.column(prefix)
        expression = cls.sql_row_merge.format(column=column) if cls.sql_row_merge else f"{cls.sql_merge}({column})"
        return f"{expression} AS {column}"


class SketchState(State):
    """A state that SQL merges slot by slot after ``UNNEST`` (HLL registers, quantile buckets).

    Athena (Trino) and DuckDB cannot read our binary sketches, so the lake
    writes each one's :meth:`sql_array` beside it (chalicelib/lake/sql_sketch.py).
    The view turns each sketch into rows ``(sketch, slot, <sql_value>)``,
    merges them per slot with :attr:`sql_slot_merge`, optionally adds window
    columns (:attr:`sql_window`) and aggregates per group
    (:meth:`sql_merged`).

    Attributes:
        sql_value: ``(column, SQL type)`` of the per-slot value.
        sql_slot_merge: the aggregate merging one slot's values.
        sql_window: window columns over the slots of one sketch, each a
            format string with ``{partition}`` (the group columns and
            ``sketch``); empty when not needed.
        sql_derived: further SQL sketches derived from the same state column
            (each with its own lake array and unnest), e.g. the exact hash
            sets beside the HLL registers.
    """

    sql_value: ClassVar[tuple[str, str]]
    sql_slot_merge: ClassVar[str]
    sql_window: ClassVar[tuple[str, ...]] = ()
    sql_derived: ClassVar[tuple[type["SketchState"], ...]] = ()

    @classmethod
    def sql_unnest_source(cls, prefix: str) -> str:
        """The expression the view unnests (default: the lake column :meth:`sql_source`)."""
        return cls.sql_source(prefix)

    @classmethod
    def sql_source(cls, prefix: str) -> str:
        """The lake column (an array, see :meth:`sql_array`) the view unnests."""
        raise NotImplementedError

    @classmethod
    def sql_array(cls, column: pa.Array | pa.ChunkedArray) -> pa.Array:
        """The SQL-readable array form of sketches, which the lake writes as :meth:`sql_source`."""
        raise NotImplementedError

    @classmethod
    def sql_unnest(cls, element: str) -> tuple[str, str]:
        """``(slot, value)`` expressions of one array element."""
        raise NotImplementedError

    @classmethod
    def sql_merged(cls, index: int, prefix: str) -> list[str]:
        """Aggregates (with aliases) over the slot rows of sketch ``index``."""
        return []

    @classmethod
    def sql_estimated(cls, prefix: str) -> list[str]:
        """Columns (with aliases) computed from the merged aggregates."""
        return []


class Measure:
    """One aggregate function of ``metrics.yaml`` (subclass per kind).

    Attributes:
        func: the name written in ``metrics.yaml``.
        field: the field it takes: None (none), ``"number"`` or ``"text"``.
        usage: how to write it, for error messages.
        states: the state kinds it needs on its field.
        result_type: the Arrow type of its result.
        quicksight_type: its column type in QuickSight data sets.
        quicksight_aggregation: how a dashboard combines several rows of it.
        estimate: whether its result is an estimate (percentiles); see
            :meth:`estimated` for kinds that are exact in some rows only.
    """

    func: ClassVar[str]
    field: ClassVar[str | None] = "number"
    usage: ClassVar[str]
    states: ClassVar[tuple[type[State], ...]] = ()
    result_type: ClassVar[pa.DataType] = pa.float64()
    quicksight_type: ClassVar[str] = "DECIMAL"
    quicksight_aggregation: ClassVar[str] = "SUM"
    estimate: ClassVar[bool] = False

    @classmethod
    def parse_args(cls, args: Sequence[str]) -> tuple[str, ...]:
        """Validate the arguments after the field; returns them normalized.

        Raises:
            ValueError: with the problem (the caller names metric and field).
        """
        if args:
            raise ValueError(f"{cls.func}() takes one field; write {cls.usage}")
        return ()

    @classmethod
    def result(cls, table: pa.Table, m: MeasureSpec) -> pa.Array | pa.ChunkedArray:
        """The measure of every row of a (merged) partials table."""
        raise NotImplementedError

    @classmethod
    def estimated(cls, table: pa.Table, m: MeasureSpec) -> np.ndarray:
        """Per row of a (merged) partials table: whether :meth:`result` is an estimate there."""
        return np.full(table.num_rows, cls.estimate)

    @classmethod
    def sql_merged(cls, m: MeasureSpec, sketch_index: Mapping[tuple[str, str], int]) -> list[str]:
        """Extra aggregates in the view's ``merged`` step (``sketch_index``: (prefix, suffix) -> id)."""
        return []

    @classmethod
    def sql_result(cls, m: MeasureSpec) -> str:
        """The view's expression for the measure (over the merged columns)."""
        raise NotImplementedError

    @classmethod
    def sql_exports(cls, m: MeasureSpec) -> list[tuple[str, str]]:
        """Extra view columns ``(expression, name)`` for this measure."""
        return []
