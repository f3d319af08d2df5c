"""posthog-js and @segment/analytics-next in a real browser, as a shop's page would run them.

The SDKs come from npm, pinned (scripts/js-sdks/package-lock.json), bundled with the page
(scripts/js-sdks/browser/: ``sdks.js`` is the configuration the docs show, ``page.js`` sends a few
events and records what each SDK handed to its transport). The page is served by an HTTP server of
its own (another origin than the API) to Debian's Chromium, driven by chromedriver, with a desktop
browser's user agent (posthog-js drops events of headless user agents by itself).

Rules checked:
* every event either SDK sent arrives exactly once: the raw ``events`` table of the lake holds one row
  per sent id and nothing else for the app;
* the page logs no console error and no warning (no refused CORS request, no failed call on load:
  posthog-js's remote config and flags are answered), and asks nothing of any host but the page's and
  the API's (no Segment CDN, no PostHog cloud);
* identify traits are in ``attributes.traits`` whichever SDK sent them.
"""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import threading
import time
from urllib.parse import quote, urlparse

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from tests.e2e.sdk_support import JS_SDKS, by_type, install_js_sdks, new_app, search_hits, wait_for_lake

#: A desktop Chrome's user agent (headless Chromium's own says "HeadlessChrome", which posthog-js filters out).
USER_AGENT = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 "
              "Safari/537.36")


class PageServer:
    """scripts/js-sdks over HTTP on a port of its own: the page's origin is not the API's."""

    def __init__(self) -> None:
        handler = functools.partial(_QuietHandler, directory=str(JS_SDKS))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.origin = f"http://localhost:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def chromium() -> webdriver.Chrome:
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (browser and driver):  # never skipped: scripts/ensure-chromium.sh installs them (scripts/test.sh)
        raise AssertionError("chromium and chromedriver are required: run scripts/ensure-chromium.sh")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-default-apps", f"--user-agent={USER_AGENT}",
                "--disable-blink-features=AutomationControlled"):  # navigator.webdriver: posthog-js's bot check
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=options)


def requested_urls(driver) -> list[str]:
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


@pytest.fixture(scope="module")
def page_run(stack):
    """Open the page once for a fresh app; wait until both SDKs have sent their events and the lake has them."""
    install_js_sdks()
    app_id, key = new_app(stack, "browser-sdks")
    server, driver = PageServer(), chromium()
    try:
        driver.get(f"{server.origin}/browser/index.html?api={quote(stack.api_url)}&key={quote(key)}")
        deadline = time.monotonic() + 60
        while not (state := driver.execute_script("return window.__sdks || null")) or not state["done"]:
            assert not (state or {}).get("error"), state["error"]
            assert time.monotonic() < deadline, f"the page never finished sending: {state}"
            time.sleep(0.25)
        sent = {sdk: driver.execute_script("return window.__sdks")[sdk] for sdk in ("segment", "posthog")}
        expected = {e["id"] for events in sent.values() for e in events}
        copies = wait_for_lake(stack, key, expected)
        sent = {sdk: driver.execute_script("return window.__sdks")[sdk] for sdk in ("segment", "posthog")}
        console = driver.get_log("browser")
        urls = requested_urls(driver)
        hits = search_hits(stack, key, len(copies))
    finally:
        driver.quit()
        server.close()
    return {"app_id": app_id, "key": key, "sent": sent, "copies": copies, "console": console, "urls": urls,
            "hits": hits, "origin": server.origin}


def test_both_sdks_sent_what_the_page_asked_for(page_run):
    segment = [(e["type"], e["event"]) for e in page_run["sent"]["segment"]]
    assert segment == [("page", None), ("track", "Browser Order Completed"), ("identify", None)]
    posthog = sorted(e["event"] for e in page_run["sent"]["posthog"])
    assert {"$pageview", "Browser Clicked", "$identify"} <= set(posthog), posthog


def test_every_event_the_sdks_sent_is_in_the_lake_exactly_once(page_run):
    sent_ids = [e["id"] for events in page_run["sent"].values() for e in events]
    assert len(sent_ids) == len(set(sent_ids))
    assert dict(page_run["copies"]) == {event_id: 1 for event_id in sent_ids}


def test_the_page_logs_no_console_error_or_warning(page_run):
    noisy = [(e["level"], e["message"]) for e in page_run["console"] if e["level"] in ("SEVERE", "WARNING")]
    assert noisy == []


def test_the_page_asks_only_its_own_origin_and_the_api(page_run, stack):
    hosts = {f"{urlparse(u).scheme}://{urlparse(u).netloc}" for u in page_run["urls"] if not u.startswith("data:")}
    assert hosts <= {page_run["origin"], stack.api_url}, hosts
    assert any("/flags/" in u for u in page_run["urls"]) and any("/array/" in u for u in page_run["urls"])


def test_identify_traits_are_in_attributes_traits_whichever_sdk_sent_them(page_run):
    identifies = by_type(page_run["hits"])["identify"]
    assert len(identifies) == 2
    for hit in identifies:
        assert hit["user_id"] == "browser-user"
        assert hit["attributes"]["traits"]["plan"] == "pro", hit["attributes"]
    (posthog,) = [h for h in identifies if "posthog" in h["attributes"]]
    # posthog-js adds person properties of its own ($initial_referrer... in $set_once, $current_url... in $set)
    assert posthog["attributes"]["traits"]["first_seen"] == "today"
    assert "$set" not in posthog["attributes"] and "$set_once" not in posthog["attributes"]
