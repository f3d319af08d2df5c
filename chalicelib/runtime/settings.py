"""Settings: the one place that reads the environment.

Chalice sets these per stage from ``.chalice/config.json``; the local stack
sets them for its child processes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping


@dataclass(frozen=True)
class Settings:
    region: str = "us-east-1"
    #: The stage of chalicelib/pipeline.toml (the deployment sets EVENTPIPE_STAGE; local otherwise).
    stage: str = "local"
    #: None on AWS; the moto server URL on the local stack.
    aws_endpoint_url: str | None = None
    stream_name: str = "eventpipe-events"
    apps_table: str = "eventpipe-apps"
    state_table: str = "eventpipe-state"
    bucket: str = "eventpipe-lake"
    glue_database: str = "eventpipe"
    opensearch_url: str | None = None
    #: "es" or "aoss" to sign OpenSearch requests with SigV4 (AWS); empty for a plain URL.
    opensearch_sigv4_service: str | None = None
    search_index_prefix: str = "events"
    search_replicas: int = 1
    search_refresh_interval: str = "1s"
    search_retention_days: int = 7
    #: Bulk requests of the indexer up to this size (the local stack's one-request-at-a-time server wants small ones).
    search_bulk_bytes: int = 5 * 1024 * 1024
    #: How long GET /v1/search waits for the cluster before answering 503.
    search_timeout_s: float = 10.0
    kinesis_max_attempts: int = 5
    #: Finalization: covered partials are deleted this long after the switch (longer than any query).
    finalize_grace_s: int = 900
    #: ... and a window is finalized this long after it closed (beyond the allowed lateness).
    finalize_close_delay_s: int = 60
    #: Finalization units go to this SQS queue (the finalize_worker function's); without its URL the
    #: scheduled planner runs them itself (tests, tools).
    finalize_queue: str = "eventpipe-finalize-units"
    finalize_queue_url: str | None = None
    #: Days of raw events the Iceberg table keeps (0 = forever); the template sets it from pipeline.toml.
    raw_retention_days: int = 0
    #: Local debugging: the tap consumer appends delivered event ids here.
    tap_file: str | None = None
    #: Per-app rate limits of apps without their own (``eventpipe apps limits``): sustained rates, and how
    #: many seconds of each rate a burst may take (chalicelib/apps/ratelimit.py).
    rate_events_per_second: float = 10_000.0
    rate_requests_per_second: float = 200.0
    rate_burst_seconds: float = 10.0
    #: How long an API process keeps an app's suppression list (a regulation filed through another
    #: process is honoured by this one within this many seconds).
    suppression_ttl_s: float = 30.0
    #: Where funnels and retention run: "duckdb" (in the API process) or "athena"; default duckdb on the
    #: local stack (aws_endpoint_url set), athena on AWS. Athena: workgroup, result location (default
    #: s3://<bucket>/athena-results/insights/) and how long a request waits before answering 202.
    insights_engine: str | None = None
    athena_workgroup: str = "primary"
    athena_output: str | None = None
    insights_wait_s: float = 3.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        return cls(
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or cls.region,
            stage=env.get("EVENTPIPE_STAGE") or cls.stage,
            aws_endpoint_url=env.get("EVENTPIPE_AWS_ENDPOINT_URL") or None,
            stream_name=env.get("EVENTPIPE_STREAM", cls.stream_name),
            apps_table=env.get("EVENTPIPE_APPS_TABLE", cls.apps_table),
            state_table=env.get("EVENTPIPE_STATE_TABLE", cls.state_table),
            bucket=env.get("EVENTPIPE_BUCKET", cls.bucket),
            glue_database=env.get("EVENTPIPE_GLUE_DATABASE", cls.glue_database),
            opensearch_url=env.get("OPENSEARCH_URL") or None,
            opensearch_sigv4_service=env.get("EVENTPIPE_OPENSEARCH_SIGV4") or None,
            search_index_prefix=env.get("EVENTPIPE_SEARCH_INDEX_PREFIX", cls.search_index_prefix),
            search_replicas=int(env.get("EVENTPIPE_SEARCH_REPLICAS", cls.search_replicas)),
            search_refresh_interval=env.get("EVENTPIPE_SEARCH_REFRESH_INTERVAL", cls.search_refresh_interval),
            search_retention_days=int(env.get("EVENTPIPE_SEARCH_RETENTION_DAYS", cls.search_retention_days)),
            search_bulk_bytes=int(env.get("EVENTPIPE_SEARCH_BULK_BYTES", cls.search_bulk_bytes)),
            search_timeout_s=float(env.get("EVENTPIPE_SEARCH_TIMEOUT_S", cls.search_timeout_s)),
            kinesis_max_attempts=int(env.get("EVENTPIPE_KINESIS_MAX_ATTEMPTS", cls.kinesis_max_attempts)),
            tap_file=env.get("EVENTPIPE_TAP_FILE") or None,
            finalize_grace_s=int(env.get("EVENTPIPE_FINALIZE_GRACE_S", cls.finalize_grace_s)),
            finalize_close_delay_s=int(env.get("EVENTPIPE_FINALIZE_CLOSE_DELAY_S", cls.finalize_close_delay_s)),
            finalize_queue=env.get("EVENTPIPE_FINALIZE_QUEUE", cls.finalize_queue),
            finalize_queue_url=env.get("EVENTPIPE_FINALIZE_QUEUE_URL") or None,
            raw_retention_days=int(env.get("EVENTPIPE_RAW_RETENTION_DAYS", cls.raw_retention_days)),
            rate_events_per_second=float(env.get("EVENTPIPE_RATE_EVENTS_PER_S", cls.rate_events_per_second)),
            rate_requests_per_second=float(env.get("EVENTPIPE_RATE_REQUESTS_PER_S", cls.rate_requests_per_second)),
            rate_burst_seconds=float(env.get("EVENTPIPE_RATE_BURST_S", cls.rate_burst_seconds)),
            suppression_ttl_s=float(env.get("EVENTPIPE_SUPPRESSION_TTL_S", cls.suppression_ttl_s)),
            insights_engine=env.get("EVENTPIPE_INSIGHTS_ENGINE") or None,
            athena_workgroup=env.get("EVENTPIPE_ATHENA_WORKGROUP", cls.athena_workgroup),
            athena_output=env.get("EVENTPIPE_ATHENA_OUTPUT") or None,
            insights_wait_s=float(env.get("EVENTPIPE_INSIGHTS_WAIT_S", cls.insights_wait_s)),
        )
