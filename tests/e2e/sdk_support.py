"""What the SDK end-to-end tests share: the pinned JavaScript SDKs (scripts/js-sdks, installed by its
setup script), a fresh app key per test, and the lake's view of an app's events (``eventpipe query``)."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections import Counter
from typing import Callable

import orjson
import requests

from chalicelib.apps.keys import AppStore
from chalicelib.runtime.clients import Clients
from tests.conftest import ROOT

JS_SDKS = ROOT / "scripts" / "js-sdks"


def install_js_sdks() -> None:
    """npm ci and the browser page's bundle, when missing or stale (scripts/js-sdks/setup.sh)."""
    done = subprocess.run(["bash", str(JS_SDKS / "setup.sh")], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def new_app(stack, prefix: str) -> tuple[str, str]:
    """(app id, key) of an app of its own, so the test counts only its own events."""
    app_id = f"{prefix}-{uuid.uuid4().hex[:10]}"
    return app_id, AppStore(Clients(stack.settings).dynamodb, stack.settings.apps_table).create_key(app_id)


def query(stack, key: str, sql: str) -> list[dict]:
    done = subprocess.run([sys.executable, "-m", "eventpipe.cli", "query", "--key", key, "--format", "json", sql],
                          cwd=ROOT, env=stack.env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return orjson.loads(done.stdout)


def lake_copies(stack, key: str) -> Counter:
    """event_id -> how many rows the raw ``events`` table holds for it (every delivered copy), for the key's app."""
    rows = query(stack, key, "SELECT event_id, count(*) AS copies FROM events WHERE app_id = :app_id "
                             "GROUP BY event_id")
    return Counter({r["event_id"]: r["copies"] for r in rows})


def wait_for_lake(stack, key: str, expected: set[str], timeout_s: float = 90) -> Counter:
    """The lake's copies once every expected id is there (or the timeout), read again after a pause so that a
    late duplicate would be seen too."""
    deadline = time.monotonic() + timeout_s
    while True:
        copies = lake_copies(stack, key)
        if set(copies) >= expected or time.monotonic() > deadline:
            break
        time.sleep(1)
    time.sleep(4)  # longer than the SDKs' flush intervals: a second copy sent late would be in the next read
    return lake_copies(stack, key)


def search_hits(stack, key: str, wanted: int, timeout_s: float = 30, **params) -> list[dict]:
    """Every search hit of the key's app (last 24 h), once at least ``wanted`` are indexed."""
    deadline = time.monotonic() + timeout_s
    while True:
        response = requests.get(f"{stack.api_url}/v1/search", headers={"x-api-key": key}, timeout=30,
                                params={"size": 500, **params})
        assert response.status_code == 200, response.text
        hits = response.json()["hits"]
        if len(hits) >= wanted or time.monotonic() > deadline:
            return hits
        time.sleep(0.5)


def by_type(hits: list[dict], pick: Callable[[dict], object] = lambda h: h) -> dict[str, list]:
    out: dict[str, list] = {}
    for hit in hits:
        out.setdefault(hit["event_type"], []).append(pick(hit))
    return out
