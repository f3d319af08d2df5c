"""The insight routes of the OpenAPI document (pure): paths and schemas, merged by :mod:`.openapi`.

The limits are passed in (:class:`InsightFacts`, filled by the container from
``chalicelib/reads/insights.py``, which enforces them: the query layer sits above this one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_JSON = "application/json"
_EVENT_TYPE = {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,63}$"}
_TIME = {"type": "string", "format": "date-time", "description": "ISO-8601 with a zone"}


@dataclass(frozen=True)
class InsightFacts:
    max_steps: int
    max_where: int
    max_range_days: int
    max_within_days: int
    max_periods: dict[str, int]
    attribute_path: str
    duration: str


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def insight_schemas(facts: InsightFacts) -> dict[str, Any]:
    path = {"type": "string", "pattern": f"^{facts.attribute_path}$"}
    value = {"oneOf": [{"type": "string", "maxLength": 256}, {"type": "integer"}, {"type": "boolean"}]}
    step_out = {"type": "object", "required": ["event_type", "users", "conversion", "median_seconds_to_convert"],
                "properties": {"event_type": {"type": "string"}, "users": {"type": "integer", "minimum": 0},
                               "conversion": {"type": "number", "minimum": 0, "maximum": 1},
                               "median_seconds_to_convert": {"type": ["number", "null"], "minimum": 0}}}
    return {
        "FunnelRequest": {"type": "object", "required": ["steps", "from", "to"], "additionalProperties": False,
                          "properties": {
            "steps": {"type": "array", "minItems": 2, "maxItems": facts.max_steps, "items": {
                "type": "object", "required": ["event_type"], "additionalProperties": False, "properties": {
                    "event_type": _EVENT_TYPE,
                    "where": {"type": "object", "maxProperties": facts.max_where,
                              "propertyNames": path, "additionalProperties": value,
                              "description": "attribute path -> value: the step's events must have these"}}}},
            "within": {"type": "string", "pattern": f"^{facts.duration}$", "default": "1h",
                       "description": f"every step within this long of the step-1 event (at most "
                                      f"{facts.max_within_days}d)"},
            "from": {**_TIME, "description": "step-1 events from (included)"},
            "to": {**_TIME, "description": f"step-1 events before (excluded); at most {facts.max_range_days} "
                                           f"days after from"},
            "breakdown": {**path, "description": "split by this attribute of the step-1 event"}}},
        "FunnelResult": {"type": "object", "required": ["steps"], "properties": {
            "steps": {"type": "array", "items": step_out},
            "breakdown": {"type": "array", "items": {"type": "object", "required": ["value", "steps"], "properties": {
                "value": {"type": ["string", "null"]}, "steps": {"type": "array", "items": step_out}}}}}},
        "RetentionRequest": {"type": "object", "required": ["start_event", "return_event", "from", "to"],
                             "additionalProperties": False, "properties": {
            "start_event": _EVENT_TYPE, "return_event": _EVENT_TYPE,
            "period": {"type": "string", "enum": sorted(facts.max_periods), "default": "day",
                       "description": "UTC days, or ISO weeks starting Monday 00:00 UTC"},
            "periods": {"type": "integer", "minimum": 1, "maximum": max(facts.max_periods.values()), "default": 8,
                        "description": ", ".join(f"at most {n} for {p}" for p, n in sorted(facts.max_periods.items()))},
            "from": {**_TIME, "description": "first start events from (included)"},
            "to": {**_TIME, "description": f"first start events before (excluded); at most "
                                           f"{facts.max_range_days} days after from (return events after it count)"}}},
        "RetentionResult": {"type": "object", "required": ["cohorts"], "properties": {"cohorts": {
            "type": "array", "items": {"type": "object", "required": ["period_start", "users", "returned"],
                                       "properties": {
                "period_start": {"type": "string", "format": "date-time"},
                "users": {"type": "integer", "minimum": 0},
                "returned": {"type": "array", "items": {"type": "integer", "minimum": 0},
                             "description": "[cohort users, returned in period 1, ..., period N-1]"}}}}}},
        "InsightPending": {"type": "object", "required": ["query_id", "status", "location"], "properties": {
            "query_id": {"type": "string"}, "status": {"type": "string", "enum": ["running"]},
            "location": {"type": "string"}}},
        "EventTypes": {"type": "object", "required": ["event_types"],
                       "properties": {"event_types": {"type": "array", "items": {"type": "string"}}}},
    }


def insight_paths(facts: InsightFacts, errors, ok, retry_after: dict[str, Any]) -> dict[str, Any]:
    """``errors(statuses, schema)`` and ``ok(schema, description)`` are :mod:`.openapi`'s helpers."""
    pending = {"202": {"description": "still running on Athena: poll the Location",
                       "headers": {"Location": {"required": True, "schema": {"type": "string"}},
                                   "Retry-After": {**retry_after, "required": True}},
                       "content": {_JSON: {"schema": _ref("InsightPending")}}}}

    def post(summary: str, request: str, result: str) -> dict[str, Any]:
        return {"post": {"summary": summary, "tags": ["insights"], "security": [{"ApiKey": []}],
                         "description": "The caller's app only. Answers when ready within a few seconds, else 202. "
                                        "Costs 20 + 5 request tokens per UTC day read.",
                         "requestBody": {"required": True, "content": {_JSON: {"schema": _ref(request)}}},
                         "responses": {**ok(result, "the insight"), **pending,
                                       **errors((400, 401, 429, 503), "Error")}}}

    query_id = {"name": "query_id", "in": "path", "required": True, "schema": {"type": "string"},
                "description": "query_id of a 202 answer (the app's own)"}
    return {
        "/v1/insights/funnel": post("funnel: users reaching each step", "FunnelRequest", "FunnelResult"),
        "/v1/insights/retention": post("retention cohorts", "RetentionRequest", "RetentionResult"),
        "/v1/insights/queries/{query_id}": {"get": {
            "summary": "the answer of an insight that answered 202", "tags": ["insights"],
            "security": [{"ApiKey": []}], "parameters": [query_id],
            "responses": {"200": {"description": "the insight (funnel or retention)", "content": {_JSON: {
                "schema": {"oneOf": [_ref("FunnelResult"), _ref("RetentionResult")]}}}},
                **pending, **errors((404, 401, 429, 503), "Error")}}},
        "/v1/insights/event-types": {"get": {
            "summary": "the app's event types of the last 30 days (the dashboard's step choices)",
            "tags": ["insights"], "security": [{"ApiKey": []}], "parameters": [],
            "responses": {**ok("EventTypes", "event types, sorted"), **errors((401, 429, 503), "Error")}}},
    }
