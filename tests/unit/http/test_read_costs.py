"""What reads cost (chalicelib/http/read_costs.py) and the per-app guard on reads in flight (threads, no AWS)."""

from __future__ import annotations

import threading

import pytest

from chalicelib.http.errors import BadRequest, TooManyRequests
from chalicelib.http.read_costs import (PERSON_TOKENS, ReadGuard, insight_cost, metrics_cost, person_cost, pipeline_cost,
                                       sessions_cost)

DAY = {"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"}
WEEK = {"from": "2026-01-01T00:00:00Z", "to": "2026-01-08T00:00:00Z"}


def test_a_read_costs_tokens_in_proportion_to_what_it_reads():
    """Metrics: 1 + one per 2 hours; pipeline: 50 per UTC day the range may touch; the default is an hour."""
    assert metrics_cost({}) == 2 and metrics_cost(DAY) == 13 and metrics_cost(WEEK) == 85
    assert pipeline_cost({}) == 100 and pipeline_cost(DAY) == 100 and pipeline_cost(WEEK) == 400
    assert pipeline_cost({"from": "2026-01-01T00:00:00Z"}) == 400  # up to now: charged as the maximum range
    assert metrics_cost({"from": "2020-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}) == 85  # capped (400 follows)


def test_session_and_person_reads_cost_what_they_read():
    """Sessions: 1 + one per UTC day the range may touch (one file each; default 7 days, at most 31);
    a person: a fixed PERSON_TOKENS (one file of the app's persons)."""
    assert sessions_cost(DAY) == 3 and sessions_cost(WEEK) == 9 and sessions_cost({}) == 9
    assert sessions_cost({"from": "2020-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}) == 32  # capped
    assert sessions_cost({"from": "yesterday"}) == 1
    assert person_cost({}) == PERSON_TOKENS == 5


@pytest.mark.parametrize("params", [{"from": "yesterday", "to": "2026-01-01T00:00:00Z"},
                                    {"from": ["2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"]},
                                    {"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}])
def test_a_malformed_range_costs_one_token(params):
    assert pipeline_cost(params) == 1 and metrics_cost(params) == 1


class Slow:
    """A read that runs until released, counting how often it ran."""

    def __init__(self) -> None:
        self.release, self.started, self.runs = threading.Event(), threading.Semaphore(0), 0

    def __call__(self):
        self.runs += 1
        self.started.release()
        assert self.release.wait(10)
        return {"runs": self.runs}


def run_in_thread(target) -> tuple[threading.Thread, list]:
    out: list = []

    def body():
        try:
            out.append(target())
        except Exception as exc:  # noqa: BLE001 - handed to the test
            out.append(exc)

    thread = threading.Thread(target=body)
    thread.start()
    return thread, out


def test_an_app_runs_at_most_two_expensive_reads_at_once_and_other_apps_are_not_held_back():
    guard, tokens, slow = ReadGuard(), [], Slow()
    threads = [run_in_thread(lambda i=i: guard.run("alpha", (i,), 400, tokens.append, slow)) for i in range(2)]
    for _ in range(2):
        assert slow.started.acquire(timeout=10)
    with pytest.raises(TooManyRequests) as refused:
        guard.run("alpha", (3,), 400, tokens.append, lambda: "never")
    assert refused.value.headers == {"Retry-After": "1"} and tokens == [400, 400]  # refused: took no token
    assert guard.run("alpha", (4,), 13, tokens.append, lambda: "cheap") == "cheap"  # below 50 tokens: not capped
    assert guard.run("beta", (3,), 400, tokens.append, lambda: "beta") == "beta"
    slow.release.set()
    for thread, _ in threads:
        thread.join(10)
    assert guard.run("alpha", (5,), 400, tokens.append, lambda: "after") == "after"  # slots given back


def test_identical_reads_in_flight_share_one_answer_and_pay_one_token_each():
    guard, tokens, slow = ReadGuard(), [], Slow()
    first = run_in_thread(lambda: guard.run("alpha", ("same",), 400, tokens.append, slow))
    assert slow.started.acquire(timeout=10)
    followers = [run_in_thread(lambda: guard.run("alpha", ("same",), 400, tokens.append, slow)) for _ in range(5)]
    other_app = guard.run("beta", ("same",), 400, tokens.append, lambda: "beta's own")
    while sum(1 for t in tokens if t == 1) < 5:
        threading.Event().wait(0.01)
    slow.release.set()
    for thread, _ in [first, *followers]:
        thread.join(10)
    assert slow.runs == 1 and other_app == "beta's own"
    assert [out for _, out in [first, *followers]] == [[{"runs": 1}]] * 6
    assert sorted(tokens) == [1, 1, 1, 1, 1, 400, 400] and guard.shared == 5


def test_a_failed_read_fails_its_followers_and_is_not_kept():
    guard, gate, entered = ReadGuard(), threading.Event(), threading.Event()

    def failing():
        entered.set()
        gate.wait(10)
        raise BadRequest("bad range")

    first = run_in_thread(lambda: guard.run("alpha", ("k",), 1, lambda n: None, failing))
    assert entered.wait(10)
    follower = run_in_thread(lambda: guard.run("alpha", ("k",), 1, lambda n: gate.set(), lambda: "unused"))
    for thread, _ in (first, follower):
        thread.join(10)
    assert isinstance(first[1][0], BadRequest) and isinstance(follower[1][0], BadRequest)
    assert guard.run("alpha", ("k",), 1, lambda n: None, lambda: "fresh") == "fresh"


def test_an_insight_costs_20_plus_5_per_utc_day_it_reads():
    """Funnel: from..to plus `within`; retention: from..to plus its periods (returns after `to` are read too)."""
    month = {"from": "2026-01-01T00:00:00Z", "to": "2026-01-31T00:00:00Z"}
    assert insight_cost({**month, "within": "1h"}) == 20 + 5 * 32  # 30 days + the day within reaches, counted whole
    assert insight_cost({**month, "within": "2d"}) == 20 + 5 * 33
    assert insight_cost({**month, "start_event": "a", "period": "week", "periods": 12}) == 20 + 5 * (31 + 84)
    assert insight_cost({**month, "start_event": "a", "periods": 3}) == 20 + 5 * (31 + 3)
    for bad in ({"from": "x", "to": "y"}, [], {"from": month["to"], "to": month["from"]}):
        assert insight_cost(bad) == 1
