"""Chalice app: wiring only. Each handler parses, calls one service, maps errors."""

from __future__ import annotations

import logging

import orjson
from chalice import Chalice, Rate, Response

from chalicelib.runtime.settings import Settings
from chalicelib.api.errors import RequestError
from chalicelib.api.health import aws_checks, check_components, search_check
from chalicelib.search import (IndexerConfig, S3BadRowsSink, SearchSettings, delete_expired_indices,
                               index_kinesis_batch, search_events)
from chalicelib.stream.tap import tap_batch
from chalicelib.runtime.container import Container, clock_ms

app = Chalice(app_name="eventpipe")
app.log.setLevel(logging.INFO)
container = Container(Settings.from_env())


def _json(body, status: int = 200, headers: dict | None = None) -> Response:
    return Response(body=orjson.dumps(body).decode(), status_code=status,
                    headers={"Content-Type": "application/json", **(headers or {})})


def _error(exc: RequestError) -> Response:
    return _json({"error": exc.message}, exc.status, exc.headers)


def _query_params(request) -> dict:
    """Query parameters with repeats kept as lists, so services can refuse them."""
    params = request.query_params
    if not params:
        return {}
    return {name: (values if len(values := params.getlist(name)) > 1 else values[0]) for name in params}


@app.route("/v1/events", methods=["POST"], content_types=["*/*"])
def post_events():
    request = app.current_request
    try:
        app_id = container.apps.authenticate(request.headers.get("x-api-key"))
        result = container.ingest.ingest(app_id, request.raw_body or b"",
                                         request.headers.get("content-type"),
                                         request.headers.get("content-encoding"))
    except RequestError as exc:
        return _error(exc)
    return _json(result.to_dict())


@app.route("/v1/health", methods=["GET"])
def health():
    checks = aws_checks(container.clients, container.settings)
    if container.settings.opensearch_url:
        checks["search"] = search_check(container)
    report = check_components(checks)
    return _json(report, 200 if report["status"] == "ok" else 503)


@app.route("/v1/metrics", methods=["GET"])
def list_metrics():
    try:
        container.apps.authenticate(app.current_request.headers.get("x-api-key"))
    except RequestError as exc:
        return _error(exc)
    return _json(container.metrics_api.list_metrics())


@app.route("/v1/metrics/{name}", methods=["GET"])
def get_metric(name):
    request = app.current_request
    try:
        app_id = container.apps.authenticate(request.headers.get("x-api-key"))
        result = container.metrics_api.query(app_id, name, _query_params(request))
    except RequestError as exc:
        return _error(exc)
    return _json(result)


@app.route("/v1/search", methods=["GET"])
def search():
    request = app.current_request
    try:
        app_id = container.apps.authenticate(request.headers.get("x-api-key"))
        result = search_events(container.search_client, app_id, _query_params(request), clock_ms(),
                               SearchSettings(prefix=container.settings.search_index_prefix))
    except RequestError as exc:
        return _error(exc)
    return _json(result)


@app.on_kinesis_record(stream=container.settings.stream_name, batch_size=1000, starting_position="TRIM_HORIZON",
                       name="archive_events", maximum_batching_window_in_seconds=5)
def archive_events(event):
    """Raw archive: every valid event as a Parquet row under events/ (app, date, hour)."""
    return container.archive.handle(event.to_dict()["Records"])


@app.on_kinesis_record(stream=container.settings.stream_name, batch_size=1000, starting_position="TRIM_HORIZON",
                       name="aggregate_events", maximum_batching_window_in_seconds=5)
def aggregate_events(event):
    """Windowed keyed aggregation: partial aggregates per (app, metric, window, key) to S3."""
    return container.aggregation.handle(event.to_dict()["Records"])


@app.schedule(Rate(5, unit=Rate.MINUTES), name="finalize_windows")
def finalize_windows(event):
    """Recomputes closed windows from the raw archive (deduplicated) and compacts their partials."""
    reports = container.finalizer.run()
    return {"partitions": [f"{r.metric} {r.dt}/{r.hour}: {r.action} ({r.rows} rows, {r.partials} partials)"
                           for r in reports]}


@app.on_kinesis_record(stream=container.settings.stream_name, batch_size=1000, starting_position="TRIM_HORIZON",
                       name="index_events", maximum_batching_window_in_seconds=1)
def index_events(event):
    """Bulk-indexes recent events into the daily OpenSearch indices (a second consumer of the stream)."""
    settings = container.settings
    result = index_kinesis_batch(
        event.to_dict()["Records"], client=container.search_client,
        sink=S3BadRowsSink(container.clients.s3, settings.bucket), clock=clock_ms,
        config=IndexerConfig(prefix=settings.search_index_prefix, retention_days=settings.search_retention_days),
        remaining_ms=getattr(event.context, "get_remaining_time_in_millis", None))
    return result.lambda_response()


@app.schedule(Rate(1, unit=Rate.HOURS), name="search_retention")
def search_retention(event):
    """Deletes daily indices older than the retention (Parquet on S3 keeps the events)."""
    deleted = delete_expired_indices(container.search_client, container.settings.search_retention_days, clock_ms(),
                                     prefix=container.settings.search_index_prefix)
    app.log.info("search retention: deleted %d index(es): %s", len(deleted), ", ".join(deleted) or "-")
    return {"deleted": deleted}


if container.settings.tap_file:  # local debugging only: never part of a deployment
    @app.on_kinesis_record(stream=container.settings.stream_name, batch_size=500, starting_position="TRIM_HORIZON",
                           name="tap", maximum_batching_window_in_seconds=1)
    def tap(event):
        """Counts and logs what arrives, appending event ids to EVENTPIPE_TAP_FILE."""
        return tap_batch(event.to_dict()["Records"], app.log, container.settings.tap_file)
