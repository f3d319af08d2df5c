"""Pure building blocks: bulk sizing and outcomes, backoff, documents, template, client factory."""

from __future__ import annotations

import random

import orjson
import pytest
import requests
from botocore.credentials import Credentials
from hypothesis import given
from hypothesis import strategies as st
from opensearchpy import AWSV4SignerAuth, RequestsHttpConnection

from chalicelib.stream.retry import Backoff
from chalicelib.search.bulk import BulkItem, Outcome, chunk_by_bytes, classify_item, encode_item
from chalicelib.search.client import client_for_aws, client_for_url
from chalicelib.search.documents import InvalidDocument, document_to_event, event_to_document, location_of
from chalicelib.search.template import TemplateSettings, build_index_template, ensure_template
from tests.factories.search import NOW_MS, event


# -- bulk ---------------------------------------------------------------------------------------

def _items(sizes):
    return [BulkItem(n, "events-x", str(n), b"x" * size) for n, size in enumerate(sizes)]


@given(st.lists(st.integers(min_value=1, max_value=300), max_size=60), st.integers(min_value=1, max_value=500),
       st.integers(min_value=1, max_value=10))
def test_bulk_requests_respect_the_byte_and_action_limits_and_keep_order(sizes, max_bytes, max_actions):
    chunks = list(chunk_by_bytes(_items(sizes), max_bytes, max_actions))
    assert [i.position for c in chunks for i in c] == list(range(len(sizes)))
    for chunk in chunks:
        assert len(chunk) <= max_actions
        assert len(chunk) == 1 or sum(i.size for i in chunk) <= max_bytes


def test_an_item_over_the_byte_limit_is_sent_alone():
    assert [len(c) for c in chunk_by_bytes(_items([10, 900, 10, 10]), 100)] == [1, 1, 2]


def test_bulk_item_is_an_index_action_with_the_id_followed_by_the_document():
    item = encode_item(0, "events-2026.11.25", "app-a:e1", {"event_id": "e1"})
    action, document, end = item.payload.split(b"\n")
    assert orjson.loads(action) == {"index": {"_index": "events-2026.11.25", "_id": "app-a:e1"}}
    assert orjson.loads(document) == {"event_id": "e1"} and end == b""


@pytest.mark.parametrize("status,error,outcome", [
    (201, None, Outcome.OK), (200, None, Outcome.OK),
    (429, {"type": "es_rejected_execution_exception"}, Outcome.TRANSIENT),
    (503, {"type": "unavailable_shards_exception"}, Outcome.TRANSIENT),
    (400, {"type": "mapper_parsing_exception"}, Outcome.PERMANENT),
    (400, {"type": "illegal_argument_exception", "reason": "Limit of total fields"}, Outcome.PERMANENT),
    (400, {"type": "validation_exception", "reason": "maximum shards open"}, Outcome.TRANSIENT),
    (403, {"type": "cluster_block_exception"}, Outcome.TRANSIENT),
    (404, {"type": "index_not_found_exception"}, Outcome.TRANSIENT),
])
def test_only_document_errors_are_permanent(status, error, outcome):
    assert classify_item(status, error) is outcome


def test_backoff_grows_exponentially_with_full_jitter_up_to_the_cap():
    backoff, rng = Backoff(max_attempts=10, base_s=0.1, cap_s=2.0), random.Random(1)
    for retry in range(10):
        ceiling = min(2.0, 0.1 * 2 ** retry)
        assert 0 <= backoff.delay(retry, rng) <= ceiling
        assert backoff.delay(retry, lambda: 1.0) == pytest.approx(ceiling)
    assert len({round(backoff.delay(3, rng), 6) for _ in range(20)}) > 1, "jittered"


# -- documents ----------------------------------------------------------------------------------

@pytest.mark.parametrize("attributes,location", [
    ({"lat": 37.5, "lon": 127}, {"lat": 37.5, "lon": 127.0}),
    ({"lat": "37.5", "lon": 127}, None), ({"lat": True, "lon": 1}, None), ({"lat": 91, "lon": 0}, None),
    ({"lat": 0, "lon": -181}, None), ({"lat": 1}, None), ({}, None),
])
def test_location_needs_numeric_in_range_lat_and_lon(attributes, location):
    assert location_of(attributes) == location


def test_document_has_attributes_as_an_object():
    doc = event_to_document(event(text="gg"))
    assert doc["attributes"] == {"text": "gg"} and "location" not in doc


@pytest.mark.parametrize("change,field", [
    ({"event_id": ""}, "event_id"), ({"app_id": None}, "app_id"), ({"event_time": "x"}, "event_time"),
    ({"event_time": True}, "event_time"), ({"received_at": 1.5}, "received_at"), ({"user_id": 7}, "user_id"),
    ({"client_event_time": "x"}, "client_event_time"), ({"attributes": "[1]"}, "attributes"),
    ({"attributes": "{bad"}, "attributes"),
])
def test_bad_envelopes_are_rejected_naming_the_field(change, field):
    with pytest.raises(InvalidDocument, match=field):
        event_to_document({**event(), **change})


