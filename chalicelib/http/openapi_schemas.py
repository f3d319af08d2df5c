"""The component schemas of the published OpenAPI document (pure), derived from the code.

* the event a client sends and the event search returns: from the envelope table
  (``stream/envelope.py``), so a new field or limit appears here by itself;
* the error bodies: from the dialects (``http/dialects.py``), by asking each dialect
  how it words every typed error (``http/errors.py``), so a code added there is
  documented here;
* the metric rows and names: from the metrics config (``metrics.yaml``).

:mod:`chalicelib.http.openapi` assembles the paths around these.
"""

from __future__ import annotations

from typing import Any

from chalicelib.http.dialects import NATIVE, POSTHOG, SEGMENT, Dialect
from chalicelib.http.errors import (BadRequest, NotFound, PayloadTooLarge, RequestError, ServiceUnavailable,
                                   TooManyRequests, Unauthorized, UnsupportedMediaType)
from chalicelib.processing import MetricSet
from chalicelib.stream.envelope import (ENVELOPE, EVENT_TYPE_PATTERN, INSTANT, JSON_OBJECT, MAX_EVENT_ID_CHARS,
                                        MAX_USER_ID_CHARS)

#: Every typed whole-request error, by status: what a route can answer besides 200.
ERRORS: dict[int, type[RequestError]] = {cls.status: cls for cls in (
    BadRequest, Unauthorized, NotFound, PayloadTooLarge, UnsupportedMediaType, TooManyRequests, ServiceUnavailable)}

_CLIENT_RULES: dict[str, dict[str, Any]] = {
    "event_type": {"type": "string", "pattern": EVENT_TYPE_PATTERN, "maxLength": 64},
    "event_id": {"type": ["string", "null"], "minLength": 1, "maxLength": MAX_EVENT_ID_CHARS},
    "user_id": {"type": ["string", "null"], "minLength": 1, "maxLength": MAX_USER_ID_CHARS},
    "attributes": {"type": ["object", "null"], "description": "free-form object, at most 32 KiB serialized"},
}
_INSTANT_IN = {"oneOf": [{"type": "string", "format": "date-time", "description": "ISO-8601 with a zone"},
                         {"type": "integer", "minimum": 0, "description": "epoch milliseconds"}]}


def error_codes(dialect: Dialect, field: str) -> list[Any]:
    """The values ``field`` of a dialect's error body takes, over every typed error."""
    return sorted({dialect.error_body(cls("x"))[field] for cls in ERRORS.values()})


def client_event() -> dict[str, Any]:
    """One event of ``POST /v1/events``: the envelope's client fields plus ``sent_at``."""
    properties: dict[str, Any] = {}
    for f in ENVELOPE:
        if not f.from_client:
            continue
        schema = dict(_INSTANT_IN) if f.kind == INSTANT else dict(_CLIENT_RULES.get(f.name, {"type": "string"}))
        properties[f.name] = {**schema, "description": f.doc}
    properties["sent_at"] = {**_INSTANT_IN, "description": "the client's clock when it sent the event: "
                             "event_time += received_at - sent_at (skew correction)"}
    return {"type": "object", "required": ["event_type", "event_time"], "properties": properties,
            "additionalProperties": False}


def stored_event() -> dict[str, Any]:
    """An event as ``GET /v1/search`` returns it: every envelope field, instants as ISO-8601."""
    kinds = {INSTANT: {"type": "string", "format": "date-time"}, JSON_OBJECT: {"type": "object"}}
    properties = {}
    for f in ENVELOPE:
        schema = dict(kinds.get(f.kind, {"type": "string"}))
        if not f.required:
            schema["type"] = [schema["type"], "null"]
        properties[f.name] = {**schema, "description": f.doc}
    return {"type": "object", "required": [f.name for f in ENVELOPE], "properties": properties}


def error_schemas() -> dict[str, Any]:
    return {
        "Error": {"type": "object", "required": ["error"], "properties": {
            "error": {"type": "string", "description": "what is wrong, in plain words"}}},
        "SegmentError": {"type": "object", "required": ["code", "message"], "properties": {
            "code": {"type": "string", "enum": error_codes(SEGMENT, "code")}, "message": {"type": "string"}}},
        "PostHogError": {"type": "object", "required": ["type", "code", "detail"], "properties": {
            "type": {"type": "string", "enum": error_codes(POSTHOG, "type")},
            "code": {"type": "string", "enum": error_codes(POSTHOG, "code")}, "detail": {"type": "string"}}},
    }


