"""Vectorized geohash encoding (numpy bit interleaving).

A geohash of precision ``P`` has ``5 * P`` bits that alternate longitude and
latitude bits, longitude first, most significant first; each group of five
bits is one character of ``0123456789bcdefghjkmnpqrstuvwxyz``.

The vectorized encoder computes each coordinate's cell number with one
multiplication and then corrects it by one against the exact cell
boundaries, so it returns exactly what the classic bisection algorithm
(:func:`geohash_scalar`) returns, boundaries included.  Invalid coordinates
(null, NaN, latitude outside [-90, 90], longitude outside [-180, 180]) give
null.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from .errors import InvalidArgumentError

BASE32 = "0123456789bcdefghjkmnpqrstuvwxyz"
_BASE32_BYTES = np.frombuffer(BASE32.encode(), dtype=np.uint8)
MAX_PRECISION = 12


def geohash_scalar(lat: float, lon: float, precision: int) -> str:
    """Reference implementation: the classic bisection geohash.

    Args:
        lat: latitude in degrees, -90..90.
        lon: longitude in degrees, -180..180.
        precision: number of characters, 1..12.

    Returns:
        The geohash string.
    """
    lat_lo, lat_hi, lon_lo, lon_hi = -90.0, 90.0, -180.0, 180.0
    bits = 0
    for i in range(5 * precision):
        if i % 2 == 0:
            mid = (lon_lo + lon_hi) / 2
            bit = lon >= mid
            lon_lo, lon_hi = (mid, lon_hi) if bit else (lon_lo, mid)
        else:
            mid = (lat_lo + lat_hi) / 2
            bit = lat >= mid
            lat_lo, lat_hi = (mid, lat_hi) if bit else (lat_lo, mid)
        bits = (bits << 1) | int(bit)
    return "".join(BASE32[(bits >> (5 * (precision - 1 - k))) & 31] for k in range(precision))


def _cells(values: np.ndarray, lo: float, span: float, nbits: int) -> np.ndarray:
    """Exact bisection cell number of each value in ``[lo, lo + span]``."""
    n = 1 << nbits
    cell = np.floor((values - lo) * (n / span)).astype(np.int64)
    np.clip(cell, 0, n - 1, out=cell)
    # Cell boundaries lo + span * k / 2**nbits are exact in float64: fix the
    # (rare) rounding of the multiplication so that b(k) <= v < b(k + 1).
    below = values < lo + cell * (span / n)
    cell -= below
    above = (cell < n - 1) & (values >= lo + (cell + 1) * (span / n))
    cell += above
    return cell.astype(np.uint64)


def _spread(x: np.ndarray) -> np.ndarray:
    """Spread the low 32 bits of ``x`` to the even bit positions."""
    x = x & np.uint64(0xFFFFFFFF)
    for shift, mask in ((16, 0x0000FFFF0000FFFF), (8, 0x00FF00FF00FF00FF),
                        (4, 0x0F0F0F0F0F0F0F0F), (2, 0x3333333333333333),
                        (1, 0x5555555555555555)):
        x = (x | (x << np.uint64(shift))) & np.uint64(mask)
    return x


def geohash_codes(lat: np.ndarray, lon: np.ndarray, precision: int) -> tuple[np.ndarray, np.ndarray]:
    """Vectorized geohash as integers.

    Args:
        lat: float64 latitudes (NaN for missing).
        lon: float64 longitudes (NaN for missing).
        precision: number of characters, 1..12.

    Returns:
        ``(codes, valid)``: uint64 codes (``5 * precision`` bits, the geohash
        read as a base-32 number) and a bool mask of valid coordinates.
    """
    if not 1 <= precision <= MAX_PRECISION:
        raise InvalidArgumentError(f"geohash precision must be 1..{MAX_PRECISION}, got {precision}")
    lat = np.asarray(lat, dtype=np.float64)
    lon = np.asarray(lon, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        valid = (lat >= -90.0) & (lat <= 90.0) & (lon >= -180.0) & (lon <= 180.0)
    lat = np.where(valid, lat, 0.0)
    lon = np.where(valid, lon, 0.0)
    nbits = 5 * precision
    lon_bits, lat_bits = (nbits + 1) // 2, nbits // 2
    lon_spread = _spread(_cells(lon, -180.0, 360.0, lon_bits))
    lat_spread = _spread(_cells(lat, -90.0, 180.0, lat_bits))
    # The last (least significant) bit is a longitude bit when nbits is odd.
    if nbits % 2:
        codes = lon_spread | (lat_spread << np.uint64(1))
    else:
        codes = (lon_spread << np.uint64(1)) | lat_spread
    return codes, valid


def codes_to_strings(codes: np.ndarray, valid: np.ndarray | None, precision: int) -> pa.Array:
    """Turn integer geohash codes into a pyarrow string array (null if not valid)."""
    codes = np.asarray(codes, dtype=np.uint64)
    shifts = np.uint64(5) * np.arange(precision - 1, -1, -1, dtype=np.uint64)
    chars = _BASE32_BYTES[((codes[:, None] >> shifts[None, :]) & np.uint64(31)).astype(np.intp)]
    data = np.ascontiguousarray(chars, dtype=np.uint8).reshape(-1)
    offsets = np.arange(len(codes) + 1, dtype=np.int32) * precision
    buffers = [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    if valid is None or bool(np.all(valid)):
        return pa.Array.from_buffers(pa.string(), len(codes), buffers)
    valid = np.asarray(valid, dtype=bool)
    buffers[0] = pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.Array.from_buffers(pa.string(), len(codes), buffers,
                                 null_count=int(len(valid) - np.count_nonzero(valid)))


def geohash_encode(lat: np.ndarray, lon: np.ndarray, precision: int) -> pa.Array:
    """Vectorized geohash strings (null where the coordinates are invalid)."""
    codes, valid = geohash_codes(lat, lon, precision)
    return codes_to_strings(codes, valid, precision)
