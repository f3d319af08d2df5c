"""Mergeable distinct-count sketches: an exact set of hashes, then HyperLogLog; vectorized with numpy.

Why our own sketch rather than ``datasketches.hll_sketch``: the datasketches
Python binding only updates one value per call, i.e. a Python call per event
and per metric (about 1 µs each, more than our whole per-event budget).
Here every step is a numpy operation over all events of a batch.

Two regimes, as in HyperLogLog++ and ClickHouse's ``uniqCombined``
----------------------------------------------------------------------
* **Exact** while a sketch holds at most :data:`EXACT_MAX` (4,096) distinct
  values: it keeps their 64-bit EPH64 hashes (:mod:`.strhash`), sorted, and
  its cardinality is their number -- exact up to hash collisions, which
  merge two of ``n`` values with probability about ``n**2 / 2**65``
  (5e-13 at 4,096, 7e-11 at 50,000).  8 bytes per value: at most 32 KiB.
* **HyperLogLog** above: ``p = 12``, ``m = 4096`` registers; register index =
  the top 12 bits of the hash, rank = 1 + the leading zeros of the other 52
  bits (1..53); estimate by Ertl's improved raw estimator
  (:mod:`.hll_estimate`), relative standard error ``1.04 / sqrt(4096) =
  1.625 %``.  Tests use ``|estimate - n| <= 3 + 4 * 0.01625 * n``.

Merging is the union of the hash sets while the union stays within
``EXACT_MAX``, else the register-wise maximum (a set's registers follow from
its hashes, so a mixed merge converts the exact side).  The form depends only
on the set of values: exact iff it has at most ``EXACT_MAX`` of them, so any
split of the events into batches, shards and arrival orders yields
*byte-identical* sketches.

Binary format (a ``binary`` column; little-endian uint32 words)
----------------------------------------------------------------
* word 0, the header: ``0x48 | version << 8 | p << 16 | kind << 24``,
  version 2 (version 1, before the exact form, is still read: its sketches
  are register sketches, so never exact unless empty).
* kind 0, *sparse*: one word per non-empty register, ``register << 8 | rank``,
  sorted by register.
* kind 1, *dense*: 4096 bytes, byte ``i`` = rank of register ``i``.
* kind 2, *exact*: the distinct hashes, ascending, each as two words (low,
  high); no hash at all is the empty sketch.
* Canonical: exact iff at most ``EXACT_MAX`` values; a register sketch is
  sparse iff fewer than 1024 registers are set (then the smaller form).
  A null sketch is an empty one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import SketchError
from .hll_estimate import MAX_RANK, RELATIVE_STANDARD_ERROR, estimate  # noqa: F401 - re-exported
from .strhash import _string_buffers, hash_bytes, hash_strings  # noqa: F401 - re-exported

P = 12
M = 1 << P
Q = 64 - P  # bits left for the rank
VERSION = 2
READABLE_VERSIONS = (1, 2)
#: Largest number of distinct values a sketch keeps exactly (as hashes).
EXACT_MAX = 4096
_MAGIC = 0x48
_SPARSE, _DENSE, _EXACT = 0, 1, 2


def _header(kind: int, version: int = VERSION) -> int:
    return _MAGIC | (version << 8) | (P << 16) | (kind << 24)


HEADER_SPARSE, HEADER_DENSE, HEADER_EXACT = _header(_SPARSE), _header(_DENSE), _header(_EXACT)
_REGISTER_HEADERS = {_header(k, v): k for v in READABLE_VERSIONS for k in (_SPARSE, _DENSE)}
EMPTY = HEADER_EXACT.to_bytes(4, "little")
DENSE_MIN_REGISTERS = M // 4  # 1024: from here on the dense form is smaller
DENSE_WORDS = M // 4

#: Largest dense scratch array (groups * 4096 bytes) used by reduce_registers.
_DENSE_SCRATCH_BYTES = 1 << 25
_U = np.uint64
_NONE = np.zeros(0, np.int64)


def registers(hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Register index (top ``p`` bits) and rank (1..53) of each hash: ``(register int64, rank uint8)``."""
    hashes = np.asarray(hashes, dtype=np.uint64)
    reg = (hashes >> _U(Q)).astype(np.int64)
    low = (hashes & _U((1 << Q) - 1)).astype(np.float64)  # < 2**52: exact
    _, bit_length = np.frexp(low)  # frexp(0) gives 0
    rank = (MAX_RANK - bit_length).astype(np.uint8)
    return reg, rank


