"""The HyperLogLog estimator of :mod:`.hll` register sketches (Ertl's improved raw estimator).

O. Ertl, *New cardinality estimation algorithms for HyperLogLog sketches*,
2017, algorithm 6: no empirical bias tables and no switch to linear
counting; for small cardinalities it behaves like linear counting, for
large ones like the classic estimator.  Relative standard error
``1.04 / sqrt(4096) = 1.625 %`` for ``p = 12``.
"""

from __future__ import annotations

import numpy as np

P = 12
M = 1 << P
Q = 64 - P
MAX_RANK = Q + 1
RELATIVE_STANDARD_ERROR = 1.04 / np.sqrt(M)


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
    """Cardinality estimate per group from its registers.

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
