"""The rate-limit buckets in DynamoDB: one conditional ``UpdateItem`` per admitted request.

Each app's two buckets (``ratelimit.py``) are one item of the apps table, key
``bucket#<app_id>``, holding ``requests_tat`` and ``events_tat`` (ns). Every Lambda
(every API process locally) shares it, so the limit holds across all of them.

Admitting a request is one write whose condition is the rule of :func:`decide` for
the state the writer expects, and whose update takes both costs at once:

* a busy bucket (``tat > now``): ``SET tat = tat + :cost`` if ``tat > :now AND
  tat <= :now + tau - :cost``. Additions commute, so concurrent writers of a busy
  bucket (the case under a flood) never conflict;
* a full bucket: ``SET tat = :now + :cost`` if ``attribute_not_exists(tat) OR tat <= :now``.

Which case applies is guessed from the state this process last saw (returned by
each write, ``ALL_NEW``). When the guess is wrong the condition fails, DynamoDB
returns the item (``ReturnValuesOnConditionCheckFailure``), and the request is
decided again on that state. Because ``tat`` only grows, a refusal decided on the
last seen state stands without asking DynamoDB: a 429 under a flood costs no write.

**No refusal under the limit, at any concurrency.** A request is decided at one instant,
``now``, read once when it arrives: every retry uses the same ``now``. (Reading the clock
again for each retry let a bucket hovering at ``tat ~ now`` - an app well under its rate -
flip between "full" and "busy" faster than a round trip, and 4 wrong guesses in a row
refused 72 of 400 requests at 16 threads and 65 requests/s against a 200/s limit.) With a
fixed ``now`` a failed condition can only mean: a dimension guessed full is busy (``tat >
now``; it stays busy, since ``tat`` only grows), at most once per dimension, or a busy
dimension has too few tokens, which :func:`decide` then refuses on the returned state. So
an admission takes at most 3 writes (usually 1) and a refusal is always the rule's, never
contention's.

**Throughput of one app.** DynamoDB serves at most 1,000 write units/s and 3,000 read
units/s per partition, and one partition key never spans two partitions. A write here is
1 WCU (item < 1 KB; a failed condition is charged too) and nothing reads (``ReturnValues``
is free), so one item caps an app at ~1,000 admitted requests/s (~333 when every admission
met a conflict). An app is therefore split over ``N = ceil(requests_per_second / 250)``
items (:func:`~chalicelib.apps.ratelimit.shard_count`: ``bucket#<app_id>`` then
``bucket#<app_id>#1`` ... ``#N-1``, N <= 400), each a full bucket pair with ``1/N`` of both rates and
the same burst seconds. A request goes to a shard chosen at random, and to the next ones
while the state last seen refuses it there (free: no write), so the app is refused only
when every shard refuses. At 10,000 requests/s: 40 items of ~250 writes/s each (a quarter
of the partition limit; 333 with a conflict on every admission) - and 100,000/s needs 400
items, still within a table's default 40,000 WCU/s quota only up to ~40,000/s (raise the
quota, and warm an on-demand table, beyond 4,000 writes/s at once). The split costs
exactness only at the edges: a request larger than one shard's share is admitted when
that shard is full (as a batch larger than the burst always was), and a change of N (new
limits) starts the new shards full. Apps up to 250 requests/s (the default is 200) keep
one exact item. Token leases (a container takes K tokens in one write) were the
alternative: fewer writes, but hundreds of Lambda containers each holding unspent tokens
refuse an app that is under its limit.

DynamoDB throttling an item is answered 429 for that app alone; any other DynamoDB
failure is 503.
"""

from __future__ import annotations

import random
import threading
from typing import Callable, Iterator

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.http.errors import ServiceUnavailable, TooManyRequests
from chalicelib.apps.ratelimit import NS, BucketState, Decision, Limits, decide, shard_count

BUCKET_PREFIX = "bucket#"
ATTRIBUTES = {"requests": "requests_tat", "events": "events_tat"}
THROTTLING = frozenset({"ProvisionedThroughputExceededException", "ThrottlingException",
                        "RequestLimitExceeded"})
#: Decisions per shard: at most 3 writes (see the module docstring), then the 4th decision refuses.
MAX_ATTEMPTS = 4


def bucket_key(app_id: str, shard: int = 0) -> dict:
    """The item of one shard of an app's buckets (shard 0 is the key of an unsplit app)."""
    return {"key_hash": {"S": BUCKET_PREFIX + app_id + (f"#{shard}" if shard else "")}}


def state_of(item: dict | None) -> BucketState:
    item = item or {}

    def tat(dimension: str) -> int | None:
        value = item.get(ATTRIBUTES[dimension])
        return int(value["N"]) if value else None

    return BucketState(tat("requests"), tat("events"))


