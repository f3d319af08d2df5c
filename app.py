"""Chalice app: the table of routes and handlers. Wiring only.

Each handler parses its request and calls one service of the container
(``chalicelib/runtime/container.py``); authentication and error mapping are
done once, in ``chalicelib/http/routes.py``.
"""

from __future__ import annotations

import logging

from chalice import Chalice, Rate

from chalicelib.http.routes import (POSTHOG, SEGMENT, Routes, insight_cost, json_body, json_response, metrics_cost,
                                   person_cost, pipeline_cost, query_params, regulations_cost, sessions_cost)
from chalicelib.runtime.container import Container
from chalicelib.runtime.pipeline_config import load_pipeline_config
from chalicelib.runtime.settings import Settings
from chalicelib.runtime.snapstart import register as register_snapstart_hooks

app = Chalice(app_name="eventpipe")
app.log.setLevel(logging.INFO)
container = Container(Settings.from_env())
routes = Routes(app, lambda key: container.apps.authenticate(key),
                lambda app_id, events, requests: container.limiter.admit(app_id, events, requests),
                lambda app_id: container.limiter.check(app_id), lambda: container.read_guard)
register_snapstart_hooks(container)  # Lambda SnapStart (API function): warm before the snapshot, renew after
#: chalicelib/pipeline.toml: each consumer's event source mapping, per stage (the runner and the template read it too).
pipeline = load_pipeline_config(container.settings.stage)


def _kinesis(name: str) -> dict:
    consumer = pipeline.consumer(name)
    return {"stream": container.settings.stream_name, "name": name, "batch_size": consumer.batch_size,
            "starting_position": consumer.starting_position,
            "maximum_batching_window_in_seconds": consumer.batching_window_s}


# ---------------------------------------------------------------------------------------- HTTP API
@routes.authenticated("/v1/events", methods=("POST",), content_types=["*/*"], counts_events=True)
def post_events(request, app_id):
    return container.ingest.ingest(app_id, request.raw_body or b"", request.headers.get("content-type"),
                                   request.headers.get("content-encoding")).to_dict()


# Segment's HTTP tracking API (analytics-python, RudderStack/Jitsu clients; analytics.js: /v1/b and one letter).
@routes.sdk(SEGMENT, "/v1/batch", "/v1/b", "/v1/track", "/v1/t", "/v1/identify", "/v1/i", "/v1/page", "/v1/p",
            "/v1/screen", "/v1/s", "/v1/group", "/v1/g", "/v1/alias", "/v1/a")
def segment_ingest(call):
    return container.sdk_ingest.segment(call)


# PostHog's capture API (posthog-python and posthog-node: /batch/; posthog-js: /e/ and /i/v0/e/).
@routes.sdk(POSTHOG, "/batch", "/capture", "/e", "/i/v0/e")
def posthog_ingest(call):
    return container.sdk_ingest.posthog(call)


# posthog-js's calls on load: remote configuration and feature flags (capture only, no flags), with CORS.
@routes.sdk(POSTHOG, "/array/{key}/config", "/array/{key}/config.js", methods=("GET",))
def posthog_config(call, key):
    return container.sdk_ingest.posthog_config(call, key)


@routes.sdk(POSTHOG, "/flags", "/decide")
def posthog_flags(call):
    return container.sdk_ingest.posthog_flags(call)


@routes.public("/v1/health")
def health(request):
    report = container.health.report()
    return json_response(report, 200 if report["status"] == "ok" else 503)


@routes.authenticated("/v1/metrics")
def list_metrics(request, app_id):
    return container.metrics_service.list_metrics()


@routes.authenticated("/v1/metrics/{name}", cost=metrics_cost)
def get_metric(request, app_id, name):
    return container.metrics_service.query(app_id, name, query_params(request))


@routes.authenticated("/v1/search")
def search(request, app_id):
    return container.search.search(app_id, query_params(request))


@routes.authenticated("/v1/pipeline", cost=pipeline_cost)
def pipeline_status(request, app_id):
    return container.pipeline.report(app_id, query_params(request))


@routes.authenticated("/v1/regulations", methods=("POST",), content_types=["*/*"])
def create_regulation(request, app_id):
    return json_response(container.regulations.create(app_id, request.headers.get("x-api-key"),
                                                      request.raw_body or b""), 202)


@routes.authenticated("/v1/regulations", cost=regulations_cost)
def list_regulations(request, app_id):
    return container.regulations.list(app_id)


@routes.authenticated("/v1/regulations/{regulation_id}")
def show_regulation(request, app_id, regulation_id):
    return container.regulations.show(app_id, regulation_id)


@routes.authenticated("/v1/insights/funnel", methods=("POST",), cost=insight_cost)
def insight_funnel(request, app_id):
    return container.insights.funnel(app_id, json_body(request))


