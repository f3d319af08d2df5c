"""Two tenants on the real local stack (issue 21, Done when): alpha replays the probes of items 1-6 and
8-11 over HTTP and beta stays unharmed.

One stack (moto server, the in-memory search server, the API and the runner as processes) serves two
apps created with their own rate limits. The tests run in file order and share the stack; each one
states the rule it checks in its docstring. Every wait is a bounded poll (a deadline, then the
assertion): nothing here asserts a duration.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from chalicelib.apps.keys import AppStore
from chalicelib.ingest.validation import ms_to_iso
from chalicelib.lake.s3io import list_keys
from chalicelib.runtime.clients import Clients
from eventpipe.local.stack import Stack, StackConfig, free_port
from eventpipe.query.service import QueryService
from tests.conftest import ROOT

TOKEN = uuid.uuid4().hex[:8]
ALPHA, BETA = "alpha", "beta"
#: alpha: 20 requests/s, bursts of 40 s (800 tokens): room for the replays of items 1-6 (~550 requests),
#: far below what item 8's reads cost (16 x 400 tokens) and low enough to exhaust for item 10.
ALPHA_LIMITS = {"requests_per_second": 20.0, "burst_seconds": 40.0, "events_per_second": 100_000.0}
#: beta: the defaults written out (200 requests/s, bursts of 10 s: 2,000 tokens).
BETA_LIMITS = {"requests_per_second": 200.0, "burst_seconds": 10.0, "events_per_second": 10_000.0}
BETA_USER = f"beta-{TOKEN}"
#: alpha's private attribute names: none may appear in anything beta can read (item 4).
ALPHA_SECRET = f"alphasecret{TOKEN}"


@pytest.fixture(scope="module")
def tenants():
    config = StackConfig(moto_port=free_port(), http_port=free_port(), search_port=free_port(),
                         project_dir=str(ROOT), quiet=True)
    with Stack(config) as stack:
        clients = Clients(stack.settings)
        apps = AppStore(clients.dynamodb, stack.settings.apps_table)
        apps.set_limits(ALPHA, ALPHA_LIMITS)
        apps.set_limits(BETA, BETA_LIMITS)
        keys = {ALPHA: apps.create_key(ALPHA), BETA: apps.create_key(BETA)}
        yield stack, keys, clients


def now_ms() -> int:
    return int(time.time() * 1000)


def event(user: str, attributes: dict, at_ms: int | None = None, event_type: str = "probe") -> dict:
    return {"event_type": event_type, "event_time": ms_to_iso(now_ms() if at_ms is None else at_ms),
            "user_id": user, "attributes": attributes}


def post(stack, key: str, events: list[dict], timeout_s: float = 60.0) -> requests.Response:
    """POST /v1/events; a 429 is retried after its Retry-After until the deadline (the replays of
    items 1-6 must get through alpha's own limit; items 8-11 call the API directly)."""
    deadline = time.monotonic() + timeout_s
    while True:
        response = requests.post(f"{stack.api_url}/v1/events", json={"events": events},
                                 headers={"x-api-key": key}, timeout=30)
        if response.status_code != 429 or time.monotonic() > deadline:
            return response
        time.sleep(min(float(response.headers.get("Retry-After", "1")), 2.0))


def accepted(stack, key: str, events: list[dict]) -> list[str]:
    response = post(stack, key, events)
    assert response.status_code == 200, response.text
    assert response.json()["rejected"] == 0, response.text
    return response.json()["event_ids"]


def get(stack, key: str | None, path: str, **params) -> requests.Response:
    headers = {"x-api-key": key} if key else {}
    return requests.get(f"{stack.api_url}{path}", params=params, headers=headers, timeout=60)


def pipeline(stack, key: str, **params) -> dict:
    response = get(stack, key, "/v1/pipeline", **params)
    assert response.status_code == 200, response.text
    return response.json()


def poll(check, timeout_s: float, interval_s: float = 0.5):
    """Call ``check`` until it returns a truthy value or the deadline passes; return its last value."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval_s)


def beta_bad_row_sql(clients, key: str) -> list[dict]:
    """Beta's bad rows as ``eventpipe query --key`` reads them (the tenant-scoped DuckDB session)."""
    service = QueryService(clients)
    try:
        return service.run("SELECT * FROM bad_rows", api_key=key, engine="duckdb").table.to_pylist()
    finally:
        service.close()  # its DuckDB session and temp folder


def test_search_items_1_2_3_5_alpha_documents_never_make_beta_unsearchable(tenants):
    """Items 1, 2, 3, 5: whatever alpha indexed first (qty as a number, cfg as an object, 20 x 512 new
    numeric attribute names, tomorrow's price as an object, segment.event as an object), each of
    beta's later events (qty "many", cfg "flat", a new attribute name, price 9.99 today and at
    now+23h, segment.event a string) is found by GET /v1/search with its values unchanged, and the
    search consumer refused none of beta's events (no rejected_by_index in beta's figures)."""
    stack, keys, _ = tenants
    alpha_user = f"alpha-{TOKEN}"
    tomorrow_ms = now_ms() + 23 * 3_600_000
    accepted(stack, keys[ALPHA], [event(alpha_user, {"qty": 5, "cfg": {"x": 1}})])  # items 1
    accepted(stack, keys[ALPHA], [event(alpha_user, {"segment": {"event": {"name": "fuzz"}}})])  # item 5
    accepted(stack, keys[ALPHA], [event(alpha_user, {"price": {"poison": 1}}, at_ms=tomorrow_ms)])  # item 3
    for r in range(20):  # item 2: 20 x 512 = 10,240 new numeric names (the index's field limit is 2,000)
        accepted(stack, keys[ALPHA], [event(alpha_user, {f"{ALPHA_SECRET}_{r}_{i}": i for i in range(512)})])
    # alpha's 23 events reach the search consumer before beta's (a mapping is taken from the first
    # document): each is then searchable or a search bad row of alpha's (the field limit refuses some).
    def alpha_handled():
        total = get(stack, keys[ALPHA], "/v1/search", user_id=alpha_user, size=100,
                    **{"from": ms_to_iso(now_ms() - 3_600_000), "to": ms_to_iso(now_ms() + 24 * 3_600_000)}
                    ).json().get("total", 0)
        if total < 3:
            return False
        refused = 0 if total >= 23 else sum(pipeline(stack, keys[ALPHA])["app"]["bad_rows"].get("search", {}).values())
        return total + refused >= 23

    assert poll(alpha_handled, timeout_s=60, interval_s=1.0), "alpha's 23 events never reached the search consumer"

    new_name = f"beta_fresh_{TOKEN}"
    beta_events = [event(BETA_USER, {"qty": "many"}), event(BETA_USER, {"cfg": "flat"}),
                   event(BETA_USER, {new_name: 1}), event(BETA_USER, {"price": 9.99}),
                   event(BETA_USER, {"price": 9.99}, at_ms=tomorrow_ms + 60_000),
                   event(BETA_USER, {"segment": {"event": "Signed Up"}}, event_type="track")]
    ids = accepted(stack, keys[BETA], beta_events)
    window = {"from": ms_to_iso(now_ms() - 3_600_000), "to": ms_to_iso(now_ms() + 24 * 3_600_000)}

    def found():
        response = get(stack, keys[BETA], "/v1/search", user_id=BETA_USER, size=100, **window)
        assert response.status_code == 200, response.text
        doc = response.json()
        return doc if doc["total"] >= len(ids) else None

    doc = poll(found, timeout_s=60)
    figures = pipeline(stack, keys[BETA])["app"]
    assert doc, f"beta's events not all searchable after 60 s; beta's bad rows: {figures['bad_rows']}"
    hits = {h["event_id"]: h["attributes"] for h in doc["hits"]}
    assert set(hits) == set(ids)
    assert [hits[i] for i in ids] == [e["attributes"] for e in beta_events]  # meaning unchanged
    assert all("rejected_by_index" not in reasons for reasons in figures["bad_rows"].values()), figures


def test_item_4_beta_bad_rows_never_name_alpha_attributes(tenants):
    """Item 4: beta's bad rows (GET /v1/pipeline, and the bad_rows table through a session scoped by
    beta's key, as ``eventpipe query --key``) hold beta's own rejected event and nothing of alpha's
    attribute names, nor an index refusal that states how another document mapped a field."""
    stack, keys, clients = tenants
    accepted(stack, keys[BETA], [event(BETA_USER, {"beta_own": 1}, at_ms=0)])  # too late: a bad row of beta

    def own_row():
        rows = beta_bad_row_sql(clients, keys[BETA])
        return rows if any("beta_own" in json.dumps(r, default=str) for r in rows) else None

    rows = poll(own_row, timeout_s=60, interval_s=1.0)
    assert rows, "beta's own bad row never reached the bad_rows table"
    text = json.dumps(rows, default=str) + json.dumps(pipeline(stack, keys[BETA]))
    assert ALPHA_SECRET not in text and "poison" not in text
    assert all((r.get("event") or {}).get("app_id") in (BETA, None) for r in rows)
    # the oracle of the issue: a refusal by the index names the field as another document mapped it
    # ("failed to parse field [attributes.qty] of type [double]"): no bad row of beta's says why in those terms
    details = [str(r.get("detail")) for r in rows]
    assert not [d for d in details if "of type" in d or "failed to parse" in d or "fields [" in d], details
    assert all(r.get("reason") != "rejected_by_index" for r in rows), [r.get("reason") for r in rows]


def test_item_6_alpha_bad_rows_do_not_truncate_beta_counts(tenants):
    """Item 6: 520 alpha requests with event_time 0 (one bad-row object each, per consumer that
    refuses them: more than the 500 objects a count may read) leave beta's GET /v1/pipeline complete:
    not truncated, and beta's own bad row (test above) counted."""
    stack, keys, clients = tenants
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda i: post(stack, keys[ALPHA], [event(f"a{i}", {"n": i}, at_ms=0)]).status_code,
                                 range(520)))
    assert statuses.count(200) == 520, {s: statuses.count(s) for s in set(statuses)}

    def objects():  # the precondition of the replay: more bad-row objects than a count may read (500)
        n = sum(1 for _ in list_keys(clients.s3, stack.settings.bucket, "bad-rows/"))
        return n if n > 520 else None

    assert poll(objects, timeout_s=90, interval_s=2.0), "the bad rows never exceeded 520 objects"
    app = pipeline(stack, keys[BETA])["app"]
    assert app["bad_rows_truncated"] is False
    assert app["rejected"] >= 1 and app["late_events"] >= 1, app


