"""A small lake for two apps, made by the real services, and its truth computed in plain Python.

Timeline (T0 = 2026-01-01 12:00 UTC):

* alpha: 1,500 events over 12:40-13:20, every 10th sent twice (a client retry, right after the
  original); beta: 900 events over 12:45-13:15, every 15th twice, and 40 event_ids equal to
  alpha's (ids are per app: both must count);
* too-old events (8 days before arrival) for both apps -> aggregate bad rows with the event;
* a poison record (no app) -> aggregate and archive bad rows;
* two late events of alpha after the watermark passed (12:50 and 13:02);
* gamma: many users in three minutes, delivered late in many batches: 12:10 (5,000 users, hour 12
  is finalized: exact from the final row), 13:05 (5,000 users: partials above 4,096 users, an
  HLL estimate) and 13:06 (3,000 users: the partials' exact sets, united);
* the finalizer runs at 14:03: hour 12 is final, hour 13 stays partial (so its windows still
  count retried events twice); then two stragglers of alpha arrive after finalization: both are
  in the raw archive and in partials of hour 12; views prefer the final rows of the 12:45 window
  (hiding one) but show the partial of the 12:30 window, which has no final row.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import orjson

from chalicelib.stream import codec
from chalicelib.ingest.validation import ms_to_iso, validate_event
from chalicelib.lake.finalizer import Finalizer
from chalicelib.lake.people_tables import InsightsUpdater
from chalicelib.lake.persons_table import PersonsTable
from chalicelib.lake.sessions_table import SessionsTable
from chalicelib.lake.badrows import S3BadRowsSink
from chalicelib.lake.consumers import AggregationService, ArchiveService
from chalicelib.lake.raw_commit import StagedCommitter
from chalicelib.lake.state import StateStore
from chalicelib.processing import load_metrics
from tests.conftest import kinesis_record
from tests.factories.lake import T0, Clock, canonical_lines, lambda_batches, raw_table_of

MINUTE = 60_000
HOUR = 3_600_000
DAY = 24 * HOUR
MAX_LATENESS = 7 * DAY
FINALIZE_AT = T0 + 2 * HOUR + 3 * MINUTE
FINAL_HOURS = {T0}  # hour starts (ms) whose windows are finalized


def _with(line: bytes, **changes) -> bytes:
    return orjson.dumps({**orjson.loads(line), **changes})


def _retried(lines: list[bytes], every: int) -> list[bytes]:
    out = []
    for i, line in enumerate(lines):
        out.append(line)
        if i % every == 0:
            out.append(line)  # the same event again, next to the original (not late)
    return out


def _event(app_id: str, event_id: str, event_time: int, received_at: int, event_type: str, user: str,
           attributes: dict) -> bytes:
    raw = {"event_id": event_id, "event_type": event_type, "event_time": ms_to_iso(event_time), "user_id": user,
           "attributes": attributes}
    return validate_event(raw, app_id, received_at=received_at).line


@dataclass
class LakeData:
    #: every valid line handed to the archive (duplicates included), in delivery order
    archived: list[bytes] = field(default_factory=list)
    #: lines the aggregation saw before finalization, with duplicates (not the too-old ones)
    aggregated_before_final: list[bytes] = field(default_factory=list)
    #: lines aggregated after finalization (the straggler)
    aggregated_after_final: list[bytes] = field(default_factory=list)
    #: event ids delivered after the watermark had passed them, before finalization
    late_ids: set = field(default_factory=set)
    too_old: dict = field(default_factory=dict)  # app -> count
    #: gamma's users per one-minute window start (level_up events only)
    gamma_users: dict = field(default_factory=dict)
    #: how many archived lines the finalization (and the persons and sessions it wrote) saw
    archived_at_final: int = 0

    def events(self, lines):
        return [orjson.loads(line) for line in lines]


def build_lake(clients) -> LakeData:
    s = clients.settings
    clock = Clock(T0 + HOUR)
    metrics = load_metrics()
    state = StateStore(clients.dynamodb, s.state_table)
    archive = ArchiveService(clients.s3, s.bucket, state, S3BadRowsSink(clients.s3, s.bucket, "archive"))
    aggregation = AggregationService(clients.s3, s.bucket, state, metrics, S3BadRowsSink(clients.s3, s.bucket, "aggregate"))
    data = LakeData()

    def deliver(batch, lines=None, after_final=False):
        assert archive.handle(batch) == {"batchItemFailures": []}
        assert aggregation.handle(batch) == {"batchItemFailures": []}
        if lines is not None:
            data.archived.extend(lines)
            (data.aggregated_after_final if after_final else data.aggregated_before_final).extend(lines)

    alpha = _retried(canonical_lines(1500, seed=21, start_ms=T0 + 40 * MINUTE, app_id="alpha",
                                     duration_ms=40 * MINUTE), every=10)
    beta = canonical_lines(900, seed=22, start_ms=T0 + 45 * MINUTE, app_id="beta", duration_ms=30 * MINUTE)
    beta = [_with(line, event_id=f"gen-21-{i}") if i < 40 else line for i, line in enumerate(beta)]
    beta = _retried(beta, every=15)
    # Both apps share the stream: one time-ordered sequence (so only the planned events are late).
    lines = sorted(alpha + beta, key=lambda line: orjson.loads(line)["event_time"])
    for batch in lambda_batches(lines, seed=23, max_batch_records=20):
        deliver(batch)
    data.archived.extend(lines)
    data.aggregated_before_final.extend(lines)

    gamma = []
    for minute, n in ((10, 5000), (65, 5000), (66, 3000)):
        users = [f"g{minute}-{i}" for i in range(n)]
        data.gamma_users[T0 + minute * MINUTE] = set(users)
        gamma += [_event("gamma", f"g{minute}-e{i}", T0 + minute * MINUTE + i % 50_000, T0 + HOUR, "level_up", user,
                         {"character_class": "mage", "value": 1}) for i, user in enumerate(users + users[:n // 4])]
    for batch in lambda_batches(gamma, seed=24, per_record=400, max_batch_records=3):
        deliver(batch)
    data.archived.extend(gamma)
    data.aggregated_before_final.extend(gamma)

    # Too old for aggregation (bad rows, with the event), archived all the same.
    for app, count, seed in (("alpha", 4, 31), ("beta", 3, 32)):
        old = [_with(line, received_at=T0 + HOUR)
               for line in canonical_lines(count, seed=seed, start_ms=T0 - 8 * DAY, app_id=app, duration_ms=MINUTE)]
        deliver([kinesis_record(codec.pack(old)[0].data, "shardId-000000000000", 5_000 + seed)])
        data.archived.extend(old)  # archived, but too old to be aggregated
        data.too_old[app] = count

    # A poison record: no app can be told.
    poison = [kinesis_record(b"\x00not a record at all", "shardId-000000000000", 6_000)]
    deliver(poison)

    # Late events: the watermark of shard 1 is ~13:15 by now.
    late = [_event("alpha", "late-1", T0 + 50 * MINUTE + 1_000, T0 + HOUR, "match_end", "user-late-1",
                   {"character_class": "mage", "value": 7}),
            _event("alpha", "late-2", T0 + 62 * MINUTE + 1_000, T0 + HOUR, "gps_ping", "user-late-2",
                   {"lat": 37.5665, "lon": 126.978, "speed_kmh": 3.0})]
    deliver([kinesis_record(codec.pack(late)[0].data, "shardId-000000000001", 10_000)], late)
    data.late_ids = {"late-1", "late-2"}

    clock.now_ms = FINALIZE_AT
    raw = raw_table_of(clients)
    committer = StagedCommitter(clients.s3, s.bucket, raw, state)
    committer.run()  # the commit_events schedule: the staged batches -> the raw events table
    # The finalize worker's hook: persons and sessions of each (app, hour) whose finals switched.
    people = InsightsUpdater(raw, SessionsTable(clients.s3, s.bucket), PersonsTable(clients.s3, s.bucket))
    reports = Finalizer(clients.s3, s.bucket, state, metrics, clock, grace_ms=15 * MINUTE, raw=raw,
                        after_hour=people.update).run()
    finalized = {(r.metric, r.dt, r.hour) for r in reports if r.action == "finalized"}
    assert {(dt, hour) for _, dt, hour in finalized} == {("2026-01-01", "12")}, reports
    assert {m for m, _, _ in finalized} == {m.name for m in metrics.metrics}
    data.archived_at_final = len(data.archived)

    # Stragglers: 12:45 has final rows (hidden by the rule), 12:30 has none (shown from the partial).
    straggler = [_event("alpha", "straggler-1", T0 + 45 * MINUTE + 30_000, FINALIZE_AT, "level_up", "user-s1",
                        {"character_class": "rogue", "level": 3, "value": 2}),
                 _event("alpha", "straggler-2", T0 + 30 * MINUTE, FINALIZE_AT, "level_up", "user-s2",
                        {"character_class": "rogue", "level": 4, "value": 3})]
    deliver([kinesis_record(codec.pack(straggler)[0].data, "shardId-000000000001", 11_000)], straggler,
            after_final=True)
    committer.run()
    return data


# ------------------------------------------------------------------ truth (plain Python)
_BASE32 = "0123456789bcdefghjkmnpqrstuvwxyz"


def geohash(lat: float, lon: float, precision: int = 5) -> str:
    """The classic bisection geohash, written out here on purpose (independent of the pipeline)."""
    ranges = [[-180.0, 180.0], [-90.0, 90.0]]  # lon first
    chars, value, nbits = [], 0, 0
    for i in range(precision * 5):
        lo, hi = ranges[i % 2]
        coord = lon if i % 2 == 0 else lat
        mid = (lo + hi) / 2
        bit = coord >= mid
        ranges[i % 2] = [mid, hi] if bit else [lo, mid]
        value = value * 2 + bit
        nbits += 1
        if nbits == 5:
            chars.append(_BASE32[value])
            value, nbits = 0, 0
    return "".join(chars)


def dedupe(events: list[dict]) -> list[dict]:
    seen, out = set(), []
    for event in events:
        ident = (event["app_id"], event["event_id"])
        if ident not in seen:
            seen.add(ident)
            out.append(event)
    return out


def _number(value):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def metric_rows(metric: str, event: dict) -> list[tuple]:
    """(window_start, key) pairs the event belongs to in a metric, [] if the metric skips it."""
    attributes = orjson.loads(event["attributes"])
    t = event["event_time"]
    minute = t // MINUTE * MINUTE
    if metric == "event_counts":
        return [(minute, event["event_type"])]
    if metric == "class_activity":
        cls = attributes.get("character_class")
        return [] if cls is None else [(minute, cls)]
    if metric == "region_activity":
        lat, lon = _number(attributes.get("lat")), _number(attributes.get("lon"))
        if event["event_type"] != "gps_ping" or lat is None or lon is None:
            return []
        return [(minute, geohash(lat, lon))]
    if metric == "active_users_5m":
        return [(minute - k * MINUTE, None) for k in range(5)]
    if metric == "match_duration":
        if event["event_type"] != "match_end" or _number(attributes.get("value")) is None:
            return []
        return [(t // (5 * MINUTE) * 5 * MINUTE, attributes.get("character_class"))]
    raise ValueError(metric)


@dataclass
class WindowTruth:
    count: int = 0
    users: set = field(default_factory=set)
    late: int = 0
    values: list = field(default_factory=list)


def view_truth(data: LakeData, metric: str, app_id: str) -> dict[tuple, WindowTruth]:
    """What the view must show, by the consistency rule.

    A window (app, window_start) of a finalized hour that has final rows shows the deduplicated
    events aggregated before finalization; any other window shows every aggregated copy (partials
    are at least once), stragglers included.
    """
    before = [e for e in data.events(data.aggregated_before_final) if e["app_id"] == app_id]
    after = [e for e in data.events(data.aggregated_after_final) if e["app_id"] == app_id]
    out: dict[tuple, WindowTruth] = defaultdict(WindowTruth)
    for event in dedupe(before):  # final windows: each event once
        for start, key in metric_rows(metric, event):
            if _hour_of(start) in FINAL_HOURS:
                _add_one(out[(start, key)], event, event["event_id"] in data.late_ids)
    final_windows = {start for start, _ in out}
    for event in before + after:  # the other windows: every copy
        for start, key in metric_rows(metric, event):
            if _hour_of(start) not in FINAL_HOURS or (event in after and start not in final_windows):
                _add_one(out[(start, key)], event, event["event_id"] in data.late_ids or event in after)
    return dict(out)


def _add_one(truth: WindowTruth, event: dict, late: bool) -> None:
    truth.count += 1
    if event["user_id"] is not None:
        truth.users.add(event["user_id"])
    truth.late += int(late)
    value = _number(orjson.loads(event["attributes"]).get("value"))
    if value is not None:
        truth.values.append(value)


def _hour_of(ms: int) -> int:
    return ms // HOUR * HOUR


def raw_events(data: LakeData, app_id: str) -> list[dict]:
    """The archive of one app, duplicates removed (first copy)."""
    return dedupe([e for e in data.events(data.archived) if e["app_id"] == app_id])
