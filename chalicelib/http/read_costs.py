"""What a read costs, and how one app's expensive reads are kept from crowding out the others.

**Weighted tokens.** Every request takes tokens of its app's requests/s bucket
(``ratelimit.py``). A write or a cheap read takes one; a read takes about one token per
10 ms of API time it is expected to cost, from what it reads, so that an app's
requests/s limit bounds the API time it can use, not just its request count:

* ``GET /v1/metrics/{name}``: ``1 + ceil(hours / 2)`` (one hour of windows is a partition
  of partial or final files; 24 h measured 140 ms at p50: 13 tokens; 7 days: 85);
* ``GET /v1/sessions``: ``1 + days`` (one sessions file per UTC day, default 7 days: 8; 31: 32);
* ``GET /v1/persons/{user_id}``: :data:`PERSON_TOKENS` (it reads the app's persons file);
* ``GET /v1/pipeline``: 50 per UTC day its range may touch, ``1 + ceil(days)`` (it lists and
  reads each day's bad rows for every consumer; 7 days measured ~4 s: 400 tokens; the default
  hour: 100);
* ``GET /v1/regulations``: 10 (a scan of the state table's regulation items; ``GET
  /v1/regulations/{id}`` is one item: 1 token, as is ``POST``, a handful of writes).

An app at the default 200 requests/s with a 10 s burst can then run five 7-day pipeline
reads at once, then one every 2 s, where the count of requests allowed 2,000 at once.
A malformed range costs 1 token (the service answers 400). Pure: no clock (a missing
``to`` is taken as the default range's length).

**Per app, per API process** (:class:`ReadGuard`): identical reads of one app that arrive while
the first is running share its answer (they would have got the same figures), and at most
:data:`MAX_EXPENSIVE_IN_FLIGHT` reads of :data:`EXPENSIVE_TOKENS` or more run for one app at
once: beyond that, 429 with ``Retry-After: 1``, so a tenant's heavy reads cannot take every
thread of a local API process. (A Lambda container serves one request at a time: on AWS the
tokens and the API function's reserved concurrency, ``chalicelib/pipeline.toml``, do that job.)
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, TypeVar

from chalicelib.http.errors import ServiceUnavailable, TooManyRequests
from chalicelib.stream.instants import InvalidInstant, parse_instant

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
MAX_RANGE_MS = 7 * DAY_MS
METRICS_HOURS_PER_TOKEN = 2
PIPELINE_TOKENS_PER_DAY = 50
REGULATIONS_LIST_TOKENS = 10
SESSIONS_MAX_DAYS = 31
PERSON_TOKENS = 5
#: Reads of at least this many tokens are "expensive": at most MAX_EXPENSIVE_IN_FLIGHT of an app at once.
EXPENSIVE_TOKENS = 50
MAX_EXPENSIVE_IN_FLIGHT = 2
#: How long a read waits for an identical one in flight before it gives up (503).
SHARED_WAIT_S = 60.0
T = TypeVar("T")


def _range_ms(params: Mapping[str, Any]) -> int:
    """The length of ``from``..``to`` in ms, at most 7 days (the services' maximum): one hour without
    ``from`` (their default), 7 days for ``from`` alone (up to now), 0 when malformed (answered 400)."""
    values = {name: params.get(name) for name in ("from", "to")}
    if any(isinstance(v, (list, tuple)) for v in values.values()):
        return 0
    try:
        instants = {name: parse_instant(v, name) for name, v in values.items() if v is not None}
    except InvalidInstant:
        return 0
    if "from" not in instants:
        return HOUR_MS
    if "to" not in instants:
        return MAX_RANGE_MS
    return min(MAX_RANGE_MS, max(0, instants["to"] - instants["from"]))


def metrics_cost(params: Mapping[str, Any]) -> int:
    """Tokens of ``GET /v1/metrics/{name}``: 1 + one per 2 hours of range."""
    return 1 + math.ceil(_range_ms(params) / (METRICS_HOURS_PER_TOKEN * HOUR_MS))


def sessions_cost(params: Mapping[str, Any]) -> int:
    """Tokens of ``GET /v1/sessions``: 1 + one per UTC day the range may touch (default 7 days; at most 31)."""
    values = {name: params.get(name) for name in ("from", "to")}
    if any(isinstance(v, (list, tuple)) for v in values.values()):
        return 1
    try:
        instants = {name: parse_instant(v, name) for name, v in values.items() if v is not None}
    except InvalidInstant:
        return 1
    length = instants["to"] - instants["from"] if len(instants) == 2 else 7 * DAY_MS
    return 1 + min(SESSIONS_MAX_DAYS, max(0, math.ceil(length / DAY_MS)) + 1)


def person_cost(params: Mapping[str, Any]) -> int:
    """Tokens of ``GET /v1/persons/{user_id}``."""
    return PERSON_TOKENS


def pipeline_cost(params: Mapping[str, Any]) -> int:
    """Tokens of ``GET /v1/pipeline``: 50 per UTC day the range may touch (1 when malformed)."""
    length = _range_ms(params)
    return PIPELINE_TOKENS_PER_DAY * (1 + math.ceil(length / DAY_MS)) if length else 1


def regulations_cost(params: Mapping[str, Any]) -> int:
    """Tokens of ``GET /v1/regulations``: a scan of the regulations, whatever the parameters."""
    return REGULATIONS_LIST_TOKENS


INSIGHT_BASE_TOKENS = 20
INSIGHT_TOKENS_PER_DAY = 5


def insight_cost(body: Mapping[str, Any]) -> int:
    """Tokens of an insight (its JSON body): 20 + 5 per UTC day it reads (1 when its range is malformed)."""
    if not isinstance(body, Mapping):
        return 1
    try:
        start, end = parse_instant(body.get("from"), "from"), parse_instant(body.get("to"), "to")
    except InvalidInstant:
        return 1
    if end <= start:
        return 1
    extra_days = 0
    periods, within = body.get("periods", 8), str(body.get("within", "1h"))
    if "start_event" in body:  # retention: the return events of the periods after `to`
        if isinstance(periods, int) and not isinstance(periods, bool):
            extra_days = max(0, min(periods, 92)) * (7 if body.get("period") == "week" else 1)
    elif within[:-1].isdigit() and within[-1:] in ("s", "m", "h", "d"):  # funnel: `within` after `to`
        extra_days = math.ceil(int(within[:-1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[within[-1]] / 86400)
    days = math.ceil(min(end - start, 92 * DAY_MS) / DAY_MS) + 1 + min(extra_days, 400)
    return INSIGHT_BASE_TOKENS + INSIGHT_TOKENS_PER_DAY * days


@dataclass
class _Flight:
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None


class ReadGuard:
    """Shares identical reads in flight and caps an app's expensive reads in flight (one per API process)."""

    def __init__(self, max_expensive: int = MAX_EXPENSIVE_IN_FLIGHT, expensive_tokens: int = EXPENSIVE_TOKENS,
                 wait_s: float = SHARED_WAIT_S) -> None:
        self._max, self._expensive, self._wait_s = max_expensive, expensive_tokens, wait_s
        self._lock = threading.Lock()
        self._flights: dict[tuple, _Flight] = {}
        self._expensive_in_flight: Counter = Counter()
        #: Reads answered from another one in flight (tests, benchmarks).
        self.shared = 0

    def run(self, app_id: str, key: tuple, tokens: int, admit: Callable[[int], None], compute: Callable[[], T]) -> T:
        """``admit(tokens)`` then ``compute()``, or the answer of the identical read ``key`` in flight
        (after ``admit(1)``).

        Raises:
            TooManyRequests: the app has MAX_EXPENSIVE_IN_FLIGHT expensive reads running, or admit refused.
        """
        key = (app_id, *key)
        expensive = tokens >= self._expensive
        with self._lock:
            flight = self._flights.get(key)
            leader = flight is None
            if leader:
                if expensive and self._expensive_in_flight[app_id] >= self._max:
                    raise TooManyRequests(
                        f"app {app_id!r} already has {self._max} expensive reads running (this one costs "
                        f"{tokens} request tokens); retry when one has finished", headers={"Retry-After": "1"})
                flight = self._flights[key] = _Flight()
                if expensive:
                    self._expensive_in_flight[app_id] += 1
        if not leader:
            return self._follow(flight, admit)
        try:
            admit(tokens)
            flight.result = compute()
            return flight.result
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._lock:
                del self._flights[key]
                if expensive:
                    self._expensive_in_flight[app_id] -= 1
                    if not self._expensive_in_flight[app_id]:
                        del self._expensive_in_flight[app_id]
            flight.done.set()

    def _follow(self, flight: _Flight, admit: Callable[[int], None]) -> Any:
        admit(1)
        if not flight.done.wait(self._wait_s):
            raise ServiceUnavailable("an identical read is still running; retry later", headers={"Retry-After": "1"})
        with self._lock:
            self.shared += 1
        if flight.error is not None:
            raise flight.error
        return flight.result
