"""`eventpipe run --data DIR`: the real local stack keeps its data across Ctrl-C and SIGKILL.

The tests run in file order on one data folder: start, send, Ctrl-C, start again
(restored), send more, SIGKILL, start again (the last periodic save), --fresh.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest
import requests

from chalicelib.apps.keys import AppStore
from chalicelib.runtime.clients import Clients
from chalicelib.runtime.settings import Settings
from chalicelib.stream.instants import ms_to_iso
from eventpipe.generate import generate_events, write_ndjson
from eventpipe.local.stack import free_port
from eventpipe.sender import send_file
from tests.conftest import ROOT

HOUR = 3_600_000
NOW = int(time.time() * 1000)
OLD_HOUR = (NOW // HOUR - 3) * HOUR  # windows long closed: finalized while the stack runs
FROM, TO = OLD_HOUR, NOW + HOUR
SQL = ("SELECT app_id, count(*) AS n, count(DISTINCT event_id) AS ids, min(event_time) AS first, "
       "max(event_time) AS last FROM events WHERE app_id IN ('demo', 'my-game') GROUP BY 1 ORDER BY 1")


class NotYet(Exception):
    """An answer the stack cannot give yet."""


class Run:
    """One `eventpipe run` process on free ports."""

    def __init__(self, data: Path, *flags: str, save_every: float = 0) -> None:
        self.ports = {"EVENTPIPE_MOTO_PORT": free_port(), "EVENTPIPE_HTTP_PORT": free_port(),
                      "EVENTPIPE_SEARCH_PORT": free_port()}
        self.env = {**os.environ, **{k: str(v) for k, v in self.ports.items()}, "EVENTPIPE_SCHEDULE_SECONDS": "2",
                    "EVENTPIPE_FINALIZE_GRACE_S": "0", "EVENTPIPE_FINALIZE_CLOSE_DELAY_S": "0", "PYTHONUNBUFFERED": "1"}
        self.env.pop("OPENSEARCH_URL", None)
        self.url = f"http://127.0.0.1:{self.ports['EVENTPIPE_HTTP_PORT']}"
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "eventpipe.cli", "run", "--no-demo", "--data", str(data),
             "--save-every", str(save_every), *flags],
            cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=self._read, daemon=True).start()
        self.wait_for("eventpipe local stack is up", 120)

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    def wait_for(self, text: str, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = [line for line in self.lines if text in line]
            if found:
                return found[0]
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"no {text!r} in the output:\n" + "".join(self.lines[-60:]))

    @property
    def banner(self) -> str:
        return self.wait_for("  data  ", 5)

    @property
    def settings(self) -> Settings:
        return Settings.from_env({**self.env, "EVENTPIPE_AWS_ENDPOINT_URL":
                                  f"http://127.0.0.1:{self.ports['EVENTPIPE_MOTO_PORT']}"})

    def ctrl_c(self) -> None:
        self.process.send_signal(signal.SIGINT)
        assert self.process.wait(timeout=120) == 0, "".join(self.lines[-40:])

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=30)
        time.sleep(1.0)  # the children die with it (PR_SET_PDEATHSIG)

    def get(self, path: str, key: str = "demo-key", **params) -> requests.Response:
        return requests.get(f"{self.url}{path}", params=params, headers={"x-api-key": key}, timeout=30)

    def get_json(self, path: str, key: str = "demo-key", **params) -> dict:
        response = self.get(path, key, **params)
        if response.status_code != 200:
            raise NotYet(f"GET {path}: {response.status_code} {response.text[:200]}")
        return response.json()

    def answers(self) -> dict:
        """What the user sees through the API: the metrics and search."""
        metrics = {}
        for key in ("demo-key", STATE["key"]):
            doc = self.get_json("/v1/metrics/event_counts", key, **{"from": ms_to_iso(FROM), "to": ms_to_iso(TO),
                                                                     "limit": 10000})
            metrics[key] = sorted((r["window_start"], r["event_type"], r["count"]) for r in doc["rows"])
        hits, cursor = [], None
        while True:
            params = {"from": ms_to_iso(FROM), "to": ms_to_iso(TO), "size": 500, **({"cursor": cursor} if cursor
                                                                                    else {})}
            doc = self.get_json("/v1/search", **params)
            hits += [(h["event_id"], h["event_type"], h["event_time"], h["user_id"]) for h in doc["hits"]]
            cursor = doc["next_cursor"]
            if not cursor:
                break
        return {"metrics": metrics, "search_total": doc["total"], "search": sorted(hits)}

    def sql(self) -> list[dict]:
        """`eventpipe query` (DuckDB over the lake in moto S3)."""
        sql = subprocess.run([sys.executable, "-m", "eventpipe.cli", "query", SQL, "--format", "json"], cwd=ROOT,
                             env=self.env, capture_output=True, text=True, timeout=120)
        assert sql.returncode == 0, sql.stderr
        return orjson.loads(sql.stdout)

    def settled(self, expected: dict[str, int], timeout_s: float = 120) -> dict:
        """Wait until every event was aggregated, indexed and archived; then every answer."""
        deadline = time.monotonic() + timeout_s
        want = {"demo-key": expected["demo"], STATE["key"]: expected["my-game"]}
        while True:
            try:
                answers = self.answers()
            except NotYet as exc:  # e.g. a 503 while the search server is busy: the answer is not there yet
                if time.monotonic() > deadline:
                    raise AssertionError(f"not settled: {exc}") from None
                time.sleep(1.0)
                continue
            counts = {key: sum(n for *_, n in rows) for key, rows in answers["metrics"].items()}
            if counts == want and answers["search_total"] == expected["demo"]:
                answers["sql"] = self.sql()
                if {row["app_id"]: row["ids"] for row in answers["sql"]} == expected:
                    return answers
            if time.monotonic() > deadline:
                raise AssertionError(f"not settled: {counts}, search {answers['search_total']}, want {expected}")
            time.sleep(1.0)


STATE: dict = {}


def send(run: Run, tmp_path: Path, key: str, events: int, seed: int, start_ms: int, duration_ms: int) -> None:
    path = tmp_path / f"events-{seed}.ndjson"
    write_ndjson(str(path), generate_events(events, seed=seed, start_ms=start_ms, duration_ms=duration_ms))
    summary = send_file(str(path), run.url, key, batch_size=500, use_gzip=True, concurrency=2, progress=False)
    assert (summary.accepted, summary.failed_requests) == (events, 0)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("persist") / "data"


def test_a_first_start_is_empty_and_ctrl_c_drains_the_stream_then_saves(data, tmp_path):
    run = Run(data)
    try:
        assert "started empty" in run.banner
        STATE["key"] = AppStore(Clients(run.settings).dynamodb, run.settings.apps_table).create_key("my-game")
        send(run, tmp_path, "demo-key", 1500, seed=1, start_ms=OLD_HOUR, duration_ms=HOUR)
        send(run, tmp_path, "demo-key", 500, seed=2, start_ms=NOW - 10 * 60_000, duration_ms=9 * 60_000)
        send(run, tmp_path, STATE["key"], 200, seed=3, start_ms=NOW - 5 * 60_000, duration_ms=4 * 60_000)
        STATE["expected"] = {"demo": 2000, "my-game": 200}
        STATE["before"] = run.settled(STATE["expected"])
    finally:
        run.ctrl_c()
    output = "".join(run.lines)
    assert "drained: every consumer is at the tip of every shard" in output
    assert re.search(r"data: .*: saved \d+ object\(s\)", output)
    assert (data / "snapshot.json").exists()


def test_after_a_restart_metrics_search_and_sql_answer_the_same_and_the_keys_work(data):
    run = Run(data, save_every=1)
    try:
        banner = run.banner
        assert re.search(r"restored \d+ object\(s\) \([\d.]+ MB\), \d+ item\(s\) \(2 app\(s\), 2 key\(s\)\)", banner)
        assert "search rebuilt from the archive in the background" in banner, banner
        assert "2200 distinct event(s)" in run.wait_for("search: caught up:", 120)
        assert run.settled(STATE["expected"]) == STATE["before"]
        for key in ("demo-key", STATE["key"]):
            response = requests.post(f"{run.url}/v1/events", timeout=10, headers={"x-api-key": key}, json={
                "events": [{"event_type": "level_up", "event_id": f"after-{key[:4]}", "event_time": ms_to_iso(NOW)}]})
            assert response.status_code == 200 and response.json()["accepted"] == 1
        STATE["expected"] = {"demo": 2001, "my-game": 201}
        STATE["before"] = run.settled(STATE["expected"])
        saved_at = time.time()
        deadline = time.monotonic() + 30
        while orjson.loads((data / "snapshot.json").read_bytes())["saved_at_ms"] < saved_at * 1000 + 1500:
            assert time.monotonic() < deadline, "no periodic save"
            time.sleep(0.5)
    finally:
        run.kill()


def test_after_a_sigkill_the_last_periodic_save_is_restored(data):
    run = Run(data)
    try:
        assert "2202 distinct event(s)" in run.wait_for("search: caught up:", 120)
        assert run.settled(STATE["expected"]) == STATE["before"]
    finally:
        run.ctrl_c()


def test_fresh_starts_empty(data):
    run = Run(data, "--fresh")
    try:
        assert "started empty (--fresh)" in run.banner
        assert run.get("/v1/metrics", STATE["key"]).status_code == 401
        assert run.get("/v1/search", **{"from": ms_to_iso(FROM), "to": ms_to_iso(TO)}).json()["total"] == 0
    finally:
        run.ctrl_c()
