"""One real local stack for the ledger suite, with fault proxies in front of moto and the search server.

The API and the runner reach moto and the search server only through the proxies
(``StackConfig.child_aws_endpoint_url`` / ``child_opensearch_url``); the suite itself reads the
stores directly. The runner's schedules are pushed out of the way: the suite drives
finalization itself (:func:`finalize_all`), so each case decides when and how often it runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from chalicelib.apps.keys import AppStore
from chalicelib.lake.finalizer import Finalizer
from chalicelib.runtime.container import Container
from tests.factories.lake import raw_table_of
from chalicelib.lake.state import StateStore
from chalicelib.processing import load_metrics
from chalicelib.runtime.clients import Clients
from eventpipe.local.faultproxy import FaultProxy
from eventpipe.local.stack import Stack, StackConfig, free_port
from tests.conftest import ROOT
from tests.ledger.ledger import dead_letter_keys, wait_caught_up

RESULTS: list[dict] = []
COLUMNS = ("case", "acknowledged", "raw_distinct", "raw_duplicate_rows", "finalized", "search", "lost",
           "double_counted", "notes")


class LedgerStack:
    """The running stack, its proxies and direct clients, and the suite's helpers."""

    def __init__(self, stack: Stack, aws_proxy: FaultProxy, search_proxy: FaultProxy) -> None:
        self.stack, self.aws_proxy, self.search_proxy = stack, aws_proxy, search_proxy
        self.settings = stack.settings  # direct to moto
        self.clients = Clients(self.settings)
        self.bucket = self.settings.bucket
        self.search_url = stack.search_url
        self.api_url = stack.api_url
        self.proxied_settings = replace(self.settings, aws_endpoint_url=aws_proxy.url)
        self.redriven: dict[str, int] = {}

    def new_app(self, app_id: str) -> str:
        key = f"ledger-{app_id}-key"
        AppStore(self.clients.dynamodb, self.settings.apps_table).create_key(app_id, key)
        return key

    def finalizer(self, proxied: bool = False, endpoint_url: str | None = None) -> Finalizer:
        """A finalizer as the schedule builds it (grace and close delay 0), direct to moto, through
        the suite's fault proxy, or through ``endpoint_url`` with a long read timeout (a stalled call)."""
        clients = Clients(self.proxied_settings) if proxied else self.clients
        s3, dynamodb = clients.s3, clients.dynamodb
        if endpoint_url is not None:
            config = Config(read_timeout=180, retries={"max_attempts": 1})
            s3 = boto3.client("s3", endpoint_url=endpoint_url, region_name=self.settings.region, config=config)
            dynamodb = boto3.client("dynamodb", endpoint_url=endpoint_url, region_name=self.settings.region)
        return Finalizer(s3, self.bucket, StateStore(dynamodb, self.settings.state_table),
                         load_metrics(), lambda: int(time.time() * 1000), grace_ms=0, close_delay_ms=0,
                         raw=raw_table_of(clients, s3 if endpoint_url is None else None))

    def commit(self, proxied: bool = False) -> dict:
        """The ``commit_events`` schedule once (the suite's stack runs no schedules by itself),
        direct to moto or through the suite's fault proxy."""
        return Container(self.proxied_settings if proxied else self.settings).raw_table_job.run()

    def finalize_all(self, max_runs: int = 6) -> int:
        """Commit the staged archive, then run the finalizer until a run finds nothing to finalize;
        returns the runs it took."""
        self.commit()
        for run in range(1, max_runs + 1):
            reports = self.finalizer().run()
            if not any(r.action in ("finalized", "waiting-for-archive") for r in reports):
                return run
            time.sleep(0.5)
        raise AssertionError(f"finalization still busy after {max_runs} runs: {reports}")

    def settle(self) -> str:
        """Wait for the consumers; replay dead letters if any (``eventpipe redrive``); finalize."""
        wait_caught_up(self.clients, self.settings)
        notes = []
        letters = dead_letter_keys(self.clients, self.bucket)
        if letters:
            env = {**os.environ, "EVENTPIPE_AWS_ENDPOINT_URL": self.stack.moto_url,
                   "OPENSEARCH_URL": self.search_url}
            done = subprocess.run([sys.executable, "-m", "eventpipe.cli", "redrive"], cwd=str(ROOT), env=env,
                                  capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, done.stdout + done.stderr
            notes.append(f"redrive: {len(letters)} dead-letter record(s) replayed")
        runs = self.finalize_all()
        return "; ".join(notes + [f"finalizer runs to settle: {runs}"])

    def restart_runner(self, sig: int) -> None:
        self.stack.kill("runner", sig)
        self.stack.respawn("runner")


@pytest.fixture(scope="package")
def ledger_stack():
    moto_port, search_port = free_port(), free_port()
    aws_proxy = FaultProxy(f"http://127.0.0.1:{moto_port}", seed=12).start()
    search_proxy = FaultProxy(f"http://127.0.0.1:{search_port}", seed=13).start()
    config = StackConfig(moto_port=moto_port, http_port=free_port(), search_port=search_port,
                         project_dir=str(ROOT), quiet=os.environ.get("EVENTPIPE_LEDGER_VERBOSE") != "1",
                         child_aws_endpoint_url=aws_proxy.url, child_opensearch_url=search_proxy.url,
                         extra_env={"EVENTPIPE_SCHEDULE_SECONDS": "86400", "EVENTPIPE_FINALIZE_GRACE_S": "0",
                                    "EVENTPIPE_FINALIZE_CLOSE_DELAY_S": "0"})
    try:
        with Stack(config) as stack:
            yield LedgerStack(stack, aws_proxy, search_proxy)
    finally:
        aws_proxy.stop()
        search_proxy.stop()


@pytest.fixture
def record_case():
    def record(result) -> None:
        RESULTS.append(result.to_dict())
    return record


def table(rows: list[dict]) -> list[str]:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in COLUMNS}
    lines = [" | ".join(c.ljust(widths[c]) for c in COLUMNS), "-+-".join("-" * widths[c] for c in COLUMNS)]
    lines += [" | ".join(str(r.get(c, "")).ljust(widths[c]) for c in COLUMNS) for r in rows]
    return lines


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not RESULTS:
        return
    terminalreporter.section("fault-injection ledger")
    for line in table(RESULTS):
        terminalreporter.write_line(line)
    out = Path(ROOT) / "build" / "ledger.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(RESULTS, indent=2))
    terminalreporter.write_line(f"(written to {out.relative_to(ROOT)})")
