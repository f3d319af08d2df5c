"""Search-suite fixtures: one suite, two backends.

``backend`` is parametrized: ``osmem`` (the in-memory server from PyPI,
always; each test gets its own clone) and ``opensearch`` (a real node at
``OPENSEARCH_URL``; skipped when unset). On the real node every test uses
its own index prefix and deletes what it made.
"""

from __future__ import annotations

import os
import random
import uuid
from dataclasses import dataclass
from typing import Iterator

import pytest
from opensearchpy import OpenSearch

from chalicelib.search import IndexerConfig, MemoryBadRowsSink, TemplateSettings, ensure_template
from chalicelib.stream.retry import Backoff
from chalicelib.search.client import client_for_url
from chalicelib.search.query import SearchSettings
from tests.factories.search import NOW_MS

BACKENDS = ("osmem", "opensearch")


@dataclass
class Backend:
    name: str
    url: str
    prefix: str

    def client(self, **kwargs) -> OpenSearch:
        return client_for_url(self.url, **kwargs)

    @property
    def template(self) -> TemplateSettings:
        # One shard keeps a bulk request's items in order (mapping-conflict test).
        return TemplateSettings(prefix=self.prefix, shards=1, replicas=0, refresh_interval="1s")

    def indexer_config(self, **overrides) -> IndexerConfig:
        defaults = dict(prefix=self.prefix, retention_days=7, refresh=True,
                        backoff=Backoff(max_attempts=4, base_s=0.01, cap_s=0.05))
        return IndexerConfig(**{**defaults, **overrides})

    @property
    def search_settings(self) -> SearchSettings:
        return SearchSettings(prefix=self.prefix)


@pytest.fixture(scope="session")
def osmem_base():
    from osmem_server import OsmemServer

    server = OsmemServer.start(japanese=False, freeze=True)
    yield server
    server.close()


def _wipe(client: OpenSearch, prefix: str) -> None:
    client.indices.delete(index=f"{prefix}-*", ignore=[404], expand_wildcards="all")
    client.indices.delete_index_template(name=f"{prefix}-daily", ignore=[404])


@pytest.fixture(params=BACKENDS)
def backend(request) -> Iterator[Backend]:
    if request.param == "osmem":
        clone = request.getfixturevalue("osmem_base").clone()
        try:
            yield Backend("osmem", clone.url, "events")
        finally:
            clone.close()
        return
    url = os.environ.get("OPENSEARCH_URL")
    if not url:
        pytest.skip("OPENSEARCH_URL is not set (start one with scripts/opensearch-node.sh start)")
    backend = Backend("opensearch", url, f"t{uuid.uuid4().hex[:10]}")
    client = backend.client()
    _wipe(client, backend.prefix)
    try:
        yield backend
    finally:
        _wipe(client, backend.prefix)


@pytest.fixture
def client(backend: Backend) -> OpenSearch:
    """A client with the template in place."""
    client = backend.client()
    ensure_template(client, backend.template)
    return client


@pytest.fixture
def sink() -> MemoryBadRowsSink:
    return MemoryBadRowsSink()


@pytest.fixture
def clock():
    return lambda: NOW_MS


@pytest.fixture
def rng() -> random.Random:
    return random.Random(7)
