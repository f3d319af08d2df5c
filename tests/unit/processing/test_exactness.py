"""Which results are estimates: distinct counts exact in one final row or an exact set, percentiles never."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from chalicelib.processing import aggregate, finalize, hll, load_metrics, merge_partials
from chalicelib.processing.measures import ExactCountState, exact_counts, exact_sets
from chalicelib.processing.partials import estimated_measures
from tests.factories.processing import T0, event, events_table

METRICS = load_metrics()
MINUTE = 60_000


def users_events(n: int, minute: int = 0, start: int = 0) -> list[dict]:
    return [event(start + i, user_id=f"u{i}", event_time=T0 + minute * MINUTE + i % 1000,
                  attributes={"character_class": "mage", "value": 1}) for i in range(n)]


def test_exact_count_of_one_row_is_kept_and_a_merge_of_several_rows_has_none():
    column = pa.array([27, None, 5, 9], pa.int64())
    merged = ExactCountState.merge(column, np.array([0, 1, 2, 2]), 4)
    assert merged.to_pylist() == [27, None, None, None]


def test_distinct_above_exact_max_is_an_estimate_in_partials_and_exact_with_the_final_count(con):
    events = events_table(users_events(hll.EXACT_MAX + 500) + users_events(30, minute=1, start=10_000))
    partials = aggregate(events, [METRICS["event_counts"]], watermark_ms=T0, con=con)["event_counts"]
    assert estimated_measures(partials).to_pylist() == [["users"], []]
    with exact_sets():
        final = aggregate(events, [METRICS["event_counts"]], watermark_ms=T0, con=con)["event_counts"]
    final = final.set_column(final.schema.get_field_index("user_id__exact"), "user_id__exact",
                             exact_counts(final["user_id__hll"]))
    assert finalize(final)["users"].to_pylist() == [hll.EXACT_MAX + 500, 30]
    assert estimated_measures(final).to_pylist() == [[], []]
    # Merged with another row (another window's, or a late partial), the exact count no longer applies.
    twice = merge_partials([final, partials])
    assert estimated_measures(twice).to_pylist() == [["users"], []]


def test_percentiles_are_always_estimates_and_counts_never(con):
    events = events_table([event(i, event_type="match_end", attributes={"character_class": "mage", "value": i})
                           for i in range(50)])
    partials = aggregate(events, [METRICS["match_duration"]], watermark_ms=T0, con=con)["match_duration"]
    assert estimated_measures(partials).to_pylist() == [["duration_p50", "duration_p90", "duration_p99"]]
