"""The measure registry: every kind complete, states shared and ordered, a new kind is one class."""

from __future__ import annotations

import pyarrow.compute as pc
import pytest

from chalicelib.processing import aggregate, finalize, merge_partials, parse_metrics, partials_schema
from chalicelib.processing.measures import (MEASURES, STATES, MaxState, Measure, MeasureSpec, MinState,
                                            ScalarState, SketchState, spec_states)
from tests.factories.processing import T0, event, events_table


def test_every_measure_kind_declares_what_the_pipeline_needs():
    for func, kind in MEASURES.items():
        assert kind.func == func and kind.usage.startswith(func)
        assert kind.field in (None, "number", "text")
        assert kind.quicksight_type in ("INTEGER", "DECIMAL")
        assert kind.quicksight_aggregation in ("SUM", "MIN", "MAX", "AVERAGE")
        assert all(STATES[s.suffix] is s for s in kind.states)
    for suffix, state in STATES.items():
        assert issubclass(state, (ScalarState, SketchState)) and state.suffix == suffix


def test_state_columns_are_shared_and_in_format_1_order():
    specs = [MeasureSpec("u", "distinct", "attributes_x"), MeasureSpec("p", "percentile", "attributes_y", ("5",)),
             MeasureSpec("a", "avg", "attributes_y"), MeasureSpec("s", "sum", "attributes_x"),
             MeasureSpec("m", "max", "attributes_y"), MeasureSpec("t", "sum", "attributes_y"),
             MeasureSpec("q", "percentile", "attributes_y", ("95",))]
    assert [(p, s.suffix) for p, s in spec_states(specs)] == [
        ("attributes_y", "sum"), ("attributes_y", "n"), ("attributes_y", "max"),  # numeric, y used first
        ("attributes_x", "sum"), ("attributes_x", "n"),
        ("attributes_x", "hll"), ("attributes_x", "exact"), ("attributes_y", "ddsketch")]


class Spread(Measure):
    """A measure made for this test: max - min, from the existing min and max states."""

    func, usage, states = "spread", "spread(<numeric field>)", (MinState, MaxState)

    @classmethod
    def result(cls, table, m):  # noqa: ANN001
        return pc.subtract(table.column(MaxState.column(m.state)), table.column(MinState.column(m.state)))

    @classmethod
    def sql_result(cls, m: MeasureSpec) -> str:
        return f"{MaxState.column(m.state)} - {MinState.column(m.state)}"


def test_a_new_measure_kind_is_one_class(monkeypatch, con):
    monkeypatch.setitem(MEASURES, "spread", Spread)
    metric = parse_metrics({"metrics": [{
        "name": "levels", "key": ["event_type"], "window": {"tumbling": "1m"},
        "measures": {"level_spread": "spread(attributes.level)", "level_p90": "percentile(attributes.level, 90)"}}]})[
        "levels"]
    assert partials_schema(metric).names[-3:] == ["attributes_level__min", "attributes_level__max",
                                                  "attributes_level__ddsketch"]
    levels = [3, 9, 4, 12, 7]
    batches = [aggregate(events_table([event(i, attributes={"level": v})]), [metric], watermark_ms=T0, con=con)
               for i, v in enumerate(levels)]
    (row,) = finalize(merge_partials([b["levels"] for b in batches])).to_pylist()
    assert row["level_spread"] == max(levels) - min(levels)
    assert abs(row["level_p90"] - sorted(levels)[int(0.9 * (len(levels) - 1))]) <= 0.01 * 12

    from eventpipe.query.quicksight_dashboard import view_columns
    from eventpipe.query.views import view_sql
    assert 'attributes_level__max - attributes_level__min AS "level_spread"' in view_sql(metric)
    assert {"Name": "level_spread", "Type": "DECIMAL"} in view_columns(metric)


def test_a_measure_is_described_as_metrics_yaml_writes_it_normalized():
    metric = parse_metrics({"metrics": [{"name": "m", "window": {"tumbling": "1m"},
                                         "measures": {"n": "count", "p": "percentile(attributes.v, 99.50)"}}]})["m"]
    assert [m.expression for m in metric.measures] == ["count", "percentile(attributes.v, 99.5)"]


@pytest.mark.parametrize("func", sorted(MEASURES))
def test_every_kind_has_sql_for_the_views(func):
    kind = MEASURES[func]
    args = ("50",) if func == "percentile" else ()
    spec = MeasureSpec("x", func, None if kind.field is None else "attributes_v", args)
    index = {(p, s.suffix): 0 for p, s in spec_states([spec])}
    assert kind.sql_result(spec) and isinstance(kind.sql_merged(spec, index), list)