def _metric_row(metrics: MetricSet) -> dict[str, Any]:
    columns: dict[str, Any] = {}
    for metric in metrics.metrics:
        for key in metric.keys:
            columns.setdefault(key.name, {"type": ["string", "number", "null"], "description": "a key"})
        for measure in metric.measures:
            columns.setdefault(measure.name, {"type": ["number", "null"], "description": "a measure"})
    return {"type": "object", "required": ["window_start", "window_end", "late_count"],
            "properties": {"window_start": {"type": "string", "format": "date-time"},
                           "window_end": {"type": "string", "format": "date-time"},
                           "late_count": {"type": "integer", "minimum": 0}, **columns},
            "description": "one window and key of the metric: its keys and measures as columns"}


def _counts(id_field: str, flag: dict[str, Any]) -> dict[str, Any]:
    name, value = next(iter(flag.items()))
    return {"type": "object", "required": [name, "accepted", "rejected", "errors"], "properties": {
        **flag, "accepted": {"type": "integer", "minimum": 0}, "rejected": {"type": "integer", "minimum": 0},
        "errors": {"type": "array", "items": {"type": "object", "required": ["index", id_field, "error"],
                                              "properties": {"index": {"type": "integer", "minimum": 0},
                                                             id_field: {"description": "the id as sent"},
                                                             "error": {"type": "string"}}}}}}


