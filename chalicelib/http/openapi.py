"""The published API contract: an OpenAPI 3.1 document of every HTTP route (pure).

Served at ``GET /v1/openapi.json`` (no key). Built from the code rather than kept
as a separate file: the routes' facts (limits, route tables, metric names, search
limits) come in through :class:`ContractFacts`, which the container fills from the
modules that enforce them (``ingest/``, ``query/``, ``search/`` sit above this
layer, so they are passed in, not imported); the schemas come from the envelope,
the dialects' error bodies and the metrics config (:mod:`.openapi_schemas`).
``tests/unit/http/test_openapi.py`` checks it against ``app.py``'s route table
(paths, methods, which routes need a key) and ``tests/e2e/test_contract_fuzz.py``
checks every response of the running API against it (schemathesis).

Every status a handler can answer is listed with its body: 400, 401, 404, 413,
415, 429 and 503 are the typed errors of ``http/errors.py``, in each route
family's shape (``{"error"}`` native, ``{"code", "message"}`` Segment,
``{"type", "code", "detail"}`` PostHog). Every route with a key may answer 429
with ``Retry-After`` (per-app rate limits, and Kinesis throttling on ingest).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from chalicelib.http.dashboard import ASSETS
from chalicelib.http.dialects import KEY_HEADER
from chalicelib.http.openapi_insights import InsightFacts, insight_paths, insight_schemas
from chalicelib.http.openapi_schemas import ERRORS, schemas
from chalicelib.processing import MetricSet

OPENAPI_VERSION = "3.1.0"
#: The contract's version: the major changes when a route or field is removed or changes meaning.
API_VERSION = "1.0.0"
SPEC_PATH = "/v1/openapi.json"
_JSON = "application/json"


@dataclass(frozen=True)
class ContractFacts:
    """What the document says about limits and routes, taken from the code that enforces it.

    Attributes:
        metrics: the metrics config (names, keys, measures).
        max_events, max_bytes: ``POST /v1/events`` caps (events per request, decompressed bytes).
        segment_paths: Segment route -> the message type its body is (None: a batch).
        segment_batch_bytes, segment_message_bytes: Segment's limits.
        posthog_paths: the PostHog capture routes.
        posthog_config_paths, posthog_flags_paths: posthog-js's remote configuration (JSON, script) and
            feature-flag routes.
        posthog_body_bytes, posthog_event_bytes: PostHog's limits.
        sdk_max_messages: most messages per SDK request.
        metrics_params, metrics_max_limit, metrics_max_range_h: ``GET /v1/metrics/{name}``.
        search_params, search_max_size, search_max_range_days, search_max_query_chars: ``GET /v1/search``.
        pipeline_params, pipeline_max_range_h: ``GET /v1/pipeline``.
    """

    metrics: MetricSet
    max_events: int
    max_bytes: int
    segment_paths: Mapping[str, str | None]
    segment_batch_bytes: int
    segment_message_bytes: int
    posthog_paths: tuple[str, ...]
    posthog_body_bytes: int
    posthog_event_bytes: int
    sdk_max_messages: int
    metrics_params: tuple[str, ...]
    metrics_max_limit: int
    metrics_max_range_h: int
    search_params: tuple[str, ...]
    search_max_size: int
    search_max_range_days: int
    search_max_query_chars: int
    pipeline_params: tuple[str, ...]
    pipeline_max_range_h: int
    posthog_config_paths: tuple[str, ...] = ()
    posthog_flags_paths: tuple[str, ...] = ()
    #: The insight routes' limits (chalicelib/reads/insights.py); None: the routes are left out.
    insights: InsightFacts | None = None
    #: ``GET /v1/sessions`` and ``GET /v1/persons/{user_id}`` (chalicelib/reads/people.py).
    sessions_params: tuple[str, ...] = ("from", "to")
    sessions_max_range_days: int = 31
    person_id_max_chars: int = 128


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_RETRY_AFTER = {"description": "seconds to wait before retrying", "schema": {"type": "integer", "minimum": 0}}
_WHY = {400: "malformed request or parameter", 401: "missing or unknown app key", 404: "not found",
        413: "over a size or count limit", 415: "unsupported Content-Type or Content-Encoding",
        429: "over the app's rate limit, the stream throttled, or too many unknown keys: retry after Retry-After",
        503: "a dependency (stream, key store, storage, search) is unavailable: retry later"}


def _errors(statuses: tuple[int, ...], schema: str) -> dict[str, Any]:
    out = {}
    for status in statuses:
        assert status in ERRORS, status
        response: dict[str, Any] = {"description": _WHY[status], "content": {_JSON: {"schema": _ref(schema)}}}
        if status in (429, 503):
            response["headers"] = {"Retry-After": {**_RETRY_AFTER, "required": status == 429}}
        out[str(status)] = response
    return out


def _ok(schema: str, description: str) -> dict[str, Any]:
    return {"200": {"description": description, "content": {_JSON: {"schema": _ref(schema)}}}}


def _query(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema or {"type": "string"}}


_TIME = {"type": "string", "format": "date-time"}
_AUTHENTICATED = (401, 429, 503)


def _native_get(summary: str, schema: str, params: list[dict[str, Any]], statuses: tuple[int, ...],
                tag: str) -> dict[str, Any]:
    return {"get": {"summary": summary, "tags": [tag], "security": [{"ApiKey": []}], "parameters": params,
                    "responses": {**_ok(schema, "the answer"), **_errors(statuses, "Error")}}}


def _events(facts: ContractFacts) -> dict[str, Any]:
    return {"post": {
        "summary": "send events", "tags": ["ingest"], "security": [{"ApiKey": []}],
        "description": (f'`{{"events": [...]}}`, a JSON array of events, or NDJSON (one event per line); at most '
                        f"{facts.max_events} events and {facts.max_bytes} bytes once decompressed (413 above). "
                        "An event that fails validation does not fail the request: it is listed in `errors` with "
                        "its index and the reason; `event_ids` lists the stored events. Malformed JSON (invalid "
                        "UTF-8, lone surrogates, NaN/Infinity, numbers out of range, nesting deeper than 1024) "
                        "is a 400 naming where; an object with a repeated key is a 400 too."),
        "parameters": [{"name": "Content-Encoding", "in": "header", "required": False,
                        "schema": {"type": "string", "enum": ["gzip", "identity"]},
                        "description": "gzip is inflated in bounded steps (a gzip bomb is a 413)"}],
        "requestBody": {"required": True, "content": {
            _JSON: {"schema": _ref("EventsBody")},
            "application/x-ndjson": {"schema": {"type": "string", "description": "one JSON event per line"}}}},
        "responses": {**_ok("IngestResult", "stored and rejected events"),
                      **_errors((400, 401, 413, 415, 429, 503), "Error")}}}


def _sdk(path: str, dialect: str, body: dict[str, Any], result: str, error: str, limit: str,
         security: list[dict[str, list]], extra_types: Mapping[str, Any], max_messages: int) -> dict[str, Any]:
    return {"post": {
        "summary": f"{dialect}-compatible ingestion", "tags": [dialect.lower()], "security": security,
        "operationId": f"{dialect.lower()}_{path.strip('/').replace('/', '_')}",
        "description": (f"{limit} At most {max_messages} messages per request. "
                        "Bodies are JSON whatever the Content-Type, gzip when announced or sniffed. "
                        "A message that fails validation is refused alone (listed in `errors`, kept as a bad row); "
                        "the batch is acknowledged (200) only when every accepted message was stored."),
        "requestBody": {"required": True, "content": {
            _JSON: {"schema": body}, "text/plain": {"schema": body}, **extra_types}},
        "responses": {**_ok(result, "stored (and rejected) messages"),
                      **_errors((400, 401, 413, 415, 429, 503), error)}}}


def _segment(facts: ContractFacts) -> dict[str, Any]:
    security = [{"ApiKey": []}, {"SegmentWriteKey": []}, {}]  # {}: writeKey in the body
    out = {}
    for path, kind in facts.segment_paths.items():
        body = _ref("SegmentBatch") if kind is None else _ref("SegmentMessage")
        limit = (f"A batch of at most {facts.segment_batch_bytes} bytes; a message over "
                 f"{facts.segment_message_bytes} bytes is refused alone." if kind is None else
                 f"One `{kind}` message of at most {facts.segment_message_bytes} bytes.")
        out[path] = _sdk(path, "Segment", body, "SegmentResult", "SegmentError", limit, security, {},
                         facts.sdk_max_messages)
    return out


def _posthog(facts: ContractFacts) -> dict[str, Any]:
    limit = (f"A body of at most {facts.posthog_body_bytes} bytes; an event over {facts.posthog_event_bytes} "
             "bytes is refused alone.")
    form = {"application/x-www-form-urlencoded": {"schema": _ref("PostHogForm")}}
    out = {}
    for path in facts.posthog_paths:
        operation = _sdk(path, "PostHog", _ref("PostHogBody"), "PostHogResult", "PostHogError", limit,
                         [{"ApiKey": []}, {}], form, facts.sdk_max_messages)  # {}: api_key / token in the body
        operation["post"]["parameters"] = [_query("compression", "gzip-js (or gzip): the body is gzip; base64",
                                                  {"type": "string", "enum": ["gzip-js", "gzip", "base64"]})]
        out[path] = operation
    return out


def _posthog_config(facts: ContractFacts) -> dict[str, Any]:
    """posthog-js's calls on load: remote configuration and feature flags (capture only, no flags)."""
    security = [{"ApiKey": []}, {}]  # {}: the project key in the path (config) or the body (flags)
    key = {"name": "key", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1},
           "description": "the project API key (an app key)"}
    out: dict[str, Any] = {}
    for path in facts.posthog_config_paths:
        script = path.endswith(".js")
        ok = ({"200": {"description": "the configuration as the script posthog-js loads",
                       "content": {"application/javascript": {"schema": {"type": "string"}}}}} if script else
              _ok("PostHogRemoteConfig", "the remote configuration: capture only"))
        out[path] = {"get": {"summary": "PostHog remote configuration" + (" (script)" if script else ""),
                             "tags": ["posthog"], "security": security, "parameters": [key],
                             "operationId": "posthog_config_js" if script else "posthog_config",
                             "responses": {**ok, **_errors(_AUTHENTICATED, "PostHogError")}}}
    form = {"application/x-www-form-urlencoded": {"schema": _ref("PostHogForm")}}
    for path in facts.posthog_flags_paths:
        out[path] = {"post": {
            "summary": "PostHog feature flags (none)", "tags": ["posthog"], "security": security,
            "operationId": f"posthog_{path.strip('/')}",
            "description": "No flag is served: every project evaluates to no flags. The key is `token` (or "
                           "`api_key`) in the body; bodies are read as on the capture routes.",
            "parameters": [_query("compression", "gzip-js (or gzip): the body is gzip; base64",
                                  {"type": "string", "enum": ["gzip-js", "gzip", "base64"]}),
                           _query("v", "the flags API version the client reads (both shapes are answered)")],
            "requestBody": {"required": True, "content": {_JSON: {"schema": _ref("PostHogFlagsRequest")},
                                                          "text/plain": {"schema": _ref("PostHogFlagsRequest")},
                                                          **form}},
            "responses": {**_ok("PostHogFlags", "no flags"),
                          **_errors((400, 401, 413, 415, 429, 503), "PostHogError")}}}
    return out