def test_item_8_alpha_expensive_reads_cost_their_weight_and_leave_beta_answered(tenants):
    """Item 8: 16 distinct GET /v1/pipeline over 7 days by alpha on 8 threads (400 tokens each) are refused
    beyond what alpha's bucket holds (at most 1 + (capacity + refill) / 400 admitted), while beta's
    GET /v1/metrics calls made meanwhile all answer 200 (no 429, no 5xx)."""
    stack, keys, _ = tenants
    start = now_ms()
    # 16 distinct ranges (one second apart): identical reads in flight would share one answer at one
    # token each (ReadGuard), which is the caching half of the fix, not the cost half checked here.
    ranges = [{"from": ms_to_iso(start - 7 * 86_400_000 + 60_000 + 1000 * i), "to": ms_to_iso(start)}
              for i in range(16)]
    done = threading.Event()
    beta_statuses: list[int] = []

    def beta_reads():
        while not done.is_set() or not beta_statuses:
            beta_statuses.append(get(stack, keys[BETA], "/v1/metrics/event_counts",
                                     **{"from": ms_to_iso(now_ms() - 86_400_000), "to": ms_to_iso(now_ms())})
                                 .status_code)

    started = time.monotonic()
    with ThreadPoolExecutor(9) as pool:  # 8 threads for alpha, one for beta
        beta = pool.submit(beta_reads)
        alpha = list(pool.map(lambda params: get(stack, keys[ALPHA], "/v1/pipeline", **params), ranges))
        done.set()
        beta.result()
    elapsed = time.monotonic() - started
    alpha_statuses = [r.status_code for r in alpha]
    assert set(alpha_statuses) <= {200, 429}, [r.text for r in alpha if r.status_code not in (200, 429)]
    capacity = ALPHA_LIMITS["requests_per_second"] * (ALPHA_LIMITS["burst_seconds"] + elapsed)
    assert alpha_statuses.count(200) <= 1 + capacity // 400, alpha_statuses
    assert alpha_statuses.count(429) >= 1 and all("Retry-After" in r.headers for r in alpha if r.status_code == 429)
    assert beta_statuses and set(beta_statuses) == {200}, {s: beta_statuses.count(s) for s in set(beta_statuses)}


