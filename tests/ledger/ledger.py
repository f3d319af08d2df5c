"""The ledger: what the API acknowledged, and where each acknowledged event ended up.

A client posts events as an SDK does (a 429/503 answer or an event listed as "not stored,
retry this event" is sent again, with the same ``event_id``) and records every id the API
listed in ``event_ids`` of a 2xx answer: the ledger. :func:`measure` then counts, per store,
what "exactly once" means for it:

* raw lake (the raw events Iceberg table, committed by ``commit_events``): at-least-once by design. Every acknowledged id
  must be present (``raw_distinct``); extra copies (``raw_duplicate_rows``: rows minus distinct
  ids) are allowed, come from re-deliveries under new sequence numbers, and are reported.
* finalized metrics (``event_counts`` final files): exactly once. Per (window, event_type) of
  the app, the final ``count`` must equal the number of distinct stored events of that window;
  a deficit is lost, a surplus double-counted.
* search (daily indices, ``_id = app_id:event_id``): exactly once. Every acknowledged id is a
  document, and no id is a document in two indices.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Callable

import orjson
import requests

from chalicelib.lake import layout
from chalicelib.lake.s3io import list_keys, read_many
from chalicelib.lake.sql_sketch import strip_register_columns
from chalicelib.processing import finalize, load_metrics, merge_partials
from chalicelib.reads.stream_lag import CheckpointLag

CONSUMERS = ("archive_events", "aggregate_events", "index_events")
EVENT_TYPES = ("level_up", "match_start", "purchase", "login")


def make_events(prefix: str, count: int, start_ms: int, span_ms: int = 50 * 60_000,
                blob: Callable[[], str] | None = None, offset: int = 0) -> list[dict]:
    """``count`` events with ids ``<prefix>-<n>``, spread over ``span_ms`` from ``start_ms``
    (each with ``attributes.blob = blob()`` when given)."""
    events = []
    for i in range(offset, offset + count):
        event = {"event_id": f"{prefix}-{i:06d}", "event_type": EVENT_TYPES[i % len(EVENT_TYPES)],
                 "event_time": start_ms + (i * 7919) % span_ms, "user_id": f"u{i % 37}",
                 "attributes": {"value": i % 100}}
        if blob is not None:
            event["attributes"]["blob"] = blob()
        events.append(event)
    return events


@dataclass
class Ledger:
    """Every event sent and every event the API acknowledged, for one app."""

    app_id: str
    key: str
    sent: dict[str, dict] = field(default_factory=dict)
    acknowledged: set[str] = field(default_factory=set)
    answers: Counter = field(default_factory=Counter)

    def post(self, api_url: str, events: list[dict], session: requests.Session | None = None,
             max_attempts: int = 40) -> None:
        """POST one request; resend what was not stored (same ids) until acknowledged or out of attempts."""
        http = session or requests
        pending = list(events)
        for event in events:
            self.sent[event["event_id"]] = event
        for _ in range(max_attempts):
            response = http.post(f"{api_url}/v1/events", data=orjson.dumps({"events": pending}),
                                 headers={"x-api-key": self.key, "Content-Type": "application/json"}, timeout=60)
            self.answers[response.status_code] += 1
            if response.status_code in (429, 503):
                time.sleep(float(response.headers.get("Retry-After", "1")))
                continue
            assert response.status_code == 200, (response.status_code, response.text[:300])
            body = response.json()
            self.acknowledged.update(body["event_ids"])
            retry = [pending[e["index"]] for e in body["errors"] if "not stored" in e["error"]]
            other = [e for e in body["errors"] if "not stored" not in e["error"]]
            assert not other, other  # every event the suite sends is valid
            if retry:
                self.answers["partially stored"] += 1
            pending = retry
            if not pending:
                return

    def expected_windows(self, ids: set[str]) -> Counter:
        """(window_start ms, event_type) -> events, for 1-minute event_counts windows."""
        return Counter((self.sent[i]["event_time"] // 60_000 * 60_000, self.sent[i]["event_type"]) for i in ids)


def wait_caught_up(clients, settings, timeout_s: float = 120.0) -> None:
    """Until every consumer's checkpoint is at the tip of every shard."""
    lag = CheckpointLag(clients.kinesis, clients.dynamodb, settings.state_table, settings.stream_name,
                        lambda: int(time.time() * 1000))
    deadline = time.monotonic() + timeout_s
    while True:
        rows = lag.read(list(CONSUMERS)).rows
        behind = {(r.consumer, r.shard_id): r.behind for r in rows if r.consumer in CONSUMERS}
        if behind and not any(behind.values()):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"consumers not caught up after {timeout_s:.0f}s: {behind}")
        time.sleep(0.5)


