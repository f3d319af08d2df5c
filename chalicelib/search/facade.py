"""The search services the handlers call, built once per container.

Each receives a *client provider* rather than a client: the OpenSearch client
is created (and the index template applied) on first use, and a failure to
reach the cluster is raised as ``SearchUnavailableError`` every time instead
of being cached, so a cluster that comes back is used at once.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from chalicelib.search.indexer import IndexerConfig, IndexResult, index_kinesis_batch
from chalicelib.search.query import SearchSettings
from chalicelib.search.retention import delete_expired_indices
from chalicelib.search.service import search_events
from chalicelib.stream.badrows import BadRowsSink

ClientProvider = Callable[[], Any]


class SearchService:
    """``GET /v1/search`` for one app."""

    def __init__(self, client: ClientProvider, settings: SearchSettings, clock_ms: Callable[[], int]) -> None:
        self._client, self._settings, self._clock_ms = client, settings, clock_ms

    def search(self, app_id: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
        return search_events(self._client(), app_id, params, self._clock_ms(), self._settings)


class IndexingService:
    """The ``index_events`` consumer: a Lambda Kinesis batch into the daily indices."""

    def __init__(self, client: ClientProvider, bad_rows: BadRowsSink, config: IndexerConfig,
                 clock_ms: Callable[[], int]) -> None:
        self._client, self._bad_rows, self._config, self._clock_ms = client, bad_rows, config, clock_ms

    def handle(self, records: Sequence[Mapping[str, Any]], remaining_ms: Callable[[], int] | None = None) -> dict:
        return self.index(records, remaining_ms).lambda_response()

    def index(self, records: Sequence[Mapping[str, Any]], remaining_ms: Callable[[], int] | None = None) -> IndexResult:
        """What ``handle`` does, with the whole result (``eventpipe replay`` reports it)."""
        return index_kinesis_batch(records, client=self._client(), sink=self._bad_rows, clock=self._clock_ms,
                                   config=self._config, remaining_ms=remaining_ms)


class RetentionService:
    """The ``search_retention`` schedule: drop the daily indices past retention."""

    def __init__(self, client: ClientProvider, retention_days: int, prefix: str,
                 clock_ms: Callable[[], int]) -> None:
        self._client, self._days, self._prefix, self._clock_ms = client, retention_days, prefix, clock_ms

    def run(self) -> list[str]:
        return delete_expired_indices(self._client(), self._days, self._clock_ms(), prefix=self._prefix)
