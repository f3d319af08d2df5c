"""Mergeable HyperLogLog sketches, vectorized with numpy.

Why our own HLL rather than ``datasketches.hll_sketch``: the datasketches
Python binding only updates one value per call, i.e. a Python call per event
and per metric (about 1 µs each, more than our whole per-event budget).
Here every step is a numpy operation over all events of a batch: hash,
register/rank, per-group register maximum, serialization, merge and
estimate.

Parameters and error
--------------------
* ``p = 12``: ``m = 4096`` registers.  Register index = the top 12 bits of
  a 64-bit hash; rank = 1 + the number of leading zeros of the remaining
  52 bits (1..53).
* Estimator: Ertl's "improved raw estimator" (O. Ertl, *New cardinality
  estimation algorithms for HyperLogLog sketches*, 2017, algorithm 6).  It
  needs no empirical bias tables and no switch to linear counting: for small
  cardinalities it behaves like linear counting, for large ones like the
  classic estimator.
* Relative standard error ``1.04 / sqrt(4096) = 1.625 %`` for large
  cardinalities.  For small ones (n up to a few hundred) the error is the
  linear-counting error, about ``sqrt(m * (exp(n/m) - n/m - 1))``: under
  1 distinct value for n <= 60 and about 2 for n = 200; the estimate is
  exact whenever no two values share a register.  Tests use the bound
  ``|estimate - n| <= 3 + 4 * 0.01625 * n`` (4 standard errors).
* Merging is an element-wise maximum of the registers: associative,
  commutative and idempotent, so any split of the events into batches,
  shards and arrival orders yields *byte-identical* sketches.

Values are hashed with EPH64 (:mod:`.strhash`), a hash defined in this
package so that sketches stay mergeable across library versions.

Binary format (a ``binary`` column; little-endian uint32 words)
----------------------------------------------------------------
* word 0, the header: ``0x48 | version(1) << 8 | p << 16 | kind << 24``.
* kind 0, *sparse*: one word per non-empty register,
  ``register << 8 | rank``, sorted by register.
* kind 1, *dense*: 4096 bytes, byte ``i`` = rank of register ``i``.
* The form is canonical: sparse iff fewer than 1024 registers are set (the
  sparse form is then the smaller), so equal registers give equal bytes.
  A null sketch is an empty one.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import SketchError
from .strhash import _string_buffers, hash_bytes, hash_strings  # noqa: F401 - re-exported

P = 12
M = 1 << P
Q = 64 - P  # bits left for the rank
MAX_RANK = Q + 1
VERSION = 1
_MAGIC = 0x48
_SPARSE, _DENSE = 0, 1
HEADER_SPARSE = _MAGIC | (VERSION << 8) | (P << 16) | (_SPARSE << 24)
HEADER_DENSE = _MAGIC | (VERSION << 8) | (P << 16) | (_DENSE << 24)
DENSE_MIN_REGISTERS = M // 4  # 1024: from here on the dense form is smaller
DENSE_WORDS = M // 4
RELATIVE_STANDARD_ERROR = 1.04 / np.sqrt(M)

#: Largest dense scratch array (groups * 4096 bytes) used by reduce_registers.
_DENSE_SCRATCH_BYTES = 1 << 25
_U = np.uint64


def registers(hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Register index (top ``p`` bits) and rank (1..53) of each hash.

    Args:
        hashes: uint64 hashes.

    Returns:
        ``(register int64, rank uint8)``.
    """
    hashes = np.asarray(hashes, dtype=np.uint64)
    reg = (hashes >> _U(Q)).astype(np.int64)
    low = (hashes & _U((1 << Q) - 1)).astype(np.float64)  # < 2**52: exact
    _, bit_length = np.frexp(low)  # frexp(0) gives 0
    rank = (MAX_RANK - bit_length).astype(np.uint8)
    return reg, rank


