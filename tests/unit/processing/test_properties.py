"""Property: partials merged over ANY batching, sharding and arrival order
equal one pass over all events, and one pass equals a naive reference.

Values are multiples of 1/4 within +-1000 and at most 60 events, so every
float sum is exact in any order: sums are compared with ``==``.  Distinct
counts must match the one-pass sketch byte for byte (register max is
associative, commutative and idempotent) and the true count within the
documented HLL bound (3 + 4 standard errors); so must the quantile sketches
(counts per bucket add up in any order), and percentiles be within 1 % of
the exact quantile (rank floor(q * (n - 1))).
"""

from __future__ import annotations

from collections import defaultdict

from hypothesis import HealthCheck, given, settings, strategies as st

from chalicelib.processing import aggregate, finalize, load_metrics, merge_partials
from chalicelib.processing import hll
from chalicelib.processing.geohash import geohash_scalar
from tests.factories.processing import MINUTE, T0, event, events_table

METRICS = load_metrics()
WATERMARK = T0 + 3 * MINUTE  # closes some windows, not others
POINTS = [(52.52, 13.405), (52.5201, 13.4049), (-33.87, 151.21), (0.0, 0.0)]


@st.composite
def an_event(draw, i):
    etype = draw(st.sampled_from(["level_up", "gps_ping", "purchase", "match_end"]))
    attrs = {}
    if draw(st.booleans()):
        attrs["character_class"] = draw(st.sampled_from(["mage", "rogue", "priest"]))
    value = draw(st.one_of(st.none(), st.integers(-4000, 4000).map(lambda v: v / 4), st.just("n/a")))
    if value is not None:
        attrs["value"] = value
    if etype == "gps_ping" and draw(st.integers(0, 4)):
        attrs["lat"], attrs["lon"] = draw(st.sampled_from(POINTS))
    return event(i, event_type=etype, app_id=draw(st.sampled_from(["a1", "a2"])),
                 user_id=draw(st.one_of(st.none(), st.integers(0, 40).map(lambda u: f"user-{u}"))),
                 event_time=T0 + draw(st.integers(-2 * MINUTE, 8 * MINUTE)), attributes=attrs)


@st.composite
def events_and_plan(draw):
    n = draw(st.integers(1, 60))
    events = [draw(an_event(i)) for i in range(n)]
    order = draw(st.permutations(range(n)))  # arrival order
    cuts = sorted(draw(st.sets(st.integers(1, n - 1), max_size=4))) if n > 1 else []
    batches = [order[a:b] for a, b in zip([0, *cuts], [*cuts, n])]
    shards = [draw(st.integers(0, 2)) for _ in batches]
    shard_order = draw(st.permutations(range(3)))
    return events, batches, shards, shard_order


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events_and_plan())
def test_merged_partials_of_any_split_equal_one_pass(con, plan):
    events, batches, shards, shard_order = plan
    one_pass = aggregate(events_table(events), METRICS, watermark_ms=WATERMARK, con=con)
    per_shard = defaultdict(list)
    for batch, shard in zip(batches, shards):
        partials = aggregate(events_table([events[i] for i in batch]), METRICS, watermark_ms=WATERMARK, con=con)
        per_shard[shard].append(partials)
    for name in METRICS.names:
        shard_results = [merge_partials([p[name] for p in per_shard[s]]) for s in shard_order if per_shard[s]]
        merged = merge_partials(shard_results)
        assert merged.to_pylist() == one_pass[name].to_pylist(), name  # sketches byte-identical too
    check_against_reference(events, one_pass)