def dead_letter_keys(clients, bucket: str) -> list[str]:
    return [o["Key"] for o in list_keys(clients.s3, bucket, "aws/lambda/")]


def raw_ids(clients, bucket: str, app_id: str) -> list[str]:
    """The app's event ids in the raw events table (every row: copies not compacted yet included)."""
    from pyiceberg.expressions import EqualTo

    from tests.factories.lake import raw_table_of

    return raw_table_of(clients).scan(EqualTo("app_id", app_id), ("event_id",))["event_id"].to_pylist()


def final_windows(clients, bucket: str, app_id: str) -> Counter:
    """(window_start, event_type) -> count from the event_counts final files, for one app."""
    metric = load_metrics()["event_counts"]
    from chalicelib.lake.rollups import with_slices

    # Each app's final file by name; a head of a split (app, hour) stands for the slices it names.
    keys = [o["Key"] for o in list_keys(clients.s3, bucket, layout.rollup_prefix(metric, "final"))
            if layout.final_app(o["Key"]) is not None]
    tables = [with_slices(clients.s3, bucket, metric, key, t) for key, t in zip(keys, read_many(clients.s3, bucket, keys))]
    if not tables:
        return Counter()
    got = Counter()
    for row in finalize(merge_partials(tables)).to_pylist():
        if row["app_id"] == app_id and row["count"]:
            got[(row["window_start"], row["event_type"])] += row["count"]
    return got


def search_ids(search_url: str, app_id: str, prefix: str = "events") -> list[str]:
    """Every document id of the app over every daily index (an id in two indices is listed twice)."""
    requests.post(f"{search_url}/_refresh", timeout=30)
    response = requests.post(f"{search_url}/{prefix}-*/_search", timeout=60, json={
        "query": {"term": {"app_id": app_id}}, "size": 10_000, "_source": False})
    response.raise_for_status()
    hits = response.json()["hits"]["hits"]
    assert len(hits) < 10_000, "more documents than one page: raise the page size or page"
    return [h["_id"].split(":", 1)[1] for h in hits]


@dataclass
class CaseResult:
    case: str
    acknowledged: int
    raw_distinct: int
    raw_duplicate_rows: int
    finalized: int
    search: int
    lost: int
    double_counted: int
    stored_unacknowledged: int = 0
    lost_raw: int = 0
    lost_finalized: int = 0
    lost_search: int = 0
    double_finalized: int = 0
    double_search: int = 0
    notes: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def measure(case: str, ledger: Ledger, clients, bucket: str, search_url: str, notes: str = "") -> CaseResult:
    """Count the ledger's events in the raw lake, the finalized metrics and search."""
    raw = raw_ids(clients, bucket, ledger.app_id)
    raw_set = set(raw)
    stored = raw_set | ledger.acknowledged  # expected once each in the metrics: what the lake holds
    expected = ledger.expected_windows({i for i in stored if i in ledger.sent})
    got = final_windows(clients, bucket, ledger.app_id)
    lost_final = sum(max(0, n - got.get(k, 0)) for k, n in expected.items())
    double_final = sum(max(0, n - expected.get(k, 0)) for k, n in got.items())
    docs = Counter(search_ids(search_url, ledger.app_id))
    lost_raw = len(ledger.acknowledged - raw_set)
    lost_search = len(ledger.acknowledged - set(docs))
    double_search = sum(n - 1 for n in docs.values() if n > 1)
    return CaseResult(
        case, len(ledger.acknowledged), len(raw_set & ledger.acknowledged), len(raw) - len(raw_set),
        sum(got.values()), sum(1 for i in docs if i in ledger.acknowledged),
        lost=max(lost_raw, lost_final, lost_search), double_counted=max(double_final, double_search),
        stored_unacknowledged=len(raw_set - ledger.acknowledged), lost_raw=lost_raw, lost_finalized=lost_final,
        lost_search=lost_search, double_finalized=double_final, double_search=double_search, notes=notes)
