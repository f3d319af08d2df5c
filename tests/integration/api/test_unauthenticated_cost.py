"""Unauthenticated traffic has a bounded cost (issue 21, item 11), through the API on moto.

Rules: made-up keys never grow the key cache past its caps; lookups of unknown keys are
budgeted per process (beyond the budget a key that is not remembered is refused with 429 and
costs no DynamoDB call), while keys already served keep working; ``/v1/health`` checks its
components at most once per cache period (5 s; 1 s while degraded), however often it is called.
"""

from __future__ import annotations

import json

import pytest

import app as app_module
from chalicelib.http.health import HealthService
from chalicelib.apps.keys import AppStore, KeyCacheLimits, hash_key

EVENT = {"event_type": "a", "event_time": "2026-01-01T00:00:00Z", "sent_at": "2026-01-01T00:00:00Z"}


class Calls:
    """Counts the AWS operations a client makes (a botocore event hook)."""

    def __init__(self, *clients) -> None:
        self.names: list[str] = []
        for client in clients:
            client.meta.events.register("before-call.*.*", self._count)

    def _count(self, model, **_):
        self.names.append(model.name)

    def count(self, name: str) -> int:
        return self.names.count(name)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def post(client, key):
    return client.http.post("/v1/events", body=json.dumps({"events": [EVENT]}),
                            headers={"Content-Type": "application/json", "x-api-key": key})


def test_a_flood_of_unknown_keys_is_bounded_in_memory_and_in_lookups(client, container, monkeypatch):
    """3,000 made-up keys: at most the burst of the budget reaches DynamoDB, the cache stays under its
    caps, and the app key that was served before the flood is still accepted during it."""
    clock = FakeClock()
    store = AppStore(container.clients.dynamodb, container.settings.apps_table, monotonic=clock,
                     cache=KeyCacheLimits(known_keys=50, unknown_keys=100, unknown_lookups_per_s=10,
                                          unknown_lookup_burst=20))
    monkeypatch.setitem(container.__dict__, "apps", store)
    good = store.create_key("alpha")
    assert post(client, good).status_code == 200
    calls = Calls(container.clients.dynamodb)
    statuses = [post(client, f"made-up-{i}").status_code for i in range(3000)]
    assert calls.count("GetItem") <= 20 + 1  # the burst (and no more while the clock stands still)
    assert statuses.count(401) == 20 and statuses.count(429) == 3000 - 20
    assert store.cached_keys() == (1, 20) and max(store.cached_keys()) <= 100
    assert post(client, good).status_code == 200  # the served key is remembered: never refused
    refused = post(client, "made-up-x")
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    clock.now += 2.0  # the budget refills: 10 lookups per second
    assert [post(client, f"later-{i}").status_code for i in range(25)].count(401) >= 1
    for i in range(5000):  # and made-up keys never grow the memory past the caps
        store._unknown.put(f"k{i}", None)
    assert store.cached_keys()[1] == 100


def test_a_served_key_whose_cache_entry_expires_during_a_flood_is_looked_up_not_refused(client, container,
                                                                                        monkeypatch):
    """Rule: a flood that empties the unknown-key budget cannot lock out an app already served, even
    after its key's cache entry (60 s) expires mid-flood: that key is looked up again outside the
    budget (and a key revoked meanwhile gets 401, not a stale 200)."""
    clock = FakeClock()
    store = AppStore(container.clients.dynamodb, container.settings.apps_table, monotonic=clock,
                     cache=KeyCacheLimits(unknown_lookups_per_s=1, unknown_lookup_burst=5))
    monkeypatch.setitem(container.__dict__, "apps", store)
    good, revoked = store.create_key("alpha"), store.create_key("alpha")
    assert post(client, good).status_code == 200 and post(client, revoked).status_code == 200
    flood = [post(client, f"made-up-{i}").status_code for i in range(50)]
    assert flood.count(429) == 45
    clock.now += 61.0  # both cache entries expire; the budget refills by 61 tokens...
    assert [post(client, f"more-{i}").status_code for i in range(200)].count(429) >= 100  # ...and empties again
    container.clients.dynamodb.delete_item(TableName=container.settings.apps_table,
                                           Key={"key_hash": {"S": hash_key(revoked)}})
    calls = Calls(container.clients.dynamodb)
    assert post(client, good).status_code == 200
    assert post(client, revoked).status_code == 401
    assert calls.count("GetItem") == 2
    assert post(client, "made-up-new").status_code == 429  # a key never served still waits for the budget


def test_unknown_keys_are_forgotten_after_a_short_ttl_so_a_new_key_works(container):
    """An unknown key is remembered for 2 s at most: once created (here or in another process) it works."""
    clock = FakeClock()
    store = AppStore(container.clients.dynamodb, container.settings.apps_table, monotonic=clock)
    other = AppStore(container.clients.dynamodb, container.settings.apps_table)
    with pytest.raises(Exception, match="unknown API key"):
        store.authenticate("ep_new_key")
    other.create_key("beta", "ep_new_key")
    with pytest.raises(Exception, match="unknown API key"):
        store.authenticate("ep_new_key")  # still remembered as unknown
    clock.now += 2.0
    assert store.authenticate("ep_new_key") == "beta"


def test_health_checks_the_components_once_per_cache_period(client, container, monkeypatch):
    """100 health calls within the cache period cost one check of each component; after it, a new one."""
    clock = FakeClock()
    health = HealthService(container.clients, container.settings, monotonic=clock)
    monkeypatch.setitem(container.__dict__, "health", health)
    calls = Calls(container.clients.kinesis, container.clients.dynamodb, container.clients.s3)
    bodies = [json.loads(client.http.get("/v1/health").body) for _ in range(100)]
    assert calls.count("DescribeStreamSummary") == calls.count("DescribeTable") == calls.count("HeadBucket") == 1
    assert bodies[0]["cached"] is False and all(b["cached"] for b in bodies[1:])
    assert all(b["components"] == bodies[0]["components"] for b in bodies)
    _remove_bucket(container)
    assert client.http.get("/v1/health").status_code == 200  # the cached report, for the period
    clock.now += 5.0
    response = client.http.get("/v1/health")
    assert response.status_code == 503 and json.loads(response.body)["components"]["s3"]["status"] == "down"
    assert calls.count("DescribeStreamSummary") == 2
    clock.now += 0.5  # a degraded report is reused for at most 1 s: a recovery shows soon
    assert json.loads(client.http.get("/v1/health").body)["cached"] is True
    container.clients.s3.create_bucket(Bucket=container.settings.bucket)
    clock.now += 0.5
    assert client.http.get("/v1/health").status_code == 200 and calls.count("DescribeStreamSummary") == 3


def _remove_bucket(container) -> None:
    """The lake bucket gone (it holds the raw table's first metadata file since bootstrap: empty it first)."""
    from chalicelib.lake import s3io
    s3, bucket = container.clients.s3, container.settings.bucket
    s3io.delete_keys(s3, bucket, [o["Key"] for o in s3io.list_keys(s3, bucket, "")])
    s3.delete_bucket(Bucket=bucket)
