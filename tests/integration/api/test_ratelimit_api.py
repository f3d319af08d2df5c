"""Per-app rate limits through the HTTP API on a real moto server (the buckets are DynamoDB items).

The limiter's clock is injected (no test waits for tokens), except in the Segment client test,
which lets the real client honour ``Retry-After``.
"""

from __future__ import annotations

import json
import random
import threading
import time

import orjson
import pytest
from chalice.test import Client
from moto.server import ThreadedMotoServer

import app as app_module
from chalicelib.http.errors import TooManyRequests
from chalicelib.apps.keys import AppStore
from chalicelib.apps.ratelimit import NS, Limits, MemoryBuckets, RateLimiter
from chalicelib.apps.ratelimit_store import DynamoBuckets, bucket_key
from chalicelib.runtime.container import Container
from chalicelib.runtime.settings import Settings
from chalicelib.stream import codec
from eventpipe import cli
from eventpipe.local.bootstrap import bootstrap
from eventpipe.local.stack import free_port
from tests.integration.api.conftest import read_stream

T0_MS = 1_767_268_800_000
LIMITS = {"events_per_second": 100.0, "requests_per_second": 10.0, "burst_seconds": 1.0}


class Clock:
    def __init__(self) -> None:
        self.now_ms = T0_MS

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, seconds: float) -> None:
        self.now_ms += round(seconds * 1000)


@pytest.fixture(scope="module")
def moto_url():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def stack(moto_url, monkeypatch):
    """A fresh container on the moto server (fresh table names), apps 'flood' and 'calm' with LIMITS."""
    suffix = f"{random.getrandbits(32):08x}"
    for name, value in (("EVENTPIPE_AWS_ENDPOINT_URL", moto_url), ("EVENTPIPE_STREAM", f"events-{suffix}"),
                        ("EVENTPIPE_APPS_TABLE", f"apps-{suffix}"), ("EVENTPIPE_STATE_TABLE", f"state-{suffix}"),
                        ("EVENTPIPE_BUCKET", f"lake-{suffix}"), ("EVENTPIPE_GLUE_DATABASE", f"eventpipe_{suffix}")):
        monkeypatch.setenv(name, value)
    container = Container(Settings.from_env())
    bootstrap(container.clients, shards=1)
    keys = {}
    for app_id in ("flood", "calm"):
        keys[app_id] = container.apps.create_key(app_id)
        container.apps.set_limits(app_id, LIMITS)
    clock = Clock()
    container.buckets = DynamoBuckets(container.clients.dynamodb, container.settings.apps_table, clock)
    defaults = Limits(1e6, 1e4, 10)
    container.limiter = RateLimiter(lambda app_id: Limits.merged(defaults, container.apps.own_limits(app_id)),
                                    container.buckets)
    monkeypatch.setattr(app_module, "container", container)
    container.keys, container.clock = keys, clock
    return container


@pytest.fixture
def client(stack):
    with Client(app_module.app) as test_client:
        yield test_client


def events(n: int, tag: str = "e") -> dict:
    return {"events": [{"event_type": "level_up", "event_time": "2026-01-01T00:00:00Z", "event_id": f"{tag}-{i}",
                        "attributes": {"i": i}} for i in range(n)]}


def post_events(client, key: str, body) -> tuple[int, dict, dict]:
    response = client.http.post("/v1/events", headers={"x-api-key": key, "Content-Type": "application/json"},
                                body=json.dumps(body))
    return response.status_code, json.loads(response.body), response.headers


def stream_event_ids(stack) -> list[str]:
    return [orjson.loads(line)["event_id"] for blob in read_stream(stack)
            for line in codec.decode_record(blob).splitlines()]


def bucket_item(stack, app_id: str) -> dict:
    return stack.clients.dynamodb.get_item(TableName=stack.settings.apps_table, Key=bucket_key(app_id))["Item"]


def test_a_flood_from_one_app_gets_429_while_another_apps_requests_all_pass(stack, client):
    answers = {"flood": [], "calm": []}
    for i in range(30):
        answers["flood"].append(post_events(client, stack.keys["flood"], events(5, f"f{i}")))
        if i % 3 == 0:
            answers["calm"].append(post_events(client, stack.keys["calm"], events(5, f"c{i}")))
    flood_status = [status for status, _, _ in answers["flood"]]
    assert flood_status == [200] * 10 + [429] * 20  # 10 requests/s, burst 1 s, and no time passes
    assert [status for status, _, _ in answers["calm"]] == [200] * 10
    _, body, headers = answers["flood"][-1]
    assert int(headers["Retry-After"]) >= 1 and "rate limit" in body["error"]
    accepted = stream_event_ids(stack)
    assert len(accepted) == 100 and sum(1 for e in accepted if e.startswith("c")) == 50


