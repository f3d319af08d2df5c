"""The dashboard's Funnel and Retention tabs in headless Chromium on the real local stack.

An app of its own sends journeys (view -> cart -> buy over the last three days) through POST /v1/events;
once the raw table has them (the local stack commits every 10 s), each tab's form is filled from the
app's event types and run, and every number the page shows equals the API's answer to the very body the
page sent (re-posted here), which itself counts the users sent.
"""

from __future__ import annotations

import random
import time
import uuid

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from chalicelib.apps.keys import AppStore
from chalicelib.runtime.clients import Clients
from tests.e2e.test_dashboard import browser, wait_for  # noqa: F401 - the module's Chromium fixture

APP, KEY = "insights-e2e", "insights-e2e-key"
TYPES = ("insight_view", "insight_cart", "insight_buy")
USERS = 30
DAY_MS = 86_400_000


def js_number(x: float) -> str:
    """A number as JavaScript's String() writes it (these are whole or short decimals)."""
    return str(int(x)) if x == int(x) else repr(x)


def post(stack, path, body):
    response = requests.post(f"{stack.api_url}/{path}", json=body, headers={"x-api-key": KEY}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def journeys(stack):
    """USERS users, each with a view; most go on to cart and buy, minutes or hours later."""
    AppStore(Clients(stack.settings).dynamodb, stack.settings.apps_table).create_key(APP, KEY)
    rng, now = random.Random(7), int(time.time() * 1000)
    events = []
    for u in range(USERS):
        t = now - rng.randrange(3 * DAY_MS) - 3_600_000
        for kind in TYPES:
            events.append({"event_id": str(uuid.uuid4()), "event_type": kind, "user_id": f"user-{u:02d}",
                           "event_time": t, "attributes": {}})
            if rng.random() < 0.3:
                break
            t += rng.choice([60_000, 600_000, 2 * 3_600_000])
    for start in range(0, len(events), 50):
        assert post(stack, "v1/events", {"events": events[start:start + 50]})["errors"] == []
    now = int(time.time() * 1000)
    body = {"steps": [{"event_type": t} for t in TYPES], "within": "1h",
            "from": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now / 1000 - 7 * 86400)),
            "to": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now / 1000 + 60))}
    deadline = time.monotonic() + 120
    while post(stack, "v1/insights/funnel", body)["steps"][0]["users"] < USERS:  # committed to the raw table
        assert time.monotonic() < deadline, "the raw table did not get the events within 2 minutes"
        time.sleep(2)
    return events


def open_tab(browser, stack, view):  # noqa: F811
    browser.get(f"{stack.api_url}/dashboard#key={KEY}&view={view}")
    browser.find_element(By.CSS_SELECTOR, f'#tabs button[data-view="{view}"]').click()  # (a hash change alone)
    wait_for(browser, f"return document.querySelectorAll('#view-{view} select.event-type option').length > 0",
             what="the app's event types in the step lists")
    wait_for(browser, "return window.Dash.inflight === 0", what="no request in flight (the lists are final)")


def test_the_funnel_tab_shows_the_apis_numbers(stack, browser, journeys):  # noqa: F811
    """Steps picked from the app's event types; users, conversion and median per step equal the API's."""
    open_tab(browser, stack, "funnel")
    selects = browser.find_elements(By.CSS_SELECTOR, "#funnel-form select.event-type")
    options = [o.get_attribute("value") for o in Select(selects[0]).options]
    assert options == sorted(TYPES)  # this app's types only
    for select, kind in zip(selects, TYPES):
        Select(select).select_by_value(kind)
    Select(selects[3]).select_by_value("")
    Select(browser.find_element(By.ID, "funnel-range")).select_by_value("7")
    browser.find_element(By.CSS_SELECTOR, "#funnel-form button[type=submit]").click()
    shown = wait_for(browser, "return window.__insights.funnel", what="the funnel answer")
    assert [s["event_type"] for s in shown["request"]["steps"]] == list(TYPES)
    answer = post(stack, "v1/insights/funnel", shown["request"])
    assert answer == shown["answer"] and answer["steps"][0]["users"] == USERS
    for k, step in enumerate(answer["steps"], 1):
        cell = lambda name: browser.find_element(By.CSS_SELECTOR, f'#funnel-table [data-cell="{name}-{k}"]').text  # noqa: E731
        assert cell("users") == str(step["users"])
        assert cell("conversion") == f"{100 * step['conversion']:.1f} %"
        median = step["median_seconds_to_convert"]
        assert cell("median") == ("–" if median is None else f"{js_number(median)} s")
    assert 0 < answer["steps"][2]["users"] < USERS


def test_the_retention_tab_shows_the_apis_numbers(stack, browser, journeys):  # noqa: F811
    """Cohort users and the returns of each later day equal the API's answer."""
    open_tab(browser, stack, "retention")
    Select(browser.find_element(By.ID, "retention-start")).select_by_value("insight_view")
    Select(browser.find_element(By.ID, "retention-return")).select_by_value("insight_buy")
    Select(browser.find_element(By.ID, "retention-period")).select_by_value("day")
    periods = browser.find_element(By.ID, "retention-periods")
    periods.clear()
    periods.send_keys("4")
    browser.find_element(By.CSS_SELECTOR, "#retention-form button[type=submit]").click()
    shown = wait_for(browser, "return window.__insights.retention", what="the retention answer")
    assert shown["request"]["periods"] == 4 and shown["request"]["return_event"] == "insight_buy"
    answer = post(stack, "v1/insights/retention", shown["request"])
    assert answer == shown["answer"] and sum(c["users"] for c in answer["cohorts"]) == USERS
    for i, cohort in enumerate(answer["cohorts"]):
        assert browser.find_element(By.CSS_SELECTOR, f'#retention-table [data-cell="cohort-users-{i}"]').text == str(cohort["users"])
        for k in range(1, 4):
            cell = browser.find_element(By.CSS_SELECTOR, f'#retention-table [data-cell="returned-{i}-{k}"]')
            assert cell.get_attribute("data-value") == str(cohort["returned"][k]) == cell.text
