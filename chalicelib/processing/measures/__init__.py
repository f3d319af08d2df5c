"""The measure registry: every aggregate ``metrics.yaml`` can use, one class each.

============== ============================== ======================= ==================
measure        states (``<f>__<suffix>``)     result                  QuickSight
============== ============================== ======================= ==================
count          (event_count)                  int64                   INTEGER, SUM
sum(f)         sum, n                         float64, null if n = 0  DECIMAL, SUM
min(f)         min                            float64                 DECIMAL, MIN
max(f)         max                            float64                 DECIMAL, MAX
avg(f)         sum, n                         float64, sum / n        DECIMAL, AVERAGE
distinct(f)    hll, exact                     int64 (exact <= 4,096   INTEGER, MAX
                                              values and in final
                                              rows, else HLL)
percentile(f,p) ddsketch                      float64, within 1 %     DECIMAL, MAX
============== ============================== ======================= ==================

The aggregation (:mod:`..aggregate`), the partials' schema, merge and
finalize (:mod:`..partials`), the Athena views (eventpipe/query/views.py)
and the QuickSight data sets (eventpipe/query/quicksight.py) iterate over
this registry; adding a measure is one :class:`~.base.Measure` subclass (with
its :class:`~.base.State` kinds when it needs new ones) listed here.
"""

from __future__ import annotations

from typing import Sequence

from ..metric_model import Field, MeasureDef
from .base import GroupedValues, Measure, MeasureSpec, ScalarState, SketchState, State
from .basic import Avg, Count, CountState, Max, MaxState, Min, MinState, Sum, SumState
from .distinct import Distinct, ExactCountState, HashSetSql, HllState, exact_counts, exact_sets
from .percentile import DDSketchState, Percentile

#: Measure kinds by the name ``metrics.yaml`` uses.
MEASURES: dict[str, type[Measure]] = {m.func: m for m in (Count, Sum, Min, Max, Avg, Distinct, Percentile)}
#: State kinds by their column suffix.
STATES: dict[str, type[State]] = {s.suffix: s for m in MEASURES.values() for s in m.states}


def measure_kind(func: str) -> type[Measure]:
    """The kind of a measure function.

    Raises:
        KeyError: no such measure.
    """
    return MEASURES[func]


def state_kind(suffix: str) -> type[State]:
    """The kind of a state column suffix.

    Raises:
        KeyError: no such state.
    """
    return STATES[suffix]


def spec_states(measures: Sequence[MeasureSpec]) -> tuple[tuple[str, type[State]], ...]:
    """``(prefix, state kind)`` of the state columns of some measures, in schema order.

    Each state column appears once however many measures need it.  Order:
    by the kind's group (numeric, HLL, quantile sketches), then by the first
    measure of that group using the field, then by the kind's position --
    the column order of partials format 1.
    """
    first: dict[tuple[int, str], int] = {}
    found: dict[tuple[str, str], type[State]] = {}
    for i, m in enumerate(measures):
        for state in MEASURES[m.func].states:
            first.setdefault((state.order[0], m.state), i)
            found.setdefault((m.state, state.suffix), state)
    ordered = sorted(found.items(), key=lambda item: (item[1].order[0], first[(item[1].order[0], item[0][0])],
                                                      item[1].order[1]))
    return tuple((prefix, state) for (prefix, _), state in ordered)


def metric_states(measures: Sequence[MeasureDef]) -> tuple[tuple[Field, type[State]], ...]:
    """``(field, state kind)`` of the state columns of configured measures, in schema order."""
    fields = {m.field.column_prefix: m.field for m in measures if m.field is not None}
    return tuple((fields[prefix], state) for prefix, state in spec_states([MeasureSpec.of(m) for m in measures]))


__all__ = ["MEASURES", "STATES", "Avg", "Count", "CountState", "DDSketchState", "Distinct", "ExactCountState", "GroupedValues",
           "HashSetSql",
           "HllState", "Max", "MaxState", "Measure", "MeasureSpec", "Min", "MinState", "Percentile", "ScalarState",
           "SketchState", "State", "Sum", "SumState", "exact_counts", "exact_sets", "measure_kind", "metric_states", "spec_states", "state_kind"]
