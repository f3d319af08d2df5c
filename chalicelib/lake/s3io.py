"""S3 mechanics, in one place (as awswrangler keeps them): listing pages, reads,
a missing key as ``None``, batch deletes. Plain boto3 + pyarrow: the same against AWS and moto.
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq
from botocore.exceptions import ClientError

#: S3's DeleteObjects takes at most this many keys per request.
DELETE_BATCH = 1000
MISSING = ("NoSuchKey", "404", "NotFound")


def is_missing(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in MISSING


def list_keys(s3, bucket: str, prefix: str) -> Iterator[dict]:
    """Every object under ``prefix`` (all pages), as ListObjectsV2 ``Contents`` entries."""
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Contents", [])


def list_prefixes(s3, bucket: str, prefix: str) -> list[str]:
    """The "folders" directly under ``prefix`` (``CommonPrefixes`` with delimiter ``/``)."""
    found = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
        found += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
    return found


def get_bytes(s3, bucket: str, key: str) -> bytes | None:
    """The object's body, or None when there is no such key."""
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if is_missing(exc):
            return None
        raise


def head(s3, bucket: str, key: str) -> dict | None:
    """HeadObject's answer, or None when there is no such key."""
    try:
        return s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if is_missing(exc):
            return None
        raise


def read_parquet(s3, bucket: str, key: str) -> pa.Table:
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return pq.read_table(io.BytesIO(body))


def read_many(s3, bucket: str, keys: list[str], threads: int = 8) -> list[pa.Table]:
    """Parquet files read in parallel, in the order of ``keys``."""
    if not keys:
        return []
    with ThreadPoolExecutor(max_workers=min(threads, len(keys))) as pool:
        return list(pool.map(lambda key: read_parquet(s3, bucket, key), keys))


def delete_keys(s3, bucket: str, keys: Iterable[str]) -> int:
    """Delete the keys (missing ones are fine), 1,000 per request; returns how many were asked."""
    keys = list(keys)
    for i in range(0, len(keys), DELETE_BATCH):
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[i:i + DELETE_BATCH]],
                                                 "Quiet": True})
    return len(keys)