def schemas(metrics: MetricSet, max_events: int) -> dict[str, Any]:
    """Every component schema."""
    names = [m.name for m in metrics.metrics]
    window = {"type": "object", "required": ["size_s", "slide_s"],
              "properties": {"size_s": {"type": "integer"}, "slide_s": {"type": "integer"},
                             "type": {"type": "string", "enum": ["tumbling", "hopping"]}}}
    return {
        "ClientEvent": client_event(),
        "EventsBody": {"oneOf": [
            {"type": "object", "required": ["events"], "additionalProperties": False,
             "properties": {"events": {"type": "array", "minItems": 1, "maxItems": max_events,
                                       "items": {"$ref": "#/components/schemas/ClientEvent"}}}},
            {"type": "array", "minItems": 1, "maxItems": max_events,
             "items": {"$ref": "#/components/schemas/ClientEvent"}}]},
        "IngestResult": {"type": "object", "required": ["accepted", "rejected", "event_ids", "errors"], "properties": {
            "accepted": {"type": "integer", "minimum": 0}, "rejected": {"type": "integer", "minimum": 0},
            "event_ids": {"type": "array", "items": {"type": "string"},
                          "description": "ids of the stored events, in request order"},
            "errors": {"type": "array", "items": {"type": "object", "required": ["index", "error"], "properties": {
                "index": {"type": "integer", "minimum": 0}, "error": {"type": "string"}}}}}},
        "SegmentMessage": {"type": "object", "description": "one call of Segment's tracking API", "properties": {
            "type": {"type": "string", "enum": ["track", "identify", "page", "screen", "group", "alias"]},
            "event": {"type": "string"}, "userId": {"type": "string"}, "anonymousId": {"type": "string"},
            "messageId": {"type": "string"}, "timestamp": {"type": "string", "format": "date-time"},
            "originalTimestamp": {"type": "string", "format": "date-time"},
            "sentAt": {"type": "string", "format": "date-time"}, "properties": {"type": "object"},
            "traits": {"type": "object"}, "context": {"type": "object"}, "integrations": {"type": "object"},
            "groupId": {"type": "string"}, "previousId": {"type": "string"}, "name": {"type": "string"},
            "writeKey": {"type": "string", "description": "the app key, when not sent in a header"}}},
        "SegmentBatch": {"type": "object", "required": ["batch"], "properties": {
            "batch": {"type": "array", "items": {"$ref": "#/components/schemas/SegmentMessage"}},
            "context": {"type": "object"}, "sentAt": {"type": "string", "format": "date-time"},
            "writeKey": {"type": "string", "description": "the app key, when not sent in a header"}}},
        "SegmentResult": _counts("messageId", {"success": {"const": True}}),
        "PostHogEvent": {"type": "object", "description": "one captured event", "properties": {
            "event": {"type": "string"}, "distinct_id": {"type": "string"}, "uuid": {"type": "string"},
            "timestamp": {"type": "string", "format": "date-time"}, "offset": {"type": "integer", "minimum": 0},
            "properties": {"type": "object", "description": "token: the project API key (posthog-js)"},
            "api_key": {"type": "string"}, "sent_at": {"type": "string", "format": "date-time"}}},
        "PostHogBody": {"oneOf": [
            {"type": "object", "required": ["batch"], "properties": {
                "api_key": {"type": "string"}, "sent_at": {"type": "string", "format": "date-time"},
                "batch": {"type": "array", "items": {"$ref": "#/components/schemas/PostHogEvent"}}}},
            {"$ref": "#/components/schemas/PostHogEvent"},
            {"type": "array", "items": {"$ref": "#/components/schemas/PostHogEvent"}}]},
        "PostHogForm": {"type": "object", "required": ["data"], "properties": {
            "data": {"type": "string", "description": "the JSON body, base64-encoded (posthog-js)"}}},
        "PostHogResult": _counts("uuid", {"status": {"const": 1}}),
        "PostHogRemoteConfig": {"type": "object", "required": ["supportedCompression", "hasFeatureFlags"],
                                "properties": {"supportedCompression": {"type": "array", "items": {"type": "string"}},
                                               "hasFeatureFlags": {"type": "boolean"}},
                                "description": "every remote feature (recording, surveys, heatmaps...) is off"},
        "PostHogFlagsRequest": {"type": "object", "properties": {
            "token": {"type": "string", "description": "the project API key"}, "api_key": {"type": "string"},
            "distinct_id": {"type": "string"}}},
        "PostHogFlags": {"type": "object", "required": ["flags", "featureFlags", "featureFlagPayloads",
                                                        "errorsWhileComputingFlags"], "properties": {
            "flags": {"type": "object", "maxProperties": 0}, "featureFlags": {"type": "object", "maxProperties": 0},
            "featureFlagPayloads": {"type": "object", "maxProperties": 0},
            "errorsWhileComputingFlags": {"const": False}}},
        "Metric": {"type": "object", "required": ["name", "description", "window", "key", "measures"], "properties": {
            "name": {"type": "string", "enum": names}, "description": {"type": "string"}, "window": window,
            "key": {"type": "array", "items": {"type": "string"}},
            "measures": {"type": "array", "items": {"type": "object", "required": ["name", "aggregate"],
                                                    "properties": {"name": {"type": "string"},
                                                                   "aggregate": {"type": "string"}}}}}},
        "MetricList": {"type": "object", "required": ["metrics"], "properties": {
            "metrics": {"type": "array", "items": {"$ref": "#/components/schemas/Metric"}}}},
        "MetricWindows": {"type": "object", "required": ["metric", "window", "rows", "truncated", "finalized_until"],
                          "properties": {
                              "metric": {"type": "string", "enum": names}, "window": window,
                              "rows": {"type": "array", "items": _metric_row(metrics)},
                              "truncated": {"type": "boolean"},
                              "finalized_until": {"type": "string", "format": "date-time",
                                                  "description": "windows starting before it are final"}}},
        "Event": stored_event(),
        "SearchResult": {"type": "object", "required": ["total", "hits", "next_cursor"], "properties": {
            "total": {"type": "integer", "minimum": 0},
            "hits": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}},
            "next_cursor": {"type": ["string", "null"]}}},
        "Pipeline": {"type": "object", "required": ["app_id", "operator", "generated_at", "generated_at_ms", "range",
                                                    "app", "finalization", "stream"], "properties": {
            "app_id": {"type": "string"}, "operator": {"type": "boolean"},
            "generated_at": {"type": "string", "format": "date-time"}, "generated_at_ms": {"type": "integer"},
            "range": {"type": "object", "required": ["from", "to"], "properties": {
                "from": {"type": "string", "format": "date-time"}, "to": {"type": "string", "format": "date-time"}}},
            "app": {"type": "object", "required": ["accepted", "rejected", "late_events", "bad_rows"]},
            "lateness": {"type": "object", "description": "metrics.yaml settings: allowed_lateness and max_lateness (s)",
                         "properties": {"allowed_s": {"type": "number"}, "max_s": {"type": "number"}}},
            "finalization": {"type": "array", "items": {"type": "object", "required": ["metric", "finalized_until"],
                                                        "properties": {
                "finalized_until": {"type": "string", "format": "date-time",
                                    "description": "as GET /v1/metrics/{name} answers it for the range"},
                "compacted_until": {"type": ["string", "null"], "format": "date-time",
                                    "description": "end of the newest hour the finalizer compacted "
                                                   "(current definition)"},
                "last_finalized_at": {"type": ["string", "null"], "format": "date-time",
                                      "description": "when the finalizer last wrote a manifest (current definition)"}}}},
            "stream": {"type": ["object", "null"], "description": "operator keys only: per consumer and shard lag"}}},
        "Health": {"type": "object", "required": ["status", "components"], "properties": {
            "status": {"type": "string", "enum": ["ok", "degraded"]},
            "components": {"type": "object", "additionalProperties": {
                "type": "object", "required": ["status"], "properties": {
                    "status": {"type": "string", "enum": ["ok", "down"]}, "detail": {"type": "string"},
                    "error": {"type": "string"}}}},
            "checked_at_ms": {"type": "integer", "description": "when the components were checked (epoch ms)"},
            "cached": {"type": "boolean", "description": "the report of an earlier call (reused for a few seconds)"}}},
        **error_schemas(),
    }
