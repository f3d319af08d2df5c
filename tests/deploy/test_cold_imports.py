"""Ingest stays light: importing app.py and serving POST /v1/events loads no pyarrow, numpy or duckdb.

Checked in a fresh interpreter (this test process has long imported them), in-process
with chalice.test.Client on moto; tests/deploy/test_artifacts_run.py checks the same
from the artifacts.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT

HEAVY = ("pyarrow", "numpy", "duckdb", "pandas")

SCRIPT = r"""
import json, os, sys
for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
    os.environ[name] = "testing"
os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
os.environ.pop("EVENTPIPE_AWS_ENDPOINT_URL", None)
from moto import mock_aws
from chalice.test import Client
HEAVY = %r
with mock_aws():
    before = sorted(set(HEAVY) & set(sys.modules))
    import app
    after_import = sorted(set(HEAVY) & set(sys.modules))
    from chalicelib.apps.keys import AppStore
    container = app.container
    container.clients.kinesis.create_stream(StreamName=container.settings.stream_name, ShardCount=1)
    container.clients.dynamodb.create_table(
        TableName=container.settings.apps_table, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "key_hash", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "key_hash", "KeyType": "HASH"}])
    container.clients.dynamodb.create_table(  # the suppression list (privacy regulations) lives here
        TableName=container.settings.state_table, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    AppStore(container.clients.dynamodb, container.settings.apps_table).create_key("demo", "demo-key")
    with Client(app.app) as client:
        response = client.http.post("/v1/events", headers={"x-api-key": "demo-key", "content-type": "application/json"},
                                    body=json.dumps({"events": [{"event_type": "x", "event_time": 1767268800000}]}))
    print(json.dumps({"before": before, "after_import": after_import, "status": response.status_code,
                      "body": json.loads(response.body), "after_post": sorted(set(HEAVY) & set(sys.modules))}))
"""


def test_importing_app_and_posting_events_loads_no_pyarrow_numpy_or_duckdb():
    done = subprocess.run([sys.executable, "-c", SCRIPT % (HEAVY,)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["status"] == 200 and report["body"]["accepted"] == 1, report  # the POST really ran
    assert report["before"] == [] and report["after_import"] == [] and report["after_post"] == [], report
