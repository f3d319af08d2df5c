"""The dashboard in headless Chromium (Debian's chromium + chromedriver, Selenium) on the real local stack.

Generated events are sent while the Pipeline view is open; then every metric panel's plotted
points are compared with the API's rows, a known event is found and paged to, the pipeline's
lag reaches zero, and every request the browser made went to 127.0.0.1. A second app whose events
all fall in one minute, long after the watermark, checks the axes, the late-events explanation and
the finalization columns. With EVENTPIPE_SCREENSHOTS=1 each view is saved to docs/screenshots/ (the
README shows them; EVENTPIPE_SCREENSHOTS_DIR saves them elsewhere).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from chalicelib.apps.keys import AppStore
from chalicelib.runtime.clients import Clients
from eventpipe.generate import generate_events, write_ndjson
from eventpipe.sender import send_file
from tests.conftest import ROOT

EVENTS = 3000
SEED = 1010
KEY = "demo-key"
SHOTS = Path(os.environ.get("EVENTPIPE_SCREENSHOTS_DIR") or ROOT / "docs" / "screenshots")
MINUTE_APP, MINUTE_KEY, MINUTE_EVENTS = "one-minute", "one-minute-key", 40
TOP = 8  # series drawn per panel at most, besides "other" (views.js)


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


def api(stack, path, key=KEY, **params):
    response = requests.get(f"{stack.api_url}/{path}", params=params, headers={"x-api-key": key}, timeout=30)
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


@pytest.fixture(scope="module")
def minute_app(stack, sent, tmp_path_factory):
    """A second app whose events all fall in one minute, 40 minutes back, sent once the demo app's
    events (up to 5 minutes back) have moved every shard's watermark past that minute: all late."""
    deadline = time.monotonic() + 90
    while not api(stack, "v1/pipeline")["stream"]["caught_up"]:
        assert time.monotonic() < deadline, "the runner never caught up with the demo app's events"
        time.sleep(0.5)
    AppStore(Clients(stack.settings).dynamodb, stack.settings.apps_table).create_key(MINUTE_APP, MINUTE_KEY)
    start_ms = (int(time.time()) // 60 - 40) * 60_000
    events = list(generate_events(MINUTE_EVENTS, seed=7, start_ms=start_ms, duration_ms=50_000))
    path = tmp_path_factory.mktemp("minute") / "events.ndjson"
    write_ndjson(str(path), iter(events))
    summary = send_file(str(path), stack.api_url, MINUTE_KEY, batch_size=10, use_gzip=False, concurrency=1,
                        progress=False)
    assert (summary.accepted, summary.rejected) == (MINUTE_EVENTS, 0)
    window = {"from": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start_ms / 1000 - 600)), "limit": "10000"}
    deadline = time.monotonic() + 60
    while sum(r["count"] for r in api(stack, "v1/metrics/event_counts", key=MINUTE_KEY, **window)["rows"]) \
            < MINUTE_EVENTS:
        assert time.monotonic() < deadline, "the one-minute app's events were never aggregated"
        time.sleep(0.5)
    return {"events": events, "start_ms": start_ms}


def open_dashboard(stack, browser, key: str, view: str) -> None:
    """A fresh page load with ``key`` (the link `make run` prints)."""
    browser.get("about:blank")
    browser.get(f"{stack.api_url}/dashboard#key={key}&view={view}")


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


def epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


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


def series_label(row: dict, keys: list[str]) -> str:
    return " / ".join("(none)" if row[k] is None else str(row[k]) for k in keys) if keys else "all"


def api_points(rows: list[dict], panel: dict, measure: str | None = None) -> dict[tuple[float, str], float]:
    """What the panel should draw from the API's rows: a series per label, the labels it left out
    summed per window into its "other" series (or not drawn when it has none)."""
    measure = measure or panel["measure"]
    hidden, other, out = set(panel["hidden"]), panel["other"], {}
    for r in rows:
        if r[measure] is None:
            continue
        label = series_label(r, panel["keys"])
        if label in hidden:
            if other is not None:
                point = (epoch(r["window_start"]), other)
                out[point] = out.get(point, 0) + r[measure]
            continue
        out[(epoch(r["window_start"]), label)] = r[measure]
    return out


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
            expected = api_points(body["rows"], panel)
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
    assert plotted_points(panel).keys() == api_points(body["rows"], panel, "value_sum").keys()


