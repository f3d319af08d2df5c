"""Per-app rate limits: one token bucket for requests/s and one for events/s (pure math).

Each app has two buckets, refilled by elapsed time: ``requests_per_second`` and
``events_per_second``, each holding at most ``burst_seconds`` of its rate. A request
costs one request token plus one event token per event it carries, taken from both
buckets at once or not at all: a request either passes whole or is refused whole
(429 with ``Retry-After``), and a refused request takes nothing.

The buckets are kept in the form a single DynamoDB ``UpdateItem`` can apply without
reading first (the "generic cell rate algorithm", an exact token bucket): instead of
the tokens, a bucket stores its *theoretical arrival time* ``tat`` (ns since the epoch):

* ``tokens(now) = (now + tau - max(tat, now)) / interval``, with ``interval = 1/rate``
  and ``tau = burst_seconds``: a bucket with ``tat <= now`` is full (``rate * burst``
  tokens), and waiting ``dt`` adds ``dt * rate`` tokens up to that capacity;
* taking ``n`` tokens sets ``tat = max(tat, now) + n * interval``;
* ``n`` tokens may be taken when ``max(tat, now) + n * interval <= now + tau``.

A request larger than a bucket's capacity is admitted when that bucket is full, and
the debt delays the next ones (the average rate still holds; a batch bigger than the
burst is never refused for ever).

``tat`` only ever grows (every write moves it forward), which makes a refusal computed
from an old copy of the state sound: the real state can only be further behind. The
DynamoDB adapter (``ratelimit_store.py``) relies on that to refuse without a write, and
:meth:`RateLimiter.check` to refuse a request before its body is read.

An app whose request rate exceeds what one DynamoDB item can take is split over
:func:`shard_count` buckets, each with ``1/N`` of both rates and the same burst seconds
(the argument is in ``ratelimit_store.py``); an app at the default 200 requests/s has one.
Nothing here reads a clock: ``now`` is given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Protocol

from chalicelib.http.errors import BadRequest, TooManyRequests

NS = 1_000_000_000
#: Admissions per second one bucket item is planned for: a quarter of DynamoDB's 1,000 writes/s per
#: partition key, since an admission takes at most 3 conditional writes (ratelimit_store.py).
ITEM_ADMISSIONS_PER_S = 250
#: The most items an app is split over (100,000 requests/s); a higher rate still gets 400.
MAX_SHARDS = 400
#: The two buckets of an app, in the order they are checked.
DIMENSIONS = ("requests", "events")
LIMIT_FIELDS = ("events_per_second", "requests_per_second", "burst_seconds")


def valid_limit(value: object) -> bool:
    """A rate or a burst: a number from 0.001 to 1e12 (stored as a plain decimal)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0.001 <= value <= 1e12


@dataclass(frozen=True)
class Limits:
    """An app's limits: sustained rates and how many seconds of each a burst may use."""

    events_per_second: float
    requests_per_second: float
    burst_seconds: float

    def __post_init__(self) -> None:
        for name in LIMIT_FIELDS:
            if not valid_limit(getattr(self, name)):
                raise BadRequest(f"{name} must be a number from 0.001 to 1e12, got {getattr(self, name)!r}")

    @classmethod
    def merged(cls, defaults: "Limits", overrides: dict[str, float]) -> "Limits":
        """The defaults with the app's own values (any subset of the fields) in place; invalid ones are ignored."""
        return cls(**{name: overrides[name] if valid_limit(overrides.get(name)) else getattr(defaults, name)
                      for name in LIMIT_FIELDS})

    def rate(self, dimension: str) -> float:
        return self.events_per_second if dimension == "events" else self.requests_per_second

    @property
    def tau_ns(self) -> int:
        return round(self.burst_seconds * NS)

    def split(self, shards: int) -> "Limits":
        """The limits of one of ``shards`` equal parts (same burst seconds, rates divided)."""
        if shards == 1:
            return self
        return Limits(self.events_per_second / shards, self.requests_per_second / shards, self.burst_seconds)

    def describe(self) -> str:
        return (f"{plain_number(self.events_per_second)} events/s, {plain_number(self.requests_per_second)} "
                f"requests/s, bursts of {plain_number(self.burst_seconds)} s")


def plain_number(value: float) -> str:
    """A limit as a person (and ``--events-per-second``) writes it: 1000000, 2.5, 0.001 (never 1e+06)."""
    return f"{value:.6f}".rstrip("0").rstrip(".")


@dataclass(frozen=True)
class BucketState:
    """Theoretical arrival time (ns) of each bucket; None: never used (full)."""

    requests_tat_ns: int | None = None
    events_tat_ns: int | None = None

    def tat(self, dimension: str) -> int | None:
        return self.requests_tat_ns if dimension == "requests" else self.events_tat_ns


@dataclass(frozen=True)
class Step:
    """How one bucket changes when a request is admitted.

    Attributes:
        dimension: ``requests`` or ``events``.
        add_ns: the tokens taken, as time (``n / rate`` seconds in ns).
        busy: the bucket is not full (``tat > now``): ``tat += add_ns``, allowed while
            ``tat <= max_tat_ns``; otherwise (full: ``tat <= now``) ``tat = now + add_ns``.
        max_tat_ns: the largest ``tat`` that still admits the request (busy buckets).
    """

    dimension: str
    add_ns: int
    busy: bool
    max_tat_ns: int


