"""A fault-injecting HTTP reverse proxy for the local stack (moto server, the search server).

Point the API's and the runner's ``EVENTPIPE_AWS_ENDPOINT_URL`` (or ``OPENSEARCH_URL``) at it
and the processes run unmodified: every request is forwarded to the upstream, except those a
rule picks, which get the error a real service answers instead:

* S3: the XML error body (``InternalError`` 500, ``ServiceUnavailable`` / ``SlowDown`` 503);
* Kinesis and DynamoDB (JSON protocol): ``{"__type": "ProvisionedThroughputExceededException"}``
  with status 400 for a whole call, or, for ``PutRecords``, a *partial* failure: the proxy
  forwards only some of the records and answers the others with the per-record
  ``ErrorCode``, as Kinesis does when a shard is over its limit (moto never fails a record);
* the search server: 429 ``es_rejected_execution_exception``, or "down": the listening socket
  is closed (connection refused) until :meth:`FaultProxy.resume`.

A rule may also run a callback before forwarding (``hook``): the ledger suite kills the runner
at the very moment it writes a batch's output, i.e. mid-batch.

Rules are set from Python (:meth:`FaultProxy.set_rules`) or by a control call,
``POST /__faults__/rules`` with a JSON list of rules (``DELETE`` clears them, ``GET
/__faults__/stats`` counts what was forwarded and injected).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import random
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import urlsplit

CONTROL = "/__faults__/"
_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "trailer", "upgrade",
                "content-length", "expect"}
_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request")
S3_ERRORS = {"InternalError": (500, "We encountered an internal error. Please try again."),
             "ServiceUnavailable": (503, "Service is unable to handle request."),
             "SlowDown": (503, "Please reduce your request rate.")}


@dataclass(frozen=True)
class Request:
    """What a rule can match on: ``service`` is the SigV4 scope's (s3, kinesis, dynamodb) or
    "http" for an unsigned request (the search server); ``operation`` is the JSON target's
    action (``PutRecords``) or, for S3 and plain HTTP, the method."""

    method: str
    path: str
    service: str
    operation: str


@dataclass
class Rule:
    """One fault. ``action``: ``s3_error`` (``code`` one of :data:`S3_ERRORS`, or ``codes`` to
    rotate), ``json_error`` (status + ``code`` as ``__type``), ``put_records_partial`` (each
    record fails with probability ``record_probability``), ``http_error`` (status + body),
    ``hook`` (calls ``callback(request)`` then forwards), ``delay`` (sleeps ``delay_s``, forwards).

    The rule applies to matching requests with ``probability``, at most ``limit`` times
    (None: unlimited) and until ``until`` (``time.monotonic()``; None: until cleared)."""

    action: str
    service: str | None = None
    operation: str | None = None
    method: str | None = None
    path: str | None = None  # a regular expression searched in the path (with the query)
    probability: float = 1.0
    limit: int | None = None
    until: float | None = None
    code: str = "InternalError"
    codes: tuple[str, ...] = ()
    status: int = 500
    body: str = ""
    record_probability: float = 0.5
    #: put_records_partial: only records routed to shard ``throttled_shard`` of ``shard_count``
    #: (by the partition key's MD5, as Kinesis routes) fail: a hot shard over its limit.
    shard_count: int = 0
    throttled_shard: int = 0
    delay_s: float = 0.0
    callback: Callable[[Request], None] | None = None
    hits: int = 0
    _path_re: re.Pattern | None = field(default=None, repr=False)

    def matches(self, request: Request) -> bool:
        if self.until is not None and time.monotonic() >= self.until:
            return False
        if self.limit is not None and self.hits >= self.limit:
            return False
        for name in ("service", "operation", "method"):
            wanted = getattr(self, name)
            if wanted is not None and wanted != getattr(request, name):
                return False
        if self.path is not None:
            self._path_re = self._path_re or re.compile(self.path)
            if not self._path_re.search(request.path):
                return False
        return True

    @classmethod
    def from_json(cls, doc: dict, now: float) -> "Rule":
        doc = dict(doc)
        if "for_s" in doc:
            doc["until"] = now + float(doc.pop("for_s"))
        if "codes" in doc:
            doc["codes"] = tuple(doc["codes"])
        return cls(**doc)


class FaultProxy:
    """A threaded reverse proxy to ``upstream`` (``http://host:port``) on ``port`` (0: any free one)."""

    def __init__(self, upstream: str, port: int = 0, host: str = "127.0.0.1", seed: int = 0) -> None:
        parts = urlsplit(upstream)
        self.upstream_host, self.upstream_port = parts.hostname, parts.port or 80
        self.host, self.port = host, port
        self._rules: list[Rule] = []
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self._local = threading.local()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.stats: dict[str, int] = {"forwarded": 0, "injected": 0, "upstream_errors": 0}

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "FaultProxy":
        proxy = self

        class Handler(_Handler):
            owner = proxy

        self._server = _Server((self.host, self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        daemon=True, name=f"faultproxy-{self.port}")
        self._thread.start()
        return self

    def pause(self) -> None:
        """Stop listening: clients get "connection refused" until :meth:`resume`."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def resume(self) -> None:
        if self._server is None:
            self.start()

    def stop(self) -> None:
        self.pause()

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ rules
    def set_rules(self, rules: list[Rule]) -> None:
        with self._lock:
            self._rules = list(rules)

    def add_rule(self, rule: Rule) -> Rule:
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear(self) -> None:
        self.set_rules([])

    def _pick(self, request: Request) -> Rule | None:
        with self._lock:
            for rule in self._rules:
                if rule.matches(request) and (rule.probability >= 1 or self._random.random() < rule.probability):
                    rule.hits += 1
                    return rule
        return None

    def _chance(self, probability: float) -> bool:
        with self._lock:
            return self._random.random() < probability

    # ------------------------------------------------------------------ forwarding
    def forward(self, method: str, path: str, headers: list[tuple[str, str]], body: bytes
                ) -> tuple[int, list[tuple[str, str]], bytes]:
        for attempt in range(2):  # a kept-alive upstream connection may have been closed: retry once
            connection = getattr(self._local, "connection", None)
            if connection is None:
                connection = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=60)
                self._local.connection = connection
            try:
                connection.request(method, path, body=body or None, headers=dict(headers))
                response = connection.getresponse()
                data = response.read()
                with self._lock:
                    self.stats["forwarded"] += 1
                return response.status, response.getheaders(), data
            except (OSError, http.client.HTTPException):
                connection.close()
                self._local.connection = None
                if attempt:
                    with self._lock:
                        self.stats["upstream_errors"] += 1
                    raise
        raise AssertionError("unreachable")

    def count(self, name: str) -> None:
        with self._lock:
            self.stats[name] = self.stats.get(name, 0) + 1


def classify(method: str, path: str, headers) -> Request:
    target = headers.get("X-Amz-Target") or ""
    match = _SCOPE.search(headers.get("Authorization") or "")
    service = match.group(1) if match else "http"
    operation = target.rsplit(".", 1)[-1] if target else method
    return Request(method, path, service, operation)


def on_shard(rule: Rule, partition_key: str) -> bool:
    if rule.shard_count <= 0:
        return True
    hash_key = int(hashlib.md5(partition_key.encode()).hexdigest(), 16)
    return hash_key * rule.shard_count >> 128 == rule.throttled_shard


def s3_error_body(code: str, path: str) -> bytes:
    message = S3_ERRORS.get(code, (500, "injected"))[1]
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
            f"<Resource>{path}</Resource><RequestId>{uuid.uuid4().hex[:16].upper()}</RequestId></Error>").encode()


class _Server(ThreadingHTTPServer):
    allow_reuse_address = True

    def handle_error(self, request, client_address) -> None:
        import sys
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client killed mid-request: expected here
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    owner: FaultProxy
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two sends: without it each answer waits ~40 ms for an ACK

    def log_message(self, *args) -> None:  # quiet
        pass

    def _body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():  # trailers
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in _HOP_HEADERS:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self) -> None:
        body = self._body()
        if self.path.startswith(CONTROL):
            return self._control(body)
        request = classify(self.command, self.path, self.headers)
        headers = [(k, v) for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS]
        rule = self.owner._pick(request)
        if rule is not None and rule.action not in ("hook", "delay", "put_records_partial"):
            self.owner.count("injected")
            return self._reply(*self._error(rule, request))
        if rule is not None and rule.action == "hook" and rule.callback is not None:
            rule.callback(request)
        if rule is not None and rule.action == "delay":
            time.sleep(rule.delay_s)
        if rule is not None and rule.action == "put_records_partial":
            return self._reply(*self._partial_put_records(rule, headers, body))
        try:
            status, upstream_headers, data = self.owner.forward(self.command, self.path, headers, body)
        except (OSError, http.client.HTTPException):
            return self._reply(502, [("Content-Type", "text/plain")], b"upstream unreachable")
        self._reply(status, upstream_headers, data)

    def _error(self, rule: Rule, request: Request) -> tuple[int, list[tuple[str, str]], bytes]:
        if rule.action == "s3_error":
            code = rule.codes[(rule.hits - 1) % len(rule.codes)] if rule.codes else rule.code
            return S3_ERRORS.get(code, (500, ""))[0], [("Content-Type", "application/xml")], \
                s3_error_body(code, request.path)
        if rule.action == "json_error":
            doc = {"__type": rule.code, "message": rule.body or "Rate exceeded (injected)"}
            return rule.status, [("Content-Type", "application/x-amz-json-1.1"),
                                 ("x-amzn-RequestId", str(uuid.uuid4()))], json.dumps(doc).encode()
        return rule.status, [("Content-Type", "application/json")], rule.body.encode()

    def _partial_put_records(self, rule: Rule, headers, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        """Forward some records of a PutRecords call; answer the others as throttled."""
        doc = json.loads(body)
        records = doc["Records"]
        failed = {i for i, r in enumerate(records)
                  if on_shard(rule, r["PartitionKey"]) and self.owner._chance(rule.record_probability)}
        if len(failed) == len(records):
            results: list[dict] = []
        else:
            kept = dict(doc, Records=[r for i, r in enumerate(records) if i not in failed])
            status, upstream_headers, data = self.owner.forward(self.command, self.path, headers,
                                                                json.dumps(kept).encode())
            if status != 200:
                return status, upstream_headers, data
            results = json.loads(data)["Records"]
        merged, stored = [], iter(results)
        for i in range(len(records)):
            if i in failed:
                merged.append({"ErrorCode": "ProvisionedThroughputExceededException",
                               "ErrorMessage": "Rate exceeded for shard (injected)"})
            else:
                merged.append(next(stored))
        if failed:
            self.owner.count("injected")
        answer = {"FailedRecordCount": len(failed), "Records": merged}
        return 200, [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-RequestId", str(uuid.uuid4()))], \
            json.dumps(answer).encode()

    def _control(self, body: bytes) -> None:
        if self.command == "POST" and self.path.startswith(CONTROL + "rules"):
            now = time.monotonic()
            for doc in json.loads(body or b"[]"):
                self.owner.add_rule(Rule.from_json(doc, now))
        elif self.command == "DELETE" and self.path.startswith(CONTROL + "rules"):
            self.owner.clear()
        elif not (self.command == "GET" and self.path.startswith(CONTROL + "stats")):
            return self._reply(404, [("Content-Type", "application/json")], b'{"error": "unknown control call"}')
        self._reply(200, [("Content-Type", "application/json")], json.dumps(self.owner.stats).encode())

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_GET


def search_429(for_s: float | None = None) -> Rule:
    """The search server rejecting every request as overloaded, as OpenSearch's write queue does."""
    body = json.dumps({"error": {"root_cause": [{"type": "es_rejected_execution_exception",
                                                 "reason": "rejected execution (injected)"}],
                                 "type": "es_rejected_execution_exception", "reason": "rejected execution (injected)"},
                       "status": 429})
    return Rule("http_error", status=429, body=body, until=None if for_s is None else time.monotonic() + for_s)


def port_is_closed(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return False
    except OSError:
        return True
