"""Segment's and PostHog's own Python clients (from PyPI, pinned), pointed at the running local stack
with ``host=``: the metrics API, search and ``eventpipe query`` then show exactly the events sent, once,
although each client had to retry a whole batch the API had already stored.

Beside them, RudderStack's Python SDK (PyPI) and the server-side JavaScript SDKs (@segment/analytics-node,
posthog-node; npm, scripts/js-sdks): every event each sent arrives exactly once in the lake, and an identify's
traits are in ``attributes.traits`` whichever SDK sent them."""

from __future__ import annotations

import gzip
import http.server
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone

import orjson
import posthog
import pytest
import requests
from rudderstack.analytics.client import Client as RudderClient
from segment.analytics import Client as SegmentClient

from chalicelib.apps.keys import AppStore
from chalicelib.ingest.names import event_type_for
from chalicelib.lake.finalizer import Finalizer
from tests.factories.lake import raw_table_of
from chalicelib.lake.state import StateStore
from chalicelib.processing import load_metrics
from chalicelib.runtime.clients import Clients
from chalicelib.stream.instants import ms_to_iso
from tests.conftest import ROOT
from tests.e2e.sdk_support import JS_SDKS, by_type, install_js_sdks, new_app, search_hits, wait_for_lake

TRACKS = 400           # Segment track calls (flushed in batches of 100, gzip on)
PAGEVIEWS, SIGNUPS = 150, 50   # PostHog captures


class LostAnswerProxy:
    """A loopback hop in front of the API that loses the API's first answer on each given path.

    It forwards every request; the first time it sees a path in ``lose``, it answers 503 instead of
    the API's 200 (as a load balancer timing out would): the batch is stored, and the SDK, told it
    failed, sends the whole batch again.
    """

    def __init__(self, target: str, lose: set[str]) -> None:
        self.requests: list[dict] = []
        proxy, lock, pending = self, threading.Lock(), set(lose)

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() in ("content-type", "content-encoding", "authorization", "user-agent")}
                answer = requests.post(target + self.path, data=body, headers=headers, timeout=30)
                path = self.path.split("?")[0]
                with lock:
                    lost = path in pending
                    pending.discard(path)
                    proxy.requests.append({"path": path, "api_status": answer.status_code, "lost": lost,
                                           "retry": self.headers.get("X-Retry-Count"),
                                           "body": gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body})
                status, content = (503, b'{"code": "unavailable", "message": "lost"}') if lost else (
                    answer.status_code, answer.content)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _ids(body: bytes, field: str) -> list[str]:
    return [m[field] for m in orjson.loads(body)["batch"]]


