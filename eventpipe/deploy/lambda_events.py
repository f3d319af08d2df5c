"""Lambda-shaped events: API Gateway REST proxy requests, Kinesis batches read back from a stream, SQS
messages received from a queue, schedules."""

from __future__ import annotations

import base64
import gzip
import time
import uuid
from datetime import datetime, timezone
from typing import Mapping, Sequence

ACCOUNT = "123456789012"


def api_event(method: str, path: str, *, resource: str | None = None, headers: Mapping[str, str] | None = None,
              query: Mapping[str, Sequence[str]] | None = None, body: bytes | str | None = None,
              binary: bool = False, stage: str = "api") -> dict:
    """An API Gateway (REST, proxy integration) event as Chalice's ``app(event, context)`` receives it.

    Args:
        resource: The route template (``/v1/metrics/{name}``); default ``path``. Path parameters
            are read from ``path`` at the template's ``{...}`` segments.
        binary: The body arrives base64-encoded (a binary media type, e.g. a gzip body).
    """
    resource = resource or path
    params = {name[1:-1]: value for name, value in zip(resource.split("/"), path.split("/"))
              if name.startswith("{") and name.endswith("}")}
    headers = {"Host": "api.example.com", "X-Forwarded-Proto": "https", **(headers or {})}
    if isinstance(body, bytes) and not binary:
        body = body.decode()
    if binary and body is not None:
        body = base64.b64encode(body if isinstance(body, bytes) else body.encode()).decode()
    return {
        "resource": resource, "path": path, "httpMethod": method, "headers": dict(headers),
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": {k: v[-1] for k, v in query.items()} if query else None,
        "multiValueQueryStringParameters": {k: list(v) for k, v in query.items()} if query else None,
        "pathParameters": params or None, "stageVariables": None,
        "requestContext": {"resourcePath": resource, "httpMethod": method, "path": f"/{stage}{path}",
                           "stage": stage, "requestId": str(uuid.uuid4()), "accountId": ACCOUNT,
                           "requestTimeEpoch": int(time.time() * 1000), "protocol": "HTTP/1.1",
                           "identity": {"sourceIp": "127.0.0.1", "userAgent": "sandbox"}},
        "body": body, "isBase64Encoded": bool(binary and body is not None),
    }


def gzip_body(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def _record(record: dict, shard_id: str, stream_arn: str, region: str) -> dict:
    arrival = record["ApproximateArrivalTimestamp"]
    seconds = arrival.timestamp() if isinstance(arrival, datetime) else float(arrival)
    sequence = record["SequenceNumber"]
    return {
        "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": record["PartitionKey"],
                    "sequenceNumber": sequence, "data": base64.b64encode(record["Data"]).decode(),
                    "approximateArrivalTimestamp": seconds},
        "eventSource": "aws:kinesis", "eventVersion": "1.0", "eventID": f"{shard_id}:{sequence}",
        "eventName": "aws:kinesis:record", "invokeIdentityArn": f"arn:aws:iam::{ACCOUNT}:role/sandbox",
        "awsRegion": region, "eventSourceARN": stream_arn,
    }


def kinesis_events(kinesis, stream_name: str, batch_size: int = 1000) -> list[dict]:
    """Every record of the stream (from TRIM_HORIZON) as Lambda would deliver it: one event per shard batch."""
    summary = kinesis.describe_stream_summary(StreamName=stream_name)["StreamDescriptionSummary"]
    arn, region = summary["StreamARN"], summary["StreamARN"].split(":")[3]
    events = []
    for shard in kinesis.list_shards(StreamName=stream_name)["Shards"]:
        iterator = kinesis.get_shard_iterator(StreamName=stream_name, ShardId=shard["ShardId"],
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        records: list[dict] = []
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=batch_size)
            if not page["Records"]:
                break
            records += [_record(r, shard["ShardId"], arn, region) for r in page["Records"]]
            iterator = page.get("NextShardIterator")
        for start in range(0, len(records), batch_size):
            events.append({"Records": records[start:start + batch_size]})
    return events


def sqs_record(message: dict, queue_arn: str, region: str) -> dict:
    """One received message in the shape Lambda gives an SQS handler."""
    return {"messageId": message["MessageId"], "receiptHandle": message["ReceiptHandle"], "body": message["Body"],
            "attributes": message.get("Attributes", {}), "messageAttributes": message.get("MessageAttributes", {}),
            "md5OfBody": message.get("MD5OfBody", ""), "eventSource": "aws:sqs", "eventSourceARN": queue_arn,
            "awsRegion": region}


def sqs_events(sqs, queue_url: str, batch_size: int = 10, visibility_timeout_s: int = 300) -> list[dict]:
    """Every message waiting in the queue, received (so hidden for ``visibility_timeout_s``) and shaped as
    Lambda's SQS event source mapping delivers them: one event per ``batch_size`` messages."""
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    region = arn.split(":")[3]
    records: list[dict] = []
    while True:
        page = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=visibility_timeout_s,
                                   AttributeNames=["All"]).get("Messages", [])
        if not page:
            break
        records += [sqs_record(m, arn, region) for m in page]
    return [{"Records": records[i:i + batch_size]} for i in range(0, len(records), batch_size)]


def scheduled_event(rule: str, region: str = "us-east-1", now: datetime | None = None) -> dict:
    """An EventBridge scheduled event (what ``@app.schedule`` handlers receive)."""
    now = now or datetime.now(timezone.utc)
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event", "source": "aws.events",
            "account": ACCOUNT, "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "region": region,
            "resources": [f"arn:aws:events:{region}:{ACCOUNT}:rule/{rule}"], "detail": {}}
