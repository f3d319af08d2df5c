"""The real local stack: moto server, HTTP API and runner in their own processes."""

import gzip
import time

import orjson
import requests

from tests.conftest import SAMPLES


def tapped(stack) -> list[dict]:
    if not stack.tap_file.exists():
        return []
    return [orjson.loads(line) for line in stack.tap_file.read_bytes().splitlines()]


def wait_for(stack, event_ids: set[str], timeout_s: float = 30.0) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        seen = [t for t in tapped(stack) if t["event_id"] in event_ids]
        if {t["event_id"] for t in seen} == event_ids:
            time.sleep(1.0)  # let any duplicate delivery show up before judging
            return [t for t in tapped(stack) if t["event_id"] in event_ids]
        time.sleep(0.2)
    raise AssertionError(f"only {len(seen)} of {len(event_ids)} events delivered")


def test_posted_events_reach_the_kinesis_handler_exactly_once(stack):
    body = (SAMPLES / "game_session.json").read_bytes()
    response = requests.post(f"{stack.api_url}/v1/events", data=body, timeout=10,
                             headers={"x-api-key": "demo-key", "Content-Type": "application/json"})
    assert response.status_code == 200
    ids = response.json()["event_ids"]
    assert len(ids) == 24
    delivered = wait_for(stack, set(ids))
    assert sorted(t["event_id"] for t in delivered) == sorted(ids)
    assert {t["app_id"] for t in delivered} == {"demo"}


def test_many_gzip_requests_over_both_shards_are_all_delivered_once(stack):
    session = requests.Session()
    ids = []
    for batch in range(20):
        lines = b"".join(orjson.dumps({"event_type": "gps_ping", "event_time": "2026-01-01T00:00:00Z",
                                       "sent_at": "2026-01-01T00:00:00Z", "user_id": f"u{batch}",
                                       "attributes": {"lat": 37.5, "lon": 127.0, "i": i}}) + b"\n"
                         for i in range(50))
        response = session.post(f"{stack.api_url}/v1/events", data=gzip.compress(lines), timeout=10,
                                headers={"x-api-key": "demo-key", "Content-Type": "application/x-ndjson",
                                         "Content-Encoding": "gzip"})
        assert response.status_code == 200 and response.json()["accepted"] == 50
        ids += response.json()["event_ids"]
    delivered = wait_for(stack, set(ids))
    assert len(delivered) == len(ids) == 1000
    records = {(t["shard_id"], t["sequence_number"]) for t in delivered}
    assert len(records) == 20  # one Kinesis record per request
    assert len({shard for shard, _ in records}) == 2  # random partition keys spread over both shards


def test_health_over_http_reports_ok(stack):
    doc = requests.get(f"{stack.api_url}/v1/health", timeout=10).json()
    assert doc["status"] == "ok" and doc["components"]["kinesis"]["detail"] == "2 open shard(s)"
    assert doc["components"]["search"]["status"] == "ok"