def test_a_request_over_the_remaining_event_tokens_is_refused_whole(stack, client):
    assert post_events(client, stack.keys["flood"], events(60, "a"))[0] == 200
    status, body, headers = post_events(client, stack.keys["flood"], events(50, "b"))  # 40 tokens left
    assert status == 429 and headers["Retry-After"] == "1"
    assert "nothing of this request was accepted" in body["error"]
    assert sorted(stream_event_ids(stack)) == sorted(f"a-{i}" for i in range(60))  # nothing of b in Kinesis
    assert post_events(client, stack.keys["flood"], events(40, "c"))[0] == 200  # exactly what was left


def test_a_429_consumes_no_tokens_and_makes_no_write(stack, client):
    post_events(client, stack.keys["flood"], events(100))
    before, writes = bucket_item(stack, "flood"), stack.buckets.writes
    for _ in range(5):
        assert post_events(client, stack.keys["flood"], events(1))[0] == 429
    assert bucket_item(stack, "flood") == before and stack.buckets.writes == writes
    stack.clock.advance(0.01)  # one event token back: the refusals took none
    assert post_events(client, stack.keys["flood"], events(1, "late"))[0] == 200


def test_tokens_refill_by_elapsed_time_and_retry_after_is_enough(stack, client):
    post_events(client, stack.keys["flood"], events(100))
    status, _, headers = post_events(client, stack.keys["flood"], events(50, "r"))
    assert status == 429
    stack.clock.advance(int(headers["Retry-After"]))
    assert post_events(client, stack.keys["flood"], events(50, "r"))[0] == 200
    stack.clock.advance(3600)  # refills to the burst (100 events), not beyond
    assert post_events(client, stack.keys["flood"], events(100, "s"))[0] == 200
    assert post_events(client, stack.keys["flood"], events(1, "t"))[0] == 429


def test_read_routes_are_limited_by_requests_per_second_only(stack, client):
    headers = {"x-api-key": stack.keys["flood"]}
    answers = [client.http.get("/v1/metrics", headers=headers) for _ in range(12)]
    assert [r.status_code for r in answers] == [200] * 10 + [429] * 2
    assert json.loads(answers[-1].body)["error"] and int(answers[-1].headers["Retry-After"]) >= 1
    assert "events_tat" not in bucket_item(stack, "flood")  # reads take no event tokens
    stack.clock.advance(0.1)
    assert client.http.get("/v1/metrics", headers=headers).status_code == 200


def test_sdk_routes_answer_429_in_their_dialect_and_write_nothing(stack, client):
    key = stack.keys["flood"]
    post_events(client, key, events(100))
    bad = {"type": "track", "userId": "u", "messageId": "bad-1", "event": ""}  # would be a bad row
    segment = client.http.post("/v1/batch", headers={"Content-Type": "application/json"},
                               body=json.dumps({"writeKey": key, "batch": [bad, {"type": "track", "event": "Go",
                                                                                 "userId": "u", "messageId": "m1"}]}))
    assert segment.status_code == 429 and int(segment.headers["Retry-After"]) >= 1
    assert json.loads(segment.body)["code"] == "rate_limited" and json.loads(segment.body)["message"]
    posthog = client.http.post("/batch", headers={"Content-Type": "application/json"},
                               body=json.dumps({"api_key": key, "batch": [{"event": "$pageview", "distinct_id": "d",
                                                                           "uuid": "u-1"}]}))
    assert posthog.status_code == 429 and posthog.headers["Retry-After"]
    assert json.loads(posthog.body)["type"] == "throttled_error"
    assert len(stream_event_ids(stack)) == 100  # only the first request's events
    listed = stack.clients.s3.list_objects_v2(Bucket=stack.settings.bucket, Prefix="bad-rows/ingest/")
    assert listed.get("KeyCount", 0) == 0  # the refused batch left no bad rows either
    stack.clock.advance(1)
    assert client.http.post("/v1/batch", headers={"Content-Type": "application/json"},
                            body=json.dumps({"writeKey": key, "batch": [bad]})).status_code == 200