def check_against_reference(events, one_pass):
    """One pass equals a naive per-event Python computation."""
    expected = defaultdict(lambda: {"count": 0, "users": set(), "values": [], "late": 0})
    five = 5 * MINUTE

    def add(metric, key, ev, window_start, size):
        slot = expected[(metric, ev["app_id"], window_start, key)]
        slot["count"] += 1
        slot["late"] += window_start + size <= WATERMARK
        if ev["user_id"] is not None:
            slot["users"].add(ev["user_id"])
        value = ev["attrs"].get("value")
        if isinstance(value, (float, int)):
            slot["values"].append(float(value))

    import orjson
    for ev in events:
        ev = {**ev, "attrs": orjson.loads(ev["attributes"])}
        start = ev["event_time"] // MINUTE * MINUTE
        add("event_counts", (ev["event_type"],), ev, start, MINUTE)
        if ev["attrs"].get("character_class") is not None:
            add("class_activity", (ev["attrs"]["character_class"],), ev, start, MINUTE)
        if ev["event_type"] == "gps_ping" and "lat" in ev["attrs"]:
            add("region_activity", (geohash_scalar(ev["attrs"]["lat"], ev["attrs"]["lon"], 5),), ev, start, MINUTE)
        for k in range(5):
            add("active_users_5m", (), ev, start - k * MINUTE, 5 * MINUTE)
        if ev["event_type"] == "match_end" and isinstance(ev["attrs"].get("value"), (int, float)):
            add("match_duration", (ev["attrs"].get("character_class"),), ev, ev["event_time"] // five * five, five)
    for name in METRICS.names:
        keys = [k.name for k in METRICS[name].keys]
        got = {}
        for row in finalize(one_pass[name]).to_pylist():
            got[(name, row["app_id"], row["window_start"], tuple(row[k] for k in keys))] = row
        assert set(got) == {k for k in expected if k[0] == name}
        for key, row in got.items():
            want = expected[key]
            assert row["late_count"] == want["late"]
            if "users" in row:
                true_users = len(want["users"])
                assert abs(row["users"] - true_users) <= 3 + 4 * hll.RELATIVE_STANDARD_ERROR * true_users
            if "count" in row:
                assert row["count"] == want["count"]
            if name == "class_activity":
                values = want["values"]
                assert row["value_sum"] == (sum(values) if values else None)
                assert row["value_min"] == (min(values) if values else None)
                assert row["value_max"] == (max(values) if values else None)
                assert row["value_avg"] == (sum(values) / len(values) if values else None)
            if name == "match_duration":
                values = sorted(want["values"])
                assert row["count"] == len(values)
                for percent in (50, 90, 99):
                    truth = values[percent * (len(values) - 1) // 100]
                    assert abs(row[f"duration_p{percent}"] - truth) <= 0.01 * abs(truth) * (1 + 1e-9)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n_batches=st.integers(2, 5))
def test_merge_with_many_users_and_register_collisions_equals_one_pass(con, seed, n_batches):
    import random
    rng = random.Random(seed)
    events = [event(i, user_id=f"user-{rng.randrange(100_000)}", event_time=T0 + rng.randrange(2 * MINUTE))
              for i in range(3000)]
    rng.shuffle(events)
    cuts = sorted(rng.sample(range(1, len(events)), n_batches - 1))
    parts = [events[a:b] for a, b in zip([0, *cuts], [*cuts, len(events)])]
    rng.shuffle(parts)
    names = ["event_counts", "active_users_5m"]
    one_pass = aggregate(events_table(events), [METRICS[n] for n in names], watermark_ms=WATERMARK, con=con)
    partials = [aggregate(events_table(p), [METRICS[n] for n in names], watermark_ms=WATERMARK, con=con)
                for p in parts]
    for name in names:
        merged = merge_partials([p[name] for p in partials])
        assert merged.to_pylist() == one_pass[name].to_pylist()
        true = len({e["user_id"] for e in events})
        (estimate,) = [r["users"] for r in finalize(merged).to_pylist() if r["window_start"] == T0
                       and r.get("event_type", "level_up") == "level_up"] if name == "active_users_5m" else [true]
        assert abs(estimate - true) <= 3 + 4 * hll.RELATIVE_STANDARD_ERROR * true
