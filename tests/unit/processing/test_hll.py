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


def test_small_register_sketches_estimate_exactly_without_register_collisions():
    values = [f"u{i}" for i in range(20)]
    reg, _ = hll.registers(hll.hash_strings(pa.array(values))[0])
    assert len(set(reg.tolist())) == 20  # no two values share a register here
    assert round(hll.estimate_sketch(registers_only(values))) == 20


def registers_only(values: list[str]) -> bytes:
    """The register sketch of some values (what a sketch above EXACT_MAX holds)."""
    hashes, valid = hll.hash_strings(pa.array(values, pa.string()))
    reg, rank = hll.registers(hashes[valid])
    return hll.encode(*hll.reduce_registers(np.zeros(len(reg), np.int64), reg, rank, 1), 1)[0].as_py()


def test_exact_set_up_to_exact_max_values_then_registers():
    at, above = [f"a{i}" for i in range(hll.EXACT_MAX)], [f"a{i}" for i in range(hll.EXACT_MAX + 1)]
    assert len(hll.sketch_of(at)) == 4 + 8 * hll.EXACT_MAX  # 8 bytes per value
    assert hll.cardinality(pa.array([hll.sketch_of(at)], pa.binary()))[1].tolist() == [True]
    assert hll.estimate_sketch(hll.sketch_of(at)) == hll.EXACT_MAX
    assert hll.sketch_of(above) == registers_only(above)
    assert hll.cardinality(pa.array([hll.sketch_of(above)], pa.binary()))[1].tolist() == [False]