def test_each_drawn_series_has_exactly_one_legend_entry(stack, browser, sent):
    """The legend names each series once (its finalized and open parts are one entry), and only those drawn."""
    show(browser, "metrics")
    panels = browser.execute_script("return window.__panels")
    assert panels, "no metric panels"
    for name, panel in panels.items():
        if not panel["rows"]:
            continue
        entries = browser.execute_script(
            "const p = document.querySelector(`.panel[data-metric='${arguments[0]}']`);"
            "return [...p.querySelectorAll('.u-legend .u-series .u-label, .legend .item .label')]"
            ".map(e => e.textContent.trim())", name)
        assert len(entries) == len(set(entries)), f"{name}: duplicate legend entries {entries}"
        assert entries == panel["labels"], f"{name}: legend {entries}, series {panel['labels']}"


def test_region_activity_draws_its_largest_cells_plus_other_and_points_to_the_regions_tab(stack, browser, sent):
    """At most TOP series per panel: the largest over the range, the rest summed into "other"."""
    panel = browser.execute_script("return window.__panels.region_activity")
    body = api(stack, "v1/metrics/region_activity", **{"from": panel["from"], "to": panel["to"], "limit": "10000"})
    totals: dict[str, int] = {}
    for row in body["rows"]:
        label = series_label(row, panel["keys"])
        totals[label] = totals.get(label, 0) + row[panel["measure"]]
    assert len(totals) > TOP + 1, f"only {len(totals)} cells: the cap is not exercised"
    assert panel["other"] and panel["labels"] == [*panel["labels"][:TOP], panel["other"]]
    shown = panel["labels"][:TOP]
    assert set(shown) | set(panel["hidden"]) == set(totals) and not set(shown) & set(panel["hidden"])
    assert min(totals[label] for label in shown) >= max(totals[label] for label in panel["hidden"])
    note = browser.execute_script(  # in one call: the 5 s refresh redraws the note
        "const note = document.querySelector('.panel[data-metric=region_activity] .legend-note.cap');"
        "const link = note.querySelector('a'); const out = [note.checkVisibility(), note.textContent, link.textContent];"
        "link.click(); return out;")
    assert note[0] and f"the other {len(panel['hidden'])} summed" in note[1], note
    assert note[2] == "Every cell on a map: the Regions tab"
    assert browser.find_element(By.ID, "view-regions").is_displayed()


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


def test_the_regions_map_draws_coastlines_and_borders_from_the_bundled_atlas_as_wide_as_the_window(stack, browser, sent):
    """Land (coastlines) and borders are SVG paths under the cells, from the atlas the API serves itself;
    the map takes the width of the page."""
    show(browser, "regions")
    wait_for(browser, "return window.__regions && window.__regions.cells.length", what="the heat map")
    paths = browser.execute_script(
        "return [...document.querySelectorAll('#region-map svg path')].map(p => [p.dataset.layer, p.getAttribute('d')])")
    layers = {layer: d for layer, d in paths}
    assert {"land", "borders"} <= set(layers), f"layers drawn: {sorted(layers, key=str)}"
    assert layers["land"].count("M") >= 3 and layers["borders"].count("M") >= 1
    order = browser.execute_script(  # under the cells
        "const svg = document.querySelector('#region-map svg'); const kids = [...svg.children];"
        "return [kids.indexOf(svg.querySelector('path[data-layer=land]')),"
        " kids.indexOf(svg.querySelector('rect.cell'))]")
    assert 0 <= order[0] < order[1]
    atlas = requests.get(f"{stack.api_url}/dashboard/countries-50m.json", timeout=30)
    assert atlas.status_code == 200 and {"land", "countries"} <= set(atlas.json()["objects"])
    svg_width, page_width = browser.execute_script(
        "return [document.querySelector('#region-map svg').getBoundingClientRect().width,"
        " document.querySelector('main').clientWidth]")
    assert svg_width >= 0.9 * (page_width - 32), f"map {svg_width}px wide on a {page_width}px page"
    browser.set_window_size(1000, 1000)  # a narrower window: the map is redrawn to its width
    try:
        narrow = wait_for(browser, "const svg = document.querySelector('#region-map svg');"
                                   "return svg && svg.getBoundingClientRect().width < %d && "
                                   "[svg.getBoundingClientRect().width, document.querySelector('main').clientWidth]"
                          % (svg_width - 100), what="the map redrawn narrower")
        assert narrow[0] >= 0.9 * (narrow[1] - 32) and narrow[0] <= narrow[1]
    finally:
        browser.set_window_size(1400, 1000)


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


