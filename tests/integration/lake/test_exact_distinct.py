"""Distinct counts: exact in final rows at any cardinality, exact in partials up to 4,096 values,
and the metrics API says which rows are estimates. On moto S3/DynamoDB through the real services."""

from __future__ import annotations

import random
from collections import defaultdict

import numpy as np
import pyarrow as pa
import pytest
from moto import mock_aws

from chalicelib.ingest.validation import ms_to_iso, validate_event
from chalicelib.lake.rollups import read_windows_status
from chalicelib.processing import hll
from chalicelib.reads.metrics import MetricsService
from tests.factories.lake import T0, lambda_batches
from tests.integration.lake.test_lake_processing import HOUR, Lake

MINUTE = 60_000
#: distinct users per one-minute window (minute i of the hour); 27 is a set where HLL registers say 25-26
CARDINALITIES = [1, 27, 300, 4096, 4097, 5000, 50_000]


def colliding_users(n: int) -> list[str]:
    """n user ids whose hashes share registers, so an HLL register sketch underestimates them."""
    names = [f"c{i}" for i in range(5000)]
    regs, _ = hll.registers(hll.hash_strings(pa.array(names))[0])
    by_reg = defaultdict(list)
    for name, reg in zip(names, regs.tolist()):
        by_reg[reg].append(name)
    pairs = [v[:2] for v in by_reg.values() if len(v) >= 2][:3]  # 3 registers shared by 2 users each
    chosen = [u for pair in pairs for u in pair]
    singles = [v[0] for v in by_reg.values() if len(v) == 1]
    return chosen + singles[:n - len(chosen)]


def line(event_id: str, minute: int, user: str, event_type: str = "level_up") -> bytes:
    raw = {"event_id": event_id, "event_type": event_type, "event_time": ms_to_iso(T0 + minute * MINUTE + 1000),
           "user_id": user, "attributes": {"character_class": "mage", "value": 1}}
    return validate_event(raw, "exact-app", received_at=T0 + HOUR).line


@pytest.fixture(scope="module")
def delivered():
    """The lake after every batch was delivered (partials only); truth: minute -> set of users."""
    rng = random.Random(7)
    lines, truth = [], {}
    for minute, n in enumerate(CARDINALITIES):
        users = colliding_users(n) if n == 27 else [f"m{minute}-u{i}" for i in range(n)]
        events = users + [rng.choice(users) for _ in range(n // 3)]  # repeat visits
        lines += [line(f"e{minute}-{i}", minute, u) for i, u in enumerate(events)]
        truth[minute] = set(users)
    with mock_aws():
        lake = Lake()
        for batch in lambda_batches(lines, seed=8, per_record=500, max_batch_records=4):
            lake.deliver(batch)
        yield lake, truth


def users_by_minute(lake, metric="event_counts"):
    status = read_windows_status(lake.s3, lake.bucket, lake.metrics[metric], T0, T0 + HOUR, "exact-app")
    rows = status.rows.to_pylist()
    flags = status.estimated.to_pylist()
    return {(r["window_start"] - T0) // MINUTE: (r["users"], "users" in f) for r, f in zip(rows, flags)}


def test_the_27_users_are_a_set_hll_registers_would_not_count_as_27():
    users = colliding_users(27)
    hashes, _ = hll.hash_strings(pa.array(users))
    reg, rank = hll.registers(hashes)
    g, r, k = hll.reduce_registers(np.zeros(27, np.int64), reg, rank, 1)
    assert round(hll.estimate(g, k, 1)[0]) < 27  # 24 non-empty registers


def api_flags(lake) -> dict[int, tuple[bool, list[str]]]:
    service = MetricsService(lake.s3, lake.bucket, lake.metrics, lake.clock)
    answer = service.query("exact-app", "event_counts", {"from": ms_to_iso(T0), "to": ms_to_iso(T0 + HOUR)})
    return {(ms(r["window_start"]) - T0) // MINUTE: (r["exact"], r["estimated"]) for r in answer["rows"]}


def ms(iso: str) -> int:
    from chalicelib.stream.instants import parse_instant
    return parse_instant(iso, "t")


def test_partials_are_exact_up_to_exact_max_users_and_say_so(delivered):
    lake, truth = delivered
    got = users_by_minute(lake)
    flags = api_flags(lake)
    for minute, users in truth.items():
        value, estimated = got[minute]
        n = len(users)
        if n <= hll.EXACT_MAX:
            assert (value, estimated) == (n, False), minute
            assert flags[minute] == (True, []), minute
        else:
            assert estimated and abs(value - n) <= 3 + 4 * hll.RELATIVE_STANDARD_ERROR * n, minute
            assert flags[minute] == (False, ["users"]), minute


def test_final_distinct_equals_count_distinct_at_every_cardinality(delivered):
    lake, truth = delivered
    lake.clock.now_ms = T0 + 3 * HOUR
    assert {r.action for r in lake.finalizer.run()} == {"finalized"}
    assert users_by_minute(lake) == {minute: (len(users), False) for minute, users in truth.items()}
    assert api_flags(lake) == {minute: (True, []) for minute in truth}
    # Hopping 5-minute windows too: each is the union of five minutes' users.
    hopping = users_by_minute(lake, "active_users_5m")
    for start in range(len(CARDINALITIES)):
        union = set().union(*[truth.get(m, set()) for m in range(start, start + 5)])
        assert hopping[start] == (len(union), False), start
