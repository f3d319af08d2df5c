"""The dashboard's Sessions tab in headless Chromium (Debian's chromium + chromedriver, Selenium).

The app is served from this process (as ``chalice local`` does) over a moto server whose lake was
written by the real consumers and the finalize_windows handler (tests/factories/people.py): known
sessions, so the tab's figures are compared with the API's answer and with the pandas truth.
"""

from __future__ import annotations

import json
import threading

import pytest
import requests
from selenium.webdriver.common.by import By

import app as app_module
from chalicelib.runtime.container import Container
from eventpipe.local.bootstrap import bootstrap
from eventpipe.local.stack import free_port
from tests.e2e.test_dashboard import browser, wait_for  # noqa: F401 - the module's Chromium fixture
from tests.factories.people import deliver, generate, own_settings, session_metrics_truth, sessions_truth
from tests.factories.lake import T0
from tests.conftest import fresh_moto_server

KEY = "demo-key"
FIELDS = ("sessions", "users", "events", "bounces", "bounce_rate", "median_duration_s")


@pytest.fixture(scope="module")
def api_url():
    """A moto server with the generated lake, and the app served over it on a free port."""
    with fresh_moto_server() as url:
        yield from _served(url)


def _served(moto_url: str):
    from chalice.config import Config
    from chalice.local import LocalDevServer

    container = Container(own_settings(moto_url, "sessions-tab"))
    bootstrap(container.clients, shards=2)
    original, app_module.container = app_module.container, container
    data = generate()
    deliver(container, data.lines(data.first + data.late), 100)
    api_port = free_port()
    server = LocalDevServer(app_module.app, Config.create(chalice_stage="local", app_name="eventpipe"),
                            "127.0.0.1", api_port)
    thread = threading.Thread(target=server.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{api_port}", data
    finally:
        server.server.shutdown()
        server.server.server_close()
        app_module.container = original


def test_the_sessions_tab_shows_the_apis_figures_for_the_chosen_days(api_url, browser):  # noqa: F811
    """Rule: each card of the Sessions tab shows GET /v1/sessions's figure for the chosen UTC days,
    and those equal the pandas truth of the generated sessions."""
    url, data = api_url
    browser.get(f"{url}/dashboard#key={KEY}&view=sessions")
    wait_for(browser, "return window.__sessions", what="the sessions view's first answer")
    browser.execute_script("document.querySelector('#sessions-from').value = '2026-01-01';"
                           "document.querySelector('#sessions-to').value = '2026-01-01';"
                           "window.__sessions = null;")
    browser.find_element(By.CSS_SELECTOR, "#sessions-form button").click()
    shown = wait_for(browser, "return window.__sessions", what="the sessions of 2026-01-01")
    day = {"from": "2026-01-01T00:00:00.000Z", "to": "2026-01-02T00:00:00.000Z"}
    api = requests.get(f"{url}/v1/sessions", params=day, headers={"x-api-key": KEY}, timeout=10).json()
    assert shown == api
    truth = session_metrics_truth(sessions_truth(data.first + data.late), "demo", T0 - 12 * 3_600_000,
                                  T0 + 12 * 3_600_000)
    assert {k: api[k] for k in FIELDS} == truth and truth["sessions"] > 10
    cards = {c.get_attribute("data-field"): (json.loads(c.get_attribute("data-value")), c.find_element(By.TAG_NAME, "b").text)
             for c in browser.find_elements(By.CSS_SELECTOR, "#sessions .card")}
    assert {f: v for f, (v, _) in cards.items()} == {f: api[f] for f in FIELDS}
    assert cards["sessions"][1] == f"{api['sessions']:,}"
    assert cards["bounce_rate"][1] == f"{100 * api['bounce_rate']:.1f} %"
    assert cards["median_duration_s"][1] == f"{api['median_duration_s'] / 60:.1f} min"
    assert "2026-01-01 00:00:00 UTC" in browser.find_element(By.ID, "sessions").text