@routes.authenticated("/v1/insights/retention", methods=("POST",), cost=insight_cost)
def insight_retention(request, app_id):
    return container.insights.retention(app_id, json_body(request))


@routes.authenticated("/v1/insights/queries/{query_id}")
def insight_query(request, app_id, query_id):
    return container.insights.query(app_id, query_id)


@routes.authenticated("/v1/insights/event-types")
def insight_event_types(request, app_id):
    return container.insights.event_types(app_id)


@routes.authenticated("/v1/sessions", cost=sessions_cost)
def sessions(request, app_id):
    return container.people.sessions(app_id, query_params(request))


@routes.authenticated("/v1/persons/{user_id}", cost=person_cost)
def person(request, app_id, user_id):
    return container.people.person(app_id, user_id)


@routes.public("/dashboard")
def dashboard(request):
    return container.dashboard.response()


@routes.public("/dashboard/{name}")
def dashboard_file(request, name):
    return container.dashboard.response(name)


@routes.public("/v1/openapi.json")
def openapi(request):
    return container.openapi


# ------------------------------------------------------------------- Kinesis consumers and schedules
@app.on_kinesis_record(**_kinesis("archive_events"))
def archive_events(event):
    """Raw archive: every valid event of the batch staged in one Parquet file (the committer commits it)."""
    return container.archive.handle(event.to_dict()["Records"])


@app.on_kinesis_record(**_kinesis("aggregate_events"))
def aggregate_events(event):
    """Windowed keyed aggregation: partial aggregates per (app, metric, window, key) to S3."""
    return container.aggregation.handle(event.to_dict()["Records"])


@app.on_kinesis_record(**_kinesis("index_events"))
def index_events(event):
    """Bulk-indexes recent events into the daily OpenSearch indices (a second consumer of the stream)."""
    return container.indexing.handle(event.to_dict()["Records"],
                                     remaining_ms=getattr(event.context, "get_remaining_time_in_millis", None))


@app.schedule(Rate(pipeline.function("commit_events").schedule_minutes or 5, unit=Rate.MINUTES), name="commit_events")
def commit_events(event):
    """Commits the staged archive batches to the raw events Iceberg table (one commit), then compacts
    closed (app, hour) partitions, expires snapshots and deletes the files they alone held."""
    return container.raw_table_job.run()


@app.schedule(Rate(5, unit=Rate.MINUTES), name="finalize_windows")
def finalize_windows(event):
    """Plans finalization: the due (app, hour) units go to the finalize-units queue, covered partials
    are deleted; an invocation with ``detail.backfill`` (``eventpipe backfill --aws``) recomputes that hour."""
    if "backfill" in (event.to_dict().get("detail") or {}):
        return container.finalizer.backfill_request(event.to_dict()["detail"]["backfill"])
    return {"partitions": [f"{r.metric} {r.dt}/{r.hour}: {r.action} ({r.rows} rows, {r.partials} partials)"
                           for r in container.finalizer.run()]}


@app.schedule(Rate(pipeline.function("process_regulations").schedule_minutes or 1440, unit=Rate.MINUTES),
              name="process_regulations")
def process_regulations(event):
    """Privacy: deletes the users of due delete / suppress_with_delete regulations from every store
    (chalicelib/lake/privacy_job.py); skipped while the raw table's writer lease is held."""
    return container.process_regulations()


@app.on_sqs_message(queue=container.settings.finalize_queue, name="finalize_worker",
                    batch_size=pipeline.function("finalize_worker").batch_size or 1)
def finalize_worker(event):
    """Finalizes the units the planner queued (every metric of one (app, hour) slice each); a failed
    unit is reported alone (ReportBatchItemFailures) and comes back, then goes to the dead-letter queue."""
    return container.finalize_worker.handle_records(event.to_dict()["Records"])


@app.schedule(Rate(1, unit=Rate.HOURS), name="search_retention")
def search_retention(event):
    """Deletes daily indices older than the retention (Parquet on S3 keeps the events)."""
    deleted = container.retention.run()
    app.log.info("search retention: deleted %d index(es): %s", len(deleted), ", ".join(deleted) or "-")
    return {"deleted": deleted}


if container.settings.tap_file:  # local debugging only: never part of a deployment
    from chalicelib.stream.tap import tap_batch

    @app.on_kinesis_record(stream=container.settings.stream_name, batch_size=500, starting_position="TRIM_HORIZON",
                           name="tap", maximum_batching_window_in_seconds=1)
    def tap(event):
        """Counts and logs what arrives, appending event ids to EVENTPIPE_TAP_FILE."""
        return tap_batch(event.to_dict()["Records"], app.log, container.settings.tap_file)
