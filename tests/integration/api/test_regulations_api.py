"""/v1/regulations through the Chalice app on moto: validation, scope of keys, suppression at ingest, audit."""

from __future__ import annotations

import json

import orjson
import pytest

from chalicelib.apps.keys import AppStore
from chalicelib.stream import codec
from tests.integration.api.conftest import read_stream

OPERATOR = {"x-api-key": "demo-key", "Content-Type": "application/json"}  # the demo app is an operator


def call(client, method, path, headers, body=None):
    response = getattr(client.http, method)(path, headers=headers, body=json.dumps(body) if body is not None else None)
    return response.status_code, json.loads(response.body)


@pytest.fixture
def app_key(container):
    return {"x-api-key": AppStore(container.clients.dynamodb, container.settings.apps_table).create_key("shop"),
            "Content-Type": "application/json"}


@pytest.mark.parametrize("body, message", [
    ({"user_ids": ["u"]}, "type must be one of"),
    ({"type": "erase", "user_ids": ["u"]}, "type must be one of"),
    ({"type": "delete", "user_ids": []}, "1 to 5000"),
    ({"type": "delete", "user_ids": ["u"] * 5001}, "1 to 5000"),
    ({"type": "delete", "user_ids": ["u", 7]}, "user_ids[1]"),
    ({"type": "delete", "user_ids": ["x" * 129]}, "user_ids[0]"),
    ({"type": "delete", "user_ids": ["u"], "why": 1}, "unknown field"),
    ({"type": "delete", "user_ids": ["u"], "app_id": "demo"}, "its own app only"),
    ([1], "JSON object"),
])
def test_a_malformed_regulation_is_a_400_naming_the_field(client, app_key, body, message):
    """Every malformed body is refused (400) with a message naming the field; nothing is stored."""
    status, doc = call(client, "post", "/v1/regulations", app_key, body)
    assert status == 400 and message in doc["error"], doc
    assert call(client, "get", "/v1/regulations", app_key)[1] == {"regulations": []}


def test_an_app_sees_its_own_regulations_only_and_an_operator_sees_every_app(client, app_key):
    """An app key files for its own app and reads only its own regulations (another's is a 404); an
    operator key may file for another app and lists every app's."""
    status, mine = call(client, "post", "/v1/regulations", app_key, {"type": "delete", "user_ids": ["a", "b", "a"]})
    assert status == 202 and mine["status"] == "pending" and mine["app_id"] == "shop" and mine["user_count"] == 2
    assert mine["requested_by"]["role"] == "app" and "user_ids" not in mine
    status, theirs = call(client, "post", "/v1/regulations", OPERATOR,
                          {"type": "suppress", "user_ids": ["c"], "app_id": "other"})
    assert status == 202 and theirs["app_id"] == "other" and theirs["status"] == "done"
    assert call(client, "get", f"/v1/regulations/{mine['id']}", app_key) == (200, mine)
    assert call(client, "get", f"/v1/regulations/{theirs['id']}", app_key)[0] == 404
    assert call(client, "get", "/v1/regulations/..%2f", app_key)[0] == 404
    assert [r["id"] for r in call(client, "get", "/v1/regulations", app_key)[1]["regulations"]] == [mine["id"]]
    listed = {r["id"] for r in call(client, "get", "/v1/regulations", OPERATOR)[1]["regulations"]}
    assert listed == {mine["id"], theirs["id"]}


def test_a_suppressed_user_is_answered_200_and_never_reaches_the_stream(client, container, app_key):
    """After a suppress, the user's events (native and Segment routes) are answered as accepted and not
    written; the other user's are; after unsuppress the user's are written again."""
    assert call(client, "post", "/v1/regulations", app_key, {"type": "suppress", "user_ids": ["gone"]})[0] == 202
    events = [{"event_type": "probe", "event_time": "2026-01-01T00:00:00Z", "user_id": u} for u in ("gone", "kept")]
    status, doc = call(client, "post", "/v1/events", app_key, {"events": events})
    assert status == 200 and doc["accepted"] == 2
    response = client.http.post("/v1/batch", headers={"Content-Type": "application/json"}, body=json.dumps(
        {"writeKey": app_key["x-api-key"], "batch": [{"type": "track", "event": "x", "userId": "gone",
                                                      "timestamp": "2026-01-01T00:00:00Z"}]}))
    assert response.status_code == 200 and json.loads(response.body)["accepted"] == 1

    def users():
        return [orjson.loads(line)["user_id"] for blob in read_stream(container)
                for line in codec.decode_record(blob).splitlines()]

    assert users() == ["kept"]
    assert call(client, "post", "/v1/regulations", app_key, {"type": "unsuppress", "user_ids": ["gone"]})[0] == 202
    assert call(client, "post", "/v1/events", app_key, {"events": events})[0] == 200
    assert sorted(users()) == ["gone", "kept", "kept"]


def test_the_audit_keeps_no_user_id_of_a_suppression_and_no_key(client, container, app_key):
    """The state table's items of a suppress regulation hold neither the user id nor the API key
    (hashes and counts only); a delete keeps its ids only until the job is done."""
    call(client, "post", "/v1/regulations", app_key, {"type": "suppress", "user_ids": ["alice@example.com"]})
    items = container.clients.dynamodb.scan(TableName=container.settings.state_table)["Items"]
    text = json.dumps(items)
    assert "alice@example.com" not in text and app_key["x-api-key"] not in text
    assert any(i["pk"]["S"].startswith("suppress|shop|") for i in items)


def test_pseudonymised_fields_never_reach_the_stream_and_regulations_map_the_ids(client, container, app_key):
    """With `apps pseudonymise shop --field user_id --field attributes.email`, the stream holds the keyed
    hash (ps_ + 64 hex digits, the same for the same value) and never the values, on the native and
    Segment routes; a suppress filed with the real id still suppresses the pseudonymised user."""
    store = AppStore(container.clients.dynamodb, container.settings.apps_table)
    store.set_pseudonymisation("shop", ["user_id", "attributes.email"])
    events = [{"event_type": "probe", "event_time": "2026-01-01T00:00:00Z", "user_id": "bob",
               "attributes": {"email": "bob@example.com", "plan": "pro"}}] * 2
    assert call(client, "post", "/v1/events", app_key, {"events": events})[0] == 200
    response = client.http.post("/v1/batch", headers={"Content-Type": "application/json"}, body=json.dumps(
        {"writeKey": app_key["x-api-key"], "batch": [{"type": "track", "event": "x", "userId": "bob",
                                                      "properties": {"email": "bob@example.com"},
                                                      "timestamp": "2026-01-01T00:00:00Z"}]}))
    assert response.status_code == 200
    blobs = read_stream(container)
    text = b"".join(codec.decode_record(blob) for blob in blobs)
    assert b"bob" not in text
    written = [orjson.loads(line) for line in text.splitlines()]
    assert len({e["user_id"] for e in written}) == 1 and written[0]["user_id"].startswith("ps_")
    assert len(written[0]["user_id"]) == 67
    assert sum(json.loads(e["attributes"]).get("plan") == "pro" for e in written) == 2  # other attributes kept
    assert call(client, "post", "/v1/regulations", app_key, {"type": "suppress", "user_ids": ["bob"]})[0] == 202
    assert call(client, "post", "/v1/events", app_key, {"events": events})[0] == 200
    assert len(read_stream(container)) == len(blobs)  # nothing more written
