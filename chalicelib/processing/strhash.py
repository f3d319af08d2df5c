"""EPH64: a stable 64-bit string hash, vectorized over Arrow string arrays.

Defined here (not taken from DuckDB's or Arrow's internal hashes, which may
change between versions) because HyperLogLog sketches written today must
merge with sketches written by a later release.  Not cryptographic.

Definition: murmur3-style mixing of the UTF-8 bytes in little-endian 8-byte
words (the last word zero-padded), then the murmur3 64-bit finalizer of
``h ^ length``.  :func:`hash_bytes` is the scalar reference and
:func:`hash_strings` the vectorized version (one numpy pass per 8-byte word
position, over all strings at once; strings over 256 bytes, rare, use the
scalar code).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

#: Above this many bytes a string is hashed by the scalar code (rare).
_LONG_STRING = 256

_MASK64 = (1 << 64) - 1
_SEED = 0x9E3779B97F4A7C15
_C1 = 0x87C37B91114253D5
_C2 = 0x4CF5AD432745937F
_F1 = 0xFF51AFD7ED558CCD
_F2 = 0xC4CEB9FE1A85EC53
_WORD_MASKS = np.array([0] + [(1 << (8 * k)) - 1 for k in range(1, 8)] + [_MASK64], dtype=np.uint64)
_U = np.uint64


def _rotl_scalar(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & _MASK64


def _fmix_scalar(h: int) -> int:
    h ^= h >> 33
    h = (h * _F1) & _MASK64
    h ^= h >> 33
    h = (h * _F2) & _MASK64
    return h ^ (h >> 33)


def hash_bytes(data: bytes) -> int:
    """Scalar reference of the EPH64 hash.

    Args:
        data: the bytes to hash (strings are hashed as UTF-8).

    Returns:
        The 64-bit hash as a Python int.
    """
    h = _SEED
    for pos in range(0, len(data), 8):
        word = int.from_bytes(data[pos:pos + 8], "little")
        k = _rotl_scalar((word * _C1) & _MASK64, 31)
        h ^= (k * _C2) & _MASK64
        h = (_rotl_scalar(h, 27) * 5 + 0x52DCE729) & _MASK64
    return _fmix_scalar(h ^ len(data))


def _rotl(x: np.ndarray, r: int) -> np.ndarray:
    return (x << _U(r)) | (x >> _U(64 - r))


def _fmix(h: np.ndarray) -> np.ndarray:
    h ^= h >> _U(33)
    h *= _U(_F1)
    h ^= h >> _U(33)
    h *= _U(_F2)
    h ^= h >> _U(33)
    return h


def _string_buffers(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(offsets int64, data uint8) of a string/binary array, zero-copy."""
    large = pa.types.is_large_string(arr.type) or pa.types.is_large_binary(arr.type)
    off_type = np.int64 if large else np.int32
    bufs = arr.buffers()
    offsets = np.frombuffer(bufs[1], dtype=off_type, count=len(arr) + 1,
                            offset=arr.offset * np.dtype(off_type).itemsize)
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
    return offsets.astype(np.int64), data


def hash_strings(values: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorized EPH64 hash of a string (or binary) array.

    Args:
        values: strings; nulls are allowed.

    Returns:
        ``(hashes, valid)``: uint64 hashes (0 for nulls) and a bool mask of
        the non-null positions.
    """
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    if pa.types.is_dictionary(values.type):
        values = values.cast(values.type.value_type)
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)
            or pa.types.is_binary(values.type) or pa.types.is_large_binary(values.type)):
        values = values.cast(pa.string())
    n = len(values)
    valid = np.ones(n, dtype=bool) if values.null_count == 0 else \
        values.is_valid().to_numpy(zero_copy_only=False)
    out = np.zeros(n, dtype=np.uint64)
    if n == 0:
        return out, valid
    offsets, data = _string_buffers(values)
    starts = offsets[:-1]
    lengths = offsets[1:] - starts
    padded = np.zeros(len(data) + 8, dtype=np.uint8)
    padded[:len(data)] = data
    # Unaligned 8-byte little-endian words starting at every byte position.
    words = np.ndarray(shape=(len(data) + 1,), dtype="<u8", buffer=padded, strides=(1,))
    short = valid & (lengths <= _LONG_STRING)
    rows = np.flatnonzero(short)
    pos = starts[rows]
    rem = lengths[rows]
    h = np.full(len(rows), _SEED, dtype=np.uint64)
    while rows.size:
        done = rem <= 0
        if done.any():
            out[rows[done]] = h[done]
            keep = ~done
            rows, pos, rem, h = rows[keep], pos[keep], rem[keep], h[keep]
            if not rows.size:
                break
        word = words[pos] & _WORD_MASKS[np.minimum(rem, 8)]
        k = word * _U(_C1)
        k = _rotl(k, 31)
        k *= _U(_C2)
        h ^= k
        h = _rotl(h, 27) * _U(5) + _U(0x52DCE729)
        pos = pos + 8
        rem = rem - 8
    sel = np.flatnonzero(short)
    out[sel] = _fmix(out[sel] ^ lengths[sel].astype(np.uint64))
    for row in np.flatnonzero(valid & ~short):  # strings longer than 256 bytes
        out[row] = hash_bytes(data[starts[row]:starts[row] + lengths[row]].tobytes())
    return out, valid
