"""GET /v1/openapi.json on the real API (chalice.test.Client on moto), and the document's promises checked
by calling every route: which routes answer 401 without a key, and that the answers conform."""

from __future__ import annotations

import json

import pytest

import app as app_module
from tests.contract import check_response, spec_of

SPEC = spec_of(app_module)


def concrete(path: str, item: dict) -> str:
    """The path with each path parameter set to the first value its schema allows (any string: "x")."""
    for parameter in next(iter(item.values())).get("parameters", []):
        if parameter["in"] == "path":
            path = path.replace("{" + parameter["name"] + "}", parameter["schema"].get("enum", ["x"])[0])
    return path


def call(client, method: str, path: str, headers: dict[str, str], body: bytes = b""):
    if method == "post":
        return client.http.post(path, headers={"Content-Type": "application/json", **headers}, body=body)
    return client.http.get(path, headers=headers)


def test_the_document_is_served_without_a_key_and_is_the_built_one(client):
    response = client.http.get("/v1/openapi.json")
    assert response.status_code == 200
    assert json.loads(response.body) == json.loads(json.dumps(SPEC))
    check_response(SPEC, "/v1/openapi.json", "GET", 200, response.headers, response.body)


@pytest.mark.parametrize("path,method", sorted((p, m) for p, item in SPEC["paths"].items() for m in item))
def test_a_route_answers_401_without_a_key_exactly_when_the_document_says_it_needs_one(client, path, method):
    item = SPEC["paths"][path]
    operation = item[method]
    url = concrete(path, item)
    body = b'{"batch": []}' if method == "post" else b""
    response = call(client, method, url, {}, body)
    needs_key = bool(operation["security"]) and {} not in operation["security"]
    body_key_allowed = {} in operation["security"]
    if needs_key or body_key_allowed:  # no key in the header, none in the body either
        assert response.status_code == 401, (path, response.body)
    else:
        assert response.status_code != 401, path
    check_response(SPEC, url, method.upper(), response.status_code, response.headers, response.body)


@pytest.mark.parametrize("path", sorted(p for p, item in SPEC["paths"].items() if "get" in item))
def test_every_get_route_with_the_key_answers_as_documented(client, path):
    url = concrete(path, SPEC["paths"][path])
    response = call(client, "get", url, {"x-api-key": "demo-key"})
    check_response(SPEC, url, "GET", response.status_code, response.headers, response.body)


@pytest.mark.parametrize("query, status", [
    ("from=2000-01-01T00:00:00Z&to=2026-01-01T00:00:00Z", 400),  # decades: refused, not listed day by day
    ("from=2026-01-01T00:00:00Z&to=2026-01-08T00:00:00Z", 200),  # 7 days: the most
    ("from=2026-01-01T00:00:00Z&to=2026-01-08T00:00:01Z", 400),
])
def test_the_pipeline_range_is_at_most_7_days(client, query, status):
    response = client.http.get(f"/v1/pipeline?{query}", headers={"x-api-key": "demo-key"})
    assert response.status_code == status, response.body
    check_response(SPEC, "/v1/pipeline", "GET", response.status_code, response.headers, response.body)
