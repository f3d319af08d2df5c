"""What the pipeline has recorded about its own progress, read back for ``GET /v1/pipeline``.

Nothing here writes. The sources are the ones the pipeline keeps anyway:

* the state table: the local runner's per-shard checkpoints
  ``checkpoint|<stream arn>|<consumer>|<shard>`` (sequence number and the counts
  ``delivered``, ``retries``, ``dead_lettered``; eventpipe/local/runner.py) and
  the watermarks ``watermark|<consumer>|<shard>`` (lake/state.py);
* S3: ``bad-rows/<consumer>/dt=<day>/app_id=<app>/`` (one schema: stream/badrows.py), the
  on-failure records under ``aws/lambda/`` (Lambda's own layout, written by
  Lambda on AWS and by the runner locally) and the finalizer's manifests.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Mapping

import orjson

from chalicelib.lake import layout
from chalicelib.lake.s3io import list_keys
from chalicelib.stream.badrows import CONSUMERS, PREFIX as BAD_ROWS_PREFIX, app_prefix

ON_FAILURE_PREFIX = "aws/lambda/"
MANIFEST = "_manifest.json"
#: Objects read per call at most (bad rows, on-failure records): the answer says when it stopped.
MAX_OBJECTS = 500


@dataclass(frozen=True)
class Checkpoint:
    """One consumer's position on one shard, and what it did there.

    Attributes:
        consumer: the handler's name (``archive_events``...).
        shard_id: the Kinesis shard.
        sequence_number: the last record it is done with.
        delivered: records it has moved past (processed or sent to the on-failure destination).
        retries: failed deliveries that were retried.
        dead_lettered: records sent to the on-failure destination.
        updated_ms: when the checkpoint last moved (epoch ms; None if never).
    """

    consumer: str
    shard_id: str
    sequence_number: str | None
    delivered: int
    retries: int
    dead_lettered: int
    updated_ms: int | None


def _scan(dynamodb, table: str, prefix: str) -> Iterable[dict]:
    for page in dynamodb.get_paginator("scan").paginate(
            TableName=table, FilterExpression="begins_with(pk, :p)", ExpressionAttributeValues={":p": {"S": prefix}},
            ConsistentRead=True):
        yield from page["Items"]


def _number(item: dict, name: str) -> int:
    return int(item[name]["N"]) if name in item else 0


def read_checkpoints(dynamodb, table: str, stream_arn: str) -> list[Checkpoint]:
    """Every checkpoint of the stream, ordered by consumer and shard."""
    prefix = f"checkpoint|{stream_arn}|"
    found = []
    for item in _scan(dynamodb, table, prefix):
        consumer, shard_id = item["pk"]["S"][len(prefix):].rsplit("|", 1)
        found.append(Checkpoint(consumer, shard_id, item.get("sequence_number", {}).get("S"),
                                _number(item, "delivered"), _number(item, "retries"), _number(item, "dead_lettered"),
                                _number(item, "updated_ms") or None))
    return sorted(found, key=lambda c: (c.consumer, c.shard_id))


def read_watermarks(dynamodb, table: str) -> dict[tuple[str, str], int]:
    """(consumer, shard) -> the newest event time seen there (epoch ms), as lake/state.py keeps it."""
    out = {}
    for item in _scan(dynamodb, table, "watermark|"):
        _, consumer, shard_id = item["pk"]["S"].split("|", 2)
        out[(consumer, shard_id)] = int(item["v"]["N"])
    return out


@dataclass(frozen=True)
class BadRowCounts:
    """Bad rows by consumer and reason.

    Attributes:
        by_consumer: consumer -> reason -> rows.
        unattributed: rows with no decoded event, so no app (undecodable records, lines that were not JSON).
        truncated: more than ``MAX_OBJECTS`` objects: the counts cover the first ones only.
    """

    by_consumer: dict[str, dict[str, int]]
    unattributed: int
    truncated: bool


def count_bad_rows(s3, bucket: str, days: list[str], app_id: str | None) -> BadRowCounts:
    """Count the bad rows of ``days`` (``YYYY-MM-DD``); ``app_id`` None counts every app's.

    An app's count lists and reads only its own prefixes (``app_prefix``: consumer x day), so
    other apps' bad rows cost it nothing and cannot truncate it; ``MAX_OBJECTS`` bounds its
    own. The operators' count (None) reads every app's objects, up to ``MAX_OBJECTS``.
    """
    counts: dict[str, Counter] = {c: Counter() for c in CONSUMERS}
    unattributed, read = 0, 0
    for consumer in CONSUMERS:
        for day in days:
            prefix = (f"{BAD_ROWS_PREFIX}/{consumer}/dt={day}/" if app_id is None
                      else app_prefix(consumer, day, app_id, BAD_ROWS_PREFIX))
            for obj in list_keys(s3, bucket, prefix):
                if read >= MAX_OBJECTS:
                    return BadRowCounts({c: dict(v) for c, v in counts.items()}, unattributed, True)
                read += 1
                body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
                for line in body.splitlines():
                    if not line.strip():
                        continue
                    row = orjson.loads(line)
                    owner = (row.get("event") or {}).get("app_id")
                    if owner is None:
                        unattributed += 1
                        if app_id is not None:
                            continue
                    elif app_id is not None and owner != app_id:
                        continue
                    counts[consumer][row.get("reason", "unknown")] += 1
    return BadRowCounts({c: dict(v) for c, v in counts.items()}, unattributed if app_id is None else 0, False)


@dataclass(frozen=True)
class DeadLetters:
    """Records sent to the on-failure destination.

    Attributes:
        records: (function name, shard) -> records.
        batches: on-failure objects read.
        truncated: more than ``MAX_OBJECTS`` objects: the counts cover the first ones only.
    """

    records: dict[tuple[str, str], int]
    batches: int
    truncated: bool


def count_dead_letters(s3, bucket: str) -> DeadLetters:
    """Read the on-failure records under ``aws/lambda/`` (``KinesisBatchInfo`` gives shard and batch size)."""
    records: Counter = Counter()
    batches = 0
    for obj in list_keys(s3, bucket, ON_FAILURE_PREFIX):
        if batches >= MAX_OBJECTS:
            return DeadLetters(dict(records), batches, True)
        try:
            doc = orjson.loads(s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())
            info = doc["KinesisBatchInfo"]
            function = doc["requestContext"]["functionArn"].rsplit(":", 1)[-1]
            records[(function, info["shardId"])] += int(info["batchSize"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            pass  # not an on-failure record: counted as a batch, its records unknown
        batches += 1
    return DeadLetters(dict(records), batches, False)


@dataclass(frozen=True)
class Finalized:
    """What the finalizer's manifests of one metric definition say.

    Attributes:
        last_ms: when the newest manifest was written (epoch ms; None: no hour finalized yet).
        until_ms: the end of the newest hour finalized (epoch ms; None: no hour finalized yet).
    """

    last_ms: int | None
    until_ms: int | None


def finalized_hours(s3, bucket: str, prefixes: Mapping[str, str]) -> dict[str, Finalized]:
    """metric -> its finalizer manifests under ``prefixes[metric]`` (the current definition's tree:
    a manifest of an older definition finalized nothing the metrics API reads now).

    Lists the definition's tree (an operator's view: it grows with the finalized hours and apps,
    unlike the per-app reads of the metrics API)."""
    out: dict[str, Finalized] = {}
    for name, prefix in prefixes.items():
        last = until = None
        for obj in list_keys(s3, bucket, prefix):
            if layout.final_app(obj["Key"]) is None:  # an app's final file (or the head of its slices)
                continue
            part = layout.parse_partition(obj["Key"])
            if part.get("stage") != "final" or "dt" not in part or "hour" not in part:
                continue
            modified = int(obj["LastModified"].timestamp() * 1000)
            end = layout.hour_start_ms(part["dt"], part["hour"]) + layout.HOUR_MS
            last = modified if last is None else max(last, modified)
            until = end if until is None else max(until, end)
        out[name] = Finalized(last, until)
    return out