def test_stored_document_comes_back_as_the_event_with_iso_times():
    e = event(at=NOW_MS, client_event_time=NOW_MS - 1, text="x")
    out = document_to_event(event_to_document(e))
    assert out["event_time"] == "2026-11-25T12:00:00.000Z"
    assert out["client_event_time"] == "2026-11-25T11:59:59.999Z"
    assert out["attributes"] == {"text": "x"}
    assert set(out) == set(e)


# -- template -----------------------------------------------------------------------------------

def test_template_pattern_and_settings_follow_the_parameters():
    body = build_index_template(TemplateSettings(prefix="staging", shards=3, replicas=2, refresh_interval="5s"))
    assert body["index_patterns"] == ["staging-*"]
    index = body["template"]["settings"]["index"]
    assert {k: index[k] for k in ("number_of_shards", "number_of_replicas", "refresh_interval", "mapping")} == {
        "number_of_shards": 3, "number_of_replicas": 2, "refresh_interval": "5s",
        "mapping": {"total_fields": {"limit": 2000}}}
    assert body["template"]["mappings"]["dynamic"] == "strict"


def test_template_sets_slow_log_thresholds_so_the_published_slow_logs_are_written():
    """Rule: a node writes a slow log only for indices whose settings name thresholds; the domain
    publishes search and indexing slow logs, so the daily indices' template sets them."""
    index = build_index_template(TemplateSettings())["template"]["settings"]["index"]
    assert index["search"]["slowlog"]["threshold"]["query"] == {"warn": "2s", "info": "500ms"}
    assert index["search"]["slowlog"]["threshold"]["fetch"] == {"warn": "1s"}
    assert index["indexing"]["slowlog"]["threshold"]["index"] == {"warn": "2s", "info": "500ms"}


def test_serverless_template_leaves_unsupported_settings_out():
    body = build_index_template(TemplateSettings(shards=None, replicas=None, refresh_interval=None,
                                                 total_fields_limit=None, slowlog=None))
    assert "settings" not in body["template"]


def test_template_fingerprint_changes_with_the_content():
    a = build_index_template(TemplateSettings())["_meta"]["fingerprint"]
    assert a == build_index_template(TemplateSettings())["_meta"]["fingerprint"]
    assert a != build_index_template(TemplateSettings(replicas=2))["_meta"]["fingerprint"]


class _FakeIndices:
    def __init__(self):
        self.stored = None
        self.puts = 0

    def get_index_template(self, name, ignore=()):
        if self.stored is None:
            assert 404 in ignore
            return {"error": "index_template_missing_exception", "status": 404}
        return {"index_templates": [{"name": name, "index_template": self.stored}]}

    def put_index_template(self, name, body):
        self.puts += 1
        self.stored = body


def test_ensure_template_rewrites_only_when_the_content_changed():
    client = type("C", (), {"indices": _FakeIndices()})()
    assert ensure_template(client, TemplateSettings()) is True
    assert ensure_template(client, TemplateSettings()) is False
    assert ensure_template(client, TemplateSettings(replicas=0)) is True
    assert client.indices.puts == 2


@pytest.mark.parametrize("prefix", ["Events", "-x", "a b", "x" * 65, ""])
def test_invalid_prefixes_are_refused(prefix):
    with pytest.raises(ValueError):
        TemplateSettings(prefix=prefix)


# -- client factory -----------------------------------------------------------------------------

def test_url_client_targets_the_url_without_transport_retries():
    client = client_for_url("http://127.0.0.1:9201")
    assert client.transport.max_retries == 0
    assert client.transport.hosts == [{"host": "127.0.0.1", "port": 9201}]
    with pytest.raises(ValueError):
        client_for_url("127.0.0.1:9201")


@pytest.mark.parametrize("service", ["es", "aoss"])
def test_aws_client_signs_with_sigv4_for_the_service(service):
    creds = Credentials("AKIDEXAMPLE", "secret")
    client = client_for_aws("https://search-x.us-east-1.es.amazonaws.com", "us-east-1", creds, service=service)
    connection = client.transport.get_connection()
    assert isinstance(connection, RequestsHttpConnection)
    assert isinstance(connection.session.auth, AWSV4SignerAuth)
    signed = connection.session.auth(requests.Request("GET", f"{connection.host}/_search").prepare())
    assert f"/us-east-1/{service}/aws4_request" in signed.headers["Authorization"]
    assert connection.host == "https://search-x.us-east-1.es.amazonaws.com:443"


def test_aws_client_refuses_unknown_services_and_missing_credentials():
    with pytest.raises(ValueError):
        client_for_aws("host", "us-east-1", Credentials("a", "b"), service="s3")
    with pytest.raises(ValueError):
        client_for_aws("host", "us-east-1", None)
