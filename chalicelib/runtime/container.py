"""Builds every client and service once per process from the settings (lazily).

Handlers in ``app.py`` only ever call a service from here. Nothing is built at
import time: a service is created on first use, so the API's cold start pays
only for what a request needs (``POST /v1/events`` never loads pyarrow, numpy
or duckdb: their importers are imported inside the properties that need them).
"""

from __future__ import annotations

import dataclasses
import functools
import time

from chalicelib.apps.keys import AppStore
from chalicelib.ingest.kinesis_writer import DEFAULT_BACKOFF, KinesisWriter
from chalicelib.ingest.service import IngestService
from chalicelib.runtime.clients import Clients
from chalicelib.runtime.settings import Settings


def clock_ms() -> int:
    """The wall clock, the one the services are given (tests inject their own)."""
    return int(time.time() * 1000)


class Container:
    #: Built from packaged files only (no client, credential, connection or clock): kept by renew().
    PURE = frozenset({"metrics", "openapi", "dashboard"})

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.clients = Clients(settings)

    def renew(self) -> None:
        """New AWS session and clients, and no service built with the old ones (SnapStart restore:
        nothing holding credentials or connections survives from before the snapshot). The loaded
        botocore models are kept: they are the same files."""
        self.clients = self.clients.renewed()
        for name, value in vars(type(self)).items():
            if isinstance(value, functools.cached_property) and name not in self.PURE:
                self.__dict__.pop(name, None)

    # ------------------------------------------------------------------ API
    @functools.cached_property
    def apps(self) -> AppStore:
        return AppStore(self.clients.dynamodb, self.settings.apps_table)

    @functools.cached_property
    def limiter(self):
        """Per-app rate limits: the app's own (apps table) over the settings' defaults; buckets in DynamoDB."""
        from chalicelib.apps.ratelimit import Limits, RateLimiter
        from chalicelib.apps.ratelimit_store import DynamoBuckets
        s = self.settings
        defaults = Limits(s.rate_events_per_second, s.rate_requests_per_second, s.rate_burst_seconds)
        return RateLimiter(lambda app_id: Limits.merged(defaults, self.apps.own_limits(app_id)),
                           DynamoBuckets(self.clients.dynamodb, s.apps_table, clock_ms))

    @functools.cached_property
    def read_guard(self):
        """Identical reads in flight shared, an app's expensive reads in flight capped (chalicelib/http/read_costs.py)."""
        from chalicelib.http.read_costs import ReadGuard
        return ReadGuard()

    @functools.cached_property
    def kinesis_writer(self) -> KinesisWriter:
        """The one writer of the event stream (native and SDK-compatible ingestion share it)."""
        return KinesisWriter(self.clients.kinesis, self.settings.stream_name,
                             dataclasses.replace(DEFAULT_BACKOFF, max_attempts=self.settings.kinesis_max_attempts))

    @functools.cached_property
    def ingest(self) -> IngestService:
        return IngestService(self.kinesis_writer, clock_ms, admit=self.limiter.admit, suppression=self.suppression.keep,
                             pseudonymiser=self.pseudonymiser)

    @functools.cached_property
    def sdk_ingest(self):
        """Segment- and PostHog-compatible ingestion; rejected messages go to bad-rows/ingest/."""
        from chalicelib.ingest.sdk import SdkIngestService
        return SdkIngestService(self.kinesis_writer, self.bad_rows("ingest"), clock_ms, admit=self.limiter.admit,
                                suppression=self.suppression.keep, pseudonymiser=self.pseudonymiser)

    def pseudonymiser(self, app_id: str):
        """The app's Pseudonymiser (apps table), or None when it pseudonymises nothing."""
        from chalicelib.ingest.pseudonymise import Pseudonymiser
        config = self.apps.pseudonymisation(app_id)
        return Pseudonymiser(*config) if config else None

    # ------------------------------------------------------------- privacy
    @functools.cached_property
    def regulation_store(self):
        from chalicelib.lake.regulations import RegulationStore
        return RegulationStore(self.clients.dynamodb, self.settings.state_table, clock_ms)

    @functools.cached_property
    def suppression(self):
        """Suppressed (app, user)s: their events are answered 200 and written nowhere (every ingest route)."""
        from chalicelib.ingest.suppression import Suppression
        return Suppression(self.regulation_store, clock_ms, ttl_s=self.settings.suppression_ttl_s)

    @functools.cached_property
    def regulations(self):
        """/v1/regulations (a regulation filed here is honoured by this process's ingest routes at once)."""
        from chalicelib.ingest.regulations import RegulationsService
        return RegulationsService(self.regulation_store, self.apps.is_operator, self.suppression.invalidate,
                                  pseudonymiser=self.pseudonymiser)

    @functools.cached_property
    def writer_lock(self):
        """The raw table's writer lease: the committer job and the deletion job never overlap."""
        from chalicelib.lake.writer_lock import WriterLock
        return WriterLock(self.clients.dynamodb, self.settings.state_table, clock_ms)

    def process_regulations(self) -> dict:
        """The scheduled deletion job's run: skipped (not failed) while the raw table's writer lease is held."""
        from chalicelib.lake.writer_lock import LockHeld
        try:
            return self.deletion_job().run()
        except LockHeld as exc:
            return {"skipped": str(exc)}

    def deletion_job(self, checkpoint=None):
        """The privacy deletion job (chalicelib/lake/privacy_job.py); ``checkpoint(step)`` for tests."""
        from chalicelib.lake.erasure import ObjectEraser
        from chalicelib.lake.privacy_job import DeletionJob, UnitRefinalizer
        from chalicelib.lake.raw_commit import StagedCommitter
        from chalicelib.lake.raw_maintenance import RawMaintenance
        from chalicelib.search.erasure import SearchEraser
        s = self.settings
        lookback_ms = max(m.window.size_ms - m.window.slide_ms for m in self.metrics.metrics)
        search = SearchEraser(lambda: self.search_client, s.search_index_prefix) if s.opensearch_url else None
        return DeletionJob(
            self.regulation_store, self.writer_lock, StagedCommitter(self.clients.s3, s.bucket, self.raw_table, self.state),
            self.raw_table, RawMaintenance(self.clients.s3, s.bucket, self.raw_table, clock_ms, settle_ms=0,
                                           snapshot_retention_ms=0, orphan_min_age_ms=0),
            ObjectEraser(self.clients.s3, s.bucket), search,
            lambda: UnitRefinalizer(self.finalizer, self.metrics, self.clients.s3, s.bucket), clock_ms,
            people=self.people_tables,
            lookback_hours=-(-lookback_ms // 3_600_000), **({"checkpoint": checkpoint} if checkpoint else {}))

    @functools.cached_property
    def health(self):
        from chalicelib.http.health import HealthService
        return HealthService(self.clients, self.settings,
                             (lambda: self.search_reader) if self.settings.opensearch_url else None)

    @functools.cached_property
    def metrics_service(self):
        from chalicelib.reads.metrics import MetricsLimits, MetricsService
        # Half the grace period: a checked final file is trusted well before its partials could go.
        limits = MetricsLimits(final_trust_s=self.settings.finalize_grace_s / 2)
        return MetricsService(self.clients.s3, self.settings.bucket, self.metrics, clock_ms, limits)

    @functools.cached_property
    def insights(self):
        """Funnels and retention (chalicelib/reads/insights.py): DuckDB here on the local stack, Athena on AWS."""
        from chalicelib.reads import insight_engines as engines
        from chalicelib.reads.insights import InsightsService
        s = self.settings
        if (s.insights_engine or ("duckdb" if s.aws_endpoint_url else "athena")) == "athena":
            engine = engines.AthenaEngine(self.clients.client("athena"), self.clients.dynamodb, s.state_table,
                                          s.glue_database, s.athena_workgroup,
                                          s.athena_output or f"s3://{s.bucket}/athena-results/insights/",
                                          wait_s=s.insights_wait_s)
        else:
            engine = engines.DuckDbEngine(engines.iceberg_source(self.raw_table))
        return InsightsService(engine, engines.iceberg_event_types(self.raw_table, clock_ms))

    @functools.cached_property
    def search(self):
        from chalicelib.search.facade import SearchService
        from chalicelib.search.query import SearchSettings
        s = self.settings
        return SearchService(lambda: self.search_reader,
                             SearchSettings(prefix=s.search_index_prefix, request_timeout_s=s.search_timeout_s), clock_ms)

    @functools.cached_property
    def dashboard(self):
        from chalicelib.http.dashboard import DashboardAssets
        return DashboardAssets()

    @functools.cached_property
    def pipeline(self):
        """GET /v1/pipeline: locally from the runner's checkpoints, on AWS from CloudWatch."""
        from chalicelib.reads.pipeline_status import PipelineService
        from chalicelib.reads.stream_lag import CheckpointLag, CloudWatchLag
        from chalicelib.runtime.pipeline_config import load_pipeline_config

        s = self.settings
        consumers = [c.name for c in load_pipeline_config(s.stage).consumers]
        if s.aws_endpoint_url:  # the local stack: the runner keeps checkpoints in the state table
            lag = CheckpointLag(self.clients.kinesis, self.clients.dynamodb, s.state_table, s.stream_name, clock_ms)
        else:
            lag = CloudWatchLag(self.clients.client("cloudwatch"), self.clients.kinesis, s.stream_name,
                                lambda name: f"eventpipe-{s.stage}-{name}", clock_ms)
        return PipelineService(self.clients.s3, s.bucket, self.metrics_service, lag, consumers,
                               self.apps.is_operator, clock_ms, suppressed=self.regulation_store.suppressed_counts)

    @functools.cached_property
    def openapi(self) -> dict:
        """GET /v1/openapi.json: the contract, built once from the modules that enforce it."""
        from chalicelib.http.openapi import ContractFacts, build_spec
        from chalicelib.ingest import posthog, segment
        from chalicelib.ingest.sdk import MAX_MESSAGES_PER_REQUEST
        from chalicelib.ingest.service import MAX_DECOMPRESSED_BYTES, MAX_EVENTS_PER_REQUEST
        from chalicelib.reads import insights, people
        from chalicelib.reads import pipeline_status as pipeline
        from chalicelib.reads.metrics import FIXED_PARAMS, MetricsLimits
        from chalicelib.search.query import PARAMS, SearchSettings

        limits, search = MetricsLimits(), SearchSettings()
        return build_spec(ContractFacts(
            metrics=self.metrics, max_events=MAX_EVENTS_PER_REQUEST, max_bytes=MAX_DECOMPRESSED_BYTES,
            segment_paths=segment.PATH_TYPES, segment_batch_bytes=segment.BATCH_LIMIT_BYTES,
            segment_message_bytes=segment.MESSAGE_LIMIT_BYTES, posthog_paths=posthog.PATHS,
            posthog_body_bytes=posthog.BODY_LIMIT_BYTES, posthog_event_bytes=posthog.EVENT_LIMIT_BYTES,
            sdk_max_messages=MAX_MESSAGES_PER_REQUEST,
            metrics_params=FIXED_PARAMS, metrics_max_limit=limits.max_limit,
            metrics_max_range_h=limits.max_range_ms // 3_600_000, search_params=PARAMS,
            search_max_size=search.max_size, search_max_range_days=search.max_range_days,
            search_max_query_chars=search.max_query_chars, pipeline_params=pipeline.PARAMS,
            pipeline_max_range_h=pipeline.MAX_RANGE_MS // 3_600_000,
            posthog_config_paths=posthog.CONFIG_PATHS, posthog_flags_paths=posthog.FLAGS_PATHS,
            insights=insights.contract_facts(),
            sessions_params=people.SESSION_PARAMS, sessions_max_range_days=people.MAX_SESSION_RANGE_MS // 86_400_000,
            person_id_max_chars=people.MAX_USER_ID_CHARS))

    # ------------------------------------------------------------- consumers
    @functools.cached_property
    def metrics(self):
        from chalicelib.processing import load_metrics
        return load_metrics()  # a bad metrics.yaml fails here, at start-up, naming metric and field

    @functools.cached_property
    def state(self):
        from chalicelib.lake.state import StateStore
        return StateStore(self.clients.dynamodb, self.settings.state_table)

    def bad_rows(self, consumer: str):
        """The bad-rows sink of one consumer (``archive``, ``aggregate``, ``search``, ``ingest``)."""
        from chalicelib.lake.badrows import S3BadRowsSink
        return S3BadRowsSink(self.clients.s3, self.settings.bucket, consumer)

    @functools.cached_property
    def archive(self):
        from chalicelib.lake.consumers import ArchiveService
        return ArchiveService(self.clients.s3, self.settings.bucket, self.state, self.bad_rows("archive"))

    @functools.cached_property
    def aggregation(self):
        from chalicelib.lake.consumers import AggregationService
        return AggregationService(self.clients.s3, self.settings.bucket, self.state, self.metrics,
                                  self.bad_rows("aggregate"))

    @functools.cached_property
    def raw_table(self):
        """The raw events Iceberg table (Glue catalog), through the container's Glue and S3 clients."""
        from chalicelib.lake.iceberg_io import BotoGlueCatalog
        from chalicelib.lake.raw_table import RawTable
        s = self.settings
        return RawTable(BotoGlueCatalog(self.clients.glue, self.clients.s3), s.glue_database, s.bucket)

    @functools.cached_property
    def raw_table_job(self):
        """Staged archive batches -> the raw table, then compaction, expiry and deletes."""
        from chalicelib.lake.raw_commit import StagedCommitter
        from chalicelib.lake.raw_job import RawTableJob
        from chalicelib.lake.raw_maintenance import RawMaintenance
        s = self.settings
        settle_ms = self.metrics.settings.allowed_lateness_ms + s.finalize_close_delay_s * 1000
        return RawTableJob(StagedCommitter(self.clients.s3, s.bucket, self.raw_table, self.state),
                           RawMaintenance(self.clients.s3, s.bucket, self.raw_table, clock_ms, settle_ms,
                                          retention_days=s.raw_retention_days),
                           self.state, clock_ms, lock=self.writer_lock)

    @functools.cached_property
    def finalizer(self):
        from chalicelib.lake.finalizer import Finalizer
        s = self.settings
        dispatch = None
        if s.finalize_queue_url:  # the units go to the finalize_worker function through SQS
            from chalicelib.lake.unit_queue import UnitQueue
            dispatch = UnitQueue(self.clients.sqs, s.finalize_queue_url).send
        return Finalizer(self.clients.s3, s.bucket, self.state, self.metrics, clock_ms,
                         grace_ms=s.finalize_grace_s * 1000, close_delay_ms=s.finalize_close_delay_s * 1000,
                         raw=self.raw_table, dispatch=dispatch, after_hour=self.people_tables.update)

    @property
    def finalize_worker(self):
        """One finalization unit at a time (the finalize_worker function; backfill and replay call it too)."""
        return self.finalizer.worker

    @functools.cached_property
    def people_tables(self):
        """Persons and sessions of closed hours (chalicelib/lake/people_tables.py); the gap is the app's own."""
        from chalicelib.lake.people_tables import InsightsUpdater, gap_from_minutes
        from chalicelib.lake.persons_table import PersonsTable
        from chalicelib.lake.sessions_table import SessionsTable
        s3, bucket = self.clients.s3, self.settings.bucket
        return InsightsUpdater(self.raw_table, SessionsTable(s3, bucket), PersonsTable(s3, bucket),
                               lambda app_id: gap_from_minutes(self.apps.session_gap_minutes(app_id)))

    @functools.cached_property
    def people(self):
        """GET /v1/sessions and GET /v1/persons/{user_id} (chalicelib/reads/people.py)."""
        from chalicelib.reads.people import PeopleService
        return PeopleService(self.clients.s3, self.settings.bucket, clock_ms)

    @functools.cached_property
    def indexing(self):
        from chalicelib.search.facade import IndexingService
        from chalicelib.search.indexer import IndexerConfig
        s = self.settings
        return IndexingService(lambda: self.search_client, self.bad_rows("search"),
                               IndexerConfig(prefix=s.search_index_prefix, retention_days=s.search_retention_days,
                                             max_bulk_bytes=s.search_bulk_bytes),
                               clock_ms)

    @functools.cached_property
    def retention(self):
        from chalicelib.search.facade import RetentionService
        s = self.settings
        return RetentionService(lambda: self.search_client, s.search_retention_days, s.search_index_prefix, clock_ms)

    # ---------------------------------------------------------------- search
    def _search_connection(self):
        from chalicelib.search import SearchUnavailableError, client_for_aws, client_for_url

        s = self.settings
        if not s.opensearch_url:
            raise SearchUnavailableError("search is not configured (OPENSEARCH_URL)")
        if s.opensearch_sigv4_service:
            credentials = self.clients.session.get_credentials()
            return client_for_aws(s.opensearch_url, s.region, credentials, service=s.opensearch_sigv4_service)
        return client_for_url(s.opensearch_url)

    @functools.cached_property
    def search_reader(self):
        """The API's OpenSearch client: searches and cluster health only (its role may not write; the
        consumers apply the index template)."""
        return self._search_connection()

    @functools.cached_property
    def search_client(self):
        """OpenSearch client of the consumers; the index template is applied once per process."""
        from opensearchpy.exceptions import OpenSearchException

        from chalicelib.search import SearchUnavailableError, TemplateError, ensure_template
        from chalicelib.search.template import TemplateSettings

        s = self.settings
        client = self._search_connection()
        try:
            ensure_template(client, TemplateSettings(prefix=s.search_index_prefix, replicas=s.search_replicas,
                                                     refresh_interval=s.search_refresh_interval))
        except (OpenSearchException, TemplateError) as exc:  # retried next call: no failure is cached
            raise SearchUnavailableError(f"the search cluster is unavailable ({type(exc).__name__})") from exc
        return client
