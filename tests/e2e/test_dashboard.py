"""The dashboard in headless Chromium (Debian's chromium + chromedriver, Selenium) on the real local stack.

Generated events are sent while the Pipeline view is open; then every metric panel's plotted
points are compared with the API's rows, a known event is found and paged to, the pipeline's
lag reaches zero, and every request the browser made went to 127.0.0.1. With
EVENTPIPE_SCREENSHOTS=1 each view is saved to docs/screenshots/ (the README shows them).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from urllib.parse import urlparse

import pytest
import requests
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from eventpipe.generate import generate_events, write_ndjson
from eventpipe.sender import send_file
from tests.conftest import ROOT

EVENTS = 3000
SEED = 1010
KEY = "demo-key"
SHOTS = ROOT / "docs" / "screenshots"


def _browser_binaries() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (browser and driver):  # never skipped: scripts/ensure-chromium.sh installs them (scripts/test.sh)
        raise AssertionError("chromium and chromedriver are required: run scripts/ensure-chromium.sh")
    return browser, driver


@pytest.fixture(scope="module")
def browser():
    binary, driver_path = _browser_binaries()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1000", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-default-apps"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.requested_urls = []
    try:
        yield driver
    finally:
        driver.quit()


def requested_urls(driver) -> list[str]:
    """Every URL the page asked for so far (Chrome DevTools' Network.requestWillBeSent events)."""
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            driver.requested_urls.append(message["params"]["request"]["url"])
    return driver.requested_urls


def wait_for(driver, script: str, timeout_s: float = 30.0, what: str = ""):
    deadline = time.monotonic() + timeout_s
    while True:
        value = driver.execute_script(script)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what or script}")
        time.sleep(0.25)


def api(stack, path, **params):
    response = requests.get(f"{stack.api_url}/{path}", params=params, headers={"x-api-key": KEY}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def screenshot(driver, name: str) -> None:
    if os.environ.get("EVENTPIPE_SCREENSHOTS") == "1":
        SHOTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(SHOTS / f"{name}.png"))


def show(driver, view: str) -> None:
    driver.find_element(By.CSS_SELECTOR, f'#tabs button[data-view="{view}"]').click()


@pytest.fixture(scope="module")
def sent(stack, browser, tmp_path_factory):
    """Open the Pipeline view, then send the generated events (last hour) while it watches."""
    browser.get(f"{stack.api_url}/dashboard#key={KEY}&view=pipeline")
    wait_for(browser, "return window.__pipeline && window.__pipeline.stream", what="the pipeline view")
    before = browser.execute_script("return window.__pipeline.stream.consumers")
    path = tmp_path_factory.mktemp("dashboard") / "events.ndjson"
    now_ms = int(time.time() * 1000)
    events = list(generate_events(EVENTS, seed=SEED, start_ms=now_ms - 50 * 60_000, duration_ms=45 * 60_000))
    write_ndjson(str(path), iter(events))
    summary = send_file(str(path), stack.api_url, KEY, batch_size=100, use_gzip=True, concurrency=2, progress=False)
    assert (summary.accepted, summary.rejected) == (EVENTS, 0)
    return {"events": events, "before": before, "sent_ms": int(time.time() * 1000)}


def test_the_key_from_the_link_is_kept_in_session_storage_and_out_of_the_address_bar(stack, browser, sent):
    assert browser.execute_script("return sessionStorage.getItem('eventpipe.apiKey')") == KEY
    assert "key=" not in browser.current_url


