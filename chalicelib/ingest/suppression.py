"""Suppression at ingest: events of a suppressed (app, user) are answered as accepted and written nowhere.

Every ingest route (``POST /v1/events``, the Segment and PostHog routes, hence RudderStack's clients)
filters its validated events here before anything is written: the SDKs get their 200 and do not
retry, the events never reach the stream, and the app's count of suppressed events (``GET
/v1/pipeline``) grows. The app's suppression list (hashes, chalicelib/lake/regulations.py) is read
once per ``ttl_s`` per process (one BatchGetItem) and kept in a bounded LRU like the key cache; a
regulation accepted by this process is seen at once (:meth:`Suppression.invalidate`), one accepted by
another process within ``ttl_s``. An app with no suppressed user costs one cache lookup per request;
otherwise one SHA-256 per distinct user of the request. When the list cannot be read the request is refused (503): an event
is never stored for want of knowing whether its user asked not to be.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Callable, Sequence, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.http.errors import ServiceUnavailable
from chalicelib.apps.key_cache import TtlLru
from chalicelib.ingest.validation import ValidatedEvent
from chalicelib.lake.regulations import RegulationStore, user_hash

DEFAULT_TTL_S = 30.0
T = TypeVar("T")


class Suppression:
    def __init__(self, store: RegulationStore, clock_ms: Callable[[], int], ttl_s: float = DEFAULT_TTL_S,
                 capacity: int = 10_000, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._store, self._clock_ms = store, clock_ms
        self._cache: TtlLru[frozenset[str]] = TtlLru(capacity, ttl_s, monotonic)

    def invalidate(self, app_id: str) -> None:
        self._cache.pop(app_id)

    def hashes(self, app_id: str) -> frozenset[str]:
        found, hashes = self._cache.get(app_id)
        if found:
            return hashes
        try:
            hashes = self._store.suppressed_hashes(app_id)
        except (ClientError, BotoCoreError) as exc:
            raise ServiceUnavailable(f"the suppression list is unavailable ({type(exc).__name__}); retry later",
                                     headers={"Retry-After": "1"}) from exc
        self._cache.put(app_id, hashes)
        return hashes

    def keep(self, app_id: str, accepted: Sequence[tuple[int, ValidatedEvent]]) -> list[int] | None:
        """Positions (in ``accepted``) of the events to write, or None when every one is kept
        (the common case: nothing to repack). Counts the suppressed ones."""
        hashes = self.hashes(app_id)
        if not hashes:
            return None
        users = {event.user_id for _, event in accepted} - {None}
        gone = {user for user in users if user_hash(app_id, user) in hashes}  # one hash per distinct user
        if not gone:
            return None
        kept = [i for i, (_, event) in enumerate(accepted) if event.user_id not in gone]
        if len(kept) == len(accepted):
            return None
        day = datetime.fromtimestamp(self._clock_ms() / 1000, tz=timezone.utc).strftime("%Y-%m-%d")
        try:
            self._store.count_suppressed(app_id, day, len(accepted) - len(kept))
        except (ClientError, BotoCoreError):
            pass  # a lost count never stores an event
        return kept
