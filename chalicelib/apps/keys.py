"""Applications and API keys, stored hashed in DynamoDB.

Keys are 256-bit random tokens, so a plain SHA-256 is enough (a slow password
hash protects low-entropy secrets; these have none to protect) and lets the
key hash be the table's partition key for an O(1) lookup.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Callable

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.stream.envelope import APP_ID_PATTERN
from chalicelib.http.errors import BadRequest, ServiceUnavailable, TooManyRequests, Unauthorized
from chalicelib.apps.key_cache import TtlLru, UnknownKeyBudget
from chalicelib.apps.ratelimit import LIMIT_FIELDS, valid_limit

APP_ID_RE = re.compile(APP_ID_PATTERN[1:-1])
#: Items that are not keys: an app's own limits (``app#<app_id>``) and its rate-limit buckets
#: (``bucket#<app_id>``, chalicelib/apps/ratelimit_store.py). Key hashes are hex: they never hold ``#``.
LIMITS_PREFIX = "app#"
#: The app's session inactivity gap (minutes) on its ``app#`` item, and the range accepted.
SESSION_GAP_FIELD = "session_gap_minutes"
SESSION_GAP_MINUTES = (1.0, 1440.0)


def hash_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def new_api_key() -> str:
    return "ep_" + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class KeyCacheLimits:
    """What unauthenticated traffic may cost one process (see key_cache.py).

    Attributes:
        known_keys: keys of apps remembered at most (least recently used go first).
        unknown_keys: unknown keys remembered at most.
        unknown_ttl_s: how long an unknown key is remembered (a key created since works after it).
        unknown_lookups_per_s: key-store lookups that found no key, per second, before refusing (429)
            keys that are not remembered.
        unknown_lookup_burst: such lookups at once.
        served_ttl_s: how long a key that was once found stays exempt from that budget: its
            lookup when its cache entry expires is made even while unknown keys are refused, so a
            flood of made-up keys cannot lock out an app already served (its answer is still
            looked up: a revoked key is refused).
    """

    known_keys: int = 10_000
    unknown_keys: int = 1_000
    unknown_ttl_s: float = 2.0
    unknown_lookups_per_s: float = 50.0
    unknown_lookup_burst: float = 100.0
    served_ttl_s: float = 86_400.0


@dataclass(frozen=True)
class App:
    app_id: str
    name: str


class AppStore:
    """DynamoDB adapter; one item per key: {key_hash, app_id, created_at[, operator]}.

    An app's rate limits, when set (``eventpipe apps create/limits``), are one more item,
    ``{key_hash: "app#<app_id>", app_id, events_per_second?, requests_per_second?,
    burst_seconds?}``; fields not set there take the defaults of the settings.

    An app is an operator when any of its keys was created with ``operator=True``
    (``eventpipe apps create NAME --operator``): its keys also see the stream-wide
    figures of ``GET /v1/pipeline``.
    """

    def __init__(self, client, table_name: str, clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
                 cache_ttl_s: float = 60.0, cache: KeyCacheLimits | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._table = table_name
        self._clock_ms = clock_ms
        self._cache_ttl_s = cache_ttl_s
        limits = cache or KeyCacheLimits()
        # Known and unknown keys, each in a bounded LRU (key_cache.py); unknown keys are remembered
        # briefly only, so a new key works at once, and their lookups are budgeted.
        self._known: TtlLru[App] = TtlLru(limits.known_keys, cache_ttl_s, monotonic)
        self._unknown: TtlLru[None] = TtlLru(limits.unknown_keys, min(cache_ttl_s, limits.unknown_ttl_s), monotonic)
        # Digests of keys found before (same cap as the known keys): their refresh lookups skip the budget.
        self._served: TtlLru[None] = TtlLru(limits.known_keys, max(cache_ttl_s, limits.served_ttl_s), monotonic)
        self._unknown_budget = UnknownKeyBudget(limits.unknown_lookups_per_s, limits.unknown_lookup_burst, monotonic)
        self._operators: dict[str, tuple[float, bool]] = {}
        self._limits: dict[str, tuple[float, dict[str, float]]] = {}
        self._pseudonyms: dict[str, tuple[float, tuple[list[str], bytes] | None]] = {}
        self._lock = threading.Lock()

    def create_key(self, app_id: str, api_key: str | None = None, operator: bool = False) -> str:
        """Store a key for ``app_id`` (a new random one unless given); returns it.

        Args:
            app_id: the app the key belongs to.
            api_key: the key itself (a new random one when None).
            operator: mark the app as an operator (sees the stream-wide pipeline figures).
        """
        if not APP_ID_RE.fullmatch(app_id):
            raise BadRequest(f"app name {app_id!r} must match ^[a-z0-9][a-z0-9_-]{{0,63}}$")
        api_key = api_key or new_api_key()
        self._client.put_item(TableName=self._table, Item={
            "key_hash": {"S": hash_key(api_key)},
            "app_id": {"S": app_id},
            "created_at": {"N": str(self._clock_ms())},
            **({"operator": {"BOOL": True}} if operator else {}),
        })
        self._unknown.pop(hash_key(api_key))
        with self._lock:
            self._operators.pop(app_id, None)
        return api_key

    def is_operator(self, app_id: str) -> bool:
        """Whether any key of the app is marked operator (a scan, remembered for the cache TTL)."""
        now = time.monotonic()
        with self._lock:
            cached = self._operators.get(app_id)
        if cached is not None and now - cached[0] < self._cache_ttl_s:
            return cached[1]
        try:
            found = False
            for page in self._client.get_paginator("scan").paginate(
                    TableName=self._table, FilterExpression="app_id = :a AND #op = :t",
                    ExpressionAttributeNames={"#op": "operator"},
                    ExpressionAttributeValues={":a": {"S": app_id}, ":t": {"BOOL": True}},
                    ProjectionExpression="key_hash"):
                found = found or bool(page["Items"])
        except (ClientError, BotoCoreError) as exc:
            raise ServiceUnavailable(f"the key store is unavailable ({type(exc).__name__}); retry later",
                                     headers={"Retry-After": "1"}) from exc
        with self._lock:
            self._operators[app_id] = (now, found)
        return found

    def list_apps(self) -> dict[str, int]:
        """app_id -> number of keys."""
        counts: dict[str, int] = {}
        for page in self._client.get_paginator("scan").paginate(TableName=self._table):
            for item in page["Items"]:
                if "#" in item["key_hash"]["S"]:
                    continue  # limits and buckets, not keys
                app_id = item["app_id"]["S"]
                counts[app_id] = counts.get(app_id, 0) + 1
        return counts

    def set_limits(self, app_id: str, values: dict[str, float]) -> dict[str, float]:
        """Store some of an app's limits (the others keep their value); returns the app's own limits."""
        if not APP_ID_RE.fullmatch(app_id):
            raise BadRequest(f"app name {app_id!r} must match ^[a-z0-9][a-z0-9_-]{{0,63}}$")
        unknown = set(values) - set(LIMIT_FIELDS)
        if unknown:
            raise BadRequest(f"unknown limit(s): {', '.join(sorted(unknown))}")
        for name, value in values.items():
            if not valid_limit(value):
                raise BadRequest(f"{name} must be a number from 0.001 to 1e12, got {value!r}")
        names = {f"#{i}": name for i, name in enumerate(["app_id", *values])}
        item = self._client.update_item(
            TableName=self._table, Key={"key_hash": {"S": LIMITS_PREFIX + app_id}},
            UpdateExpression="SET " + ", ".join(f"#{i} = :{i}" for i in range(len(names))),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues={":0": {"S": app_id},
                                       **{f":{i}": {"N": repr(float(v))} for i, v in enumerate(values.values(), 1)}},
            ReturnValues="ALL_NEW")["Attributes"]
        with self._lock:
            self._limits.pop(app_id, None)
        return _limit_values(item)

    def _app_item(self, app_id: str) -> dict:
        """The app's own item (limits, pseudonymisation, session gap; ``{}`` when none), a 503 when the
        key store cannot be read."""
        try:
            return self._client.get_item(TableName=self._table,
                                         Key={"key_hash": {"S": LIMITS_PREFIX + app_id}}).get("Item") or {}
        except (ClientError, BotoCoreError) as exc:
            raise ServiceUnavailable(f"the key store is unavailable ({type(exc).__name__}); retry later",
                                     headers={"Retry-After": "1"}) from exc

    def own_limits(self, app_id: str) -> dict[str, float]:
        """The limits stored for the app (a subset of the fields; remembered for the cache TTL)."""
        now = time.monotonic()
        with self._lock:
            cached = self._limits.get(app_id)
        if cached is not None and now - cached[0] < self._cache_ttl_s:
            return cached[1]
        values = _limit_values(self._app_item(app_id))
        with self._lock:
            self._limits[app_id] = (now, values)
        return values

    def set_pseudonymisation(self, app_id: str, fields: list[str]) -> list[str]:
        """Store the fields the app's events have pseudonymised at ingest (none: off); the app's secret
        (256 random bits, chalicelib/ingest/pseudonymise.py) is created once and kept."""
        if not APP_ID_RE.fullmatch(app_id):
            raise BadRequest(f"app name {app_id!r} must match ^[a-z0-9][a-z0-9_-]{{0,63}}$")
        key = {"key_hash": {"S": LIMITS_PREFIX + app_id}}
        if fields:
            self._client.update_item(
                TableName=self._table, Key=key,
                UpdateExpression="SET app_id = :a, pseudonymise = :f, pseudonym_secret = "
                                 "if_not_exists(pseudonym_secret, :s)",
                ExpressionAttributeValues={":a": {"S": app_id}, ":f": {"SS": sorted(set(fields))},
                                           ":s": {"S": secrets.token_hex(32)}})
        else:
            self._client.update_item(TableName=self._table, Key=key, UpdateExpression="REMOVE pseudonymise")
        with self._lock:
            self._pseudonyms.pop(app_id, None)
        return sorted(set(fields))

    def pseudonymisation(self, app_id: str) -> tuple[list[str], bytes] | None:
        """(fields, secret) when the app pseudonymises fields at ingest (remembered for the cache TTL)."""
        now = time.monotonic()
        with self._lock:
            cached = self._pseudonyms.get(app_id)
        if cached is not None and now - cached[0] < self._cache_ttl_s:
            return cached[1]
        item = self._app_item(app_id)
        value = ((sorted(item["pseudonymise"]["SS"]), bytes.fromhex(item["pseudonym_secret"]["S"]))
                 if "pseudonymise" in item and "pseudonym_secret" in item else None)
        with self._lock:
            self._pseudonyms[app_id] = (now, value)
        return value

    def all_limits(self) -> dict[str, dict[str, float]]:
        """app_id -> the limits stored for it (apps without their own limits are absent)."""
        result = {}
        for page in self._client.get_paginator("scan").paginate(TableName=self._table):
            for item in page["Items"]:
                if item["key_hash"]["S"].startswith(LIMITS_PREFIX):
                    result[item["key_hash"]["S"][len(LIMITS_PREFIX):]] = _limit_values(item)
        return result

    def set_session_gap(self, app_id: str, minutes: float) -> float:
        """Store the app's session inactivity gap (``session_gap_minutes`` on its ``app#`` item)."""
        if not APP_ID_RE.fullmatch(app_id):
            raise BadRequest(f"app name {app_id!r} must match ^[a-z0-9][a-z0-9_-]{{0,63}}$")
        if isinstance(minutes, bool) or not isinstance(minutes, (int, float)) \
                or not SESSION_GAP_MINUTES[0] <= minutes <= SESSION_GAP_MINUTES[1]:
            raise BadRequest(f"the session gap must be {SESSION_GAP_MINUTES[0]:g} to {SESSION_GAP_MINUTES[1]:g} "
                             f"minutes, got {minutes!r}")
        self._client.update_item(TableName=self._table, Key={"key_hash": {"S": LIMITS_PREFIX + app_id}},
                                 UpdateExpression="SET #a = :a, #g = :g",
                                 ExpressionAttributeNames={"#a": "app_id", "#g": SESSION_GAP_FIELD},
                                 ExpressionAttributeValues={":a": {"S": app_id}, ":g": {"N": repr(float(minutes))}})
        return float(minutes)

    def session_gap_minutes(self, app_id: str) -> float | None:
        """The app's own session gap in minutes, or None (the default applies)."""
        item = self._app_item(app_id)
        return float(item[SESSION_GAP_FIELD]["N"]) if SESSION_GAP_FIELD in item else None

    def authenticate(self, api_key: str | None) -> str:
        """Return the app_id for a key, or raise Unauthorized."""
        if not api_key:
            raise Unauthorized("missing API key: send it in the x-api-key header")
        digest = hash_key(api_key)
        found, app = self._known.get(digest)
        if found:
            return app.app_id
        if self._unknown.get(digest)[0]:
            raise Unauthorized("unknown API key")
        if not self._served.get(digest)[0] and not self._unknown_budget.available():
            raise TooManyRequests("too many requests with unknown API keys; retry later",
                                  headers={"Retry-After": str(self._unknown_budget.retry_after_s())})
        try:
            item = self._client.get_item(TableName=self._table, Key={"key_hash": {"S": digest}}).get("Item")
        except (ClientError, BotoCoreError) as exc:
            raise ServiceUnavailable(f"the key store is unavailable ({type(exc).__name__}); retry later",
                                     headers={"Retry-After": "1"}) from exc
        app = App(item["app_id"]["S"], item["app_id"]["S"]) if item else None
        if app is not None:
            self._known.put(digest, app)
            self._served.put(digest, None)
        else:
            self._served.pop(digest)
            self._unknown_budget.spend()
            self._unknown.put(digest, None)
        if app is None:
            raise Unauthorized("unknown API key")
        return app.app_id

    def cached_keys(self) -> tuple[int, int]:
        """(known, unknown) keys remembered now (each at most its cap)."""
        return len(self._known), len(self._unknown)


def _limit_values(item: dict) -> dict[str, float]:
    return {name: float(item[name]["N"]) for name in LIMIT_FIELDS if name in item}
