"""How an (app, hour) is sized into finalization units (chalicelib/lake/units.py, pure).

Rules: a slice reads its window range plus the rest of the windows it owns (no more); the slice
count is the fewest whose largest read fits a unit; bounds on the windows' boundaries cost no
re-read; when nothing fits, the count with the smallest largest read.
"""

from __future__ import annotations

from chalicelib.lake.units import read_shares, sizing, slices_for
from chalicelib.processing import parse_metrics_yaml

DT, HOUR = "2026-01-01", "12"


def metrics(*windows: str):
    body = "metrics:\n" + "".join(
        f"  - name: m{i}\n    window: {w}\n    measures: {{n: count}}\n" for i, w in enumerate(windows))
    return parse_metrics_yaml(body)


def test_tumbling_slices_on_window_bounds_read_only_their_share():
    five = metrics("{tumbling: 5m}", "{tumbling: 1m}")
    assert read_shares(five, DT, HOUR, 12) == [1 / 12] * 12  # 5-minute slices: nothing past their end
    shares = read_shares(five, DT, HOUR, 24)  # 2.5-minute slices: every other one reads to the next 5-minute bound
    assert shares[0] == 5 / 60 and shares[1] == 2.5 / 60


def test_a_hopping_window_widens_every_slice_by_size_minus_slide():
    hopping = metrics("{hopping: {size: 5m, slide: 1m}}")
    assert all(abs(s - (5 + 4) / 60) < 1e-12 for s in read_shares(hopping, DT, HOUR, 12))


def test_the_fewest_slices_whose_largest_read_fits_and_aligned_counts_win():
    five = metrics("{tumbling: 5m}")
    shares = sizing(five, DT, HOUR)
    assert slices_for(1_000_000, 2_500_000, shares) == 1
    # 20M rows: 8 slices read 10 of 60 minutes (3.3M), 12 five-minute slices read 1.67M each
    assert slices_for(20_000_000, 2_500_000, shares) == 12
    for n in range(1, 12):
        assert 20_000_000 * max(shares(n)) > 2_500_000


def test_when_one_window_holds_more_than_a_unit_the_smallest_largest_read():
    five = metrics("{tumbling: 5m}")
    shares = sizing(five, DT, HOUR)
    n = slices_for(50_000_000, 2_500_000, shares)
    assert max(shares(n)) == min(max(shares(k)) for k in range(1, 61)) == 5 / 60
    assert n == 12  # the fewest slices reaching that read
