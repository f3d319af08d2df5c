"""Window math: tumbling/hopping assignment, lateness, durations."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tests.factories.processing import MINUTE, T0
from chalicelib.processing.errors import DurationError
from chalicelib.processing.lateness import watermark
from chalicelib.processing.windows import (WindowSpec, assign_windows, is_late, pane_index, parse_duration,
                                           window_starts)

TUMBLING_1M = WindowSpec.tumbling(MINUTE)
HOPPING_5M_1M = WindowSpec.hopping(5 * MINUTE, MINUTE)


def test_tumbling_event_belongs_to_exactly_one_window():
    assert window_starts(T0 + 30_000, TUMBLING_1M) == [T0]


def test_tumbling_window_start_is_event_time_floored_to_the_size():
    assert window_starts(T0 + MINUTE - 1, TUMBLING_1M) == [T0]


def test_window_end_is_exclusive_so_an_event_on_the_boundary_opens_the_next_window():
    assert window_starts(T0 + MINUTE, TUMBLING_1M) == [T0 + MINUTE]


def test_windows_are_aligned_to_the_epoch_not_to_the_first_event():
    hour = WindowSpec.tumbling(3_600_000)
    assert window_starts(7_200_000 + 123, hour) == [7_200_000]


def test_event_before_1970_floors_towards_minus_infinity():
    assert window_starts(-1, TUMBLING_1M) == [-MINUTE]


def test_hopping_event_belongs_to_five_windows():
    starts = window_starts(T0 + 30_000, HOPPING_5M_1M)
    assert starts == [T0 - 4 * MINUTE, T0 - 3 * MINUTE, T0 - 2 * MINUTE, T0 - MINUTE, T0]
    assert all(s <= T0 + 30_000 < s + 5 * MINUTE for s in starts)


def test_hopping_windows_start_on_multiples_of_the_slide():
    assert all(s % MINUTE == 0 for s in window_starts(T0 + 12_345, HOPPING_5M_1M))


def test_hopping_event_on_a_slide_boundary_is_in_the_window_starting_there():
    assert window_starts(T0, HOPPING_5M_1M)[-1] == T0
    assert window_starts(T0, HOPPING_5M_1M)[0] == T0 - 4 * MINUTE


def test_hopping_size_must_be_a_multiple_of_the_slide():
    with pytest.raises(ValueError):
        WindowSpec.hopping(5 * MINUTE, 2 * MINUTE)


def test_pane_index_is_the_slide_bucket():
    times = np.array([T0, T0 + MINUTE - 1, T0 + MINUTE, -1])
    assert pane_index(times, HOPPING_5M_1M).tolist() == [T0 // MINUTE, T0 // MINUTE, T0 // MINUTE + 1, -1]


@settings(max_examples=60, deadline=None)
@given(times=st.lists(st.integers(-10**13, 10**13), min_size=1, max_size=30),
       slide=st.sampled_from([1_000, 60_000, 3_600_000]), per=st.integers(1, 6))
def test_vectorized_assignment_matches_the_scalar_rule(times, slide, per):
    spec = WindowSpec(slide * per, slide)
    idx, starts = assign_windows(np.array(times, dtype=np.int64), spec)
    expected = [(i, s) for i, t in enumerate(times) for s in window_starts(t, spec)]
    assert list(zip(idx.tolist(), starts.tolist())) == expected


def test_window_is_late_when_its_end_is_at_or_before_the_watermark():
    end = T0 + MINUTE
    assert is_late(end, watermark_ms=end)
    assert is_late(end, watermark_ms=end + 1)
    assert not is_late(end, watermark_ms=end - 1)


def test_watermark_trails_the_newest_event_by_the_allowed_lateness():
    assert watermark(T0 + 10 * MINUTE, 5 * MINUTE) == T0 + 5 * MINUTE


@pytest.mark.parametrize("text,ms", [("30s", 30_000), ("1m", 60_000), ("5m", 300_000), ("2h", 7_200_000),
                                     ("7d", 604_800_000)])
def test_parse_duration_units(text, ms):
    assert parse_duration(text) == ms


@pytest.mark.parametrize("text", ["", "5", "m", "0m", "-1m", "1.5m", "5 minutes", "1w", None, 5])
def test_parse_duration_rejects_anything_else(text):
    with pytest.raises(DurationError):
        parse_duration(text)
