"""Shared fixtures: sample events, Kinesis record factories, moto credentials."""

from __future__ import annotations

import base64
import contextlib
import itertools
import os
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_events"

# Never let a test reach real AWS.
for _name, _value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                      ("AWS_SESSION_TOKEN", "testing"), ("AWS_DEFAULT_REGION", "us-east-1")):
    os.environ[_name] = _value
os.environ.pop("EVENTPIPE_AWS_ENDPOINT_URL", None)


def load_sample(name: str):
    data = (SAMPLES / name).read_bytes()
    if name.endswith(".ndjson"):
        return [orjson.loads(line) for line in data.splitlines() if line.strip()]
    return orjson.loads(data)


_sequence = itertools.count(1_000_000)


def kinesis_record(data: bytes, shard_id: str = "shardId-000000000000", sequence_number: int | None = None,
                   partition_key: str = "pk", arrival_s: float = 1_767_268_800.0) -> dict:
    """A Lambda-shaped Kinesis record with a unique sequence number."""
    seq = str(next(_sequence) if sequence_number is None else sequence_number)
    return {
        "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": partition_key, "sequenceNumber": seq,
                    "data": base64.b64encode(data).decode(), "approximateArrivalTimestamp": arrival_s},
        "eventSource": "aws:kinesis", "eventVersion": "1.0", "eventID": f"{shard_id}:{seq}",
        "eventName": "aws:kinesis:record", "awsRegion": "us-east-1",
        "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/eventpipe-events",
    }


@pytest.fixture
def samples():
    return load_sample


@contextlib.contextmanager
def fresh_moto_server():
    """An in-process moto server; yields its URL.

    moto's backends are per process, not per server: what a server started earlier in the same
    pytest process created is still there (and a reset would wipe a session fixture's lake), so
    callers use names of their own.
    """
    import logging

    from moto.server import ThreadedMotoServer

    from eventpipe.local.stack import free_port

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    try:
        yield url
    finally:
        server.stop()
