"""Retention against a live backend (osmem and, with OPENSEARCH_URL, a real node)."""

from __future__ import annotations

from chalicelib.search import delete_expired_indices, index_kinesis_batch
from chalicelib.search.naming import DAY_MS
from tests.factories.search import NOW_MS, event, records, stored


def _names(client, prefix):
    return sorted(row["index"] for row in client.cat.indices(index=f"{prefix}-*", format="json"))


def test_retention_deletes_daily_indices_past_retention_and_keeps_newer_ones(backend, client, sink, clock):
    events = [event(at=NOW_MS - days * DAY_MS) for days in (0, 2, 3, 9, 10)]
    index_kinesis_batch(records(events), client=client, sink=sink, clock=clock,
                        config=backend.indexer_config(retention_days=30))
    p = backend.prefix
    client.indices.create(index=f"{p}-archive")          # not a daily name
    client.indices.create(index=f"{p}-2026.13.01")       # not a real date
    assert _names(client, p) == [f"{p}-2026.11.15", f"{p}-2026.11.16", f"{p}-2026.11.22", f"{p}-2026.11.23",
                                 f"{p}-2026.11.25", f"{p}-2026.13.01", f"{p}-archive"]

    # retention 3 days at 2026-11-25T12:00Z: cutoff 11-22T12:00, so 11-22 may still hold live events.
    deleted = delete_expired_indices(client, 3, NOW_MS, prefix=p)

    assert deleted == [f"{p}-2026.11.15", f"{p}-2026.11.16"]
    assert _names(client, p) == [f"{p}-2026.11.22", f"{p}-2026.11.23", f"{p}-2026.11.25",
                                 f"{p}-2026.13.01", f"{p}-archive"]
    assert delete_expired_indices(client, 3, NOW_MS, prefix=p) == []
    assert len(stored(client, p)) == 3


def test_retention_with_no_indices_deletes_nothing(backend, client):
    assert delete_expired_indices(client, 7, NOW_MS, prefix=backend.prefix) == []
