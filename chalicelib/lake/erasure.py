"""Removing some users' events from the lake's files outside the raw table.

* staged archive batches (``staging/events/``, Parquet): rows of the users dropped, file rewritten;
* bad rows (``bad-rows/<consumer>/dt=/app_id=<app or _unattributed>/``, NDJSON): rows that name a
  user (any value of the row equal to its id, in the event, the raw line, or the decoded record
  data) dropped, object rewritten or deleted;
* dead letters (``aws/lambda/`` and the redriven copies under ``aws/lambda-redriven/``): each Kinesis
  record of the payload is decoded and re-encoded without the users' event lines (a record left
  empty is dropped), so a redrive can never bring them back.

Each function is idempotent (a rerun finds nothing more) and returns how many rows it removed.
Objects are rewritten under the same key; when the bucket keeps versions, the older versions of a
rewritten key are deleted too (:func:`delete_old_versions`).
"""

from __future__ import annotations

import base64
import io
from typing import Iterable, Mapping

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from chalicelib.lake import layout, s3io
from chalicelib.stream import codec
from chalicelib.stream.badrows import PREFIX as BAD_ROWS_PREFIX, UNATTRIBUTED

DEAD_LETTER_PREFIXES = ("aws/lambda/", "aws/lambda-redriven/")

#: app_id -> the user ids to remove.
Targets = Mapping[str, frozenset[str]]


def bucket_versioned(s3, bucket: str) -> bool:
    return s3.get_bucket_versioning(Bucket=bucket).get("Status") in ("Enabled", "Suspended")


def delete_old_versions(s3, bucket: str, key: str, every: bool = False) -> int:
    """Delete every noncurrent version and delete marker of ``key`` (``every``: the current ones too,
    so no trace of the key is left); returns how many."""
    doomed = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=key):
        for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
            if v["Key"] == key and (every or not v.get("IsLatest")):
                doomed.append({"Key": key, "VersionId": v["VersionId"]})
    for i in range(0, len(doomed), 1000):
        s3.delete_objects(Bucket=bucket, Delete={"Objects": doomed[i:i + 1000], "Quiet": True})
    return len(doomed)


class ObjectEraser:
    def __init__(self, s3, bucket: str) -> None:
        self._s3, self._bucket = s3, bucket
        self._versioned: bool | None = None

    def _replace(self, key: str, body: bytes | None, content_type: str) -> None:
        if body is None:
            self._s3.delete_object(Bucket=self._bucket, Key=key)
        else:
            self._s3.put_object(Bucket=self._bucket, Key=key, Body=body, ContentType=content_type)
        if self._versioned is None:
            self._versioned = bucket_versioned(self._s3, self._bucket)
        if self._versioned:  # a deleted key: its delete marker too, so no version of it is left
            delete_old_versions(self._s3, self._bucket, key, every=body is None)

    def purge_noncurrent(self, prefix: str) -> int:
        """In a versioned bucket, delete every noncurrent version and delete marker under ``prefix`` (the
        raw table's replaced files, once expiry deleted them); 0 in an unversioned bucket."""
        if self._versioned is None:
            self._versioned = bucket_versioned(self._s3, self._bucket)
        if not self._versioned:
            return 0
        doomed = []
        for page in self._s3.get_paginator("list_object_versions").paginate(Bucket=self._bucket, Prefix=prefix):
            doomed += [{"Key": v["Key"], "VersionId": v["VersionId"]}
                       for v in page.get("Versions", []) + page.get("DeleteMarkers", []) if not v.get("IsLatest")
                       or "Size" not in v]
        for i in range(0, len(doomed), 1000):
            self._s3.delete_objects(Bucket=self._bucket, Delete={"Objects": doomed[i:i + 1000], "Quiet": True})
        return len(doomed)

    # -------------------------------------------------------------------- staged batches
    def staged(self, targets: Targets) -> tuple[int, int]:
        """(files rewritten, rows removed) over every staged archive batch."""
        files = rows = 0
        for obj in list(s3io.list_keys(self._s3, self._bucket, layout.STAGING_PREFIX)):
            table = s3io.read_parquet(self._s3, self._bucket, obj["Key"])
            drop = _rows_of(table, targets)
            removed = int(pc.sum(drop).as_py() or 0) if table.num_rows else 0
            if not removed:
                continue
            kept = table.filter(pc.invert(drop))
            sink = io.BytesIO()
            pq.write_table(kept, sink, compression="zstd")
            self._replace(obj["Key"], sink.getvalue(), "application/vnd.apache.parquet")
            files, rows = files + 1, rows + removed
        return files, rows

    # -------------------------------------------------------------------- bad rows
    def bad_rows(self, targets: Targets) -> int:
        removed = 0
        for obj in list(s3io.list_keys(self._s3, self._bucket, BAD_ROWS_PREFIX.rstrip("/") + "/")):
            owner = layout.parse_partition(obj["Key"]).get("app_id")
            users = frozenset().union(*targets.values()) if owner == UNATTRIBUTED else targets.get(owner)
            if not users:
                continue
            body = s3io.get_bytes(self._s3, self._bucket, obj["Key"]) or b""
            lines = [line for line in body.split(b"\n") if line.strip()]
            kept = [line for line in lines if not _mentions(_loads(line), users)]
            if len(kept) == len(lines):
                continue
            removed += len(lines) - len(kept)
            self._replace(obj["Key"], b"".join(line + b"\n" for line in kept) if kept else None,
                          "application/x-ndjson")
        return removed

    # -------------------------------------------------------------------- dead letters
    def dead_letters(self, targets: Targets) -> int:
        removed = 0
        for prefix in DEAD_LETTER_PREFIXES:
            for obj in list(s3io.list_keys(self._s3, self._bucket, prefix)):
                body = s3io.get_bytes(self._s3, self._bucket, obj["Key"]) or b""
                try:
                    doc = orjson.loads(body)
                    payload = orjson.loads(doc["payload"])
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    continue
                records, n = _clean_records(payload.get("Records") or [], targets)
                if not n:
                    continue
                removed += n
                doc["payload"] = orjson.dumps({**payload, "Records": records}).decode()
                if "KinesisBatchInfo" in doc:
                    doc["KinesisBatchInfo"]["batchSize"] = len(records)
                self._replace(obj["Key"], orjson.dumps(doc), "application/json")
        return removed


