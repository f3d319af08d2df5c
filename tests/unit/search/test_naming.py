"""Index naming (pure)."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.search.naming import (DAY_MS, day_of, index_for, indices_covering, ms_from_datetime,
                                      parse_index_day)

MAX_MS = 253402300799999


@given(st.integers(min_value=0, max_value=MAX_MS))
def test_index_name_is_the_utc_calendar_day_of_event_time(ms):
    expected = datetime.fromtimestamp(ms // 1000, tz=timezone.utc).date()
    assert index_for(ms) == f"events-{expected:%Y.%m.%d}"
    assert parse_index_day(index_for(ms)) == expected


def test_utc_midnight_starts_a_new_index():
    midnight = ms_from_datetime(datetime(2026, 11, 25, tzinfo=timezone.utc))
    assert index_for(midnight - 1) == "events-2026.11.24"
    assert index_for(midnight) == "events-2026.11.25"
    assert index_for(midnight, prefix="staging") == "staging-2026.11.25"


@pytest.mark.parametrize("name", ["events-2026.02.30", "events-2026.13.01", "events-26.11.25", "events-archive",
                                  "other-2026.11.25", "events-2026.11.25-restored", "events-2026.11.25x"])
def test_names_that_are_not_real_daily_indices_are_not_parsed(name):
    assert parse_index_day(name) is None


def test_indices_covering_a_range_are_concrete_newest_first_and_half_open():
    start = ms_from_datetime(datetime(2026, 11, 23, 18, tzinfo=timezone.utc))
    end = ms_from_datetime(datetime(2026, 11, 25, tzinfo=timezone.utc))  # midnight: 11-25 not included
    assert indices_covering(start, end) == ["events-2026.11.24", "events-2026.11.23"]
    assert indices_covering(end, end) == []


@given(st.integers(min_value=0, max_value=10**13), st.integers(min_value=1, max_value=31 * DAY_MS))
def test_a_range_of_n_days_touches_at_most_n_plus_one_indices_and_each_event_day(start, length):
    names = indices_covering(start, start + length)
    assert len(names) <= length // DAY_MS + 2
    assert index_for(start) in names and index_for(start + length - 1) in names
    assert len(set(names)) == len(names)


def test_datetime_to_ms_is_exact_for_any_offset():
    value = datetime.fromisoformat("2026-11-25T21:00:00.001+09:00")
    assert ms_from_datetime(value) == ms_from_datetime(datetime(2026, 11, 25, 12, 0, 0, 1000, tzinfo=timezone.utc))
    assert day_of(ms_from_datetime(value)) == date(2026, 11, 25)
    with pytest.raises(ValueError):
        ms_from_datetime(datetime(2026, 11, 25))