def update_request(table: str, app_id: str, decision: Decision, shard: int = 0) -> dict:
    """The ``UpdateItem`` that applies an admitting decision, conditioned on its assumptions."""
    names, values, sets, conditions = {}, {":now": {"N": str(decision.now_ns)}}, [], []
    for step in decision.steps:
        ref, d = f"#{step.dimension[0]}", step.dimension[0]
        names[ref] = ATTRIBUTES[step.dimension]
        if step.busy:
            values[f":{d}add"] = {"N": str(step.add_ns)}
            values[f":{d}max"] = {"N": str(step.max_tat_ns)}
            sets.append(f"{ref} = {ref} + :{d}add")
            conditions.append(f"({ref} > :now AND {ref} <= :{d}max)")
        else:
            values[f":{d}new"] = {"N": str(decision.now_ns + step.add_ns)}
            sets.append(f"{ref} = :{d}new")
            conditions.append(f"(attribute_not_exists({ref}) OR {ref} <= :now)")
    return {"TableName": table, "Key": bucket_key(app_id, shard), "UpdateExpression": "SET " + ", ".join(sets),
            "ConditionExpression": " AND ".join(conditions), "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values, "ReturnValues": "ALL_NEW",
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}


class DynamoBuckets:
    """The shared buckets (see the module docstring); ``clock_ms`` is injected, ``rng`` picks shards."""

    def __init__(self, client, table_name: str, clock_ms: Callable[[], int],
                 rng: random.Random | None = None) -> None:
        self._client, self._table, self._clock_ms = client, table_name, clock_ms
        self._rng = rng or random.Random()
        self._seen: dict[tuple[str, int], BucketState] = {}
        self._lock = threading.Lock()
        #: DynamoDB calls made (the tests check that a refusal makes none).
        self.writes = 0

    def _now_ns(self) -> int:
        return self._clock_ms() * (NS // 1000)

    def _last_seen(self, app_id: str, shard: int) -> BucketState:
        with self._lock:
            return self._seen.get((app_id, shard), BucketState())

    def _remember(self, app_id: str, shard: int, state: BucketState) -> None:
        with self._lock:
            self._seen[(app_id, shard)] = state

    def _shards(self, limits: Limits) -> tuple[Limits, Iterator[int]]:
        """Each shard's limits, and the order to try them (from a random one)."""
        count = shard_count(limits)
        first = self._rng.randrange(count) if count > 1 else 0
        return limits.split(count), ((first + k) % count for k in range(count))

    def peek(self, app_id: str, limits: Limits, requests: int, events: int) -> Decision:
        """The decision on the states last seen (no DynamoDB call): refused only when every shard refuses."""
        now = self._now_ns()
        share, order = self._shards(limits)
        refusals = []
        for shard in order:
            decision = decide(share, self._last_seen(app_id, shard), requests, events, now)
            if decision.admitted:
                return decision
            refusals.append(decision)
        return min(refusals, key=lambda d: d.retry_after_ns)

    def take(self, app_id: str, limits: Limits, requests: int, events: int) -> Decision:
        now = self._now_ns()  # one instant per request: retries never re-read the clock
        share, order = self._shards(limits)
        refusals = []
        for shard in order:
            decision = self._take_shard(app_id, shard, share, requests, events, now)
            if decision.admitted:
                return decision
            refusals.append(decision)
        return min(refusals, key=lambda d: d.retry_after_ns)

    def _take_shard(self, app_id: str, shard: int, limits: Limits, requests: int, events: int,
                    now: int) -> Decision:
        state = self._last_seen(app_id, shard)
        for _ in range(MAX_ATTEMPTS):
            decision = decide(limits, state, requests, events, now)
            if not decision.admitted:
                return decision
            try:
                with self._lock:
                    self.writes += 1
                response = self._client.update_item(**update_request(self._table, app_id, decision, shard))
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code != "ConditionalCheckFailedException":
                    raise self._failure(code or type(exc).__name__, code in THROTTLING) from exc
                state = state_of(exc.response.get("Item"))
                self._remember(app_id, shard, state)
            except BotoCoreError as exc:
                raise self._failure(type(exc).__name__, False) from exc
            else:
                state = state_of(response.get("Attributes"))
                self._remember(app_id, shard, state)
                return Decision(True, now, state, decision.steps)
        # Unreachable with one ``now`` (module docstring): kept as a refusal rather than a loop.
        return Decision(False, now, state, retry_after_ns=NS)

    @staticmethod
    def _failure(reason: str, throttled: bool) -> Exception:
        if throttled:
            return TooManyRequests(f"the rate-limit store is throttling this app ({reason}); retry later",
                                   headers={"Retry-After": "1"})
        return ServiceUnavailable(f"the rate-limit store is unavailable ({reason}); retry later",
                                  headers={"Retry-After": "1"})
