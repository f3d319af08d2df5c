"""Shared helpers for the ``test_processing_*`` tests (no tests of its own)."""

from __future__ import annotations

import base64
from typing import Any, Sequence

import orjson
import pyarrow as pa

from chalicelib.stream import codec
from chalicelib.processing.decode import EVENT_SCHEMA

T0 = 1_764_072_000_000  # 2025-11-25T12:00:00Z, a whole minute
MINUTE = 60_000


def event(i: int = 0, **overrides: Any) -> dict[str, Any]:
    """A canonical event (as a dict); ``attributes`` may be given as a dict."""
    ev = {"event_id": f"e{i}", "event_type": "level_up", "event_time": T0 + i, "received_at": T0 + i + 50,
          "app_id": "app-1", "user_id": f"u{i}", "client_event_time": None, "attributes": "{}"}
    ev.update(overrides)
    if isinstance(ev["attributes"], dict):
        ev["attributes"] = orjson.dumps(ev["attributes"]).decode()
    return ev


def line(ev: dict[str, Any]) -> bytes:
    return orjson.dumps(ev)


def kinesis_record(lines: Sequence[bytes], seq: int | str, data: bytes | None = None) -> dict[str, Any]:
    """A Lambda Kinesis record holding ``lines`` packed as the ingest packs them."""
    if data is None:
        packed = codec.pack(list(lines))
        assert len(packed) == 1
        data = packed[0].data
    return {"kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": "pk", "sequenceNumber": str(seq),
                        "data": base64.b64encode(data).decode(), "approximateArrivalTimestamp": 1764072000.5},
            "eventSource": "aws:kinesis", "eventID": f"shardId-000000000000:{seq}",
            "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/events"}


def events_table(events: Sequence[dict[str, Any]]) -> pa.Table:
    """An events table (without parsed attributes) from event dicts."""
    return pa.Table.from_pylist([{f.name: e[f.name] for f in EVENT_SCHEMA} for e in events], schema=EVENT_SCHEMA)
