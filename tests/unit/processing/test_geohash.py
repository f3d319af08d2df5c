"""Vectorized geohash against known values and the scalar bisection."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from chalicelib.processing.geohash import geohash_encode, geohash_scalar


@pytest.mark.parametrize("lat,lon,precision,expected", [
    (42.605, -5.603, 5, "ezs42"),            # Wikipedia's example
    (57.64911, 10.40744, 11, "u4pruydqqvj"),  # geohash.org's example
    (52.52, 13.405, 5, "u33dc"),              # Berlin
    (-33.87, 151.21, 5, "r3gx2"),             # Sydney
    (0.0, 0.0, 5, "s0000"),
    (-90.0, -180.0, 5, "00000"),
    (90.0, 180.0, 5, "zzzzz"),
])
def test_known_geohashes(lat, lon, precision, expected):
    assert geohash_scalar(lat, lon, precision) == expected
    assert geohash_encode(np.array([lat]), np.array([lon]), precision).to_pylist() == [expected]


def test_invalid_coordinates_give_null():
    lat = np.array([np.nan, 91.0, 10.0, 10.0, -90.5])
    lon = np.array([0.0, 0.0, np.nan, 180.5, 0.0])
    assert geohash_encode(lat, lon, 5).to_pylist() == [None] * 5


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(-90, 90), st.floats(-180, 180)), min_size=1, max_size=20),
       st.integers(1, 12))
def test_vectorized_geohash_equals_the_scalar_bisection(points, precision):
    lat = np.array([p[0] for p in points])
    lon = np.array([p[1] for p in points])
    assert geohash_encode(lat, lon, precision).to_pylist() == [geohash_scalar(a, b, precision) for a, b in points]


def test_cell_boundaries_match_the_bisection_exactly():
    # Values just around the exact cell edges of a 5-character geohash.
    edges = np.array([-90 + 180 * k / 4096 for k in range(0, 4097, 37)])
    lat = np.clip(np.concatenate([edges, np.nextafter(edges, -np.inf), np.nextafter(edges, np.inf)]), -90, 90)
    lon = np.clip(lat * 2, -180, 180)
    assert geohash_encode(lat, lon, 5).to_pylist() == [geohash_scalar(a, b, 5) for a, b in zip(lat, lon)]
