"""Quantile sketch: accuracy against exact quantiles, canonical merges, range limits, format."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings, strategies as st

from chalicelib.processing import ddsketch
from chalicelib.processing.errors import SketchError

PERCENTS = [0, 1, 5, 10, 25, 50, 75, 90, 95, 99, 99.9, 100]


def fraction(percent: float) -> tuple[int, int]:
    return (Decimal(str(percent)) / 100).as_integer_ratio()


def exact(values: np.ndarray, percent: float) -> float:
    """The documented target: the value of rank floor(q * (n - 1)) in sorted order."""
    num, den = fraction(percent)
    return float(np.sort(values)[(num * (len(values) - 1)) // den])


def relative_error(estimate: float, truth: float) -> float:
    return abs(estimate - truth) / abs(truth) if truth else abs(estimate)


def sketch(values) -> bytes | None:  # noqa: ANN001
    return ddsketch.sketch_of(values)


RNG = np.random.default_rng(20261201)
DISTRIBUTIONS = {
    "lognormal": RNG.lognormal(3, 2, 50_000),
    "uniform": RNG.uniform(0, 3000, 50_000),
    "pareto (heavy tail)": (RNG.pareto(0.8, 50_000) + 1) * 0.01,
    "integers with zeros": RNG.integers(0, 3001, 50_000).astype(np.float64),
    "single value": np.full(1_000, 1347.0),
    "one value": np.array([0.25]),
    "negative and positive": RNG.normal(0, 50, 50_000),
    "tiny to huge": 10.0 ** RNG.uniform(-8, 17, 50_000),
}


@pytest.mark.parametrize("name", list(DISTRIBUTIONS))
def test_every_quantile_is_within_one_percent_of_the_exact_quantile(name):
    values = DISTRIBUTIONS[name]
    s = sketch(values)
    for percent in PERCENTS:
        truth = exact(values, percent)
        estimate = ddsketch.quantile_of(s, *fraction(percent))
        assert relative_error(estimate, truth) <= ddsketch.ALPHA * (1 + 1e-9), (name, percent, estimate, truth)


def test_the_bound_is_tight_the_worst_case_error_is_alpha():
    # values just above a bucket's lower bound are estimated about ALPHA too high
    k = np.arange(-300, 300)
    low_edges = ddsketch.GAMMA ** (k - 1) * (1 + 1e-12)
    errors = [relative_error(ddsketch.quantile_of(sketch([v]), 1, 2), v) for v in low_edges]
    assert 0.0099 < max(errors) <= ddsketch.ALPHA * (1 + 1e-9)


def test_values_outside_the_guaranteed_range_are_zero_or_clamped_but_ranks_stay_exact():
    s = sketch([0.0, 1e-12, -1e-12, 5.0, 1e25])
    assert [ddsketch.quantile_of(s, p, 4) for p in range(5)][:3] == [0.0, 0.0, 0.0]
    assert relative_error(ddsketch.quantile_of(s, 3, 4), 5.0) <= 0.01
    top = ddsketch.quantile_of(s, 1, 1)
    assert ddsketch.MAX_MAGNITUDE <= top <= ddsketch.MAX_MAGNITUDE * 1.02  # clamped into the top bucket
    assert ddsketch.quantile_of(sketch([-1e25, 1.0]), 0, 1) == -top


def test_slots_increase_with_the_value():
    values = np.sort(np.concatenate([-DISTRIBUTIONS["tiny to huge"], [0.0], DISTRIBUTIONS["tiny to huge"]]))
    slots = ddsketch.slots(values)
    assert np.all(np.diff(slots) >= 0) and slots.min() >= 0 and slots.max() < ddsketch.SLOTS


def test_empty_sketches_are_null_and_have_no_quantile():
    assert sketch([]) is None and sketch([np.nan]) is None
    assert ddsketch.quantile_of(None, 1, 2) is None
    merged = ddsketch.merge(pa.array([None, sketch([1.0]), None], pa.binary()), np.array([0, 1, 0]), 3)
    assert merged.to_pylist() == [None, sketch([1.0]), None]


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.one_of(st.floats(-1e6, 1e6, allow_nan=False), st.integers(0, 100).map(float)),
                       min_size=1, max_size=200),
       data=st.data())
def test_any_batch_split_and_order_gives_the_same_sketch_as_one_pass(values, data):
    groups = data.draw(st.lists(st.integers(0, 3), min_size=len(values), max_size=len(values)))
    order = data.draw(st.permutations(range(len(values))))
    cuts = sorted(data.draw(st.sets(st.integers(1, max(len(values) - 1, 1)), max_size=5)))
    values, groups = np.array(values)[order], np.array(groups, np.int64)[order]
    one_pass = ddsketch.encode(*ddsketch.reduce(groups, ddsketch.slots(values)), 4)
    batches = [ddsketch.encode(*ddsketch.reduce(groups[a:b], ddsketch.slots(values[a:b])), 4)
               for a, b in zip([0, *cuts], [*cuts, len(values)]) if a < b]
    stacked = pa.concat_arrays(batches[::-1])  # batches merged in another order than they came
    gid = np.tile(np.arange(4), len(batches))
    assert ddsketch.merge(stacked, gid, 4).to_pylist() == one_pass.to_pylist()


def test_sql_form_is_the_entries_without_the_header():
    s = sketch([0.0, 1.0, 2.0, 2.0, -5.0])
    (lists,) = ddsketch.to_lists(pa.array([s], pa.binary())).to_pylist()
    decoded = [(r & 8191, r >> 13) for r in lists]
    zero = ddsketch.ZERO_SLOT
    assert [c for _, c in decoded] == [1, 1, 1, 2] and decoded[1][0] == zero and decoded[0][0] < zero
    assert [slot for slot, _ in decoded] == sorted(slot for slot, _ in decoded)
    assert ddsketch.to_lists(pa.array([None], pa.binary())).to_pylist() == [None]


@pytest.mark.parametrize("blob, problem", [
    (b"\x00" * 16, "header"),
    (np.array([ddsketch.HEADER], "<u8").tobytes(), "whole 64-bit"),
    (np.array([ddsketch.HEADER], "<u8").tobytes() + b"\x01\x02", "whole 64-bit"),
    (np.array([ddsketch.HEADER, (1 << 13) | 8191], "<u8").tobytes(), "out of range"),
    (np.array([ddsketch.HEADER, 5], "<u8").tobytes(), "out of range"),
])
def test_corrupt_sketches_raise_sketch_error(blob, problem):
    with pytest.raises(SketchError, match=problem):
        ddsketch.decode(pa.array([blob], pa.binary()))


def test_sketch_size_grows_with_the_spread_of_the_values_not_their_number():
    narrow = sketch(RNG.uniform(100, 200, 100_000))
    wide = sketch(RNG.uniform(1, 3000, 1_000))
    # ln(200 / 100) / ln(gamma) ~ 35 buckets; ln(3000) / ln(gamma) ~ 400 at most
    assert len(narrow) == 8 * (1 + 35) and len(wide) <= 8 * (1 + 401)
