"""The short soak (bench/soak.py --duration 60) on the real local stack: resource rules, not timings.

The rules are the soak's own (bench/soak.py): after the warm-up, the API's and the runner's RSS
grows less than 10 %, no consumer's lag grows by more than the records of 10 s, and every
request is answered 200. The full 10-minute run is `bench/soak.py` with no arguments.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.e2e


def test_short_soak_keeps_pipeline_rss_and_consumer_lag_bounded(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "soak.py"), "--duration", "60", "--warmup", "20",
                           "--window", "20", "--schedule-every", "10", "--out", str(tmp_path)],
                          cwd=str(ROOT), capture_output=True, text=True, timeout=240)
    print(done.stdout)  # the soak's summary, in the test's output
    summary = json.loads((tmp_path / "soak.json").read_text())["summary"]
    processes, lag = summary["processes"], summary["lag"]["consumers"]
    assert {name: processes[name]["growth"] < 0.10 for name in ("api", "runner")} == {"api": True, "runner": True}
    assert all(v["growth_records"] <= summary["lag"]["limit_growth_records"] for v in lag.values()), lag
    assert summary["errors"] == 0, summary["first_errors"]
    assert summary["events_acknowledged"] == summary["events_sent"] > 0
    assert done.returncode == 0, done.stdout + done.stderr
