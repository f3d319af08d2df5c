"""Mergeable quantile sketches (DDSketch-style log buckets), vectorized with numpy.

A sketch counts values per logarithmic bucket, so any quantile is known
within a *relative* error, and two sketches merge by adding their counts.
Every step works on all groups of a batch at once (no Python per value).

Buckets and error
-----------------
* Relative accuracy ``ALPHA = 0.01``; ``GAMMA = (1 + ALPHA) / (1 - ALPHA)``.
* A magnitude ``x`` falls in bucket ``k = ceil(log_GAMMA(x))``, the interval
  ``(GAMMA**(k-1), GAMMA**k]``, whose estimate ``2 * GAMMA**k / (GAMMA + 1)``
  is within ``ALPHA`` of every value in it (DDSketch, Masson et al. 2019).
* The bucket range is fixed (no collapsing), so a sketch does not depend on
  the order values arrive in: magnitudes ``MIN_MAGNITUDE = 1e-9`` to
  ``MAX_MAGNITUDE = 1e18`` keep the 1 % guarantee.  Magnitudes below 1e-9
  (0 included) go to the *zero bucket*, estimated as 0 (absolute error under
  1e-9); magnitudes above 1e18 are clamped into the top bucket (estimated
  about 1e18; their ranks, and so every other quantile, stay exact).
* Negative values have mirrored buckets.  All buckets are numbered by one
  *slot* that increases with the value: ``ZERO_SLOT - 1 - i`` for the i-th
  negative bucket, ``ZERO_SLOT`` for zero, ``ZERO_SLOT + 1 + i`` for the
  i-th positive one (``i = k - K_MIN``), in ``0 .. SLOTS - 1`` (< 2**13).

Quantile
--------
For ``q = num / den`` and ``n`` values, the estimate is that of the value of
0-based rank ``r = floor(num * (n - 1) / den)`` in sorted order, i.e. of
``numpy.quantile(values, q, method="lower")``: the estimate of the first
slot whose cumulative count exceeds ``r`` (DDSketch's definition).  ``r`` is
computed with integers, so Python and SQL (the views) pick the same slot.

Storage
-------
* Partials: a ``binary`` column; a sketch is little-endian uint64 words,
  word 0 the header ``0x44 | version << 8 | SLOT_BITS << 16``, then one word
  per non-empty slot, ``count << 13 | slot``, sorted by slot; an empty sketch
  is null.  The form is canonical: equal counts give equal bytes, so any
  split of the values into batches, merged in any order, gives the same
  sketch as one pass.
* SQL (:func:`to_lists`, written beside it in the lake as ``<f>__buckets``,
  ``array<bigint>``): the same words without the header, so a view merges
  sketches with ``UNNEST``, ``slot = r % 8192``, ``count = floor(r / 8192)``
  and a sum per slot (sql/README.md).
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa

from .errors import SketchError
from .strhash import _string_buffers

VERSION = 1
ALPHA = 0.01
GAMMA = (1 + ALPHA) / (1 - ALPHA)
LN_GAMMA = math.log1p(2 * ALPHA / (1 - ALPHA))
MIN_MAGNITUDE = 1e-9
MAX_MAGNITUDE = 1e18
K_MIN = math.ceil(math.log(MIN_MAGNITUDE) / LN_GAMMA)
K_MAX = math.ceil(math.log(MAX_MAGNITUDE) / LN_GAMMA)
BUCKETS = K_MAX - K_MIN + 1  # per sign
ZERO_SLOT = BUCKETS
SLOTS = 2 * BUCKETS + 1
SLOT_BITS = 13
SLOT_MASK = (1 << SLOT_BITS) - 1
assert SLOTS <= 1 << SLOT_BITS
HEADER = 0x44 | (VERSION << 8) | (SLOT_BITS << 16)
#: Format parameters, recorded in the partials' metadata.
PARAMS = {"alpha": ALPHA, "min": MIN_MAGNITUDE, "max": MAX_MAGNITUDE, "slot_bits": SLOT_BITS, "version": VERSION}


def _slot_values() -> np.ndarray:
    distance = np.arange(SLOTS, dtype=np.int64) - ZERO_SLOT
    k = np.abs(distance) + K_MIN - 1
    magnitude = 2.0 * np.power(GAMMA, k.astype(np.float64)) / (GAMMA + 1.0)
    return np.where(distance == 0, 0.0, np.sign(distance) * magnitude)


#: The estimate of each slot.
SLOT_VALUES = _slot_values()


# ------------------------------------------------------------------ add
def slots(values: np.ndarray) -> np.ndarray:
    """Slot of each (finite) value.

    Args:
        values: float64 values, without NaN.

    Returns:
        int64 slots in ``0 .. SLOTS - 1``, increasing with the value.
    """
    values = np.asarray(values, dtype=np.float64)
    magnitude = np.abs(values)
    small = magnitude < MIN_MAGNITUDE
    with np.errstate(divide="ignore"):
        k = np.ceil(np.log(np.where(small, 1.0, magnitude)) / LN_GAMMA)
    index = np.clip(k, K_MIN, K_MAX).astype(np.int64) - K_MIN + 1
    return np.where(small, ZERO_SLOT, ZERO_SLOT + np.where(values < 0, -index, index))


def reduce(gid: np.ndarray, slot: np.ndarray, count: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """Counts per (group, slot): the sketch *add* / *merge* step.

    Args:
        gid: int64 group of each observation.
        slot: slot of each observation.
        count: int64 weight of each observation (default 1 each).

    Returns:
        ``(gid, slot, count)`` with one entry per non-empty (group, slot),
        sorted by group then slot.
    """
    key = np.asarray(gid, dtype=np.int64) * SLOTS + np.asarray(slot, dtype=np.int64)
    if count is None:
        uniq, counts = np.unique(key, return_counts=True)
        counts = counts.astype(np.int64)
    else:
        order = np.argsort(key, kind="stable")
        key = key[order]
        starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if len(key) else np.zeros(0, np.int64)
        uniq = key[starts]
        counts = np.add.reduceat(np.asarray(count, np.int64)[order], starts) if len(key) else np.zeros(0, np.int64)
    return uniq // SLOTS, uniq % SLOTS, counts


# ------------------------------------------------------------ encoding
def encode(gid: np.ndarray, slot: np.ndarray, count: np.ndarray, n_groups: int) -> pa.Array:
    """Sketches of ``n_groups`` groups from reduced entries (see :func:`reduce`).

    Returns:
        A ``binary`` array, null for a group without values.
    """
    gid = np.asarray(gid, np.int64)
    per_group = np.bincount(gid, minlength=n_groups)
    words_per = np.where(per_group > 0, per_group + 1, 0)
    word_off = np.zeros(n_groups + 1, dtype=np.int64)
    np.cumsum(words_per, out=word_off[1:])
    words = np.zeros(int(word_off[-1]), dtype="<u8")
    words[word_off[:-1][per_group > 0]] = HEADER
    first = np.zeros(n_groups + 1, dtype=np.int64)
    np.cumsum(per_group, out=first[1:])
    k = np.arange(len(gid), dtype=np.int64) - first[gid]
    words[word_off[gid] + 1 + k] = ((np.asarray(count, np.int64) << SLOT_BITS)
                                    | np.asarray(slot, np.int64)).astype(np.uint64)
    byte_off = word_off * 8
    validity = pa.array(per_group > 0).buffers()[1]
    null_count = int(np.count_nonzero(per_group == 0))
    if byte_off[-1] < 2**31:
        return pa.Array.from_buffers(pa.binary(), n_groups, [validity, pa.py_buffer(byte_off.astype(np.int32)),
                                                              pa.py_buffer(words)], null_count=null_count)
    return pa.Array.from_buffers(pa.large_binary(), n_groups, [validity, pa.py_buffer(byte_off), pa.py_buffer(words)],
                                 null_count=null_count).cast(pa.binary())


def decode(sketches: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Explode sketches into ``(row, slot, count)`` entries (nulls are empty), sorted by row.

    Raises:
        SketchError: a sketch is corrupt or of another format.
    """
    if isinstance(sketches, pa.ChunkedArray):
        sketches = sketches.combine_chunks() if sketches.num_chunks != 1 else sketches.chunk(0)
    empty = np.zeros(0, np.int64)
    if len(sketches) == 0:
        return empty, empty, empty
    offsets, data = _string_buffers(sketches)
    valid = np.ones(len(sketches), bool) if sketches.null_count == 0 else \
        sketches.is_valid().to_numpy(zero_copy_only=False)
    lengths = np.where(valid, offsets[1:] - offsets[:-1], 0)
    if np.any(lengths % 8) or np.any(lengths == 8):
        raise SketchError("quantile sketch is not a header and whole 64-bit entries")
    base = int(offsets[0])
    raw = data[base:int(offsets[-1])]
    words = np.frombuffer(raw.tobytes() if raw.ctypes.data % 8 else raw, dtype="<u8")
    rows = np.flatnonzero(lengths)
    start = (offsets[:-1][rows] - base) // 8
    if np.any(words[start] != HEADER):
        raise SketchError("unknown quantile sketch header (format, version or slot bits differ)")
    counts = lengths[rows] // 8 - 1
    first = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(counts, out=first[1:])
    k = np.arange(int(first[-1]), dtype=np.int64) - np.repeat(first[:-1], counts)
    packed = words[np.repeat(start + 1, counts) + k].astype(np.int64)
    slot, count = packed & SLOT_MASK, packed >> SLOT_BITS
    if len(packed) and (slot.max() >= SLOTS or count.min() < 1):
        raise SketchError("quantile sketch entry out of range (slot or count)")
    return np.repeat(rows, counts), slot, count


