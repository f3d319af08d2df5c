"""Contract fuzzing: schemathesis runs against the live local stack, driven by the document the API
serves (GET /v1/openapi.json), over every route, with valid and invalid inputs (its coverage phase
walks each schema's boundaries and violations; its fuzzing phase draws positive and negative cases),
once with an app key and once without. Every response must be free of 5xx and conform to the
document: a documented status code, a documented content type, the documented headers (Retry-After
on 429) and a body matching the response schema.

The seed and the example counts are fixed here; the test asserts the runs made at least
``MIN_TEST_CASES`` requests in all. It runs on its own stack, so its events and bad rows never meet
the other end-to-end tests'.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from chalicelib.apps.keys import AppStore
from chalicelib.runtime.clients import Clients
from eventpipe.local.stack import Stack, StackConfig, free_port
from tests.conftest import ROOT

SEED = 20261201
MIN_TEST_CASES = 5000
FUZZ_APP, FUZZ_KEY = "contract-fuzz", "contract-fuzz-key"
CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_headers_conformance", "response_schema_conformance")
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


def config(max_examples: int) -> str:
    """A schemathesis config: the checks above only; GET /v1/pipeline (seconds per call: it lists and reads
    every bad-rows object of the range) gets few fuzzed cases and no coverage sweep."""
    checks = "\n".join(f"{name}.enabled = true" for name in CHECKS)
    return (f"request-timeout = 120\n\n[checks]\nenabled = false\n{checks}\n\n"
            f"[generation]\nmax-examples = {max_examples}\n\n"
            '[[operations]]\ninclude-path = "/v1/pipeline"\ngeneration.max-examples = 2\n'
            "phases.coverage.enabled = false\n")


@pytest.fixture(scope="module")
def fuzz_stack(tmp_path_factory):
    config_ = StackConfig(moto_port=free_port(), http_port=free_port(), search_port=free_port(),
                          project_dir=str(ROOT), quiet=True, with_runner=False)  # the API is what is fuzzed
    with Stack(config_) as running:
        AppStore(Clients(running.settings).dynamodb, running.settings.apps_table).create_key(FUZZ_APP, FUZZ_KEY)
        yield running


def run_schemathesis(stack, tmp_path: Path, name: str, max_examples: int, phases: str,
                     headers: tuple[str, ...]) -> dict:
    (tmp_path / f"{name}.toml").write_text(config(max_examples))
    report = tmp_path / f"{name}.json"
    command = [str(SCHEMATHESIS), "--config-file", str(tmp_path / f"{name}.toml"), "run",
               f"{stack.api_url}/v1/openapi.json", "--seed", str(SEED), "--workers", "1", "--phases", phases,
               "--report", "json", "--report-json-path", str(report), "--no-color"]
    for header in headers:
        command += ["-H", header]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=3000)
    assert report.exists(), result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads(report.read_text())
    tail = result.stdout[-6000:]
    assert summary["failures"] == [] and summary["errors"] == [], tail
    assert summary["exit_code"] == 0 and result.returncode == 0, tail
    assert summary["operations"]["tested"] == summary["operations"]["total"] >= 26, summary["operations"]
    print(f"schemathesis {name}: {summary['test_cases']['generated']} test cases, "
          f"{summary['running_time']:.0f} s", file=sys.stderr)
    return summary


@pytest.mark.timeout(3600)  # minutes, not seconds: thousands of requests (see the README for the measured time)
def test_every_response_to_thousands_of_generated_requests_conforms_and_none_is_a_5xx(fuzz_stack, tmp_path):
    with_key = run_schemathesis(fuzz_stack, tmp_path, "with-key", 15, "coverage,fuzzing,stateful",
                                (f"x-api-key: {FUZZ_KEY}",))
    # Without a key every route with one stops at 401 (schemathesis sends no key, or makes one up): a short run.
    without_key = run_schemathesis(fuzz_stack, tmp_path, "without-key", 10, "fuzzing", ())
    total = with_key["test_cases"]["generated"] + without_key["test_cases"]["generated"]
    assert total >= MIN_TEST_CASES, (with_key["test_cases"], without_key["test_cases"])
    assert fuzz_stack.check_children() is None
