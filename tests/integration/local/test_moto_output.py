"""moto's access log stays out of the local stack's output (eventpipe/local/moto_server.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import boto3
import pytest
from botocore.exceptions import ClientError

from eventpipe.local.stack import free_port, wait_http
from tests.conftest import ROOT

#: werkzeug's request line, with or without its colour codes: "POST / HTTP/1.1" 400 -
REQUEST_LINE = re.compile(r'"(?:\x1b\[[0-9;]*m)*(GET|POST|PUT|HEAD|DELETE) \S+ HTTP/1\.[01]')


def moto_output(verbose: bool) -> str:
    """Run the stack's moto launcher, make calls answered 200, 400 and 404, and return what it printed."""
    port = free_port()
    env = {**os.environ, "EVENTPIPE_VERBOSE": "1" if verbose else "0", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    process = subprocess.Popen([sys.executable, "-m", "eventpipe.local.moto_server", "-H", "127.0.0.1", "-p",
                                str(port)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/moto-api/", accept=(200,))
        s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
        dynamodb = boto3.client("dynamodb", endpoint_url=url, region_name="us-east-1",
                                aws_access_key_id="testing", aws_secret_access_key="testing")
        s3.list_buckets()  # 200
        with pytest.raises(ClientError):
            dynamodb.describe_table(TableName="missing")  # 400, red in werkzeug's colours
        with pytest.raises(ClientError):
            s3.get_object(Bucket="missing", Key="k")  # 404, yellow
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=30)
    return out.decode(errors="replace")


def test_moto_prints_no_access_log_line_unless_verbose():
    """No request line of moto (coloured 4xx ones included) reaches the output; EVENTPIPE_VERBOSE=1 shows them."""
    quiet = moto_output(verbose=False)
    assert REQUEST_LINE.findall(quiet) == [], quiet
    verbose = moto_output(verbose=True)
    assert {"GET", "POST"} <= set(REQUEST_LINE.findall(verbose)), verbose  # the pattern does match moto's lines
