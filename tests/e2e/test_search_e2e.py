"""Search end to end: POST /v1/events -> Kinesis -> indexer -> OpenSearch -> GET /v1/search."""

import time
import uuid

import requests

from chalicelib.apps.keys import AppStore
from chalicelib.runtime.clients import Clients
from chalicelib.ingest.validation import ms_to_iso


def post(stack, key, events):
    response = requests.post(f"{stack.api_url}/v1/events", json={"events": events}, timeout=10,
                             headers={"x-api-key": key})
    assert response.status_code == 200, response.text
    assert response.json()["rejected"] == 0
    return response.json()["event_ids"]


def search(stack, key, **params):
    response = requests.get(f"{stack.api_url}/v1/search", params=params, headers={"x-api-key": key}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def wait_for_hits(stack, key, expected: int, timeout_s: float = 30.0, **params):
    deadline = time.monotonic() + timeout_s
    while True:
        doc = search(stack, key, **params)
        if doc["total"] >= expected or time.monotonic() > deadline:
            return doc
        time.sleep(0.3)


def test_posted_events_are_searchable_by_text_type_user_and_time_only_by_their_app(stack):
    token = uuid.uuid4().hex[:12]
    now_ms = int(time.time() * 1000)
    user = f"user-{token}"
    events = [
        {"event_type": "chat_message", "event_time": ms_to_iso(now_ms - 120_000), "user_id": user,
         "attributes": {"character_class": "mage", "text": f"need heal {token}"}},
        {"event_type": "chat_message", "event_time": ms_to_iso(now_ms - 60_000), "user_id": user,
         "attributes": {"character_class": "mage", "text": f"gg {token} wp"}},
        {"event_type": "level_up", "event_time": ms_to_iso(now_ms - 30_000), "user_id": user,
         "attributes": {"character_class": "mage", "level": 12, "value": 1}},
    ]
    ids = post(stack, "demo-key", events)

    by_text = wait_for_hits(stack, "demo-key", 2, q=token)
    assert by_text["total"] == 2
    assert [h["event_id"] for h in by_text["hits"]] == [ids[1], ids[0]]  # newest first
    assert by_text["hits"][0]["attributes"]["text"] == f"gg {token} wp"

    by_user = wait_for_hits(stack, "demo-key", 3, user_id=user)
    assert {h["event_id"] for h in by_user["hits"]} == set(ids)
    assert [h["event_id"] for h in search(stack, "demo-key", user_id=user, event_type="level_up")["hits"]] == [ids[2]]

    window = search(stack, "demo-key", user_id=user, **{"from": ms_to_iso(now_ms - 90_000),
                                                       "to": ms_to_iso(now_ms - 45_000)})
    assert [h["event_id"] for h in window["hits"]] == [ids[1]]

    other_key = AppStore(Clients(stack.settings).dynamodb, stack.settings.apps_table).create_key("rival-game")
    assert search(stack, other_key, q=token)["total"] == 0
    assert search(stack, other_key, user_id=user)["total"] == 0


def test_search_rejects_bad_parameters_and_missing_keys(stack):
    response = requests.get(f"{stack.api_url}/v1/search", params={"size": "5000"},
                            headers={"x-api-key": "demo-key"}, timeout=10)
    assert response.status_code == 400 and "size" in response.json()["error"]
    response = requests.get(f"{stack.api_url}/v1/search", timeout=10)
    assert response.status_code == 401
