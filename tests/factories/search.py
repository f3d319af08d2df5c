"""Test data and failure injection for the search suite."""

from __future__ import annotations

import itertools
import socket
import threading
import uuid
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

import orjson
from opensearchpy.exceptions import TransportError

from chalicelib.stream import codec
from chalicelib.search.naming import ms_from_datetime
from tests.conftest import kinesis_record

NOW_MS = ms_from_datetime(datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc))
HOUR_MS = 3_600_000
_received = itertools.count(1)


def event(app_id: str = "app-a", event_type: str = "chat_message", at: int = NOW_MS - HOUR_MS,
          user_id: str | None = "user-1", event_id: str | None = None,
          client_event_time: int | None = None, **attributes: Any) -> dict:
    """A canonical event line (attributes carried as a JSON string, as on the stream)."""
    return {
        "event_id": event_id or f"ev-{uuid.uuid4().hex[:12]}",
        "event_type": event_type,
        "event_time": at,
        "received_at": at + next(_received),
        "app_id": app_id,
        "user_id": user_id,
        "client_event_time": client_event_time,
        "attributes": orjson.dumps(attributes).decode(),
    }


def lines(events: Iterable[dict]) -> list[bytes]:
    return [orjson.dumps(e) for e in events]


def records(*groups: list[dict]) -> list[dict]:
    """One Kinesis record per group of events, each with a fresh (increasing) sequence number."""
    return [kinesis_record(codec.encode_lines(lines(group))) for group in groups]


def raw_record(data: bytes) -> dict:
    return kinesis_record(data)


def from_sequence(batch: list[dict], sequence_number: str) -> list[dict]:
    """What Lambda redelivers after batchItemFailures: the records from that sequence number on."""
    return [r for r in batch if int(r["kinesis"]["sequenceNumber"]) >= int(sequence_number)]


def stored(client, prefix: str, app_id: str | None = None) -> list[dict]:
    """Every stored document (``_id`` included), refreshed first."""
    client.indices.refresh(index=f"{prefix}-*", ignore=[404])
    query = {"term": {"app_id": app_id}} if app_id else {"match_all": {}}
    response = client.search(index=f"{prefix}-*", body={"query": query, "size": 10_000},
                             ignore_unavailable=True, allow_no_indices=True)
    return [{**hit["_source"], "_id": hit["_id"], "_index": hit["_index"]} for hit in response["hits"]["hits"]]


def assert_indexed_once(client, prefix: str, events: list[dict]) -> None:
    docs = stored(client, prefix)
    ids = [(d["app_id"], d["event_id"]) for d in docs]
    assert len(ids) == len(set(ids)), "an event is stored twice"
    assert sorted(ids) == sorted((e["app_id"], e["event_id"]) for e in events)


class FlakyBulk:
    """Wraps a real client; each ``bulk`` call takes the next planned fault (then passes through).

    Plan steps: ``"429"`` raises a whole-request 429; ``"503"`` a 503;
    ``"reject"`` forwards only the items that ``pick(n, document)`` spares and
    answers per-item 429 for the others, as a node with a full write queue does.
    """

    def __init__(self, client, plan: Iterable[Any],
                 pick: Callable[[int, dict], bool] = lambda n, doc: n % 2 == 0) -> None:
        self._client = client
        self._plan = list(plan)
        self._pick = pick
        self.calls = 0

    def __getattr__(self, name: str):
        return getattr(self._client, name)

    def bulk(self, body: bytes, **kwargs):
        self.calls += 1
        step = self._plan.pop(0) if self._plan else None
        if step is None:
            return self._client.bulk(body=body, **kwargs)
        if step in ("429", "503"):
            kind = "es_rejected_execution_exception" if step == "429" else "unavailable"
            raise TransportError(int(step), kind, {"error": {"type": kind, "reason": "injected"}})
        body_lines = body.splitlines()
        pairs = [body_lines[i] + b"\n" + body_lines[i + 1] + b"\n" for i in range(0, len(body_lines), 2)]
        rejected = {n for n, pair in enumerate(pairs) if self._pick(n, orjson.loads(pair.split(b"\n")[1]))}
        forwarded = [p for n, p in enumerate(pairs) if n not in rejected]
        real_items = iter(self._client.bulk(body=b"".join(forwarded), **kwargs)["items"] if forwarded else [])
        items = []
        for n in range(len(pairs)):
            if n in rejected:
                items.append({"index": {"status": 429, "error": {
                    "type": "es_rejected_execution_exception", "reason": "injected: write queue full"}}})
            else:
                items.append(next(real_items))
        return {"errors": True, "items": items}


class RejectingBulk:
    """Wraps a real client; bulk items whose document ``pick(doc)`` selects are answered with a
    per-item 400 carrying ``error`` (as a cluster refusing that document would); the rest pass through."""

    def __init__(self, client, pick: Callable[[dict], bool], error: dict) -> None:
        self._client, self._pick, self._error = client, pick, error

    def __getattr__(self, name: str):
        return getattr(self._client, name)

    def bulk(self, body: bytes, **kwargs):
        body_lines = body.splitlines()
        pairs = [body_lines[i] + b"\n" + body_lines[i + 1] + b"\n" for i in range(0, len(body_lines), 2)]
        rejected = {n for n, pair in enumerate(pairs) if self._pick(orjson.loads(pair.split(b"\n")[1]))}
        forwarded = [p for n, p in enumerate(pairs) if n not in rejected]
        real_items = iter(self._client.bulk(body=b"".join(forwarded), **kwargs)["items"] if forwarded else [])
        items = [{"index": {"status": 400, "error": self._error}} if n in rejected else next(real_items)
                 for n in range(len(pairs))]
        return {"errors": bool(rejected), "items": items}


class TcpProxy:
    """A loopback TCP forwarder that can be stopped (connection refused) and started again."""

    def __init__(self, target_url: str) -> None:
        host_port = target_url.split("://", 1)[1].rstrip("/")
        host, port = host_port.rsplit(":", 1)
        self._target = (host, int(port))
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            try:  # wakes the thread blocked in accept() (close alone does not, on Linux)
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            listener.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
