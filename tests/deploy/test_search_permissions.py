"""The API role's OpenSearch permissions against the calls the API really makes (in-memory server).

The API's search and health run through the container against osmem-server while every
request the OpenSearch client sends is recorded; each recorded call must be allowed by the API
role's policy and by the domain's resource policy, and the writes the consumers make must not be.
"""

from __future__ import annotations

import fnmatch
import time

import pytest
from opensearchpy.transport import Transport

from chalicelib.runtime.container import Container
from chalicelib.runtime.settings import Settings
from chalicelib.search.naming import index_for
from eventpipe.deploy import iam
from eventpipe.deploy.naming import StageNames

NAMES = StageNames("eventpipe", "dev")
ACCOUNT, REGION = "123456789012", "us-east-1"
DOMAIN_ARN = f"arn:aws:es:{REGION}:{ACCOUNT}:domain/{NAMES.search_domain}"


def _resolve(resource) -> str:
    text = resource["Fn::Sub"] if isinstance(resource, dict) else resource
    return (text.replace("${AWS::Partition}", "aws").replace("${AWS::Region}", REGION)
            .replace("${AWS::AccountId}", ACCOUNT))


def allowed(statements: list[dict], method: str, path: str) -> bool:
    """IAM's decision for one HTTP call to the domain (Allow statements; ``*`` matches anything)."""
    action = f"es:ESHttp{method.capitalize()}"
    arn = DOMAIN_ARN + path.split("?", 1)[0]
    for statement in statements:
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        if statement["Effect"] == "Allow" and any(fnmatch.fnmatchcase(action, a) for a in statement["Action"]) \
                and any(fnmatch.fnmatchcase(arn, _resolve(r)) for r in resources):
            return True
    return False


def _role_statements() -> list[dict]:
    return iam.statements("api_handler", NAMES)


def _domain_statements_for_api() -> list[dict]:
    principal = {"AWS": [{"Fn::GetAtt": [iam.role_logical_id("api_handler"), "Arn"]}]}
    return [s for s in iam.search_access_policy(NAMES)["Statement"] if s["Principal"] == principal]


@pytest.fixture(scope="module")
def search_url():
    from osmem_server import OsmemServer

    server = OsmemServer.start(japanese=False)
    try:
        yield server.url
    finally:
        server.close()


@pytest.fixture
def recorded(monkeypatch) -> list[tuple[str, str]]:
    calls: list[tuple[str, str]] = []
    original = Transport.perform_request

    def record(self, method, url, *args, **kwargs):
        calls.append((method, url))
        return original(self, method, url, *args, **kwargs)

    monkeypatch.setattr(Transport, "perform_request", record)
    return calls


def test_every_call_of_the_api_is_allowed_by_its_role_and_the_domain(search_url, recorded):
    """GET /v1/search and the search part of GET /v1/health send only calls the narrowed policies allow."""
    now_ms = int(time.time() * 1000)
    settings = Settings(opensearch_url=search_url, search_replicas=0)
    seed = Container(settings).search_client  # the consumers' client: applies the index template
    seed.index(index=index_for(now_ms), body={"app_id": "demo", "event_time": now_ms, "received_at": now_ms,
                                              "event_id": "e1", "event_type": "x"},
               refresh=True)
    recorded.clear()
    container = Container(settings)
    result = container.search.search("demo", {})
    assert "hits" in result
    report = container.health._checks["search"]()
    assert report.startswith("cluster")
    assert recorded, "the OpenSearch client sent nothing"
    assert {m for m, _ in recorded} <= {"GET", "POST"}
    for method, path in recorded:
        assert allowed(_role_statements(), method, path), (method, path)
        assert allowed(_domain_statements_for_api(), method, path), (method, path)


@pytest.mark.parametrize("method, path", [
    ("PUT", "/_index_template/events"),        # what ensure_template sends (the consumers' job)
    ("POST", "/_bulk"),                        # indexing
    ("POST", "/events-2026.12.07/_doc"),       # a write through POST on an index
    ("POST", "/events-2026.12.07/_delete_by_query"),
    ("DELETE", "/events-2026.12.07"),          # retention
    ("GET", "/_cat/indices/events-*"),
    ("POST", "/other-index/_search"),          # another index family of the domain
])
def test_the_api_may_not_write_or_read_beyond_the_daily_indices(method, path):
    """Neither the API's role nor the domain's policy allows the API a write, or another index."""
    assert not allowed(_role_statements(), method, path)
    assert not allowed(_domain_statements_for_api(), method, path)