# ------------------------------------------------------- register algebra
def reduce_registers(gid: np.ndarray, reg: np.ndarray, rank: np.ndarray,
                     n_groups: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per (group, register) maximum rank: the HLL *add*/*merge* step.

    Args:
        gid: int64 group number of each observation (0..n_groups-1).
        reg: register index of each observation.
        rank: rank of each observation.
        n_groups: number of groups.

    Returns:
        ``(gid, reg, rank)`` with one entry per non-empty register, sorted by
        group then register.
    """
    gid = np.asarray(gid, dtype=np.int64)
    key = gid * M + np.asarray(reg, dtype=np.int64)
    rank = np.asarray(rank, dtype=np.uint8)
    if n_groups * M <= _DENSE_SCRATCH_BYTES:
        dense = np.zeros(n_groups * M, dtype=np.uint8)
        np.maximum.at(dense, key, rank)
        nz = np.flatnonzero(dense)
        return nz >> P, nz & (M - 1), dense[nz]
    # Many groups: factorize the (group, register) keys with a hash table,
    # take the maximum per key, then sort only the distinct keys.
    encoded = pc.dictionary_encode(pa.array(key))
    slots = encoded.indices.to_numpy()
    best = np.zeros(len(encoded.dictionary), dtype=np.uint8)
    np.maximum.at(best, slots, rank)
    packed = np.sort((encoded.dictionary.to_numpy() << 6) | best.astype(np.int64))
    keys = packed >> 6
    return keys >> P, keys & (M - 1), (packed & 63).astype(np.uint8)


def encode(gid: np.ndarray, reg: np.ndarray, rank: np.ndarray, n_groups: int) -> pa.Array:
    """Serialize reduced register entries to one sketch per group.

    Args:
        gid, reg, rank: entries as returned by :func:`reduce_registers`
            (one per non-empty register, sorted by group then register).
        n_groups: number of groups; groups without entries get an empty
            sketch.

    Returns:
        A ``pa.binary()`` array of ``n_groups`` sketches.
    """
    gid = np.asarray(gid, dtype=np.int64)
    reg = np.asarray(reg, dtype=np.int64)
    rank = np.asarray(rank, dtype=np.uint8)
    nnz = np.bincount(gid, minlength=n_groups)
    dense = nnz >= DENSE_MIN_REGISTERS
    words_per = np.where(dense, 1 + DENSE_WORDS, 1 + nnz)
    word_off = np.zeros(n_groups + 1, dtype=np.int64)
    np.cumsum(words_per, out=word_off[1:])
    out = np.zeros(int(word_off[-1]), dtype="<u4")
    out[word_off[:-1]] = np.where(dense, HEADER_DENSE, HEADER_SPARSE).astype(np.uint32)
    first = np.zeros(n_groups + 1, dtype=np.int64)
    np.cumsum(nnz, out=first[1:])
    entry_dense = dense[gid]
    sp = ~entry_dense
    k = np.arange(len(gid), dtype=np.int64) - first[gid]
    out[word_off[gid[sp]] + 1 + k[sp]] = ((reg[sp] << 8) | rank[sp]).astype(np.uint32)
    out_bytes = out.view(np.uint8)
    out_bytes[(word_off[gid[entry_dense]] + 1) * 4 + reg[entry_dense]] = rank[entry_dense]
    byte_off = word_off * 4
    if byte_off[-1] < 2**31:
        return pa.Array.from_buffers(pa.binary(), n_groups,
                                     [None, pa.py_buffer(byte_off.astype(np.int32)), pa.py_buffer(out)])
    return pa.Array.from_buffers(pa.large_binary(), n_groups,
                                 [None, pa.py_buffer(byte_off), pa.py_buffer(out)]).cast(pa.binary())


def _decode_parts(sketches: pa.Array | pa.ChunkedArray):  # noqa: ANN202 - internal
    """Sparse entries ``(row, reg, rank)`` and dense rows ``(rows, matrix)``."""
    if isinstance(sketches, pa.ChunkedArray):
        sketches = sketches.combine_chunks() if sketches.num_chunks != 1 else sketches.chunk(0)
    n = len(sketches)
    none = np.zeros(0, np.int64)
    if n == 0:
        return none, none, np.zeros(0, np.uint8), none, np.zeros((0, M), np.uint8)
    offsets, data = _string_buffers(sketches)
    valid = np.ones(n, bool) if sketches.null_count == 0 else \
        sketches.is_valid().to_numpy(zero_copy_only=False)
    lengths = np.where(valid, offsets[1:] - offsets[:-1], 0)
    present = lengths > 0
    starts = offsets[:-1]
    if np.any(lengths % 4) or np.any(starts[present] % 4 != offsets[0] % 4):
        raise SketchError("sketch length is not a whole number of 32-bit words")
    base = int(offsets[0])
    raw = data[base:int(offsets[-1])]
    words = np.frombuffer(raw.tobytes() if raw.ctypes.data % 4 else raw, dtype="<u4")
    wstart = (starts - base) // 4
    wlen = lengths // 4
    rows = np.flatnonzero(present)
    headers = words[wstart[rows]].astype(np.int64)
    is_dense = headers == HEADER_DENSE
    if not np.all(is_dense | (headers == HEADER_SPARSE)):
        raise SketchError("unknown sketch header (format, version or precision differ)")
    if np.any(wlen[rows[is_dense]] != 1 + DENSE_WORDS):
        raise SketchError("dense sketch of the wrong size")
    sparse_rows = rows[~is_dense]
    counts = wlen[sparse_rows] - 1
    first = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=first[1:])
    k = np.arange(int(first[-1]), dtype=np.int64) - np.repeat(first[:-1], counts)
    entries = words[np.repeat(wstart[sparse_rows] + 1, counts) + k].astype(np.int64)
    s_reg, s_rank = entries >> 8, (entries & 0xFF).astype(np.uint8)
    if np.any(s_reg >= M) or np.any(s_rank == 0) or np.any(s_rank > MAX_RANK):
        raise SketchError("sparse sketch entry out of range")
    dense_rows = rows[is_dense]
    idx = (wstart[dense_rows] + 1)[:, None] + np.arange(DENSE_WORDS)[None, :]
    matrix = words[idx].view(np.uint8).reshape(len(dense_rows), M)
    if matrix.size and matrix.max() > MAX_RANK:
        raise SketchError("dense sketch rank out of range")
    return np.repeat(sparse_rows, counts), s_reg, s_rank, dense_rows, matrix


def decode(sketches: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Explode serialized sketches into register entries.

    Args:
        sketches: a binary array of sketches; nulls are empty sketches.

    Returns:
        ``(row, reg, rank)``: the row of the sketch each entry came from, its
        register and rank (every non-empty register of every sketch).

    Raises:
        SketchError: a sketch is corrupt or of another format/precision.
    """
    row, reg, rank, dense_rows, matrix = _decode_parts(sketches)
    if not len(dense_rows):
        return row, reg, rank
    which, d_reg = np.nonzero(matrix)
    return (np.concatenate([row, dense_rows[which]]), np.concatenate([reg, d_reg.astype(np.int64)]),
            np.concatenate([rank, matrix[which, d_reg]]))


def merge(sketches: pa.Array | pa.ChunkedArray, gid: np.ndarray, n_groups: int) -> pa.Array:
    """Register-wise maximum of the sketches of each group (HLL *merge*).

    Args:
        sketches: serialized sketches, one per row.
        gid: group of each row (0..n_groups-1).
        n_groups: number of groups.

    Returns:
        ``n_groups`` serialized sketches.
    """
    gid = np.asarray(gid, dtype=np.int64)
    if n_groups * M > _DENSE_SCRATCH_BYTES:
        row, reg, rank = decode(sketches)
        return encode(*reduce_registers(gid[row], reg, rank, n_groups), n_groups)
    row, reg, rank, dense_rows, matrix = _decode_parts(sketches)
    acc = np.zeros((n_groups, M), dtype=np.uint8)
    np.maximum.at(acc.reshape(-1), gid[row] * M + reg, rank)
    if len(dense_rows):
        # Rows of one group are folded in one at a time: within the j-th
        # round every group appears at most once, so fancy assignment is safe.
        g = gid[dense_rows]
        order = np.argsort(g, kind="stable")
        g_sorted = g[order]
        run_start = np.flatnonzero(np.r_[True, g_sorted[1:] != g_sorted[:-1]])
        occurrence = np.arange(len(g)) - np.repeat(run_start, np.diff(np.r_[run_start, len(g)]))
        for j in range(int(occurrence.max()) + 1):
            sel = order[occurrence == j]
            target = g[sel]
            acc[target] = np.maximum(acc[target], matrix[sel])
    nz = np.flatnonzero(acc)
    return encode(nz >> P, nz & (M - 1), acc.reshape(-1)[nz], n_groups)


# ---------------------------------------------------------------- estimate
def _sigma(x: np.ndarray) -> np.ndarray:
    """Ertl's sigma(x) for x < 1 (x**(2**k) underflows to 0 within 64 steps)."""
    y = np.ones_like(x)
    z = x.copy()
    for _ in range(64):
        x = x * x
        z = z + x * y
        y = y + y
    return z


def _tau(x: np.ndarray) -> np.ndarray:
    """Ertl's tau(x); tau(0) = tau(1) = 0 come out of the iteration."""
    y = np.ones_like(x)
    z = 1.0 - x
    for _ in range(64):
        x = np.sqrt(x)
        y = 0.5 * y
        z = z - (1.0 - x) ** 2 * y
    return z / 3.0


def estimate(gid: np.ndarray, rank: np.ndarray, n_groups: int) -> np.ndarray:
    """Cardinality estimate per group (Ertl's improved raw estimator).

    Args:
        gid: group of each non-empty register entry.
        rank: rank of each entry (one entry per non-empty register).
        n_groups: number of groups.

    Returns:
        float64 estimates, 0.0 for groups without entries.
    """
    hist = np.bincount(np.asarray(gid, np.int64) * (MAX_RANK + 1) + np.asarray(rank, np.int64),
                       minlength=n_groups * (MAX_RANK + 1)).reshape(n_groups, MAX_RANK + 1).astype(np.float64)
    hist[:, 0] = M - hist[:, 1:].sum(axis=1)
    z = M * _tau(1.0 - hist[:, MAX_RANK] / M)
    for k in range(Q, 0, -1):
        z = 0.5 * (z + hist[:, k])
    empty = hist[:, 0] == M
    z = z + M * _sigma(np.where(empty, 0.0, hist[:, 0] / M))
    alpha_inf = 1.0 / (2.0 * np.log(2.0))
    result = np.zeros(n_groups, dtype=np.float64)
    np.divide(alpha_inf * M * M, z, out=result, where=~empty)
    return result


# ------------------------------------------------------ scalar conveniences
def sketch_of(values: list[str | None]) -> bytes:
    """One serialized sketch of some strings (for tests and small callers)."""
    hashes, valid = hash_strings(pa.array(values, pa.string()))
    reg, rank = registers(hashes[valid])
    g, r, k = reduce_registers(np.zeros(len(reg), np.int64), reg, rank, 1)
    return encode(g, r, k, 1)[0].as_py()


def estimate_sketch(sketch: bytes) -> float:
    """Cardinality estimate of one serialized sketch."""
    row, _, rank = decode(pa.array([sketch], pa.binary()))
    return float(estimate(row, rank, 1)[0])