def test_the_pipeline_view_shows_lag_going_to_zero_once_the_runner_has_caught_up(stack, browser, sent):
    seen = []
    deadline = time.monotonic() + 60
    while True:
        body = browser.execute_script("return window.__pipeline")
        behind = sum(r["behind"] for r in body["stream"]["consumers"])
        fresh = body["generated_at_ms"] > sent["sent_ms"]  # an answer given after the last event was sent
        seen.append(behind)
        shown = browser.find_element(By.ID, "pipeline").get_attribute("data-behind")
        if fresh and behind == 0 and shown == "0" and body["stream"]["caught_up"]:
            break
        assert time.monotonic() < deadline, f"records behind never reached 0: {seen[-10:]}"
        time.sleep(0.5)
    delivered_before = {(r["consumer"], r["shard_id"]): r["delivered"] for r in sent["before"]}
    after = body["stream"]["consumers"]
    for consumer in ("archive_events", "aggregate_events", "index_events"):
        grew = sum(r["delivered"] - delivered_before.get((r["consumer"], r["shard_id"]), 0)
                   for r in after if r["consumer"] == consumer)
        assert grew > 0, f"{consumer}: the view shows no records delivered"
    table = browser.find_element(By.ID, "pipeline").text
    assert "records behind the tip" in table and "aggregate_events" in table
    time.sleep(5.5)  # one more refresh: the rates between two answers are shown
    screenshot(browser, "pipeline")


def plotted_points(panel: dict) -> dict[tuple[float, str], float]:
    """(window start, series) -> value of every point drawn (finalized and open series)."""
    xs, out = panel["data"][0], {}
    for i, label in enumerate(panel["labels"]):
        for column in (panel["data"][1 + 2 * i], panel["data"][2 + 2 * i]):
            for x, y in zip(xs, column):
                if y is not None:
                    assert (x, label) not in out, f"{label} at {x} drawn twice"
                    out[(x, label)] = y
    return out


def api_points(rows: list[dict], keys: list[str], measure: str) -> dict[tuple[float, str], float]:
    def label(row):
        return " / ".join("(none)" if row[k] is None else str(row[k]) for k in keys) if keys else "all"

    def epoch(text):
        from datetime import datetime
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()

    return {(epoch(r["window_start"]), label(r)): r[measure] for r in rows if r[measure] is not None}


def test_every_metric_panel_plots_exactly_the_api_rows(stack, browser, sent):
    show(browser, "metrics")
    names = [m["name"] for m in api(stack, "v1/metrics")["metrics"]]
    for attempt in range(4):
        wait_for(browser, "const p = window.__panels || {}; return %s.every(n => p[n] && (p[n].data || p[n].error))"
                 % json.dumps(names), what="every metric panel")
        panels = browser.execute_script("return window.__panels")
        mismatched = []
        for name in names:
            panel = panels[name]
            assert "error" not in panel, f"{name}: the panel shows an error {panel}"
            body = api(stack, f"v1/metrics/{name}", **{"from": panel["from"], "to": panel["to"], "limit": "10000"})
            expected = api_points(body["rows"], panel["keys"], panel["measure"])
            drawn = plotted_points(panel)
            if drawn.keys() != expected.keys() or any(not math.isclose(drawn[k], expected[k], rel_tol=1e-9)
                                                      for k in expected):
                mismatched.append(name)
            elif name == "event_counts":
                assert expected, "event_counts has no rows in the last hour after the events were sent"
        if not mismatched:
            break
        time.sleep(2)  # a window changed between the page's request and ours: compare the next refresh
    assert not mismatched, f"panels differing from the API: {mismatched}"
    statuses = browser.execute_script(
        "return [...document.querySelectorAll('.panel .status')].map(s => s.dataset.state)")
    assert "error" not in statuses
    screenshot(browser, "metrics")


def test_a_measure_switch_replots_the_panel_from_the_same_rows(stack, browser, sent):
    select = browser.find_element(By.CSS_SELECTOR, '.panel[data-metric="class_activity"] select')
    browser.execute_script("arguments[0].value = 'value_sum'; arguments[0].dispatchEvent(new Event('change'))", select)
    panel = browser.execute_script("return window.__panels.class_activity")
    assert panel["measure"] == "value_sum"
    body = api(stack, "v1/metrics/class_activity", **{"from": panel["from"], "to": panel["to"], "limit": "10000"})
    assert plotted_points(panel).keys() == api_points(body["rows"], panel["keys"], "value_sum").keys()