def reduce_registers(gid: np.ndarray, reg: np.ndarray, rank: np.ndarray,
                     n_groups: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per (group, register) maximum rank: ``(gid, reg, rank)``, one entry per non-empty register,
    sorted by group then register."""
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


# ------------------------------------------------------------ serializing
def _encode(n_groups: int, hg: np.ndarray, hh: np.ndarray, rg: np.ndarray, rr: np.ndarray,
            rk: np.ndarray) -> pa.Array:
    """Groups with register entries ``(rg, rr, rk)`` (sorted by group, register) in register form,
    the others exact with their hashes ``(hg, hh)`` (sorted by group, hash; distinct)."""
    hg, rg, rr = (np.asarray(a, np.int64) for a in (hg, rg, rr))
    hh, rk = np.asarray(hh, np.uint64), np.asarray(rk, np.uint8)
    nnz, nh = np.bincount(rg, minlength=n_groups), np.bincount(hg, minlength=n_groups)
    registered, dense = nnz > 0, nnz >= DENSE_MIN_REGISTERS
    if np.any(registered & (nh > 0)):
        raise SketchError("a group cannot be both exact and a register sketch")
    words_per = np.where(dense, 1 + DENSE_WORDS, np.where(registered, 1 + nnz, 1 + 2 * nh))
    word_off = np.zeros(n_groups + 1, dtype=np.int64)
    np.cumsum(words_per, out=word_off[1:])
    out = np.zeros(int(word_off[-1]), dtype="<u4")
    out[word_off[:-1]] = np.where(dense, HEADER_DENSE, np.where(registered, HEADER_SPARSE, HEADER_EXACT))
    first = np.zeros(n_groups + 1, dtype=np.int64)
    np.cumsum(nnz, out=first[1:])
    entry_dense = dense[rg]
    sp = ~entry_dense
    k = np.arange(len(rg), dtype=np.int64) - first[rg]
    out[word_off[rg[sp]] + 1 + k[sp]] = ((rr[sp] << 8) | rk[sp]).astype(np.uint32)
    out.view(np.uint8)[(word_off[rg[entry_dense]] + 1) * 4 + rr[entry_dense]] = rk[entry_dense]
    np.cumsum(nh, out=first[1:])
    pos = word_off[hg] + 1 + 2 * (np.arange(len(hg), dtype=np.int64) - first[hg])
    out[pos] = (hh & _U(0xFFFFFFFF)).astype(np.uint32)
    out[pos + 1] = (hh >> _U(32)).astype(np.uint32)
    byte_off = word_off * 4
    if byte_off[-1] < 2**31:
        return pa.Array.from_buffers(pa.binary(), n_groups,
                                     [None, pa.py_buffer(byte_off.astype(np.int32)), pa.py_buffer(out)])
    return pa.Array.from_buffers(pa.large_binary(), n_groups,
                                 [None, pa.py_buffer(byte_off), pa.py_buffer(out)]).cast(pa.binary())


def encode(gid: np.ndarray, reg: np.ndarray, rank: np.ndarray, n_groups: int) -> pa.Array:
    """Register sketches from reduced entries (see :func:`reduce_registers`); a group without
    entries gets the empty sketch."""
    return _encode(n_groups, _NONE, np.zeros(0, np.uint64), gid, reg, rank)


def distinct_pairs(gid: np.ndarray, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct ``(group, hash)`` pairs, sorted by group then hash."""
    gid, hashes = np.asarray(gid, np.int64), np.asarray(hashes, np.uint64)
    order = np.lexsort((hashes, gid))
    g, h = gid[order], hashes[order]
    keep = np.ones(len(g), bool)
    keep[1:] = (g[1:] != g[:-1]) | (h[1:] != h[:-1])
    return g[keep], h[keep]


def from_pairs(g: np.ndarray, h: np.ndarray, n_groups: int, exact_max: int | None = EXACT_MAX) -> pa.Array:
    """Canonical sketches of distinct ``(group, hash)`` pairs sorted by group then hash:
    exact for groups with at most ``exact_max`` hashes (None: every group), registers above."""
    big = np.zeros(n_groups, bool) if exact_max is None else np.bincount(g, minlength=n_groups) > exact_max
    sel = big[g]
    if not sel.any():
        return _encode(n_groups, g, h, _NONE, _NONE, np.zeros(0, np.uint8))
    reg, rank = registers(h[sel])
    return _encode(n_groups, g[~sel], h[~sel], *reduce_registers(g[sel], reg, rank, n_groups))


def build(gid: np.ndarray, hashes: np.ndarray, n_groups: int, exact_max: int | None = EXACT_MAX) -> pa.Array:
    """One sketch per group of the hashed values (``gid`` per value)."""
    return from_pairs(*distinct_pairs(gid, hashes), n_groups, exact_max)


def build_coded(gid: np.ndarray, codes: np.ndarray, sorted_hashes: np.ndarray, n_groups: int,
                exact_max: int | None = EXACT_MAX) -> pa.Array:
    """Like :func:`build` for values given as codes into ``sorted_hashes`` (the batch's distinct
    values' hashes, ascending): one sort of int64 ``(group, code)`` keys, no hash of every event."""
    n = max(len(sorted_hashes), 1)
    key = np.sort(np.asarray(gid, np.int64) * n + np.asarray(codes, np.int64))
    g, h = key // n, np.asarray(sorted_hashes, np.uint64)[key % n]
    keep = np.ones(len(g), bool)
    keep[1:] = (g[1:] != g[:-1]) | (h[1:] != h[:-1])  # repeated values, and two values with one hash
    return from_pairs(g[keep], h[keep], n_groups, exact_max)


# ---------------------------------------------------------------- reading
@dataclass(frozen=True)
class _Parts:
    exact: np.ndarray   # per row: an exact set (null and empty sketches included)
    h_row: np.ndarray   # exact hashes: row of each, and the hash (rows ascending, hashes ascending)
    h: np.ndarray
    s_row: np.ndarray   # sparse register entries
    s_reg: np.ndarray
    s_rank: np.ndarray
    d_rows: np.ndarray  # dense register rows and their registers
    matrix: np.ndarray


def _combined(sketches: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(sketches, pa.ChunkedArray):
        return sketches.combine_chunks() if sketches.num_chunks != 1 else sketches.chunk(0)
    return sketches


def _ragged(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenated ``range(start, start + count)`` for each pair."""
    first = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=first[1:])
    return np.repeat(starts, counts) + np.arange(int(first[-1]), dtype=np.int64) - np.repeat(first[:-1], counts)


def _decode_parts(sketches: pa.Array | pa.ChunkedArray) -> _Parts:  # noqa: C901 - one pass of checks
    sketches = _combined(sketches)
    n = len(sketches)
    if n == 0:
        return _Parts(np.zeros(0, bool), _NONE, np.zeros(0, np.uint64), _NONE, _NONE, np.zeros(0, np.uint8),
                      _NONE, np.zeros((0, M), np.uint8))
    offsets, data = _string_buffers(sketches)
    valid = np.ones(n, bool) if sketches.null_count == 0 else sketches.is_valid().to_numpy(zero_copy_only=False)
    lengths = np.where(valid, offsets[1:] - offsets[:-1], 0)
    present = lengths > 0
    starts = offsets[:-1]
    if np.any(lengths % 4) or np.any(starts[present] % 4 != offsets[0] % 4):
        raise SketchError("sketch length is not a whole number of 32-bit words")
    base = int(offsets[0])
    raw = data[base:int(offsets[-1])]
    words = np.frombuffer(raw.tobytes() if raw.ctypes.data % 4 else raw, dtype="<u4")
    wstart, wlen = (starts - base) // 4, lengths // 4
    rows = np.flatnonzero(present)
    headers = words[wstart[rows]].astype(np.int64)
    kind = np.full(len(rows), -1)
    kind[headers == HEADER_EXACT] = _EXACT
    for header, k in _REGISTER_HEADERS.items():
        kind[headers == header] = k
    if np.any(kind < 0):
        raise SketchError("unknown sketch header (format, version or precision differ)")
    dense_rows, exact_rows, sparse_rows = rows[kind == _DENSE], rows[kind == _EXACT], rows[kind == _SPARSE]
    if np.any(wlen[dense_rows] != 1 + DENSE_WORDS):
        raise SketchError("dense sketch of the wrong size")
    if np.any((wlen[exact_rows] - 1) % 2):
        raise SketchError("exact sketch with half a hash")
    counts = wlen[sparse_rows] - 1
    entries = words[_ragged(wstart[sparse_rows] + 1, counts)].astype(np.int64)
    s_reg, s_rank = entries >> 8, (entries & 0xFF).astype(np.uint8)
    if np.any(s_reg >= M) or np.any(s_rank == 0) or np.any(s_rank > MAX_RANK):
        raise SketchError("sparse sketch entry out of range")
    h_counts = (wlen[exact_rows] - 1) // 2
    pair = _ragged(wstart[exact_rows] + 1, 2 * h_counts)
    low_high = words[pair].astype(np.uint64)
    h = low_high[0::2] | (low_high[1::2] << _U(32))
    h_row = np.repeat(exact_rows, h_counts)
    if np.any((h_row[1:] == h_row[:-1]) & (h[1:] <= h[:-1])):
        raise SketchError("exact sketch hashes are not ascending")
    idx = (wstart[dense_rows] + 1)[:, None] + np.arange(DENSE_WORDS)[None, :]
    matrix = words[idx].view(np.uint8).reshape(len(dense_rows), M)
    if matrix.size and matrix.max() > MAX_RANK:
        raise SketchError("dense sketch rank out of range")
    exact = np.ones(n, bool)
    exact[dense_rows] = False
    exact[sparse_rows[counts > 0]] = False  # a version-1 sparse sketch without registers is empty: exact
    return _Parts(exact, h_row, h, np.repeat(sparse_rows, counts), s_reg, s_rank, dense_rows, matrix)


def _register_entries(parts: _Parts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(row, reg, rank)`` of the register sketches (sparse and dense)."""
    which, d_reg = np.nonzero(parts.matrix)
    return (np.concatenate([parts.s_row, parts.d_rows[which]]), np.concatenate([parts.s_reg, d_reg.astype(np.int64)]),
            np.concatenate([parts.s_rank, parts.matrix[which, d_reg]]))


def decode(sketches: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Registers of every sketch, exact ones included (their hashes' registers):
    ``(row, reg, rank)``, one entry per non-empty register.

    Raises:
        SketchError: a sketch is corrupt or of another format/precision.
    """
    parts = _decode_parts(sketches)
    reg, rank = registers(parts.h)
    e_row, e_reg, e_rank = reduce_registers(parts.h_row, reg, rank, len(parts.exact))
    row, r_reg, r_rank = _register_entries(parts)
    return np.concatenate([row, e_row]), np.concatenate([r_reg, e_reg]), np.concatenate([r_rank, e_rank])


def cardinality(sketches: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """``(count, exact)`` per sketch: the number of hashes of exact sketches (``exact`` True),
    the HyperLogLog estimate of the others."""
    parts = _decode_parts(sketches)
    n = len(parts.exact)
    row, _, rank = _register_entries(parts)
    counts = np.bincount(parts.h_row, minlength=n).astype(np.float64)
    return np.where(parts.exact, counts, estimate(row, rank, n)), parts.exact


def sql_hashes(sketches: pa.Array | pa.ChunkedArray) -> pa.Array:
    """``list<int64>`` of each exact sketch's hashes (as signed 64-bit), null for register sketches."""
    parts = _decode_parts(sketches)
    offsets = np.zeros(len(parts.exact) + 1, dtype=np.int32)
    np.cumsum(np.bincount(parts.h_row, minlength=len(parts.exact)), out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(parts.h.view(np.int64), pa.int64()),
                                    mask=pa.array(~parts.exact))


# ---------------------------------------------------------------- merging
def _merge_rows(sketches: pa.Array, gid: np.ndarray, n_groups: int, exact_max: int | None) -> pa.Array:
    parts = _decode_parts(sketches)
    inexact = np.zeros(n_groups, bool)
    inexact[gid[~parts.exact]] = True
    hg = gid[parts.h_row]
    union = ~inexact[hg]
    ug, uh = distinct_pairs(hg[union], parts.h[union])
    if exact_max is not None:
        inexact |= np.bincount(ug, minlength=n_groups) > exact_max
    keep = ~inexact[ug]
    to_registers = inexact[hg]
    reg, rank = registers(parts.h[to_registers])
    row, r_reg, r_rank = _register_entries(parts)
    entries = reduce_registers(np.concatenate([gid[row], hg[to_registers]]), np.concatenate([r_reg, reg]),
                               np.concatenate([r_rank, rank]), n_groups)
    return _encode(n_groups, ug[keep], uh[keep], *entries)


def merge(sketches: pa.Array | pa.ChunkedArray, gid: np.ndarray, n_groups: int,
          exact_max: int | None = EXACT_MAX) -> pa.Array:
    """Union of the sketches of each group (``gid`` per row); ``n_groups`` sketches.

    A group of one row keeps that row's bytes (sketches are canonical); a group
    without rows gets the empty sketch.
    """
    sketches = _combined(sketches)
    gid = np.asarray(gid, dtype=np.int64)
    n = len(sketches)
    rows_per = np.bincount(gid, minlength=n_groups)
    multi = rows_per > 1
    first = np.zeros(n_groups, np.int64)
    first[gid] = np.arange(n)  # only read for groups of one row
    compact = np.cumsum(multi) - 1
    sub = np.flatnonzero(multi[gid])
    merged = _merge_rows(sketches.take(pa.array(sub)), compact[gid[sub]], int(multi.sum()), exact_max)
    pool = pa.concat_arrays([pc.fill_null(sketches.cast(pa.binary()), EMPTY), merged,
                             pa.array([EMPTY], pa.binary())])
    index = np.where(rows_per == 1, first, np.where(multi, n + compact, n + len(merged)))
    return pool.take(pa.array(index))


def canonical(sketches: pa.Array | pa.ChunkedArray, exact_max: int | None = EXACT_MAX) -> pa.Array:
    """The sketches in canonical form for ``exact_max`` (exact sets above it become registers)."""
    sketches = _combined(sketches)
    return _merge_rows(sketches, np.arange(len(sketches), dtype=np.int64), len(sketches), exact_max)


# ------------------------------------------------------ scalar conveniences
def sketch_of(values: list[str | None]) -> bytes:
    """One serialized sketch of some strings (for tests and small callers)."""
    hashes, valid = hash_strings(pa.array(values, pa.string()))
    return build(np.zeros(int(valid.sum()), np.int64), hashes[valid], 1)[0].as_py()


def estimate_sketch(sketch: bytes) -> float:
    """Cardinality of one serialized sketch (exact for an exact sketch)."""
    return float(cardinality(pa.array([sketch], pa.binary()))[0][0])
