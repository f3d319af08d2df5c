"""posthog-js's calls on page load besides capture, over HTTP (chalice.test.Client on moto).

Rule: a PostHog-compatible host answers ``GET /array/<key>/config`` (JSON), ``/array/<key>/config.js``
(the script posthog-js's module build loads), ``POST /flags/`` and ``/decide/`` for a valid project key
with 200 and CORS headers (no flags, every remote feature off, the compressions capture accepts), and
an unknown or missing key with a 4xx PostHog error body, with CORS headers too: a page of another
origin then logs no errors.
"""

import base64
import gzip
import json

import orjson
import pytest

from chalicelib.ingest import posthog

KEY = "demo-key"
FLAGS_BODY = {"token": KEY, "distinct_id": "anon-1", "groups": {}, "person_properties": {}}


def get(client, path, headers=None):
    response = client.http.get(path, headers={"Origin": "http://shop.example.test", **(headers or {})})
    return response.status_code, response.body, response.headers


def post(client, path, body, content_type="text/plain", headers=None):
    response = client.http.post(path, body=body, headers={"Content-Type": content_type,
                                                          "Origin": "http://shop.example.test", **(headers or {})})
    return response.status_code, json.loads(response.body), response.headers


def test_the_remote_config_of_a_valid_key_is_capture_only_with_cors(client):
    status, body, headers = get(client, f"/array/{KEY}/config")
    assert status == 200 and headers["Access-Control-Allow-Origin"] == "*"
    assert headers["Content-Type"] == "application/json"
    config = json.loads(body)
    assert config["supportedCompression"] == ["gzip", "gzip-js"] and config["hasFeatureFlags"] is False
    assert config["sessionRecording"] is False and config["siteApps"] == [] and "surveys" not in config
    assert KEY.encode() not in body


def test_the_remote_config_script_defines_the_config_for_its_own_key_without_echoing_it(client):
    status, body, headers = get(client, f"/array/{KEY}/config.js")
    assert status == 200 and headers["Access-Control-Allow-Origin"] == "*"
    assert headers["Content-Type"] == "application/javascript"
    assert body.decode() == posthog.remote_config_script() and KEY.encode() not in body
    assert "_POSTHOG_REMOTE_CONFIG" in body.decode() and orjson.dumps(posthog.REMOTE_CONFIG).decode() in body.decode()


@pytest.mark.parametrize("path, body, content_type", [
    ("/flags/?v=2", orjson.dumps(FLAGS_BODY), "application/json"),
    ("/flags/?v=2&compression=gzip-js", gzip.compress(orjson.dumps(FLAGS_BODY)), "text/plain"),
    ("/flags/?v=2&compression=base64", b"data=" + base64.b64encode(orjson.dumps(FLAGS_BODY)),
     "application/x-www-form-urlencoded"),
    ("/decide/?v=3", orjson.dumps({"api_key": KEY, "distinct_id": "anon-1"}), "application/json"),
])
def test_flags_of_a_valid_key_are_none_in_both_answer_shapes_with_cors(client, path, body, content_type):
    status, doc, headers = post(client, path, body, content_type)
    assert status == 200 and headers["Access-Control-Allow-Origin"] == "*"
    assert (doc["flags"], doc["featureFlags"], doc["featureFlagPayloads"]) == ({}, {}, {})
    assert doc["errorsWhileComputingFlags"] is False and doc["supportedCompression"] == ["gzip", "gzip-js"]


@pytest.mark.parametrize("path", ["/array/nope/config", "/array/nope/config.js"])
def test_an_unknown_key_gets_a_posthog_401_with_cors_from_the_config_routes(client, path):
    status, body, headers = get(client, path)
    doc = json.loads(body)
    assert status == 401 and headers["Access-Control-Allow-Origin"] == "*"
    assert (doc["type"], doc["code"]) == ("authentication_error", "invalid_api_key")
    assert "unknown API key" in doc["detail"]


@pytest.mark.parametrize("path, body, status, message", [
    ("/flags/?v=2", {"token": "nope", "distinct_id": "d"}, 401, "unknown API key"),
    ("/decide/?v=3", {"distinct_id": "d"}, 401, "missing project API key"),
    ("/flags/?v=2", ["not", "an", "object"], 400, "must be a JSON object"),
])
def test_flags_errors_are_posthog_error_bodies_with_cors(client, path, body, status, message):
    got, doc, headers = post(client, path, orjson.dumps(body))
    assert got == status and headers["Access-Control-Allow-Origin"] == "*"
    assert doc["type"] in ("authentication_error", "validation_error") and message in doc["detail"]


def test_the_config_routes_take_a_request_token_of_the_apps_rate_limit(client, container, monkeypatch):
    seen = []
    monkeypatch.setattr(container.limiter, "admit", lambda app_id, events=0: seen.append((app_id, events)))
    get(client, f"/array/{KEY}/config")
    post(client, "/flags/?v=2", orjson.dumps(FLAGS_BODY))
    assert seen == [("demo", 0), ("demo", 0)]