@pytest.fixture(scope="module")
def sent(stack):
    """Everything both clients sent (ids by event type), once the stack has finalized those windows."""
    clients = Clients(stack.settings)
    token = uuid.uuid4().hex[:10]
    app_id = f"sdk-e2e-{token}"
    key = AppStore(clients.dynamodb, stack.settings.apps_table).create_key(app_id)
    base = datetime.now(timezone.utc).replace(minute=10, second=5, microsecond=0) - timedelta(hours=2)
    proxy = LostAnswerProxy(stack.api_url, {"/v1/batch", "/batch/"})
    expected: dict[str, set[str]] = {}

    def sent_as(event_type: str, event_id: str) -> None:
        expected.setdefault(event_type, set()).add(event_id)

    errors: list = []
    segment = SegmentClient(key, host=proxy.url, gzip=True, upload_size=100, upload_interval=0.2, max_retries=3,
                            on_error=lambda exc, batch: errors.append(exc))
    segment.identify("u-0", {"plan": "pro"}, timestamp=base, message_id=f"s-id-{token}")
    sent_as("identify", f"s-id-{token}")
    segment.page("u-0", name="Pricing", properties={"path": "/pricing"}, timestamp=base, message_id=f"s-pg-{token}")
    sent_as("page", f"s-pg-{token}")
    segment.screen("u-1", name="Home", properties={"tab": 2}, timestamp=base, message_id=f"s-sc-{token}")
    sent_as("screen", f"s-sc-{token}")
    for i in range(TRACKS):
        name = "Order Completed" if i % 2 else "Level Up"
        segment.track(f"u-{i % 20}", name, {"value": i, "character_class": "mage"}, message_id=f"s-tr-{token}-{i}",
                      timestamp=base + timedelta(milliseconds=100 * i))
        sent_as(event_type_for(name), f"s-tr-{token}-{i}")
    # A message the SDK accepts but the envelope does not (a clock a year ahead): a bad row, not a loss.
    segment.track("u-0", "Clock Skewed", timestamp=datetime.now(timezone.utc) + timedelta(days=365),
                  message_id=f"s-bad-{token}")
    segment.flush()
    segment.join()

    ph = posthog.Posthog(key, host=proxy.url, gzip=True, flush_at=100, flush_interval=0.2, max_retries=3,
                         on_error=lambda exc, batch: errors.append(exc))
    for i in range(PAGEVIEWS + SIGNUPS):
        name = "$pageview" if i < PAGEVIEWS else "Signed Up"
        event_id = str(uuid.uuid4())
        ph.capture(name, distinct_id=f"p-{i % 30}", properties={"$current_url": f"https://example.com/{i}"},
                   timestamp=base + timedelta(seconds=30, milliseconds=100 * i), uuid=event_id)
        sent_as(event_type_for(name), event_id)
    ph.flush()
    ph.shutdown()
    proxy.close()
    assert errors == []

    # Each client really resent a batch the API had stored: same ids, answered 200 both times.
    for path, field in (("/v1/batch", "messageId"), ("/batch/", "uuid")):
        lost = [r for r in proxy.requests if r["path"] == path and r["lost"]]
        assert len(lost) == 1 and lost[0]["api_status"] == 200
        resent = [r for r in proxy.requests if r["path"] == path and not r["lost"]
                  and _ids(r["body"], field) == _ids(lost[0]["body"], field)]
        assert resent and resent[0]["api_status"] == 200
    assert any(r["retry"] == "1" for r in proxy.requests if r["path"] == "/v1/batch")

    window = (base.replace(minute=0, second=0), base.replace(minute=0, second=0) + timedelta(hours=1))
    finalizer = Finalizer(clients.s3, stack.settings.bucket, StateStore(clients.dynamodb, stack.settings.state_table),
                          load_metrics(), lambda: int(time.time() * 1000), grace_ms=0, close_delay_ms=0,
                          raw=raw_table_of(clients))
    want = {t: len(ids) for t, ids in expected.items()}
    deadline = time.monotonic() + 90
    while True:  # the runner archives and aggregates; the finalizer (run here: no 5-minute wait) dedupes
        finalizer.run()
        doc = metrics(stack, key, window)
        if (counts_by_type(doc) == want and doc["finalized_until"] >= ms_to_iso(int(window[1].timestamp() * 1000))) \
                or time.monotonic() > deadline:
            break
        time.sleep(1)
    return {"key": key, "app_id": app_id, "window": window, "expected": expected, "metrics": doc}


def metrics(stack, key, window):
    response = requests.get(f"{stack.api_url}/v1/metrics/event_counts", headers={"x-api-key": key}, timeout=30,
                            params={"from": window[0].isoformat(), "to": window[1].isoformat(), "limit": 10000})
    assert response.status_code == 200, response.text
    return response.json()


def counts_by_type(doc) -> dict[str, int]:
    totals: Counter = Counter()
    for row in doc["rows"]:
        totals[row["event_type"]] += row["count"]
    return dict(totals)


def test_the_metrics_api_counts_every_sdk_event_once_after_finalization(sent):
    assert counts_by_type(sent["metrics"]) == {t: len(ids) for t, ids in sent["expected"].items()}
    assert sent["metrics"]["finalized_until"] >= ms_to_iso(int(sent["window"][1].timestamp() * 1000))


def test_search_finds_exactly_the_events_sent(stack, sent):
    params = {"from": sent["window"][0].isoformat(), "to": sent["window"][1].isoformat(), "size": 500}
    wanted = set().union(*sent["expected"].values())
    deadline = time.monotonic() + 90  # a bounded wait for the indexer (small local bulks on a loaded machine)
    while True:
        found, cursor = [], None
        while True:
            page = requests.get(f"{stack.api_url}/v1/search", headers={"x-api-key": sent["key"]}, timeout=30,
                                params={**params, **({"cursor": cursor} if cursor else {})}).json()
            found += page["hits"]
            cursor = page["next_cursor"]
            if not cursor:
                break
        if len(found) >= len(wanted) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert sorted(h["event_id"] for h in found) == sorted(wanted)
    by_id = {h["event_id"]: h for h in found}
    some_track = next(iter(sent["expected"]["order_completed"]))
    assert by_id[some_track]["attributes"]["segment"]["event"] == "Order Completed"