def test_the_time_axis_is_the_selected_range_for_an_app_whose_events_fall_in_one_minute(stack, browser, minute_app):
    """Every chart's x-axis spans the range chosen in the header, not the data (one minute here)."""
    open_dashboard(stack, browser, MINUTE_KEY, "metrics")
    wait_for(browser, "const p = window.__panels || {}; return p.event_counts && p.event_counts.rows", what="the panel")
    browser.execute_script(  # record every chart drawn from now on, then redraw
        "const U = window.uPlot; window.__plots = [];"
        "window.uPlot = new Proxy(U, {construct(target, args) { const plot = new target(...args);"
        " window.__plots.push(plot); return plot; }});"
        "document.getElementById('range').dispatchEvent(new Event('change'));")
    scale = wait_for(browser, "const plot = (window.__plots || [])"
                              ".find(p => p.root.closest('[data-metric=event_counts]'));"
                              "return plot && [plot.scales.x.min, plot.scales.x.max]", what="event_counts redrawn")
    panel = browser.execute_script("return window.__panels.event_counts")
    xs = panel["data"][0]
    assert xs and max(xs) - min(xs) <= 60 and min(xs) >= minute_app["start_ms"] / 1000
    assert scale == [pytest.approx(epoch(panel["from"]), abs=1), pytest.approx(epoch(panel["to"]), abs=1)]
    screenshot(browser, "metrics-one-minute")


def test_the_pipeline_tab_says_why_events_are_late(stack, browser, minute_app):
    """The late count comes with what late means and why demo data sent after the fact is late."""
    open_dashboard(stack, browser, MINUTE_KEY, "pipeline")
    body = wait_for(browser, "return window.__pipeline && window.__pipeline.app_id === %s && window.__pipeline"
                    % json.dumps(MINUTE_APP), what="the pipeline view of the one-minute app")
    app = body["app"]
    assert app["late_events"] == MINUTE_EVENTS == app["accepted"], app
    note = browser.find_element(By.ID, "late-note")
    assert note.is_displayed()
    assert f"{MINUTE_EVENTS} of {MINUTE_EVENTS} events (100 %)" in note.text
    assert "after the watermark had passed the end of its window" in note.text and "late by design" in note.text


def test_the_finalization_columns_agree_with_each_other_and_are_explained(stack, browser, minute_app):
    """What the finalizer did (compacted until, last run) comes from one source and says "not yet" in
    both columns until it has run; "windows final until" is explained beside it."""
    body = browser.execute_script("return window.__pipeline")
    rows = browser.execute_script("return [...document.querySelectorAll('#finalization tbody tr')]"
                                  ".map(tr => [...tr.cells].map(c => c.textContent))")
    expected = {f["metric"]: f for f in body["finalization"]}
    assert [r[0] for r in rows] == list(expected) and expected
    for metric, final_until, _lag, compacted, last_run in rows:
        f = expected[metric]
        assert (f["compacted_until"] is None) == (f["last_finalized_at"] is None), f
        assert (compacted == "not yet") == (f["compacted_until"] is None) == (last_run == "not yet"), \
            (metric, compacted, last_run)
        assert final_until.startswith(f["finalized_until"][:16].replace("T", " "))
    assert "never" not in browser.find_element(By.ID, "pipeline").text
    note = browser.find_element(By.ID, "finalization-note")
    assert note.is_displayed() and "Windows final until" in note.text and "not yet" in note.text
    screenshot(browser, "pipeline-late")


def test_no_request_leaves_127_0_0_1(stack, browser, sent):
    urls = requested_urls(browser)
    assert any(u.endswith("/dashboard/uplot.js") for u in urls)
    assert any(u.endswith("/dashboard/countries-50m.json") for u in urls)
    assert any("/v1/pipeline" in u for u in urls) and any("/v1/search" in u for u in urls)
    outside = sorted({u for u in urls if not u.startswith("data:") and urlparse(u).hostname != "127.0.0.1"})
    assert not outside, f"requests to other hosts: {outside[:10]}"


def test_the_page_is_light(stack):
    """HTML + JavaScript + CSS as served, raw and gzipped (the number in the README); the map's atlas,
    fetched when the Regions tab opens, apart."""
    import gzip

    raw = zipped = 0
    for name in ("", "/app.js", "/views.js", "/regions.js", "/pipeline.js", "/app.css", "/uplot.js", "/uplot.css",
                 "/topojson.js"):
        body = requests.get(f"{stack.api_url}/dashboard{name}", timeout=10).content
        raw, zipped = raw + len(body), zipped + len(gzip.compress(body, 9))
    atlas = requests.get(f"{stack.api_url}/dashboard/countries-50m.json", timeout=30).content
    print(f"dashboard transfer size: {raw} bytes raw, {zipped} bytes gzipped; "
          f"Regions atlas {len(atlas)} bytes raw, {len(gzip.compress(atlas, 9))} gzipped")
    assert zipped < 60_000