def test_item_10_alpha_over_its_request_rate_is_refused_and_beta_is_not(tenants):
    """Item 10: once alpha's request bucket is empty, alpha's next large POST (about 400 KB; the
    issue's was 4.5 MB, the refusal is by rate, not size) gets 429 with Retry-After, while beta's
    POSTs made meanwhile all get 200. (That the body is not decoded is covered by the integration
    tests; over HTTP only the answer is visible.)"""
    stack, keys, _ = tenants
    big = [event(f"big{i}", {"pad": "x" * 900}) for i in range(400)]
    stop = threading.Event()
    drained = threading.Event()
    beta_statuses: list[int] = []

    def drain():  # one-token requests of alpha until its bucket refuses, and on while the check runs
        while not stop.is_set():
            response = requests.post(f"{stack.api_url}/v1/events", json={"events": [event("d", {})]},
                                     headers={"x-api-key": keys[ALPHA]}, timeout=30)
            if response.status_code == 429:
                drained.set()

    def beta_posts():
        while not stop.is_set():
            beta_statuses.append(requests.post(f"{stack.api_url}/v1/events", json={"events": [event(BETA_USER, {})]},
                                               headers={"x-api-key": keys[BETA]}, timeout=30).status_code)

    big_statuses: list[requests.Response] = []
    with ThreadPoolExecutor(7) as pool:
        futures = [pool.submit(drain) for _ in range(6)] + [pool.submit(beta_posts)]
        try:
            assert drained.wait(60), "alpha's request bucket never refused within 60 s"
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                response = requests.post(f"{stack.api_url}/v1/events", json={"events": big},
                                         headers={"x-api-key": keys[ALPHA]}, timeout=60)
                big_statuses.append(response)
                if response.status_code == 429:
                    break
        finally:
            stop.set()
            for future in futures:
                future.result()
    assert big_statuses[-1].status_code == 429, [r.status_code for r in big_statuses]
    assert int(big_statuses[-1].headers["Retry-After"]) >= 1 and "error" in big_statuses[-1].json()
    assert beta_statuses and set(beta_statuses) == {200}, {s: beta_statuses.count(s) for s in set(beta_statuses)}


