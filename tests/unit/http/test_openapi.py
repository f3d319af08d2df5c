"""The published OpenAPI document matches the code: routes, methods, limits, error shapes."""

from __future__ import annotations

import pytest
from openapi_spec_validator import validate

import app as app_module
from chalicelib.http.dialects import NATIVE, POSTHOG, SEGMENT
from chalicelib.http.openapi_schemas import ERRORS
from chalicelib.ingest import posthog, segment
from chalicelib.ingest.service import MAX_DECOMPRESSED_BYTES, MAX_EVENTS_PER_REQUEST
from chalicelib.stream.envelope import ENVELOPE, EVENT_TYPE_PATTERN
from tests.contract import spec_of

SPEC = spec_of(app_module)
POSTHOG_PATHS = set(posthog.PATHS) | set(posthog.CONFIG_PATHS) | set(posthog.FLAGS_PATHS)
SDK_PATHS = set(segment.PATH_TYPES) | POSTHOG_PATHS


def app_routes() -> dict[str, set[str]]:
    return {path: {m.lower() for m in methods} for path, methods in app_module.app.routes.items()}


def test_the_document_is_valid_openapi_3_1():
    assert SPEC["openapi"] == "3.1.0"
    validate(SPEC)


def test_every_route_of_app_py_is_in_the_document_and_nothing_else():
    documented = {path: set(item) for path, item in SPEC["paths"].items()}
    assert documented == app_routes()


def test_the_document_serves_itself_without_a_key():
    assert SPEC["paths"]["/v1/openapi.json"]["get"]["security"] == []


def test_native_routes_need_the_key_header_and_sdk_routes_also_take_their_own_key_forms():
    for path, item in SPEC["paths"].items():
        for operation in item.values():
            security = operation["security"]
            if path in segment.PATH_TYPES:
                assert security == [{"ApiKey": []}, {"SegmentWriteKey": []}, {}]
            elif path in POSTHOG_PATHS:
                assert security == [{"ApiKey": []}, {}]
            elif path.startswith("/dashboard") or path in ("/v1/health", "/v1/openapi.json"):
                assert security == []
            else:
                assert security == [{"ApiKey": []}], path
    schemes = SPEC["components"]["securitySchemes"]
    assert schemes["ApiKey"] == {**schemes["ApiKey"], "type": "apiKey", "in": "header", "name": "x-api-key"}
    assert schemes["SegmentWriteKey"]["scheme"] == "basic"


def test_every_route_with_a_key_documents_401_and_429_with_retry_after():
    for path, item in SPEC["paths"].items():
        for operation in item.values():
            if not operation["security"]:
                continue
            assert "401" in operation["responses"], path
            too_many = operation["responses"]["429"]
            assert too_many["headers"]["Retry-After"]["required"] is True, path


@pytest.mark.parametrize("path, statuses", [
    ("/v1/events", {"200", "400", "401", "413", "415", "429", "503"}),
    ("/v1/batch", {"200", "400", "401", "413", "415", "429", "503"}),
    ("/batch", {"200", "400", "401", "413", "415", "429", "503"}),
    ("/array/{key}/config", {"200", "401", "429", "503"}),
    ("/array/{key}/config.js", {"200", "401", "429", "503"}),
    ("/flags", {"200", "400", "401", "413", "415", "429", "503"}),
    ("/decide", {"200", "400", "401", "413", "415", "429", "503"}),
    ("/v1/metrics", {"200", "401", "429", "503"}),
    ("/v1/metrics/{name}", {"200", "400", "401", "404", "429", "503"}),
    ("/v1/search", {"200", "400", "401", "429", "503"}),
    ("/v1/pipeline", {"200", "400", "401", "429", "503"}),
    ("/v1/insights/funnel", {"200", "202", "400", "401", "429", "503"}),
    ("/v1/insights/retention", {"200", "202", "400", "401", "429", "503"}),
    ("/v1/insights/queries/{query_id}", {"200", "202", "401", "404", "429", "503"}),
    ("/v1/insights/event-types", {"200", "401", "429", "503"}),
    ("/v1/sessions", {"200", "400", "401", "429", "503"}),
    ("/v1/persons/{user_id}", {"200", "400", "401", "404", "429", "503"}),
    ("/v1/health", {"200", "503"}),
    ("/dashboard", {"200", "503"}),
    ("/dashboard/{name}", {"200", "404", "503"}),
])
def test_each_route_documents_the_statuses_its_handler_can_answer(path, statuses):
    (operation,) = SPEC["paths"][path].values()
    assert set(operation["responses"]) == statuses


def test_error_bodies_are_each_route_familys_shape():
    for path, item in SPEC["paths"].items():
        for operation in item.values():
            for status, response in operation["responses"].items():
                if status.startswith("2") or path == "/v1/health":  # successes (200, the regulations' 202)
                    continue
                ref = response["content"]["application/json"]["schema"]["$ref"]
                expected = ("SegmentError" if path in segment.PATH_TYPES else
                            "PostHogError" if path in POSTHOG_PATHS else "Error")
                assert ref == f"#/components/schemas/{expected}", (path, status)


def test_the_error_codes_are_every_code_the_dialects_answer():
    schemas = SPEC["components"]["schemas"]
    for status, cls in ERRORS.items():
        error = cls("why")
        assert set(NATIVE.error_body(error)) == set(schemas["Error"]["required"])
        assert SEGMENT.error_body(error)["code"] in schemas["SegmentError"]["properties"]["code"]["enum"]
        body = POSTHOG.error_body(error)
        assert body["type"] in schemas["PostHogError"]["properties"]["type"]["enum"]
        assert body["code"] in schemas["PostHogError"]["properties"]["code"]["enum"]


def test_the_event_schema_is_the_envelope_s_client_fields():
    event = SPEC["components"]["schemas"]["ClientEvent"]
    assert set(event["properties"]) == {f.name for f in ENVELOPE if f.from_client} | {"sent_at"}
    assert event["additionalProperties"] is False
    assert event["properties"]["event_type"]["pattern"] == EVENT_TYPE_PATTERN
    stored = SPEC["components"]["schemas"]["Event"]
    assert stored["required"] == [f.name for f in ENVELOPE]


def test_the_limits_are_the_ones_the_code_enforces():
    body = SPEC["components"]["schemas"]["EventsBody"]["oneOf"]
    assert {b.get("maxItems") or b["properties"]["events"]["maxItems"] for b in body} == {MAX_EVENTS_PER_REQUEST}
    assert f"{MAX_DECOMPRESSED_BYTES} bytes" in SPEC["paths"]["/v1/events"]["post"]["description"]
    assert f"{segment.BATCH_LIMIT_BYTES} bytes" in SPEC["paths"]["/v1/batch"]["post"]["description"]
    assert f"{segment.MESSAGE_LIMIT_BYTES} bytes" in SPEC["paths"]["/v1/track"]["post"]["description"]
    assert f"{posthog.BODY_LIMIT_BYTES} bytes" in SPEC["paths"]["/batch"]["post"]["description"]


def test_the_metric_names_come_from_the_metrics_config():
    names = [m.name for m in app_module.container.metrics.metrics]
    (parameter,) = [p for p in SPEC["paths"]["/v1/metrics/{name}"]["get"]["parameters"] if p["in"] == "path"]
    assert parameter["schema"]["enum"] == names
    documented = {p["name"] for p in SPEC["paths"]["/v1/metrics/{name}"]["get"]["parameters"]}
    assert {k.name for m in app_module.container.metrics.metrics for k in m.keys} <= documented