def test_the_regions_view_draws_a_cell_per_geohash_of_region_activity(stack, browser, sent):
    show(browser, "regions")
    regions = wait_for(browser, "return window.__regions && window.__regions.cells.length && window.__regions",
                       what="the heat map")
    body = api(stack, "v1/metrics/region_activity", **{"from": regions["from"], "to": regions["to"], "limit": "10000"})
    totals: dict[str, int] = {}
    for row in body["rows"]:
        totals[row["geohash5"]] = totals.get(row["geohash5"], 0) + row["count"]
    assert {c["hash"]: c["value"] for c in regions["cells"]} == totals
    rects = browser.find_elements(By.CSS_SELECTOR, "#region-map rect[data-geohash]")
    assert len(rects) == len(totals)
    screenshot(browser, "regions")


def test_discover_finds_a_known_event_and_pages_with_the_cursor(stack, browser, sent):
    newest_chat = max((e for e in sent["events"] if e["event_type"] == "chat_message"), key=lambda e: e["event_time"])
    show(browser, "discover")
    browser.find_element(By.ID, "event_type").send_keys("chat_message")
    browser.find_element(By.ID, "q").send_keys(newest_chat["attributes"]["text"].split()[0])
    deadline = time.monotonic() + 30
    while True:  # the index refreshes every second: search again until the newest event is there
        browser.find_element(By.CSS_SELECTOR, "#search button[type=submit]").click()
        found = wait_for(browser, "return window.__discover && window.__discover.params.q && window.__discover",
                         what="search results")
        if newest_chat["event_id"] in found["ids"]:
            break
        assert time.monotonic() < deadline, f"{newest_chat['event_id']} not found: {found}"
        time.sleep(1)
    assert browser.find_elements(By.CSS_SELECTOR, f'#hits tr[data-event-id="{newest_chat["event_id"]}"]')
    wait_for(browser, "return window.__discover.histogram", what="the histogram")
    histogram = browser.execute_script("return window.__discover.histogram")
    assert sum(histogram["counts"]) == found["total"]
    screenshot(browser, "discover")
    assert found["next_cursor"], f"{found['total']} matches fit on one page: choose a broader search"
    first_page = found["ids"]
    browser.find_element(By.ID, "next").click()
    second = wait_for(browser, "return window.__discover.page === 1 && window.__discover", what="page 2")
    expected = api(stack, "v1/search", **{**{k: v for k, v in found["params"].items() if k != "size"},
                                          "size": "20", "cursor": found["next_cursor"]})
    assert second["ids"] == [h["event_id"] for h in expected["hits"]]
    assert not set(second["ids"]) & set(first_page)


def test_a_wrong_key_shows_the_401_state(stack, browser, sent):
    browser.get(f"{stack.api_url}/dashboard#key=not-a-key")
    message = wait_for(browser, "const f = document.getElementById('keyform'); "
                                "return !f.hidden && document.getElementById('keymsg').textContent",
                       what="the key form")
    assert "401" in message and "Wrong key" in message
    browser.execute_script("sessionStorage.setItem('eventpipe.apiKey', arguments[0])", KEY)


def test_no_request_leaves_127_0_0_1(stack, browser, sent):
    urls = requested_urls(browser)
    assert any(u.endswith("/dashboard/uplot.js") for u in urls)
    assert any("/v1/pipeline" in u for u in urls) and any("/v1/search" in u for u in urls)
    outside = sorted({u for u in urls if not u.startswith("data:") and urlparse(u).hostname != "127.0.0.1"})
    assert not outside, f"requests to other hosts: {outside[:10]}"


def test_the_page_is_light(stack):
    """HTML + JavaScript + CSS as served, raw and gzipped (the number in the README)."""
    import gzip

    raw = zipped = 0
    for name in ("", "/app.js", "/views.js", "/app.css", "/uplot.js", "/uplot.css"):
        body = requests.get(f"{stack.api_url}/dashboard{name}", timeout=10).content
        raw, zipped = raw + len(body), zipped + len(gzip.compress(body, 9))
    print(f"dashboard transfer size: {raw} bytes raw, {zipped} bytes gzipped")
    assert zipped < 60_000