def _metrics(facts: ContractFacts) -> dict[str, Any]:
    names = [m.name for m in facts.metrics.metrics]
    keys = sorted({k.name for m in facts.metrics.metrics for k in m.keys})
    params = [{"name": "name", "in": "path", "required": True, "schema": {"type": "string", "enum": names},
               "description": "a metric of GET /v1/metrics (404 for another name)"},
              _query("from", "window starts from (included); default to - 1 h", _TIME),
              _query("to", f"window starts before (excluded); default now; at most {facts.metrics_max_range_h} h "
                           "after from", _TIME),
              _query("limit", f"rows, 1-{facts.metrics_max_limit}",
                     {"type": "integer", "minimum": 1, "maximum": facts.metrics_max_limit}),
              *[_query(k, "only these values of the key (comma-separated); a key of the metric") for k in keys]]
    assert set(facts.metrics_params) <= {p["name"] for p in params}
    return {
        "/v1/metrics": _native_get("the metrics and their windows, keys and measures", "MetricList", [],
                                   _AUTHENTICATED, "metrics"),
        "/v1/metrics/{name}": _native_get("a metric's windows for the caller's app", "MetricWindows", params,
                                          (400, 404, *_AUTHENTICATED), "metrics"),
    }


def _search(facts: ContractFacts) -> dict[str, Any]:
    docs = {"q": (f"free text (simple_query_string, at most {facts.search_max_query_chars} characters; no "
                  "leading wildcards)", {"type": "string", "maxLength": facts.search_max_query_chars}),
            "event_type": ("only this type", {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,63}$"}),
            "user_id": ("only this user", {"type": "string", "maxLength": 128}),
            "from": ("events from (included); default to - 24 h", _TIME),
            "to": (f"events before (excluded); default now; at most {facts.search_max_range_days} days after from",
                   _TIME),
            "size": (f"hits per page, 1-{facts.search_max_size}",
                     {"type": "integer", "minimum": 1, "maximum": facts.search_max_size}),
            "cursor": ("next_cursor of the previous page", {"type": "string"})}
    params = [_query(name, *docs[name]) for name in facts.search_params]
    return {"/v1/search": _native_get("search the caller's events, newest first", "SearchResult", params,
                                      (400, *_AUTHENTICATED), "search")}


_REGULATION = {"type": "object", "required": ["id", "app_id", "type", "status", "user_count", "created_at", "results"],
               "properties": {"id": {"type": "string"}, "app_id": {"type": "string"},
                              "type": {"type": "string", "enum": ["delete", "suppress", "suppress_with_delete",
                                                                  "unsuppress"]},
                              "status": {"type": "string", "enum": ["pending", "running", "done", "failed"]},
                              "user_count": {"type": "integer"}, "ids_sha256": {"type": "string"},
                              "requested_by": {"type": "object"}, "created_at": {"type": "integer"},
                              "started_at": {"type": ["integer", "null"]}, "finished_at": {"type": ["integer", "null"]},
                              "results": {"type": "object", "description": "counts per store: raw_rows, "
                                          "search_documents, bad_rows, dead_letter_events, staged_files, "
                                          "windows_recomputed, partials_deleted, suppressed"},
                              "error": {"type": ["string", "null"]}}}


def _regulations() -> dict[str, Any]:
    """Privacy regulations (chalicelib/ingest/regulations.py)."""
    body = {"type": "object", "required": ["type", "user_ids"], "additionalProperties": False, "properties": {
        "type": _REGULATION["properties"]["type"],
        "user_ids": {"type": "array", "minItems": 1, "maxItems": 5000,
                     "items": {"type": "string", "minLength": 1, "maxLength": 128}},
        "app_id": {"type": "string", "description": "operator keys only: another app"}}}
    one = {"description": "the regulation", "content": {_JSON: {"schema": _REGULATION}}}
    security = [{"ApiKey": []}]
    return {
        "/v1/regulations": {
            "post": {"summary": "file a privacy regulation (delete, suppress, suppress_with_delete, unsuppress) of "
                                "up to 5,000 of the app's user ids", "tags": ["privacy"], "security": security,
                     "requestBody": {"required": True, "content": {_JSON: {"schema": body}}},
                     "responses": {"202": {**one, "description": "accepted: suppressions apply at once, deletions "
                                                                 "when the deletion job has run"},
                                   **_errors((400, *_AUTHENTICATED), "Error")}},
            "get": {"summary": "the app's regulations (an operator's: every app's)", "tags": ["privacy"],
                    "security": security, "parameters": [],
                    "responses": {"200": {"description": "oldest first", "content": {_JSON: {"schema": {
                        "type": "object", "required": ["regulations"],
                        "properties": {"regulations": {"type": "array", "items": _REGULATION}}}}}},
                        **_errors(_AUTHENTICATED, "Error")}}},
        "/v1/regulations/{regulation_id}": {
            "get": {"summary": "one regulation: status, counts per store, times", "tags": ["privacy"],
                    "security": security,
                    "parameters": [{"name": "regulation_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                    "responses": {"200": one, **_errors((404, *_AUTHENTICATED), "Error")}}},
    }
def _sessions_and_persons(facts: ContractFacts) -> dict[str, Any]:
    """GET /v1/sessions and GET /v1/persons/{user_id} (chalicelib/reads/people.py)."""
    days = facts.sessions_max_range_days
    params = [_query("from", "sessions starting from (included); default to - 7 days", _TIME),
              _query("to", f"sessions starting before (excluded); default now; at most {days} days after from", _TIME)]
    assert [p["name"] for p in params] == list(facts.sessions_params)
    user = {"name": "user_id", "in": "path", "required": True, "description": "a user id, or an id merged into it",
            "schema": {"type": "string", "minLength": 1, "maxLength": facts.person_id_max_chars}}
    return {"/v1/sessions": _native_get("session metrics of the caller's app (finalized hours)", "Sessions", params,
                                        (400, *_AUTHENTICATED), "insights"),
            "/v1/persons/{user_id}": _native_get("a person of the caller's app: latest traits, first and last seen",
                                                 "Person", [user], (400, 404, *_AUTHENTICATED), "insights")}


_NUMBER_OR_NULL = {"type": ["number", "null"]}
INSIGHT_SCHEMAS = {
    "Sessions": {"type": "object", "required": ["from", "to", "sessions", "users", "events", "bounces",
                                                "bounce_rate", "median_duration_s"],
                 "properties": {"from": _TIME, "to": _TIME, "sessions": {"type": "integer", "minimum": 0},
                                "users": {"type": "integer", "minimum": 0}, "events": {"type": "integer", "minimum": 0},
                                "bounces": {"type": "integer", "minimum": 0},
                                "bounce_rate": {**_NUMBER_OR_NULL, "description": "one-event sessions / sessions"},
                                "median_duration_s": {**_NUMBER_OR_NULL,
                                                      "description": "mean of the two middle durations if even"}}},
    "Person": {"type": "object", "required": ["user_id", "aliases", "first_seen", "last_seen", "traits"],
               "properties": {"user_id": {"type": "string", "description": "the person's canonical id"},
                              "aliases": {"type": "array", "items": {"type": "string"},
                                          "description": "the ids merged into it by alias"},
                              "first_seen": _TIME, "last_seen": _TIME,
                              "traits": {"type": "object", "description": "newest $set, else oldest $set_once"}}},
}


def _public(summary: str, responses: dict[str, Any], tag: str, params: list | None = None) -> dict[str, Any]:
    return {"get": {"summary": summary, "tags": [tag], "security": [], "parameters": params or [],
                    "responses": responses}}


def _dashboard() -> dict[str, Any]:
    types = sorted({content_type.split(";")[0] for _, content_type in ASSETS.values()})
    page = {"200": {"description": "the page", "content": {"text/html": {"schema": {"type": "string"}}}},
            **_errors((503,), "Error")}
    # A JSON file (the map's atlas) is a document; the others are text.
    files = {"200": {"description": "one file of the page",
                     "content": {t: {"schema": {"type": "object" if t == _JSON else "string"}} for t in types}},
             **_errors((404, 503), "Error")}
    name = {"name": "name", "in": "path", "required": True, "schema": {"type": "string", "enum": sorted(ASSETS)}}
    return {"/dashboard": _public("the dashboard", page, "dashboard"),
            "/dashboard/{name}": _public("a file of the dashboard", files, "dashboard", [name])}


def build_spec(facts: ContractFacts) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the HTTP API (a new dict each call)."""
    health = {**_ok("Health", "every component is up"),
              "503": {"description": "degraded: a component is down", "content": {_JSON: {"schema": _ref("Health")}}}}
    pipeline = [_query("from", "default to - 1 h", _TIME),
                _query("to", f"default now; at most {facts.pipeline_max_range_h} h after from", _TIME)]
    assert [p["name"] for p in pipeline] == list(facts.pipeline_params)
    paths = {
        "/v1/events": _events(facts),
        **_segment(facts),
        **_posthog(facts),
        **_posthog_config(facts),
        **_metrics(facts),
        **_search(facts),
        "/v1/pipeline": _native_get("the pipeline's figures (Flink's job view)", "Pipeline", pipeline,
                                    (400, *_AUTHENTICATED), "pipeline"),
        **_regulations(),
        **_sessions_and_persons(facts),
        "/v1/health": _public("health of the components", health, "health"),
        **(insight_paths(facts.insights, _errors, _ok, _RETRY_AFTER) if facts.insights else {}),
        **_dashboard(),
        SPEC_PATH: _public("this document", {"200": {"description": "the OpenAPI 3.1 document",
                                                     "content": {_JSON: {"schema": {"type": "object"}}}}}, "meta"),
    }
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "eventpipe", "version": API_VERSION,
                 "description": "Event ingestion (native, Segment- and PostHog-compatible), windowed metrics, "
                                "search and the pipeline's state. See the README's API section."},
        "paths": paths,
        "components": {
            "schemas": {**schemas(facts.metrics, facts.max_events), **INSIGHT_SCHEMAS,
                        **(insight_schemas(facts.insights) if facts.insights else {})},
            "securitySchemes": {
                "ApiKey": {"type": "apiKey", "in": "header", "name": KEY_HEADER,
                           "description": "an app key (`eventpipe apps create`); accepted on every route"},
                "SegmentWriteKey": {"type": "http", "scheme": "basic",
                                    "description": "Segment routes: the write key as the Basic user name, empty "
                                                   "password; or `writeKey` in the body"},
            },
        },
    }
