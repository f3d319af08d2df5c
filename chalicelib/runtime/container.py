"""Builds every service once per process from the settings (lazily)."""

from __future__ import annotations

import functools
import time

from chalicelib.api.keys import AppStore
from chalicelib.runtime.clients import Clients
from chalicelib.runtime.settings import Settings
from chalicelib.ingest.kinesis_writer import KinesisWriter, RetryPolicy
from chalicelib.ingest.service import IngestService


def clock_ms() -> int:
    return int(time.time() * 1000)


class Container:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.clients = Clients(settings)

    @functools.cached_property
    def apps(self) -> AppStore:
        return AppStore(self.clients.dynamodb, self.settings.apps_table)

    @functools.cached_property
    def metrics(self):
        from chalicelib.processing import load_metrics
        return load_metrics()  # a bad metrics.yaml fails here, at start-up, naming metric and field

    @functools.cached_property
    def state(self):
        from chalicelib.lake.state import StateStore
        return StateStore(self.clients.dynamodb, self.settings.state_table)

    @functools.cached_property
    def archive(self):
        from chalicelib.lake.consumers import ArchiveService
        return ArchiveService(self.clients.s3, self.settings.bucket, self.state, clock_ms)

    @functools.cached_property
    def aggregation(self):
        from chalicelib.lake.consumers import AggregationService
        return AggregationService(self.clients.s3, self.settings.bucket, self.state, self.metrics, clock_ms)

    @functools.cached_property
    def metrics_api(self):
        from chalicelib.query.metrics import MetricsService
        return MetricsService(self.clients.s3, self.settings.bucket, self.metrics, clock_ms)

    @functools.cached_property
    def finalizer(self):
        from chalicelib.lake.finalizer import Finalizer
        s = self.settings
        return Finalizer(self.clients.s3, s.bucket, self.state, self.metrics, clock_ms,
                         grace_ms=s.finalize_grace_s * 1000, close_delay_ms=s.finalize_close_delay_s * 1000)

    @functools.cached_property
    def search_client(self):
        """OpenSearch client; the index template is applied once per process."""
        from opensearchpy.exceptions import OpenSearchException

        from chalicelib.search import (SearchUnavailableError, TemplateError, client_for_aws, client_for_url,
                                       ensure_template)
        from chalicelib.search.template import TemplateSettings

        s = self.settings
        if not s.opensearch_url:
            raise SearchUnavailableError("search is not configured (OPENSEARCH_URL)")
        if s.opensearch_sigv4_service:
            credentials = self.clients.session.get_credentials()
            client = client_for_aws(s.opensearch_url, s.region, credentials, service=s.opensearch_sigv4_service)
        else:
            client = client_for_url(s.opensearch_url)
        try:
            ensure_template(client, TemplateSettings(prefix=s.search_index_prefix, replicas=s.search_replicas,
                                                     refresh_interval=s.search_refresh_interval))
        except (OpenSearchException, TemplateError) as exc:  # retried next call: no failure is cached
            raise SearchUnavailableError(f"the search cluster is unavailable ({type(exc).__name__})") from exc
        return client

    @functools.cached_property
    def ingest(self) -> IngestService:
        writer = KinesisWriter(self.clients.kinesis, self.settings.stream_name,
                               RetryPolicy(max_attempts=self.settings.kinesis_max_attempts))
        return IngestService(writer, clock_ms)
