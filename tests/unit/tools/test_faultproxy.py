"""The fault proxy: forwards everything, except what a rule picks (set by a control call)."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from eventpipe.local.faultproxy import FaultProxy, port_is_closed

S3_AUTH = "AWS4-HMAC-SHA256 Credential=AK/20261201/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=x"


class Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        body = f"upstream {self.command} {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_PUT = do_GET


@pytest.fixture
def proxy():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with FaultProxy(f"http://127.0.0.1:{server.server_address[1]}") as running:
        yield running
    server.shutdown()


def call(url, method="GET", body=None, headers=None):
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_requests_without_a_matching_rule_reach_the_upstream_unchanged(proxy):
    assert call(f"{proxy.url}/bucket/key?x=1") == (200, b"upstream GET /bucket/key?x=1")


def test_a_rule_set_by_the_control_call_answers_s3_errors_in_turn_then_runs_out(proxy):
    rules = [{"action": "s3_error", "service": "s3", "method": "PUT", "codes": ["InternalError", "SlowDown"],
              "limit": 2}]
    assert call(f"{proxy.url}/__faults__/rules", "POST", json.dumps(rules).encode())[0] == 200
    answers = [call(f"{proxy.url}/bucket/k", "PUT", b"x", {"Authorization": S3_AUTH}) for _ in range(3)]
    assert [status for status, _ in answers] == [500, 503, 200]
    assert b"<Code>InternalError</Code>" in answers[0][1] and b"<Code>SlowDown</Code>" in answers[1][1]
    assert call(f"{proxy.url}/bucket/k")[0] == 200  # GET: not matched
    stats = json.loads(call(f"{proxy.url}/__faults__/stats")[1])
    assert (stats["injected"], stats["forwarded"]) == (2, 2)


def test_paused_proxy_refuses_connections_until_resumed(proxy):
    proxy.pause()
    assert port_is_closed("127.0.0.1", proxy.port)
    proxy.resume()
    assert call(f"{proxy.url}/x")[0] == 200
