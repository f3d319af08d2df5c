"""Lambda's on-failure record for a Kinesis event source mapping with an S3 destination.

When a batch exhausts its retries (``RetryAttemptsExhausted``) or its records
are too old (``RecordAgeExceeded``), Lambda writes one JSON object to the
destination bucket under a key it chooses::

    aws/lambda/<ESM UUID>/<shard id>/YYYY/MM/DD/YYYY-MM-DDTHH.MM.SS-<random UUID>

holding ``requestContext``, ``responseContext``, ``version``, ``timestamp``,
``KinesisBatchInfo`` (shard, first/last sequence number, arrival times, batch
size, stream ARN) and, for S3 destinations only, ``payload``: the invocation
event as a JSON string (AWS Lambda Developer Guide, "Retaining discarded
batches for a Kinesis event source" and the S3 example of the DynamoDB
streams page). The local runner writes exactly this, so ``eventpipe redrive``
is the same command on the local stack and on AWS.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Sequence

import orjson

PREFIX = "aws/lambda/"
CONDITIONS = ("RetryAttemptsExhausted", "RecordAgeExceeded")
#: Namespace of the local stack's event source mapping UUIDs (uuid5 of stream ARN + consumer).
_LOCAL_NAMESPACE = uuid.UUID("6f1c1f0e-6c61-4c2b-9a77-6576656e7470")


class InvalidFailureRecord(ValueError):
    """An object under ``aws/lambda/`` that is not an on-failure record with a payload."""


def local_mapping_uuid(stream_arn: str, consumer: str) -> str:
    """The stable "event source mapping UUID" the local runner uses for a consumer."""
    return str(uuid.uuid5(_LOCAL_NAMESPACE, f"{stream_arn}|{consumer}"))


@dataclass(frozen=True)
class FailureRecord:
    """One discarded batch: which mapping and shard, why, and the Lambda event to replay."""

    mapping_uuid: str
    shard_id: str
    condition: str
    function_arn: str
    first_sequence: str
    last_sequence: str
    records: tuple[dict, ...]

    @property
    def event(self) -> dict[str, Any]:
        """The invocation event, as the handler received it."""
        return {"Records": list(self.records)}


def build(records: Sequence[dict], *, mapping_uuid: str, shard_id: str, stream_arn: str, function_arn: str,
          condition: str, invoke_count: int, error: str | None, now: datetime) -> tuple[str, bytes]:
    """The key and body Lambda writes for a discarded batch (the local runner's dead letter)."""
    if condition not in CONDITIONS:
        raise ValueError(f"condition must be one of {CONDITIONS}")
    arrival = [r["kinesis"].get("approximateArrivalTimestamp") for r in records]
    body = {
        "requestContext": {"requestId": str(uuid.uuid4()), "functionArn": function_arn, "condition": condition,
                           "approximateInvokeCount": invoke_count},
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST",
                            "functionError": "Unhandled" if error else None},
        "version": "1.0",
        "timestamp": now.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "KinesisBatchInfo": {
            "shardId": shard_id,
            "startSequenceNumber": records[0]["kinesis"]["sequenceNumber"],
            "endSequenceNumber": records[-1]["kinesis"]["sequenceNumber"],
            "approximateArrivalOfFirstRecord": _iso(arrival[0]),
            "approximateArrivalOfLastRecord": _iso(arrival[-1]),
            "batchSize": len(records),
            "streamArn": stream_arn,
        },
        "payload": orjson.dumps({"Records": list(records)}).decode(),
    }
    stamp = now.astimezone(timezone.utc)
    key = (f"{PREFIX}{mapping_uuid}/{shard_id}/{stamp:%Y/%m/%d}/{stamp:%Y-%m-%dT%H.%M.%S}-{uuid.uuid4()}")
    return key, orjson.dumps(body)


def parse(key: str, body: bytes) -> FailureRecord:
    """Read an on-failure record (raises :class:`InvalidFailureRecord`)."""
    parts = key[len(PREFIX):].split("/") if key.startswith(PREFIX) else []
    if len(parts) < 6:
        raise InvalidFailureRecord(f"{key}: not under {PREFIX}<mapping>/<shard>/YYYY/MM/DD/")
    try:
        doc = orjson.loads(body)
        info = doc["KinesisBatchInfo"]
        payload = doc.get("payload")
        if payload is None:
            raise InvalidFailureRecord(f"{key}: no payload (only S3 destinations carry the records)")
        records = orjson.loads(payload)["Records"]
        return FailureRecord(mapping_uuid=parts[0], shard_id=info["shardId"],
                             condition=doc["requestContext"]["condition"],
                             function_arn=doc["requestContext"].get("functionArn", ""),
                             first_sequence=info["startSequenceNumber"], last_sequence=info["endSequenceNumber"],
                             records=tuple(records))
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise InvalidFailureRecord(f"{key}: not an on-failure record ({type(exc).__name__}: {exc})") from None


def _iso(seconds: Any) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(float(seconds), timezone.utc).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")
