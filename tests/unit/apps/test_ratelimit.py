"""The token-bucket rules of chalicelib/apps/ratelimit.py, on an injected clock (no AWS)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.http.errors import BadRequest, TooManyRequests
from chalicelib.apps.ratelimit import NS, BucketState, Limits, MemoryBuckets, RateLimiter, decide

T0 = 1_767_268_800 * NS


class Clock:
    def __init__(self) -> None:
        self.now_ns = T0

    def __call__(self) -> int:
        return self.now_ns

    def advance(self, seconds: float) -> None:
        self.now_ns += round(seconds * NS)


def limiter(limits: Limits):
    clock = Clock()
    buckets = MemoryBuckets(clock)
    return RateLimiter(lambda app_id: limits, buckets), buckets, clock


def test_a_full_bucket_admits_a_burst_of_rate_times_burst_seconds_then_refuses():
    admit, _, _ = limiter(Limits(events_per_second=100, requests_per_second=1000, burst_seconds=2))
    for _ in range(4):
        admit.admit("a", 50)  # 200 events = 100/s * 2 s
    with pytest.raises(TooManyRequests):
        admit.admit("a", 1)


def test_tokens_refill_by_elapsed_time_up_to_the_burst():
    admit, _, clock = limiter(Limits(events_per_second=100, requests_per_second=1000, burst_seconds=1))
    admit.admit("a", 100)
    with pytest.raises(TooManyRequests):
        admit.admit("a", 10)
    clock.advance(0.1)  # 10 tokens back
    admit.admit("a", 10)
    with pytest.raises(TooManyRequests):
        admit.admit("a", 1)
    clock.advance(3600)  # an hour idle refills to the burst, not beyond
    admit.admit("a", 100)
    with pytest.raises(TooManyRequests):
        admit.admit("a", 1)


def test_requests_per_second_limits_requests_without_events():
    admit, _, clock = limiter(Limits(events_per_second=1e6, requests_per_second=5, burst_seconds=1))
    for _ in range(5):
        admit.admit("a")
    with pytest.raises(TooManyRequests):
        admit.admit("a")
    clock.advance(0.2)
    admit.admit("a")


def test_a_refused_request_takes_nothing_from_either_bucket():
    limits = Limits(events_per_second=100, requests_per_second=10, burst_seconds=1)
    admit, buckets, _ = limiter(limits)
    admit.admit("a", 60)
    before = buckets.states["a"]
    with pytest.raises(TooManyRequests):
        admit.admit("a", 50)  # 40 events left: refused whole, the request token too
    assert buckets.states["a"] == before
    admit.admit("a", 40)  # exactly what was left


def test_retry_after_is_when_the_request_would_pass_in_whole_seconds():
    admit, _, clock = limiter(Limits(events_per_second=10, requests_per_second=1000, burst_seconds=1))
    admit.admit("a", 10)
    with pytest.raises(TooManyRequests) as refused:
        admit.admit("a", 25)  # a request over the burst waits for a full bucket: 1 s
    assert refused.value.headers == {"Retry-After": "1"} and refused.value.status == 429
    clock.advance(0.5)
    with pytest.raises(TooManyRequests):
        admit.admit("a", 10)
    clock.advance(0.5)
    admit.admit("a", 25)  # larger than the burst: passes on a full bucket, and leaves a debt ...
    with pytest.raises(TooManyRequests) as refused:
        admit.admit("a", 1)
    assert refused.value.headers == {"Retry-After": "2"}  # ... of 1.5 s (+0.1 s for the one event)


def test_retry_after_is_never_below_one_second():
    decision = decide(Limits(1000, 1000, 1), BucketState(T0 + NS + 1, None), 1, 0, T0)
    assert not decision.admitted and decision.retry_after_ns == 1_000_001 and decision.retry_after_s == 1


def test_apps_have_separate_buckets():
    admit, _, _ = limiter(Limits(events_per_second=10, requests_per_second=10, burst_seconds=1))
    admit.admit("a", 10)
    with pytest.raises(TooManyRequests):
        admit.admit("a", 1)
    admit.admit("b", 10)


def test_the_429_names_the_limits_and_says_nothing_was_accepted():
    admit, _, _ = limiter(Limits(events_per_second=10, requests_per_second=10, burst_seconds=1))
    admit.admit("a", 10)
    with pytest.raises(TooManyRequests) as refused:
        admit.admit("a", 3)
    assert "10 events/s" in refused.value.message and "nothing of this request was accepted" in refused.value.message


def test_an_apps_own_limits_replace_the_defaults_field_by_field():
    defaults = Limits(100, 10, 5)
    assert Limits.merged(defaults, {"events_per_second": 7.0}) == Limits(7.0, 10, 5)
    assert Limits.merged(defaults, {"burst_seconds": 0.0, "requests_per_second": float("nan")}) == defaults


@pytest.mark.parametrize("bad", [0, -1, float("inf"), float("nan"), 1e13, True, "5"])
def test_limits_must_be_positive_finite_numbers(bad):
    with pytest.raises(BadRequest):
        Limits(bad, 1, 1)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2_000), st.integers(0, 300)), min_size=1, max_size=60))
def test_admitted_events_never_exceed_burst_plus_rate_times_elapsed(requests):
    """Over any run, what passed is at most the burst plus the refill (plus one oversized request's debt)."""
    limits = Limits(events_per_second=500, requests_per_second=50, burst_seconds=2)
    admit, _, clock = limiter(limits)
    admitted_events = admitted_requests = 0
    largest = 0
    for gap_ms, events in requests:
        clock.advance(gap_ms / 1000)
        try:
            admit.admit("a", events)
        except TooManyRequests:
            continue
        admitted_events += events
        admitted_requests += 1
        largest = max(largest, events)
    elapsed_s = (clock.now_ns - T0) / NS
    capacity = limits.events_per_second * limits.burst_seconds
    assert admitted_events <= capacity + limits.events_per_second * elapsed_s + max(0, largest - capacity) + 1
    assert admitted_requests <= limits.requests_per_second * (limits.burst_seconds + elapsed_s) + 1


@pytest.mark.parametrize("limits, text", [
    (Limits(1e6, 1e12, 0.5), "1000000 events/s, 1000000000000 requests/s, bursts of 0.5 s"),
    (Limits(0.001, 2.5, 10), "0.001 events/s, 2.5 requests/s, bursts of 10 s"),
])
def test_limits_are_described_in_plain_numbers_never_in_exponent_form(limits, text):
    """`eventpipe apps list` shows limits as they are typed on the command line (1000000, not 1e+06)."""
    assert limits.describe() == text
