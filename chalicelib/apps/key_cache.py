"""Bounded memory for key lookups, and a budget for the lookups that unknown keys cost.

Anyone can send any key: unauthenticated traffic must not grow memory or the key store's
bill without bound. ``AppStore.authenticate`` (keys.py) remembers answers in two LRU maps
with a size cap each (known keys for the cache TTL, unknown keys for a short TTL so a new
key works at once), and spends one token of an :class:`UnknownKeyBudget` per lookup that
found no key: when the budget is empty, a key that is not remembered is refused (429)
without a lookup until tokens come back. Keys already remembered are never refused, and
a key found once (for a day) is looked up again when its cache entry expires whatever the
budget holds, so a flood of made-up keys costs at most ``rate`` lookups per second per
process and cannot lock out the apps already served, however long it lasts.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable, Generic, TypeVar

V = TypeVar("V")


class TtlLru(Generic[V]):
    """A map of at most ``capacity`` entries, each valid for ``ttl_s``; the least recently used goes first."""

    def __init__(self, capacity: int, ttl_s: float, clock: Callable[[], float]) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._entries: OrderedDict[str, tuple[float, V]] = OrderedDict()
        self._capacity, self._ttl_s, self._clock = capacity, ttl_s, clock
        self._lock = threading.Lock()

    def get(self, key: str) -> tuple[bool, V | None]:
        """(found, value): found False when absent or expired (an expired entry is dropped)."""
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return False, None
            if now - entry[0] >= self._ttl_s:
                del self._entries[key]
                return False, None
            self._entries.move_to_end(key)
            return True, entry[1]

    def put(self, key: str, value: V) -> None:
        with self._lock:
            self._entries[key] = (self._clock(), value)
            self._entries.move_to_end(key)
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)

    def pop(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)


class UnknownKeyBudget:
    """A per-process token bucket: ``rate`` lookups of unknown keys per second, ``burst`` at once."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float]) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self._rate, self._burst, self._clock = rate, burst, clock
        self._tokens, self._at = burst, clock()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now

    def available(self) -> bool:
        """Whether a lookup may be made now (one token is left)."""
        with self._lock:
            self._refill()
            return self._tokens >= 1

    def spend(self) -> None:
        """A lookup found no key: take its token (the balance may go down to -burst, so a burst
        of lookups already under way is paid for by a longer wait)."""
        with self._lock:
            self._refill()
            self._tokens = max(-self._burst, self._tokens - 1)

    def retry_after_s(self) -> int:
        with self._lock:
            self._refill()
            return max(1, int((1 - self._tokens) / self._rate + 0.999))
