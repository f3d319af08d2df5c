"""HyperLogLog: hash, serialization, merge, estimate error."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings, strategies as st

from chalicelib.processing import hll
from chalicelib.processing.errors import SketchError


def error_bound(n: int) -> float:
    """The documented bound used by the tests: 3 + 4 standard errors."""
    return 3 + 4 * hll.RELATIVE_STANDARD_ERROR * n


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=40), st.text(min_size=250, max_size=300)), max_size=30))
def test_vectorized_hash_equals_the_scalar_reference(values):
    hashes, valid = hll.hash_strings(pa.array(values, pa.string()))
    assert valid.tolist() == [v is not None for v in values]
    expected = [hll.hash_bytes(v.encode()) for v in values if v is not None]
    assert hashes[valid].tolist() == expected


def test_hash_values_are_pinned_so_old_and_new_sketches_still_merge():
    assert hll.hash_bytes(b"") == 0x9CA066F1A4AB2EEA
    assert hll.hash_bytes(b"player-00000001") == 0xA0693E8384C6BCB1
    assert hll.hash_bytes("é".encode() * 40) == 0x8DE387A3101A8184


def test_rank_is_leading_zeros_plus_one_and_register_is_the_top_bits():
    h = np.array([(5 << 52) | (1 << 51), (4095 << 52) | 1, 0], dtype=np.uint64)
    reg, rank = hll.registers(h)
    assert reg.tolist() == [5, 4095, 0]
    assert rank.tolist() == [1, 52, 53]


@pytest.mark.parametrize("n", [0, 1, 2, 10, 100, 1_000, 10_000, 100_000])
def test_estimate_is_within_the_documented_error(n):
    sketch = hll.sketch_of([f"user-{i}" for i in range(n)])
    assert abs(hll.estimate_sketch(sketch) - n) <= error_bound(n)


def test_small_cardinalities_are_exact_without_register_collisions():
    values = [f"u{i}" for i in range(20)]
    reg, _ = hll.registers(hll.hash_strings(pa.array(values))[0])
    assert len(set(reg.tolist())) == 20  # no two values share a register here
    assert round(hll.estimate_sketch(hll.sketch_of(values))) == 20


def test_sparse_until_1024_registers_then_dense():
    small, big = hll.sketch_of([f"a{i}" for i in range(300)]), hll.sketch_of([f"a{i}" for i in range(5000)])
    assert len(small) == 4 + 4 * (len(small) // 4 - 1) and len(small) < 4096
    assert len(big) == 4 + 4096


def test_duplicates_and_nulls_do_not_count():
    assert hll.sketch_of(["a", "b", "a", None, "b"]) == hll.sketch_of(["b", "a"])


def test_merge_is_register_max_so_any_split_gives_identical_bytes():
    values = [f"v{i}" for i in range(3000)]
    parts = [hll.sketch_of(values[:100]), hll.sketch_of(values[100:2500]), hll.sketch_of(values[2000:]),
             hll.sketch_of(values[:10])]
    merged = hll.merge(pa.array(parts, pa.binary()), np.zeros(4, np.int64), 1)[0].as_py()
    assert merged == hll.sketch_of(values)
    # The many-groups path (decode + reduce) must agree with the dense path.
    row, reg, rank = hll.decode(pa.array(parts, pa.binary()))
    g, r, k = hll.reduce_registers(np.zeros(len(row), np.int64), reg, rank, 1)
    assert hll.encode(g, r, k, 1)[0].as_py() == merged


def test_decode_then_encode_round_trips():
    sketches = pa.array([hll.sketch_of([]), hll.sketch_of(["x"]), hll.sketch_of([str(i) for i in range(4000)]),
                         None], pa.binary())
    row, reg, rank = hll.decode(sketches)
    g, r, k = hll.reduce_registers(row, reg, rank, 4)
    assert hll.encode(g, r, k, 4).to_pylist() == sketches.to_pylist()[:3] + [hll.sketch_of([])]


@pytest.mark.parametrize("bad", [b"abc", b"\x00\x00\x00\x00", (hll.HEADER_DENSE).to_bytes(4, "little") + b"\x00" * 8,
                                 (hll.HEADER_SPARSE).to_bytes(4, "little") + (5 << 8).to_bytes(4, "little")])
def test_corrupt_sketches_raise(bad):
    with pytest.raises(SketchError):
        hll.decode(pa.array([bad], pa.binary()))
