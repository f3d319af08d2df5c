"""The measure registry: the measure and state kinds by name, and the state columns in schema order."""

from __future__ import annotations

from typing import Sequence

from ..metric_model import Field, MeasureDef
from .base import Measure, MeasureSpec, State
from .basic import Avg, Count, Max, Min, Sum
from .distinct import Distinct
from .percentile import Percentile

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
