"""Retention: drop whole daily indices once all their events are past retention.

The rule matches the indexer's: an event is kept while
``event_time >= now - retention_days``. The index of day D holds events in
``[D, D+1)``, so it is deleted once ``D+1 <= now - retention_days``: never
while it may still hold an event the indexer would accept.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable

from opensearchpy.exceptions import NotFoundError

from chalicelib.search.naming import DAY_MS, DEFAULT_PREFIX, check_prefix, day_start_ms, index_pattern, \
    parse_index_day

log = logging.getLogger(__name__)


def expired_indices(names: Iterable[str], retention_days: int, now_ms: int,
                    prefix: str = DEFAULT_PREFIX) -> list[str]:
    """The daily index names among ``names`` that are entirely past retention, oldest first.

    Names that are not ``<prefix>-YYYY.MM.DD`` (aliases, other indices, typos) are ignored.
    """
    if retention_days < 1:
        raise ValueError("retention_days must be >= 1 (0 would delete today's index)")
    cutoff_ms = now_ms - retention_days * DAY_MS
    dated = []
    for name in set(names):
        day = parse_index_day(name, prefix)
        if day is not None and day_start_ms(day) + DAY_MS <= cutoff_ms:
            dated.append((day, name))
    return [name for _, name in sorted(dated)]


def list_daily_indices(client: Any, prefix: str = DEFAULT_PREFIX) -> list[str]:
    """Names of the indices matching ``<prefix>-*`` (open or closed)."""
    rows = client.cat.indices(index=index_pattern(prefix), format="json", h="index",
                              expand_wildcards="all")
    return [row["index"] for row in rows or []]


def delete_expired_indices(client: Any, retention_days: int, now_ms: int, *,
                           prefix: str = DEFAULT_PREFIX) -> list[str]:
    """Delete the expired daily indices; returns the names deleted (oldest first).

    Each index is deleted by its exact name (wildcard deletes may be disabled
    by ``action.destructive_requires_name``); one already gone is skipped.
    """
    check_prefix(prefix)
    deleted = []
    for name in expired_indices(list_daily_indices(client, prefix), retention_days, now_ms, prefix):
        try:
            client.indices.delete(index=name)
        except NotFoundError:
            continue
        log.info("search retention: deleted index %s", name)
        deleted.append(name)
    return deleted