def _rows_of(table: pa.Table, targets: Targets) -> pa.ChunkedArray | pa.Array:
    mask = pa.array([False] * table.num_rows, pa.bool_())
    for app_id, users in targets.items():
        hit = pc.and_(pc.equal(table["app_id"], app_id), pc.is_in(table["user_id"], value_set=pa.array(sorted(users))))
        mask = pc.or_(mask, pc.fill_null(hit, False))
    return mask


def _loads(line: bytes):
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return line.decode("utf-8", "replace")


def _mentions(value, users: frozenset[str], depth: int = 0) -> bool:
    """Whether any value inside (strings that are JSON or Kinesis record data are opened) is a user id."""
    if depth > 8:
        return False
    if isinstance(value, str):
        if value in users:
            return True
        if value[:1] in "{[":
            parsed = _loads(value.encode())
            return not isinstance(parsed, str) and _mentions(parsed, users, depth + 1)
        return False
    if isinstance(value, dict):
        if isinstance(value.get("record_data_b64"), str) and _record_mentions(value["record_data_b64"], users):
            return True
        return any(_mentions(v, users, depth + 1) for v in value.values())
    if isinstance(value, list):
        return any(_mentions(v, users, depth + 1) for v in value)
    return False


def _record_mentions(data_b64: str, users: frozenset[str]) -> bool:
    try:
        raw = base64.b64decode(data_b64)
    except ValueError:
        return False
    try:
        text = codec.decode_record(raw)
    except codec.UndecodableRecord:
        text = raw
    return any(_mentions(_loads(line), users, 1) for line in text.split(b"\n") if line.strip())


def _clean_records(records: Iterable[dict], targets: Targets) -> tuple[list[dict], int]:
    """Kinesis records of a Lambda event without the targets' event lines; (records, lines removed)."""
    out, removed = [], 0
    for record in records:
        kinesis = record.get("kinesis") or {}
        try:
            lines = [line for line in codec.decode_record(base64.b64decode(kinesis["data"])).split(b"\n") if line]
        except (KeyError, ValueError, codec.UndecodableRecord):
            out.append(record)
            continue
        kept = [line for line in lines if not _is_target(_loads(line), targets)]
        if len(kept) == len(lines):
            out.append(record)
            continue
        removed += len(lines) - len(kept)
        if kept:
            out.append({**record, "kinesis": {**kinesis, "data": base64.b64encode(codec.encode_lines(kept)).decode()}})
    return out, removed


def _is_target(event, targets: Targets) -> bool:
    if not isinstance(event, dict):
        return False
    users = targets.get(event.get("app_id"))
    return bool(users) and event.get("user_id") in users
