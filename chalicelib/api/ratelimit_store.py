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
DynamoDB throttling the item (more than ~1,000 writes/s on one app's bucket) is
answered 429 for that app alone; any other DynamoDB failure is 503.
"""

from __future__ import annotations

import threading
from typing import Callable

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.api.errors import ServiceUnavailable, TooManyRequests
from chalicelib.api.ratelimit import NS, BucketState, Decision, Limits, decide

BUCKET_PREFIX = "bucket#"
ATTRIBUTES = {"requests": "requests_tat", "events": "events_tat"}
THROTTLING = frozenset({"ProvisionedThroughputExceededException", "ThrottlingException",
                        "RequestLimitExceeded"})
#: Wrong guesses in a row before giving up (each one returns the fresh state, so 2 is the usual worst).
MAX_ATTEMPTS = 4


def bucket_key(app_id: str) -> dict:
    return {"key_hash": {"S": BUCKET_PREFIX + app_id}}


def state_of(item: dict | None) -> BucketState:
    item = item or {}

    def tat(dimension: str) -> int | None:
        value = item.get(ATTRIBUTES[dimension])
        return int(value["N"]) if value else None

    return BucketState(tat("requests"), tat("events"))


def update_request(table: str, app_id: str, decision: Decision) -> dict:
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
    return {"TableName": table, "Key": bucket_key(app_id), "UpdateExpression": "SET " + ", ".join(sets),
            "ConditionExpression": " AND ".join(conditions), "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values, "ReturnValues": "ALL_NEW",
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}


class DynamoBuckets:
    """The shared buckets (see the module docstring); ``clock_ms`` is injected."""

    def __init__(self, client, table_name: str, clock_ms: Callable[[], int]) -> None:
        self._client, self._table, self._clock_ms = client, table_name, clock_ms
        self._seen: dict[str, BucketState] = {}
        self._lock = threading.Lock()
        #: DynamoDB calls made (the tests check that a refusal makes none).
        self.writes = 0

    def take(self, app_id: str, limits: Limits, requests: int, events: int) -> Decision:
        with self._lock:
            state = self._seen.get(app_id, BucketState())
        for _ in range(MAX_ATTEMPTS):
            decision = decide(limits, state, requests, events, self._clock_ms() * (NS // 1000))
            if not decision.admitted:
                return decision
            try:
                self.writes += 1
                response = self._client.update_item(**update_request(self._table, app_id, decision))
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code != "ConditionalCheckFailedException":
                    raise self._failure(code or type(exc).__name__, code in THROTTLING) from exc
                state = state_of(exc.response.get("Item"))
            except BotoCoreError as exc:
                raise self._failure(type(exc).__name__, False) from exc
            else:
                state = state_of(response.get("Attributes"))
                with self._lock:
                    self._seen[app_id] = state
                return Decision(True, decision.now_ns, state, decision.steps)
            with self._lock:
                self._seen[app_id] = state
        return Decision(False, decision.now_ns, state, retry_after_ns=NS)  # contention: come back in a second

    @staticmethod
    def _failure(reason: str, throttled: bool) -> Exception:
        if throttled:
            return TooManyRequests(f"the rate-limit store is throttling this app ({reason}); retry later",
                                   headers={"Retry-After": "1"})
        return ServiceUnavailable(f"the rate-limit store is unavailable ({reason}); retry later",
                                  headers={"Retry-After": "1"})