def query(stack, key, sql):
    done = subprocess.run([sys.executable, "-m", "eventpipe.cli", "query", "--key", key, "--format", "json", sql],
                          cwd=ROOT, env=stack.env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return orjson.loads(done.stdout)


def test_eventpipe_query_shows_each_event_once_in_the_views_and_in_the_compacted_raw_table(stack, sent):
    """The two resent batches are stored twice until their (closed) hours are compacted by the local
    commit_events schedule (every 10 s): then the raw table itself holds each event once."""
    rows = query(stack, sent["key"], 'SELECT event_type, sum("count") AS n FROM event_counts '
                                     "WHERE app_id = :app_id GROUP BY event_type")
    assert {r["event_type"]: r["n"] for r in rows} == {t: len(ids) for t, ids in sent["expected"].items()}
    unique = sum(len(ids) for ids in sent["expected"].values())
    deadline = time.monotonic() + 90
    while True:
        (raw,) = query(stack, sent["key"], "SELECT count(*) AS copies, count(DISTINCT event_id) AS events "
                                           "FROM events WHERE app_id = :app_id")
        if raw["copies"] == unique or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert (raw["events"], raw["copies"]) == (unique, unique)


def test_the_message_the_envelope_refused_is_a_bad_row_of_the_app(stack, sent):
    rows = query(stack, sent["key"], "SELECT consumer, reason, raw_line, detail FROM bad_rows "
                                     "WHERE event.app_id = :app_id")
    assert [(r["consumer"], r["reason"]) for r in rows] == [("ingest", "invalid_event")]
    assert "more than 24 h in the future" in rows[0]["detail"]
    assert orjson.loads(rows[0]["raw_line"])["event"] == "Clock Skewed"


# ------------------------------------------------- RudderStack's Python SDK and the server-side JavaScript SDKs
def wire_ids(proxy: LostAnswerProxy) -> dict[str, list[str]]:
    """Every event id each protocol carried on the wire (Segment: messageId; PostHog: uuid), in answered batches."""
    out: dict[str, list[str]] = {"segment": [], "posthog": []}
    for r in proxy.requests:
        assert r["api_status"] == 200, r
        protocol, field = ("segment", "messageId") if r["path"].startswith("/v1/") else ("posthog", "uuid")
        out[protocol] += _ids(r["body"], field)
    return out


@pytest.fixture(scope="module")
def more_sent(stack):
    """rudder-sdk-python, posthog-python's set, analytics-node and posthog-node, each to an app of its own run,
    through a proxy that records what went over the wire (and loses nothing)."""
    install_js_sdks()
    app_id, key = new_app(stack, "sdk-more")
    proxy = LostAnswerProxy(stack.api_url, set())
    errors: list = []
    rudder = RudderClient(key, host=proxy.url, on_error=lambda exc, batch: errors.append(exc), max_retries=3)
    rudder.track("rudder-user", "Rudder Order Completed", {"value": 5})
    rudder.identify("rudder-user", {"plan": "pro"})
    rudder.flush()
    rudder.join()
    ph = posthog.Posthog(key, host=proxy.url, flush_interval=0.2, on_error=lambda exc, batch: errors.append(exc))
    ph.set(distinct_id="python-user", properties={"plan": "pro"})
    ph.flush()
    ph.shutdown()
    node = subprocess.run(["node", "server-sdks.cjs"], cwd=JS_SDKS, capture_output=True, text=True, timeout=120,
                          env={**stack.env, "API": proxy.url, "KEY": key})
    proxy.close()
    assert errors == [] and node.returncode == 0, (errors, node.stdout[-2000:], node.stderr[-2000:])
    ids = wire_ids(proxy)
    expected = set(ids["segment"]) | set(ids["posthog"])
    return {"app_id": app_id, "key": key, "ids": ids, "copies": wait_for_lake(stack, key, expected),
            "hits": search_hits(stack, key, len(expected))}


def test_rudderstack_analytics_node_and_posthog_node_events_each_arrive_exactly_once(more_sent):
    sent = more_sent["ids"]["segment"] + more_sent["ids"]["posthog"]
    assert len(sent) == len(set(sent)) == 7  # rudder 2, analytics-node 2; posthog-python 1, posthog-node 2
    assert dict(more_sent["copies"]) == {event_id: 1 for event_id in sent}
    types = {t: len(hits) for t, hits in by_type(more_sent["hits"]).items()}
    assert types == {"rudder_order_completed": 1, "node_order_completed": 1, "node_signed_up": 1, "set": 1,
                     "identify": 3}


def test_identify_traits_are_in_attributes_traits_whichever_sdk_sent_them(stack, sent, more_sent):
    """RudderStack sends them in context.traits, analytics-node and analytics-python at the top level,
    posthog-node and posthog-python as $set: each identify (and PostHog's $set) carries {"plan": "pro"}."""
    hits = by_type(more_sent["hits"])
    python_segment = by_type(search_hits(stack, sent["key"], 1, event_type="identify"))["identify"]
    for hit in hits["identify"] + hits["set"] + python_segment:
        assert hit["attributes"]["traits"] == {"plan": "pro"}, hit["attributes"]
        assert "$set" not in hit["attributes"] and "traits" not in hit["attributes"].get("segment", {}).get(
            "context", {})
    senders = sorted(h["attributes"]["segment"]["context"]["library"]["name"] if "segment" in h["attributes"]
                     else h["attributes"]["$lib"] for h in hits["identify"])
    assert senders == ["@segment/analytics-node", "analytics-python", "posthog-node"], senders
