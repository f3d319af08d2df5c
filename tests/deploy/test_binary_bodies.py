"""With ``*/*`` as binary media type, API Gateway hands a gzip body over base64-encoded: it arrives intact."""

from __future__ import annotations

import base64
import gzip

import orjson
import pytest
from chalice.local import LambdaContext
from moto import mock_aws

import app as app_module
from chalicelib.runtime.settings import Settings
from eventpipe.local.bootstrap import bootstrap
from chalicelib.runtime.container import Container


@pytest.fixture
def container(monkeypatch):
    with mock_aws():
        fresh = Container(Settings())
        bootstrap(fresh.clients, shards=1)
        monkeypatch.setattr(app_module, "container", fresh)
        yield fresh


def proxy_event(body: bytes, headers: dict) -> dict:
    """A REST API Lambda proxy event for a binary body (what API Gateway sends with */* binary)."""
    return {"resource": "/v1/events", "path": "/v1/events", "httpMethod": "POST", "headers": headers,
            "multiValueHeaders": {k: [v] for k, v in headers.items()}, "queryStringParameters": None,
            "multiValueQueryStringParameters": None, "pathParameters": None, "stageVariables": None,
            "requestContext": {"resourcePath": "/v1/events", "httpMethod": "POST", "stage": "api",
                               "path": "/api/v1/events", "requestId": "r-1", "identity": {"sourceIp": "192.0.2.1"}},
            "body": base64.b64encode(body).decode(), "isBase64Encoded": True}


def test_a_gzip_body_sent_as_binary_is_ingested(container):
    events = [{"event_type": "level_start", "user_id": f"u{i}", "event_time": 1_767_268_800_000 + i}
              for i in range(3)]
    body = gzip.compress(b"\n".join(orjson.dumps(e) for e in events))
    response = app_module.app(proxy_event(body, {"x-api-key": "demo-key", "content-type": "application/x-ndjson",
                                                 "content-encoding": "gzip"}),
                              LambdaContext("api_handler", 1024, 30_000))
    assert response["statusCode"] == 200, response["body"]
    assert orjson.loads(response["body"])["accepted"] == 3
