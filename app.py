"""Chalice app: wiring only. Each handler parses, calls one service, maps errors."""

from __future__ import annotations

import logging

import orjson
from chalice import Chalice, Response

from chalicelib.config import Settings
from chalicelib.errors import RequestError
from chalicelib.health import aws_checks, check_components
from chalicelib.tap import tap_batch
from chalicelib.wiring import Container

app = Chalice(app_name="eventpipe")
app.log.setLevel(logging.INFO)
container = Container(Settings.from_env())


def _json(body, status: int = 200, headers: dict | None = None) -> Response:
    return Response(body=orjson.dumps(body).decode(), status_code=status,
                    headers={"Content-Type": "application/json", **(headers or {})})


def _error(exc: RequestError) -> Response:
    return _json({"error": exc.message}, exc.status, exc.headers)


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
    report = check_components(aws_checks(container.clients, container.settings))
    return _json(report, 200 if report["status"] == "ok" else 503)


@app.on_kinesis_record(stream=container.settings.stream_name, batch_size=500, starting_position="TRIM_HORIZON",
                       name="tap", maximum_batching_window_in_seconds=1)
def tap(event):
    """Counts and logs what arrives (and appends it to EVENTPIPE_TAP_FILE locally)."""
    return tap_batch(event.to_dict()["Records"], app.log, container.settings.tap_file)