@dataclass(frozen=True)
class Decision:
    """Admitted (with the state after it and the changes to apply) or refused with a wait."""

    admitted: bool
    now_ns: int
    state: BucketState
    steps: tuple[Step, ...] = ()
    retry_after_ns: int = 0

    @property
    def retry_after_s(self) -> int:
        """Whole seconds for ``Retry-After`` (at least 1)."""
        return max(1, math.ceil(self.retry_after_ns / NS))


def shard_count(limits: Limits) -> int:
    """How many bucket items an app's limits are split over: enough for its request rate (at most
    :data:`ITEM_ADMISSIONS_PER_S` admissions per item per second); 1 for rates up to that,
    :data:`MAX_SHARDS` at most."""
    return min(MAX_SHARDS, max(1, math.ceil(limits.requests_per_second / ITEM_ADMISSIONS_PER_S)))


def cost_ns(units: int, rate: float) -> int:
    """``units`` tokens of a bucket refilled at ``rate`` per second, as time (rounded up)."""
    return math.ceil(units * NS / rate)


def wait_ns(tat: int | None, now_ns: int, add_ns: int, tau_ns: int) -> int:
    """How long until ``add_ns`` can be taken from a bucket (0: now)."""
    if tat is None or tat <= now_ns:
        return 0  # full: any request passes, even one larger than the burst
    return max(0, tat - now_ns - max(0, tau_ns - add_ns))


def decide(limits: Limits, state: BucketState, requests: int, events: int, now_ns: int) -> Decision:
    """Whether a request of ``requests`` request tokens and ``events`` event tokens passes now."""
    steps, waits, new = [], [], {}
    for dimension, units in zip(DIMENSIONS, (requests, events)):
        if units <= 0:
            continue
        add = cost_ns(units, limits.rate(dimension))
        tat = state.tat(dimension)
        waits.append(wait_ns(tat, now_ns, add, limits.tau_ns))
        busy = tat is not None and tat > now_ns
        steps.append(Step(dimension, add, busy, now_ns + limits.tau_ns - add))
        new[dimension] = (tat if busy else now_ns) + add
    longest = max(waits, default=0)
    if longest > 0:
        return Decision(False, now_ns, state, retry_after_ns=longest)
    after = BucketState(new.get("requests", state.requests_tat_ns), new.get("events", state.events_tat_ns))
    return Decision(True, now_ns, after, tuple(steps))


class Buckets(Protocol):
    """Where the bucket states live: ``take`` applies :func:`decide` atomically; ``peek`` decides on
    the state last seen, changing nothing (a refusal from it is sound: ``tat`` only grows)."""

    def take(self, app_id: str, limits: Limits, requests: int, events: int) -> Decision: ...

    def peek(self, app_id: str, limits: Limits, requests: int, events: int) -> Decision: ...


class MemoryBuckets:
    """Buckets in a dict (tests, and the reference the DynamoDB adapter must agree with)."""

    def __init__(self, clock_ns: Callable[[], int]) -> None:
        self._clock_ns = clock_ns
        self.states: dict[str, BucketState] = {}

    def take(self, app_id: str, limits: Limits, requests: int, events: int) -> Decision:
        decision = decide(limits, self.states.get(app_id, BucketState()), requests, events, self._clock_ns())
        if decision.admitted:
            self.states[app_id] = decision.state
        return decision

    def peek(self, app_id: str, limits: Limits, requests: int, events: int) -> Decision:
        return decide(limits, self.states.get(app_id, BucketState()), requests, events, self._clock_ns())


class RateLimiter:
    """``admit(app_id, events, requests=1)``: takes ``requests`` request tokens (a read's cost, 1 for
    any other request) and ``events`` event tokens, or raises 429. ``check(app_id)``: raises the
    same 429 when the state last seen already refuses one request, with no store call (before a
    body is read).

    Args:
        limits_for: app id -> its limits (the app's own values over the defaults).
        buckets: where the bucket states live.
    """

    def __init__(self, limits_for: Callable[[str], Limits], buckets: Buckets) -> None:
        self._limits_for, self._buckets = limits_for, buckets

    def admit(self, app_id: str, events: int = 0, requests: int = 1) -> None:
        """Raises:
            TooManyRequests: over a limit; ``Retry-After`` says when the request would pass.
        """
        limits = self._limits_for(app_id)
        self._refuse(app_id, limits, self._buckets.take(app_id, limits, max(1, requests), max(0, events)), events,
                     requests)

    def check(self, app_id: str) -> None:
        """Raises the 429 of :meth:`admit` when one request would be refused on the state last seen."""
        limits = self._limits_for(app_id)
        self._refuse(app_id, limits, self._buckets.peek(app_id, limits, 1, 0), 0, 1)

    @staticmethod
    def _refuse(app_id: str, limits: Limits, decision: Decision, events: int, requests: int) -> None:
        if not decision.admitted:
            what = (f"a request of {events} event(s)" if events else
                    f"a read costing {requests} request tokens" if requests > 1 else "a request")
            raise TooManyRequests(
                f"app {app_id!r} is over its rate limit ({limits.describe()}): {what} would pass in "
                f"{decision.retry_after_s} s; nothing of this request was accepted",
                headers={"Retry-After": str(decision.retry_after_s)})