def to_lists(sketches: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The SQL form: ``list<int64>`` of ``count * 8192 + slot`` per sketch (null when empty)."""
    row, slot, count = decode(sketches)
    per_row = np.bincount(row, minlength=len(sketches))
    offsets = np.zeros(len(sketches) + 1, dtype=np.int32)
    np.cumsum(per_row, out=offsets[1:])
    values = pa.array((count << SLOT_BITS) | slot, pa.int64())
    return pa.ListArray.from_arrays(pa.array(offsets), values, type=pa.list_(pa.int64()), mask=pa.array(per_row == 0))


def merge(sketches: pa.Array | pa.ChunkedArray, gid: np.ndarray, n_groups: int) -> pa.Array:
    """Slot-wise sum of the sketches of each group (the *merge* step)."""
    row, slot, count = decode(sketches)
    return encode(*reduce(np.asarray(gid, np.int64)[row], slot, count), n_groups)


# ------------------------------------------------------------ quantile
def quantiles(sketches: pa.Array | pa.ChunkedArray, num: int, den: int) -> np.ndarray:
    """The ``q = num / den`` quantile estimate of each sketch (see the module doc).

    Returns:
        float64 per row, NaN for an empty sketch.
    """
    n_rows = len(sketches)
    row, slot, count = decode(sketches)
    order = np.lexsort((slot, row))
    if np.any(order != np.arange(len(order))):  # canonical sketches are sorted already
        row, slot, count = row[order], slot[order], count[order]
    through = np.cumsum(count)
    starts = np.searchsorted(row, np.arange(n_rows), side="left")
    ends = np.searchsorted(row, np.arange(n_rows), side="right")
    before = np.where(starts > 0, through[np.maximum(starts - 1, 0)] if len(through) else 0, 0)
    total = np.where(ends > 0, through[np.maximum(ends - 1, 0)] if len(through) else 0, 0) - before
    has = total > 0
    rank = (num * np.maximum(total - 1, 0)) // den
    pick = np.searchsorted(through, before + rank, side="right")
    out = np.full(n_rows, np.nan)
    out[has] = SLOT_VALUES[slot[pick[has]]]
    return out


# ------------------------------------------------------ scalar conveniences
def sketch_of(values) -> bytes | None:  # noqa: ANN001 - any sequence of numbers
    """One serialized sketch of some values, None when there are none (for tests and small callers)."""
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    g, s, c = reduce(np.zeros(len(values), np.int64), slots(values))
    return encode(g, s, c, 1)[0].as_py()


def quantile_of(sketch: bytes | None, num: int, den: int) -> float | None:
    """The quantile estimate of one serialized sketch (None when empty)."""
    value = quantiles(pa.array([sketch], pa.binary()), num, den)[0]
    return None if np.isnan(value) else float(value)
