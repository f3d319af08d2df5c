"""GET /v1/search keeps answering while the local stack indexes a large backlog.

The embedded search server (osmem-server) serves one request at a time: a search waits for the
bulk requests ahead of it. The runner is stopped while 20,000 events are sent, so the index
consumer meets them all at once when it comes back, as after a large `eventpipe send`.
"""

from __future__ import annotations

import time

import pytest
import requests

from chalicelib.stream.instants import ms_to_iso
from eventpipe.generate import generate_events, write_ndjson
from eventpipe.local.stack import Stack, StackConfig, free_port
from eventpipe.sender import send_file
from tests.conftest import ROOT

EVENTS = 20_000


@pytest.fixture(scope="module")
def stack():
    config = StackConfig(moto_port=free_port(), http_port=free_port(), search_port=free_port(),
                         project_dir=str(ROOT), quiet=True)
    with Stack(config) as running:
        yield running


def test_searches_answer_while_a_backlog_of_events_is_indexed(stack, tmp_path):
    """Every search made while the indexer works through 20,000 events answers 200 (never 503), and at
    least one of them came before the indexer was done (the reads did overlap the indexing)."""
    now = int(time.time() * 1000)
    path = tmp_path / "events.ndjson"
    write_ndjson(str(path), generate_events(EVENTS, seed=11, start_ms=now - 30 * 60_000, duration_ms=20 * 60_000))
    stack.kill("runner", 15)
    summary = send_file(str(path), stack.api_url, "demo-key", batch_size=500, concurrency=2, progress=False)
    assert (summary.accepted, summary.failed_requests) == (EVENTS, 0)
    stack.respawn("runner")

    params = {"from": ms_to_iso(now - 3_600_000), "to": ms_to_iso(now + 60_000), "size": 1}
    answers: list[int] = []  # the totals, as the indexer goes
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        response = requests.get(f"{stack.api_url}/v1/search", params=params, headers={"x-api-key": "demo-key"},
                                timeout=120)
        assert response.status_code == 200, (f"search {len(answers) + 1} answered {response.status_code} "
                                             f"{response.text[:200]} (totals before: {answers[-5:]})")
        answers.append(response.json()["total"])
        if answers[-1] == EVENTS:
            break
        time.sleep(0.5)
    assert answers[-1] == EVENTS, answers[-5:]
    assert any(total < EVENTS for total in answers), "no search was made while indexing"