def test_two_api_processes_share_one_bucket(stack):
    """Two limiters (two Lambdas) on one table: together they admit the burst once, not twice."""
    limits = Limits(**LIMITS)
    first = DynamoBuckets(stack.clients.dynamodb, stack.settings.apps_table, stack.clock)
    second = DynamoBuckets(stack.clients.dynamodb, stack.settings.apps_table, stack.clock)
    admitted = 0
    for i in range(40):
        admitted += (first if i % 2 else second).take("calm", limits, 1, 10).admitted
    assert admitted == 10  # 100 events of burst in 10-event requests


def test_the_dynamodb_buckets_decide_as_the_reference_buckets(stack):
    """The same requests on the same clock: the conditional writes admit exactly what the pure rule admits."""
    rng = random.Random(7)
    limits = Limits(events_per_second=50, requests_per_second=20, burst_seconds=0.5)
    reference = MemoryBuckets(lambda: stack.clock.now_ms * (NS // 1000))
    dynamo = DynamoBuckets(stack.clients.dynamodb, stack.settings.apps_table, stack.clock)
    outcomes = []
    for _ in range(120):
        stack.clock.advance(rng.choice([0, 0, 0.005, 0.02, 0.1, 0.7]))
        requests, events_n = 1, rng.choice([0, 1, 3, 10, 30])
        expected = reference.take("calm", limits, requests, events_n)
        got = dynamo.take("calm", limits, requests, events_n)
        assert (got.admitted, got.retry_after_s) == (expected.admitted, expected.retry_after_s)
        outcomes.append(got.admitted)
    assert any(outcomes) and not all(outcomes)  # both sides of the rule were exercised


def test_cli_sets_limits_that_the_api_enforces(stack, client, capsys):
    assert cli.main(["apps", "create", "tiny", "--events-per-second", "2", "--requests-per-second", "100"]) == 0
    out = capsys.readouterr().out
    key = out.splitlines()[1]
    assert "2 events/s, 100 requests/s, bursts of 10 s" in out  # burst: the settings' default
    assert cli.main(["apps", "limits", "tiny", "--burst-seconds", "1"]) == 0
    assert "2 events/s, 100 requests/s, bursts of 1 s" in capsys.readouterr().out
    assert cli.main(["apps", "list"]) == 0
    listing = capsys.readouterr().out
    assert "tiny\t1 key(s)\t2 events/s" in listing and "flood\t1 key(s)\t100 events/s" in listing
    assert cli.main(["apps", "limits", "nobody", "--events-per-second", "1"]) == 2
    assert cli.main(["apps", "limits", "tiny", "--events-per-second", "0"]) == 2
    assert cli.main(["apps", "create", "nokey", "--burst-seconds", "-1"]) == 2  # refused before a key exists
    assert "nokey" not in AppStore(stack.clients.dynamodb, stack.settings.apps_table).list_apps()
    assert post_events(client, key, events(2))[0] == 200
    assert post_events(client, key, events(1))[0] == 429


def test_the_demo_app_gets_generous_limits_from_the_bootstrap(stack):
    assert stack.apps.own_limits("demo")["events_per_second"] >= 100_000
    assert set(AppStore(stack.clients.dynamodb, stack.settings.apps_table).list_apps()) == {"demo", "flood", "calm"}


def test_segment_client_retries_429_and_delivers_every_event_once(stack):
    """The real analytics-python client against the API over HTTP: it honours Retry-After and resends."""
    from chalice.config import Config
    from chalice.local import LocalDevServer
    from segment.analytics import Client as SegmentClient

    buckets = DynamoBuckets(stack.clients.dynamodb, stack.settings.apps_table, lambda: time.time_ns() // 1_000_000)
    limiter = RateLimiter(lambda app_id: Limits(events_per_second=50, requests_per_second=100, burst_seconds=1),
                          buckets)
    refused = []

    def admit(app_id, n):
        try:
            limiter.admit(app_id, n)
        except TooManyRequests:
            refused.append(n)
            raise

    stack.limiter = type("Limiter", (), {"admit": staticmethod(admit), "check": staticmethod(limiter.check)})()
    for cached in ("ingest", "sdk_ingest"):
        stack.__dict__.pop(cached, None)
    port = free_port()
    server = LocalDevServer(app_module.app, Config.create(chalice_stage="local", app_name="eventpipe"),
                            "127.0.0.1", port)
    thread = threading.Thread(target=server.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        segment = SegmentClient(stack.keys["calm"], host=f"http://127.0.0.1:{port}", upload_size=40, max_retries=8,
                                sync_mode=False)
        for i in range(120):
            segment.track(user_id="u", event="Level Up", properties={"i": i}, message_id=f"seg-{i}")
        segment.flush()
        segment.join()
    finally:
        server.server.shutdown()
        thread.join(5)
    assert refused, "the flood must have met the limit"
    assert sorted(stream_event_ids(stack)) == sorted(f"seg-{i}" for i in range(120))


def test_a_request_over_the_request_rate_is_refused_before_its_body_is_decoded(stack, client, monkeypatch):
    """Refuse before the work: once the app's request bucket refuses, a POST /v1/events body is never
    decompressed or parsed; only the admitted requests were decoded."""
    import chalicelib.ingest.service as service_module

    decoded = []
    real = service_module.decompress
    monkeypatch.setattr(service_module, "decompress", lambda *a, **k: decoded.append(1) or real(*a, **k))
    statuses = [post_events(client, stack.keys["flood"], events(2, f"d{i}"))[0] for i in range(25)]
    assert statuses == [200] * 10 + [429] * 15  # 10 requests/s, burst 1 s
    assert len(decoded) == 10
    assert len(stream_event_ids(stack)) == 20


def test_sdk_requests_over_the_rate_are_refused_before_decoding_or_validating(stack, client, monkeypatch):
    """A Segment key in the Basic header: a refused body is never decoded. A PostHog key in the body: the
    body is decoded to find it, but the messages are never validated."""
    import base64

    from chalicelib.ingest.posthog import PostHogProtocol
    from chalicelib.ingest.sdk import SdkIngestService
    from chalicelib.ingest.segment import SegmentProtocol

    key = stack.keys["flood"]
    for i in range(10):
        assert client.http.get("/v1/metrics", headers={"x-api-key": key}).status_code == 200
    calls = {"segment": 0, "posthog": 0, "prepare": 0}

    def spy(name, real):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return real(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(SegmentProtocol, "decode", spy("segment", SegmentProtocol.decode))
    monkeypatch.setattr(PostHogProtocol, "decode", spy("posthog", PostHogProtocol.decode))
    monkeypatch.setattr(SdkIngestService, "prepare", spy("prepare", SdkIngestService.prepare))
    basic = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    segment = client.http.post("/v1/batch", headers={"Content-Type": "application/json", "Authorization": basic},
                               body=json.dumps({"batch": [{"type": "track", "event": "Go", "userId": "u",
                                                           "messageId": "m1"}]}))
    assert segment.status_code == 429 and json.loads(segment.body)["code"] == "rate_limited"
    posthog = client.http.post("/batch", headers={"Content-Type": "application/json"},
                               body=json.dumps({"api_key": key, "batch": [{"event": "$pageview", "distinct_id": "d",
                                                                           "uuid": "u-1"}]}))
    assert posthog.status_code == 429 and json.loads(posthog.body)["type"] == "throttled_error"
    assert calls == {"segment": 0, "posthog": 1, "prepare": 0}
    assert stream_event_ids(stack) == []


def test_an_expensive_read_costs_its_weight_in_request_tokens(stack, client):
    """A 7-day GET /v1/pipeline costs 400 request tokens (read_costs.py): at 10 requests/s the app's next
    request waits ~40 s, where a request count alone would have let 9 more through at once; another app
    is untouched."""
    week = "from=2026-01-01T00:00:00Z&to=2026-01-08T00:00:00Z"
    headers = {"x-api-key": stack.keys["flood"]}
    assert client.http.get(f"/v1/pipeline?{week}", headers=headers).status_code == 200  # a full bucket: admitted
    refused = client.http.get("/v1/metrics", headers=headers)
    assert refused.status_code == 429 and 38 <= int(refused.headers["Retry-After"]) <= 41
    assert "400 request tokens" not in json.loads(refused.body)["error"]  # the refused request was the cheap one
    assert client.http.get("/v1/metrics", headers={"x-api-key": stack.keys["calm"]}).status_code == 200
    stack.clock.advance(41)  # full again
    day = "from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z"
    assert client.http.get(f"/v1/metrics/event_counts?{day}", headers=headers).status_code == 200  # 13 tokens
    again = client.http.get(f"/v1/pipeline?{week}", headers=headers)
    assert again.status_code == 429 and "a read costing 400 request tokens" in json.loads(again.body)["error"]
