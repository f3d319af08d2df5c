"""`eventpipe run --data DIR` restarted over 20,000 archived events: the API opens before search has caught up.

The search indices are not saved; the stack rebuilds them by replaying the raw archive in the
background, with progress lines, while the API already answers.
"""

from __future__ import annotations

import re
import time

import requests

from chalicelib.stream.instants import ms_to_iso
from tests.e2e.test_persistence_e2e import Run, send

EVENTS = 20_000
NOW = int(time.time() * 1000)
SUMMARY = re.compile(r"replay: \d+ hour\(s\)")  # the replay's closing summary (ReplaySummary.describe)


def search_total(run: Run) -> int | None:
    response = run.get("/v1/search", **{"from": ms_to_iso(NOW - 2 * 3_600_000), "to": ms_to_iso(NOW + 3_600_000),
                                        "size": 1})
    return response.json()["total"] if response.status_code == 200 else None


def test_after_a_restart_health_answers_before_the_search_replay_is_done(tmp_path):
    """Health answers 200 while the replay of the archive into search is still running (announced, not yet
    summed up), no traceback is printed for it, and search then holds every event again."""
    data = tmp_path / "data"
    run = Run(data)
    try:
        send(run, tmp_path, "demo-key", EVENTS, seed=5, start_ms=NOW - 50 * 60_000, duration_ms=40 * 60_000)
    finally:
        run.ctrl_c()  # drains the stream: the archive holds every event
    run = Run(data)
    try:
        deadline = time.monotonic() + 60
        while requests.get(f"{run.url}/v1/health", timeout=30).status_code != 200:  # 503: search busy, a moment
            assert time.monotonic() < deadline, "".join(run.lines[-30:])
            time.sleep(0.2)
        before = "".join(run.lines)
        assert "search: rebuilding the indices from the archive in the background" in before, before
        assert not SUMMARY.search(before), before  # the replay was not finished when health answered
        done = run.wait_for("search: caught up:", 600)
        assert f"{EVENTS} distinct event(s)" in done and " 0 not indexed" in done, done
        assert search_total(run) == EVENTS
    finally:
        run.ctrl_c()
    output = "".join(run.lines)
    assert "Traceback" not in output, output[-3000:]