def test_register_sketches_are_sparse_until_1024_registers_then_dense():
    small, big = registers_only([f"a{i}" for i in range(300)]), registers_only([f"a{i}" for i in range(5000)])
    assert len(small) == 4 + 4 * (len(small) // 4 - 1) and len(small) < 4096
    assert len(big) == 4 + 4096


def test_duplicates_and_nulls_do_not_count():
    assert hll.sketch_of(["a", "b", "a", None, "b"]) == hll.sketch_of(["b", "a"])
    assert hll.estimate_sketch(hll.sketch_of(["a", "b", "a", None, "b"])) == 2
    assert hll.sketch_of([]) == hll.sketch_of([None]) == hll.EMPTY


@settings(max_examples=40, deadline=None)
@given(n=st.one_of(st.integers(0, 60), st.integers(hll.EXACT_MAX - 30, hll.EXACT_MAX + 30), st.integers(5000, 9000)),
       cuts=st.lists(st.integers(0, 9000), max_size=5), seed=st.integers(0, 2**32 - 1))
def test_any_split_and_order_gives_the_one_pass_bytes_and_small_counts_are_exact(n, cuts, seed):
    values = [f"user-{i}" for i in range(n)] + [f"user-{i}" for i in range(0, n, 7)]  # with repeats
    rng = np.random.default_rng(seed)
    rng.shuffle(values)
    bounds = sorted({0, len(values), *[c % (len(values) + 1) for c in cuts]})
    parts = [hll.sketch_of(values[a:b]) for a, b in zip(bounds, bounds[1:])] or [hll.sketch_of([])]
    rng.shuffle(parts)
    merged = hll.merge(pa.array(parts, pa.binary()), np.zeros(len(parts), np.int64), 1)[0].as_py()
    assert merged == hll.sketch_of(values)
    count, exact = hll.cardinality(pa.array([merged], pa.binary()))
    assert exact[0] == (n <= hll.EXACT_MAX)
    if n <= hll.EXACT_MAX:
        assert count[0] == n
    else:
        assert abs(count[0] - n) <= error_bound(n)


def test_merging_exact_sets_past_exact_max_switches_to_the_union_registers():
    left, right = [f"v{i}" for i in range(3000)], [f"v{i}" for i in range(2000, 5000)]
    both = pa.array([hll.sketch_of(left), hll.sketch_of(right)], pa.binary())
    assert hll.merge(both, np.zeros(2, np.int64), 1)[0].as_py() == registers_only(left + right)


def test_an_exact_part_merged_into_registers_adds_its_registers():
    big, small = [f"v{i}" for i in range(6000)], ["new-1", "new-2", "v3"]
    parts = pa.array([hll.sketch_of(small), hll.sketch_of(big)], pa.binary())
    assert hll.merge(parts, np.zeros(2, np.int64), 1)[0].as_py() == registers_only(big + small)


def test_groups_merge_independently_and_a_group_of_one_row_keeps_its_bytes():
    a, b, c = hll.sketch_of(["x", "y"]), hll.sketch_of(["y", "z"]), hll.sketch_of([f"w{i}" for i in range(5000)])
    merged = hll.merge(pa.array([a, c, b, None], pa.binary()), np.array([0, 1, 0, 3]), 4).to_pylist()
    assert merged == [hll.sketch_of(["x", "y", "z"]), c, hll.EMPTY, hll.EMPTY]


def test_version_1_register_sketches_are_read_and_merge_as_registers():
    v1 = bytearray(registers_only(["p", "q", "r"]))
    v1[1] = 1  # the header's version byte: what the code before the exact form wrote
    count, exact = hll.cardinality(pa.array([bytes(v1), hll.HEADER_SPARSE.to_bytes(4, "little")[:1] + b"\x01\x0c\x00"],
                                            pa.binary()))
    assert np.rint(count).tolist() == [3.0, 0.0] and exact.tolist() == [False, True]  # an empty v1 sketch: exact
    merged = hll.merge(pa.array([bytes(v1), hll.sketch_of(["s"])], pa.binary()), np.zeros(2, np.int64), 1)
    assert merged[0].as_py() == registers_only(["p", "q", "r", "s"])


def test_sql_hashes_are_the_exact_sets_and_null_for_register_sketches():
    sketches = pa.array([hll.sketch_of(["b", "a"]), hll.sketch_of([]), registers_only(["a"])], pa.binary())
    hashes = sorted(hll.hash_bytes(v) for v in (b"a", b"b"))
    as_signed = [h - (1 << 64) if h >= 1 << 63 else h for h in hashes]
    assert hll.sql_hashes(sketches).to_pylist() == [as_signed, [], None]


def test_coded_build_equals_the_plain_build():
    values = pa.array([f"u{i % 50}" for i in range(400)])
    gid = np.arange(400) % 3
    encoded = values.dictionary_encode()
    hashes, _ = hll.hash_strings(encoded.dictionary)
    order = np.argsort(hashes)
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    coded = hll.build_coded(gid, rank[encoded.indices.to_numpy()], hashes[order], 4)
    assert coded.to_pylist() == hll.build(gid, hll.hash_strings(values)[0], 4).to_pylist()
    assert hll.build_coded(gid, rank[encoded.indices.to_numpy()], hashes[order], 4, exact_max=10).to_pylist() == \
        hll.build(gid, hll.hash_strings(values)[0], 4, exact_max=10).to_pylist()


def test_canonical_turns_exact_sets_above_the_limit_into_registers():
    values = [f"v{i}" for i in range(5000)]
    hashes, _ = hll.hash_strings(pa.array(values))
    unlimited = hll.build(np.zeros(5000, np.int64), hashes, 1, exact_max=None)
    assert hll.estimate_sketch(unlimited[0].as_py()) == 5000
    assert hll.canonical(unlimited)[0].as_py() == hll.sketch_of(values)


def test_decode_then_encode_round_trips_register_sketches():
    sketches = pa.array([registers_only(["x"]), registers_only([str(i) for i in range(4000)]), None], pa.binary())
    row, reg, rank = hll.decode(sketches)
    g, r, k = hll.reduce_registers(row, reg, rank, 3)
    assert hll.encode(g, r, k, 3).to_pylist() == sketches.to_pylist()[:2] + [hll.EMPTY]


@pytest.mark.parametrize("bad", [b"abc", b"\x00\x00\x00\x00", (hll.HEADER_DENSE).to_bytes(4, "little") + b"\x00" * 8,
                                 (hll.HEADER_SPARSE).to_bytes(4, "little") + (5 << 8).to_bytes(4, "little"),
                                 hll.EMPTY + b"\x01\x00\x00\x00",  # half a hash
                                 hll.EMPTY + (2).to_bytes(8, "little") + (1).to_bytes(8, "little")])  # not ascending
def test_corrupt_sketches_raise(bad):
    with pytest.raises(SketchError):
        hll.decode(pa.array([bad], pa.binary()))