def test_item_9_beta_at_16_threads_under_its_limit_gets_no_429(tenants):
    """Item 9: 400 beta POSTs on 16 threads (within its 2,000-token burst, so under its limit at any
    rate) are all admitted: no false 429 under contention on the bucket item."""
    stack, keys, _ = tenants

    def one(i):
        return requests.post(f"{stack.api_url}/v1/events", json={"events": [event(BETA_USER, {"i": i})]},
                             headers={"x-api-key": keys[BETA]}, timeout=30).status_code

    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(one, range(400)))
    assert statuses.count(200) == 400, {s: statuses.count(s) for s in set(statuses)}


def test_item_11_unknown_keys_do_not_hurt_beta_and_health_answers(tenants):
    """Item 11: 3,000 made-up keys on 8 threads are answered 401 or 429 (never 5xx); beta's POSTs
    made meanwhile all get 200 and GET /v1/health keeps answering 200."""
    stack, keys, _ = tenants
    stop = threading.Event()
    beta_statuses: list[int] = []
    health_statuses: list[int] = []

    def beta_and_health():
        while not stop.is_set() or not health_statuses:
            beta_statuses.append(requests.post(f"{stack.api_url}/v1/events", json={"events": [event(BETA_USER, {})]},
                                               headers={"x-api-key": keys[BETA]}, timeout=30).status_code)
            health_statuses.append(get(stack, None, "/v1/health").status_code)

    def unknown(i):
        return requests.post(f"{stack.api_url}/v1/events", json={"events": [event("u", {})]},
                             headers={"x-api-key": f"ep_madeup_{TOKEN}_{i}"}, timeout=30).status_code

    with ThreadPoolExecutor(9) as pool:
        watcher = pool.submit(beta_and_health)
        try:
            statuses = list(pool.map(unknown, range(3000)))
        finally:
            stop.set()
        watcher.result()
    assert set(statuses) <= {401, 429}, {s: statuses.count(s) for s in set(statuses)}
    assert beta_statuses and set(beta_statuses) == {200}, {s: beta_statuses.count(s) for s in set(beta_statuses)}
    assert set(health_statuses) == {200}, health_statuses
